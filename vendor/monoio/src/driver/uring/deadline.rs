//! tollgate patch: the driver's standing absolute timeout.
//!
//! One absolute `IORING_OP_TIMEOUT` (`CLOCK_MONOTONIC`) is left in the ring across parks, for
//! the time driver's next expiration. A park then waits with a plain `submit_and_wait(1)`
//! instead of passing a relative timeout in every `io_uring_enter` (which costs the enter's
//! argument copies and a clock read — measured with `cargo bench --bench wakeup` in tollgate
//! — and a high-resolution timer armed and cancelled around every sleep). The timeout is
//! moved only when the next expiration gets earlier (`IORING_OP_TIMEOUT_REMOVE` with
//! `IORING_TIMEOUT_UPDATE`, no completion on success); one that is later than needed just
//! wakes the thread once, early. Used only where the kernel can skip the update's completion
//! (`IORING_FEAT_CQE_SKIP`, 5.17).

use io_uring::{opcode, squeue, types, types::Timespec, IoUring};

/// `user_data` of the standing timeout.
pub(crate) const DEADLINE_USERDATA: u64 = u64::MAX - 4;
/// `user_data` of an update that moves it earlier.
pub(crate) const DEADLINE_UPDATE_USERDATA: u64 = u64::MAX - 5;

pub(crate) struct Deadline {
    enabled: bool,
    /// The deadline (ns) of the timeout in flight, if one is.
    armed: Option<u64>,
    /// Read by the kernel when the SQE is submitted (at the same park that queued it).
    timespec: Box<Timespec>,
}

impl Deadline {
    pub(crate) fn new(uring: &IoUring) -> Self {
        Deadline {
            enabled: uring.params().is_feature_skip_cqe_on_success(),
            armed: None,
            timespec: Box::new(Timespec::new()),
        }
    }

    /// Whether the ring keeps a standing timeout (else parks pass a relative one).
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// The entry that makes the standing timeout fire at `deadline_ns` at the latest, if
    /// the one in flight (if any) is later; to be submitted by the park that asked.
    pub(crate) fn arm(&mut self, deadline_ns: u64) -> Option<squeue::Entry> {
        if self.armed.is_some_and(|armed| armed <= deadline_ns) {
            return None;
        }
        *self.timespec = Timespec::new()
            .sec(deadline_ns / 1_000_000_000)
            .nsec((deadline_ns % 1_000_000_000) as u32);
        let ts: *const Timespec = &*self.timespec;
        let entry = if self.armed.is_some() {
            opcode::TimeoutUpdate::new(DEADLINE_USERDATA, ts)
                .flags(types::TimeoutFlags::ABS)
                .build()
                .flags(squeue::Flags::SKIP_SUCCESS)
                .user_data(DEADLINE_UPDATE_USERDATA)
        } else {
            opcode::Timeout::new(ts)
                .flags(types::TimeoutFlags::ABS)
                .build()
                .user_data(DEADLINE_USERDATA)
        };
        self.armed = Some(deadline_ns);
        Some(entry)
    }

    /// The standing timeout fired (or was cancelled): the next park arms another.
    pub(crate) fn fired(&mut self) {
        self.armed = None;
    }

    /// An update completed, so it failed (success posts nothing). `ENOENT` or `EALREADY`:
    /// the timeout had just fired and its completion is in the same batch — nothing to do.
    /// Anything else (`EINVAL`: the kernel refuses the operation) turns the standing
    /// timeout off for this ring.
    pub(crate) fn update_failed(&mut self, result: i32) {
        if !matches!(-result, libc::ENOENT | libc::EALREADY) {
            self.enabled = false;
        }
    }
}
