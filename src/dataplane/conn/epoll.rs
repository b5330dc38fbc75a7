//! The epoll side of a data-plane session: readiness events and the [`Task`]s that stand
//! in for io_uring's completions. An "armed receive" is interest in the leg's
//! edge-triggered readability: a readiness event (or the arming itself) reads into
//! buffers taken from the worker's ring until a short read, each read handed to
//! `Conn::on_recv` as a multishot completion would be; a send is a non-blocking `sendmsg`
//! whose result is handed back as a completion on the dispatcher's next task round, or,
//! on `EAGAIN`, once the leg is writable again.

use super::{user_data, Conn, Env, Op, Side};

/// epoll: what the dispatcher does for a leg on its next turn — the completions io_uring
/// would deliver, produced after the handler that caused them has returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::dataplane) enum Task {
    /// Read the leg (a receive was armed).
    Read,
    /// The armed receive ends (`ECANCELED`).
    Cancel,
    /// The send in flight finished with this result (bytes, or `-errno`).
    Sent(i32),
    /// Try the blocked send again (the leg was killed: it fails now).
    Resend,
}

/// epoll: reads of one leg in a row (1 MiB with 16 KiB buffers); a leg with more waiting
/// is registered again, so epoll reports it after the other sessions' events and the
/// worker's timers had their turn.
const READS_PER_TURN: usize = 64;
/// The CQE flags of a multishot receive's completion that keeps going and names buffer
/// `bid` (`IORING_CQE_F_BUFFER | IORING_CQE_F_MORE`, the id above bit 16), for a read done
/// under epoll.
pub(in crate::dataplane) fn more_with_buffer(bid: u16) -> u32 {
    1 | 2 | (u32::from(bid) << 16)
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

impl Conn {
    /// epoll: the leg's socket became readable and/or writable (`ready` bits of
    /// `monoio::ext::ready`).
    pub(in crate::dataplane) fn on_ready(&mut self, env: &mut Env<'_>, side: Side, ready: i32) {
        use monoio::ext::ready::{CLOSED, READABLE, WRITABLE};
        if ready & CLOSED != 0 {
            self.legs[side.index()].hup = true;
        }
        if ready & (READABLE | CLOSED) != 0 {
            self.epoll_read(env, side);
        }
        if ready & (WRITABLE | CLOSED) != 0 && self.legs[side.index()].send_blocked {
            self.legs[side.index()].send_blocked = false;
            self.epoll_send(env, side);
        }
        self.after(env);
    }

    /// epoll: a [`Task`] queued for this leg by an earlier handler.
    pub(in crate::dataplane) fn on_task(&mut self, env: &mut Env<'_>, side: Side, task: Task) {
        match task {
            Task::Read => {
                self.epoll_read(env, side);
                self.after(env);
            }
            Task::Cancel => {
                let leg = &mut self.legs[side.index()];
                leg.cancelling = false;
                if leg.recv_armed {
                    self.on_recv(env, side, -libc::ECANCELED, 0);
                }
            }
            Task::Sent(res) => self.on_send(env, side, res),
            Task::Resend => {
                self.epoll_send(env, side);
                self.after(env);
            }
        }
    }

    /// epoll: read the leg while its receive is armed, into ring buffers, each read handed
    /// to [`Conn::on_recv`] as a multishot completion; stop at a short read (the socket is
    /// drained: the next edge brings more — unless the peer closed, see `Leg::hup`), at
    /// `EAGAIN`, or after [`READS_PER_TURN`] reads.
    fn epoll_read(&mut self, env: &mut Env<'_>, side: Side) {
        for _ in 0..READS_PER_TURN {
            let leg = &self.legs[side.index()];
            if !leg.recv_armed || leg.cancelling {
                return;
            }
            let fd = leg.fd;
            let Some(bid) = env.ring.pop() else {
                self.on_recv(env, side, -libc::ENOBUFS, 0);
                return;
            };
            let size = env.ring.buf_size();
            // SAFETY: `bid` came out of the ring: nothing else references that buffer, which
            // is `size` bytes long.
            let n = unsafe {
                libc::recv(
                    fd,
                    env.ring.addr(bid, 0) as *mut libc::c_void,
                    size,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                let n = n as usize; // ≤ size ≤ 1 MiB
                self.on_recv(env, side, n as i32, more_with_buffer(bid));
                if n < size && !self.legs[side.index()].hup {
                    return;
                }
                continue;
            }
            let err = if n == 0 { 0 } else { errno() };
            // The read brought nothing: the buffer goes straight back.
            env.ring.taken(bid);
            env.ring.recycle(bid);
            if err == libc::EAGAIN || err == libc::EINTR {
                return;
            }
            // End of stream (0) or an error ends the receive, as its last completion would.
            self.on_recv(env, side, -err, 0);
            return;
        }
        let fd = self.legs[side.index()].fd;
        let token = user_data(env.slot, env.gen, side, Op::Ready);
        if monoio::ext::legacy_reregister(fd, token).is_err() {
            // Cannot happen for a registered socket; read on without a break instead.
            env.tasks.push_back((env.slot, env.gen, side, Task::Read));
        }
    }

    /// epoll: (re)try the send whose iovecs `flush` prepared; its result comes back as a
    /// completion on the next turn, or the leg waits for writability on `EAGAIN`.
    pub(super) fn epoll_send(&mut self, env: &mut Env<'_>, side: Side) {
        let leg = &mut self.legs[side.index()];
        let Some(sb) = leg.send_buf.as_ref() else {
            return;
        };
        let r = loop {
            // SAFETY: the message header points at `sb.iov`, whose entries point into ring
            // buffers and owned vectors that stay queued until this send's completion.
            let r =
                unsafe { libc::sendmsg(leg.fd, &sb.msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
            if r >= 0 {
                break i32::try_from(r).unwrap_or(i32::MAX);
            }
            match errno() {
                libc::EINTR => continue,
                libc::EAGAIN => {
                    leg.send_blocked = true;
                    return;
                }
                e => break -e,
            }
        };
        env.tasks
            .push_back((env.slot, env.gen, side, Task::Sent(r)));
    }
}
