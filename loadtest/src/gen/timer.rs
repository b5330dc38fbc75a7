//! A microsecond-precise async sleep on a `timerfd` (tokio's timer wheel has 1 ms
//! granularity, far coarser than the latencies an open-loop sweep measures).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

/// One `timerfd` (CLOCK_MONOTONIC) registered with the current tokio runtime.
#[derive(Debug)]
pub struct PreciseTimer {
    fd: AsyncFd<OwnedFd>,
    base_instant: Instant,
    base_mono: Duration,
}

fn monotonic_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl PreciseTimer {
    /// Creates the timer; must run inside a tokio runtime with I/O enabled.
    pub fn new() -> std::io::Result<PreciseTimer> {
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the timerfd is owned by the AsyncFd and never closed or
        // replaced while registered.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)?;
        Ok(PreciseTimer {
            fd,
            base_instant: Instant::now(),
            base_mono: monotonic_now(),
        })
    }

    /// Sleeps until `deadline` (returns at once if it has passed).
    pub async fn sleep_until(&mut self, deadline: Instant) -> std::io::Result<()> {
        if deadline <= Instant::now() {
            return Ok(());
        }
        let at = self.base_mono + deadline.saturating_duration_since(self.base_instant);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: at.as_secs() as libc::time_t,
                tv_nsec: at.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: valid fd and itimerspec; old value not requested.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            // SAFETY: reading 8 bytes into an 8-byte buffer from our fd.
            let n = unsafe {
                libc::read(
                    guard.get_inner().as_raw_fd(),
                    expirations.as_mut_ptr().cast(),
                    expirations.len(),
                )
            };
            if n == 8 {
                return Ok(());
            }
            guard.clear_ready();
            if Instant::now() >= deadline {
                return Ok(());
            }
        }
    }
}

/// Lets this thread's sleeps wake within ~1 µs of their deadline
/// (`PR_SET_TIMERSLACK`; the default slack is 50 µs).
pub fn tighten_timer_slack() {
    // SAFETY: prctl with PR_SET_TIMERSLACK takes a plain integer.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn never_wakes_early_and_usually_well_under_a_millisecond_late() {
        tighten_timer_slack();
        let mut t = PreciseTimer::new().unwrap();
        let mut late = Vec::new();
        for _ in 0..21 {
            let d = Instant::now() + Duration::from_micros(300);
            t.sleep_until(d).await.unwrap();
            let now = Instant::now();
            assert!(now >= d, "woke early");
            late.push(now - d);
        }
        late.sort();
        // tokio's timer wheel would round every sleep up to the next 1 ms tick.
        assert!(
            late[10] < Duration::from_micros(700),
            "median lateness {:?}",
            late[10]
        );
        // A deadline in the past returns at once.
        t.sleep_until(Instant::now() - Duration::from_millis(1))
            .await
            .unwrap();
    }
}
