//! Work handed to an event loop that runs on another thread.
//!
//! The bench's latency sweep runs the generator *on the mock's thread*: one current-thread
//! runtime serves both ends of the load, as one event loop. With a thread each on one core,
//! a thread woken while the other ran waited for the kernel's fair scheduler to let it in —
//! often the next tick, 4 ms at `HZ=250`. `perf sched record -a` during `loadtest bench
//! --peers floor --only sweep@8000` put the generator's wake-up waits at up to 4.5–4.8 ms,
//! nearly all behind the running mock: waits on the load side, added to every peer's echo
//! tails alike (loadtest/BENCH-history.md, "Echo tails: the load side's two threads").
//!
//! The loop's owner makes a [`job_channel`], keeps polling [`serve_jobs`] inside a
//! `LocalSet`, and gives out the [`LoopHandle`]; [`LoopHandle::spawn`] runs a `!Send` future
//! (the generator's `Rc` state) there and returns its output through a channel.

use std::future::Future;
use std::sync::mpsc;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

type Job = Box<dyn FnOnce() + Send>;

/// Hands work to an event loop serving [`serve_jobs`].
#[derive(Debug, Clone)]
pub struct LoopHandle {
    jobs: UnboundedSender<Job>,
}

/// The loop's end of a [`job_channel`].
#[derive(Debug)]
pub struct JobReceiver(UnboundedReceiver<Job>);

/// A handle and the receiver its loop serves.
pub fn job_channel() -> (LoopHandle, JobReceiver) {
    let (jobs, rx) = unbounded_channel();
    (LoopHandle { jobs }, JobReceiver(rx))
}

/// Runs every job sent to the handle, each inside the caller's `LocalSet` (so a job may
/// `spawn_local`), until every handle is dropped. Poll it inside a `LocalSet`.
pub async fn serve_jobs(mut rx: JobReceiver) {
    while let Some(job) = rx.0.recv().await {
        job();
    }
}

/// The loop is gone (its thread stopped), so the work was not started.
#[derive(Debug, thiserror::Error)]
#[error("the event loop to run on has stopped")]
pub struct LoopGone;

impl LoopHandle {
    /// Spawns the future `make` builds on the loop (`make` runs there, so the future need
    /// not be `Send`); its output arrives on the returned receiver, which reports a
    /// disconnect if the loop stops first.
    pub fn spawn<F, Fut>(&self, make: F) -> Result<mpsc::Receiver<Fut::Output>, LoopGone>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .send(Box::new(move || {
                tokio::task::spawn_local(async move {
                    let _ = tx.send(make().await);
                });
            }))
            .map_err(|_| LoopGone)?;
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn a_spawned_future_runs_on_the_loops_thread_and_returns_its_output() {
        let (handle, rx) = job_channel();
        let (tid_tx, tid_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let _ = tid_tx.send(std::thread::current().id());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            tokio::task::LocalSet::new().block_on(&rt, serve_jobs(rx));
        });
        let loop_thread = tid_rx.recv().expect("loop thread id");
        let out = handle
            .spawn(|| async {
                // A !Send value lives across an await: only a LocalSet can run this.
                let rc = Rc::new(20);
                tokio::task::yield_now().await;
                (*rc + 1, std::thread::current().id())
            })
            .expect("loop running");
        let (value, ran_on) = out.recv().expect("output");
        assert_eq!(value, 21);
        assert_eq!(ran_on, loop_thread);
        assert_ne!(ran_on, std::thread::current().id());
        // Dropping the last handle ends the loop; work sent after that is refused.
        let late = handle.clone();
        drop(handle);
        drop(late);
        thread
            .join()
            .expect("loop thread ends once every handle is gone");
    }

    #[test]
    fn work_for_a_stopped_loop_is_refused_not_lost_silently() {
        let (handle, rx) = job_channel();
        drop(rx);
        assert!(handle.spawn(|| async { 1 }).is_err());
    }
}
