//! `tollgate-floor LISTEN UPSTREAM`: the benchmark's floor — a minimal io_uring byte
//! tunnel with no WebSocket work at all, to measure how close `tollgate --tunnel` (and the
//! full relay) come to what the kernel costs on this machine.
//!
//! One thread, one ring (`SINGLE_ISSUER|DEFER_TASKRUN`), a multishot accept, one multishot
//! receive per socket into a single provided-buffer ring (the relay's own
//! [`tollgate::dataplane::bufring::BufRing`]), a send straight from the received buffer
//! (in order per socket: one send in flight, the rest queued), the buffer returned on send
//! completion. The upstream connect is a blocking `connect` (setup is outside the bench's
//! measurement window). Not a product: the bench's `floor` peer runs it; it stops on
//! SIGTERM (the default action).

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::process::ExitCode;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use tollgate::dataplane::bufring::BufRing;

const BGID: u16 = 1;
const BUFS: usize = 4096;
const BUF_SIZE: usize = 16 * 1024;

const ACCEPT: u64 = 1;
const RECV: u64 = 2;
const SEND: u64 = 3;

/// user data: kind (8 bits) | bid (16) | side (1) | slot (32).
fn ud(kind: u64, slot: usize, side: usize, bid: u16) -> u64 {
    (kind << 56) | (u64::from(bid) << 40) | ((side as u64) << 32) | slot as u64
}

fn parts(u: u64) -> (u64, usize, usize, u16) {
    (
        u >> 56,
        (u & 0xffff_ffff) as usize,
        ((u >> 32) & 1) as usize,
        ((u >> 40) & 0xffff) as u16,
    )
}

#[derive(Default)]
struct Leg {
    fd: RawFd,
    /// Pieces to send to this leg: (bid, offset, len).
    out: VecDeque<(u16, usize, usize)>,
    sending: bool,
    /// Its multishot receive is armed.
    recv_armed: bool,
}

#[derive(Default)]
struct Pair {
    legs: [Leg; 2],
    open: bool,
    /// Operations the kernel still owns (armed receives, sends in flight).
    inflight: u32,
}

struct Floor {
    ring: IoUring,
    bufs: BufRing,
    pairs: Vec<Pair>,
    free: Vec<usize>,
    /// Legs whose receive stopped for lack of buffers: re-armed when buffers return.
    starved: Vec<(usize, usize)>,
    upstream: SocketAddr,
    listener: RawFd,
}

impl Floor {
    fn push(&mut self, e: squeue::Entry) {
        // SAFETY: every entry's buffers (ring buffers) outlive the operation.
        while unsafe { self.ring.submission().push(&e) }.is_err() {
            let _ = self.ring.submit();
        }
    }

    fn arm_accept(&mut self) {
        let e = opcode::AcceptMulti::new(types::Fd(self.listener))
            .build()
            .user_data(ud(ACCEPT, 0, 0, 0));
        self.push(e);
    }

    fn arm_recv(&mut self, slot: usize, side: usize) {
        let p = &mut self.pairs[slot];
        if !p.open || p.legs[side].recv_armed {
            return;
        }
        p.legs[side].recv_armed = true;
        p.inflight += 1;
        let e = opcode::RecvMulti::new(types::Fd(p.legs[side].fd), BGID)
            .build()
            .user_data(ud(RECV, slot, side, 0));
        self.push(e);
    }

    /// Start the next queued send towards `side` of `slot`, if none is in flight.
    fn kick(&mut self, slot: usize, side: usize) {
        let p = &mut self.pairs[slot];
        let leg = &mut p.legs[side];
        if leg.sending {
            return;
        }
        let Some(&(bid, off, len)) = leg.out.front() else {
            return;
        };
        leg.sending = true;
        p.inflight += 1;
        let e = opcode::Send::new(types::Fd(leg.fd), self.bufs.addr(bid, off), len as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(ud(SEND, slot, side, bid));
        self.push(e);
    }

    fn accepted(&mut self, fd: RawFd) {
        let up = match TcpStream::connect(self.upstream) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tollgate-floor: upstream connect: {e}");
                // SAFETY: `fd` came from accept and is ours.
                unsafe { libc::close(fd) };
                return;
            }
        };
        let _ = up.set_nodelay(true);
        let one: libc::c_int = 1;
        // SAFETY: valid fd and option pointer.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            );
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.pairs.push(Pair::default());
            self.pairs.len() - 1
        });
        let p = &mut self.pairs[slot];
        *p = Pair::default();
        p.open = true;
        p.legs[0].fd = fd;
        p.legs[1].fd = up.into_raw_fd();
        self.arm_recv(slot, 0);
        self.arm_recv(slot, 1);
    }

    fn close(&mut self, slot: usize) {
        let p = &mut self.pairs[slot];
        if p.open {
            p.open = false;
            for leg in &p.legs {
                // SAFETY: our sockets; shutdown ends the armed receives.
                unsafe { libc::shutdown(leg.fd, libc::SHUT_RDWR) };
            }
        }
        self.reap(slot);
    }

    /// Free a closed pair once the kernel owns nothing of it.
    fn reap(&mut self, slot: usize) {
        let p = &mut self.pairs[slot];
        if p.open || p.inflight > 0 || p.legs[0].fd < 0 {
            return;
        }
        for leg in &mut p.legs {
            for (bid, _, _) in leg.out.drain(..) {
                self.bufs.recycle(bid);
            }
            // SAFETY: no operation refers to the fd any more.
            unsafe { libc::close(leg.fd) };
            leg.fd = -1;
        }
        self.free.push(slot);
    }

    fn on_cqe(&mut self, u: u64, res: i32, flags: u32) {
        let (kind, slot, side, bid) = parts(u);
        match kind {
            ACCEPT => {
                if res >= 0 {
                    self.accepted(res);
                }
                if !cqueue::more(flags) {
                    self.arm_accept();
                }
            }
            RECV => {
                let more = cqueue::more(flags);
                let p = &mut self.pairs[slot];
                if !more {
                    p.legs[side].recv_armed = false;
                    p.inflight -= 1;
                }
                if res > 0 {
                    let Some(bid) = cqueue::buffer_select(flags) else {
                        return self.close(slot);
                    };
                    self.bufs.taken(bid);
                    if !p.open {
                        self.bufs.recycle(bid);
                    } else {
                        p.legs[1 - side].out.push_back((bid, 0, res as usize));
                        self.kick(slot, 1 - side);
                    }
                    if !more {
                        self.arm_recv(slot, side);
                    }
                } else if res == -libc::ENOBUFS {
                    self.starved.push((slot, side));
                } else {
                    // EOF or an error: end the pair.
                    self.close(slot);
                }
                self.reap(slot);
            }
            SEND => {
                let p = &mut self.pairs[slot];
                p.inflight -= 1;
                let leg = &mut p.legs[side];
                leg.sending = false;
                if res < 0 || !p.open {
                    if let Some((b, _, _)) = leg.out.pop_front() {
                        self.bufs.recycle(b);
                    }
                    self.close(slot);
                } else if let Some(front) = leg.out.front_mut() {
                    let sent = res as usize;
                    if sent < front.2 {
                        front.1 += sent;
                        front.2 -= sent;
                    } else {
                        leg.out.pop_front();
                        self.bufs.recycle(bid);
                    }
                    self.kick(slot, side);
                }
                for (s, sd) in std::mem::take(&mut self.starved) {
                    self.arm_recv(s, sd);
                }
                self.reap(slot);
            }
            _ => {}
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: tollgate-floor LISTEN_ADDR UPSTREAM_ADDR");
        return ExitCode::from(64);
    };
    let (Ok(listen), Ok(upstream)) = (listen.parse::<SocketAddr>(), upstream.parse()) else {
        eprintln!("tollgate-floor: addresses must be IP:PORT");
        return ExitCode::from(64);
    };
    match run(listen, upstream) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate-floor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(4096)?;
    let bufs = BufRing::new(BUFS, BUF_SIZE, BGID).map_err(std::io::Error::other)?;
    bufs.register(&ring.submitter())
        .map_err(std::io::Error::other)?;
    eprintln!("tollgate-floor listening on {}", listener.local_addr()?);
    let mut f = Floor {
        ring,
        bufs,
        pairs: Vec::new(),
        free: Vec::new(),
        starved: Vec::new(),
        upstream,
        listener: listener.as_raw_fd(),
    };
    f.arm_accept();
    let mut batch = Vec::with_capacity(256);
    loop {
        match f.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
        batch.clear();
        batch.extend(
            f.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(u, res, flags) in &batch {
            f.on_cqe(u, res, flags);
        }
    }
}
