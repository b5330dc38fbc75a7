//! The mock upstream on a thread of its own (current-thread tokio runtime), so
//! synchronous code (the bench, the generator) can start and stop it.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::gen::local_loop::{self, LoopHandle};
use crate::mock::{MockConfig, MockCounters, MockUpstream};

/// A mock upstream running on its own thread; stopped on drop.
#[derive(Debug)]
pub struct MockHost {
    /// Bound address.
    pub addr: SocketAddr,
    /// Its counters.
    pub counters: MockCounters,
    /// Runs other work (the sweep's generator) on the mock's event loop.
    pub event_loop: LoopHandle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MockHost {
    /// Starts a mock with `cfg` on a new thread.
    pub fn start(cfg: MockConfig) -> std::io::Result<MockHost> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (event_loop, jobs) = local_loop::job_channel();
        let thread = std::thread::Builder::new()
            .name("mock".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                // A LocalSet, so that work handed over (the generator's) may be !Send.
                tokio::task::LocalSet::new().block_on(&rt, async move {
                    match MockUpstream::start(cfg).await {
                        Ok(m) => {
                            let _ = ready_tx.send(Ok((m.addr(), m.counters())));
                            let serve = async {
                                local_loop::serve_jobs(jobs).await;
                                std::future::pending::<()>().await
                            };
                            tokio::select! {
                                _ = stop_rx => {}
                                _ = serve => {}
                            }
                            m.shutdown();
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                        }
                    }
                });
            })?;
        match ready_rx.recv() {
            Ok(Ok((addr, counters))) => Ok(MockHost {
                addr,
                counters,
                event_loop,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(std::io::Error::other(e)),
            Err(_) => Err(std::io::Error::other("mock thread died")),
        }
    }

    /// `ws://ADDR`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Stops the mock and waits for its thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MockHost {
    fn drop(&mut self) {
        self.halt();
    }
}
