//! The ring against a real io_uring and a socket pair: multishot receives fill buffers in
//! ring order, an exhausted ring ends the receive with ENOBUFS, and buffers come back in
//! any order.

use super::*;
use io_uring::{cqueue, opcode, types, IoUring};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

const RECV: u64 = 7;

fn setup(count: usize, size: usize) -> (IoUring, BufRing, UnixStream, UnixStream) {
    let ring = IoUring::new(64).expect("io_uring");
    let bufs = BufRing::new(count, size, 3).expect("bufring");
    bufs.register(&ring.submitter()).expect("register");
    let (a, b) = UnixStream::pair().expect("pair");
    (ring, bufs, a, b)
}

fn arm(ring: &mut IoUring, fd: i32, bgid: u16) {
    let sqe = opcode::RecvMulti::new(types::Fd(fd), bgid)
        .build()
        .user_data(RECV);
    // SAFETY: the socket and the registered ring outlive the operation in these tests.
    unsafe { ring.submission().push(&sqe).expect("push") };
    ring.submit().expect("submit");
}

/// Wait for one completion: (result, buffer id, more).
fn next(ring: &mut IoUring) -> (i32, Option<u16>, bool) {
    ring.submit_and_wait(1).expect("wait");
    let cqe = ring.completion().next().expect("cqe");
    assert_eq!(cqe.user_data(), RECV);
    (
        cqe.result(),
        cqueue::buffer_select(cqe.flags()),
        cqueue::more(cqe.flags()),
    )
}

#[test]
fn shapes_outside_the_kernels_limits_are_refused() {
    assert!(matches!(
        BufRing::new(3, 64, 0),
        Err(BufRingError::Shape { .. })
    ));
    assert!(matches!(
        BufRing::new(65536, 64, 0),
        Err(BufRingError::Shape { .. })
    ));
    assert!(matches!(
        BufRing::new(4, 0, 0),
        Err(BufRingError::Shape { .. })
    ));
    let r = BufRing::new(8, 100, 1).expect("8 × 100");
    assert_eq!((r.count(), r.buf_size(), r.available()), (8, 100, 8));
}

#[test]
fn an_exhausted_ring_ends_the_receive_with_enobufs_and_recycled_buffers_come_back_in_any_order() {
    let (mut ring, bufs, mut tx, rx) = setup(4, 64);
    arm(&mut ring, rx.as_raw_fd(), bufs.bgid());
    // Four messages fill the four buffers, in ring order 0, 1, 2, 3.
    let mut got = Vec::new();
    for i in 0..4u8 {
        tx.write_all(&[i; 10]).unwrap();
        let (res, bid, more) = next(&mut ring);
        assert_eq!(res, 10);
        assert!(more, "multishot goes on");
        let bid = bid.expect("a buffer");
        bufs.taken(bid);
        // SAFETY: the completion handed `bid` to us.
        assert_eq!(&unsafe { bufs.buf_mut(bid) }[..10], &[i; 10]);
        got.push(bid);
    }
    assert_eq!(got, [0, 1, 2, 3]);
    assert_eq!(bufs.available(), 0);
    // A fifth message finds no buffer: the receive ends with ENOBUFS.
    tx.write_all(b"fifth").unwrap();
    let (res, bid, more) = next(&mut ring);
    assert_eq!(res, -libc::ENOBUFS);
    assert_eq!(bid, None);
    assert!(!more, "ENOBUFS terminates the multishot receive");
    // Return 2 and 0 (out of order); the next receives use them in that order.
    bufs.hold(2); // a second piece of 2 still queued: it stays ours after one release
    assert!(!bufs.release(2));
    assert!(bufs.release(2), "the last piece sent: back in the ring");
    assert!(bufs.release(0));
    assert_eq!(bufs.available(), 2);
    arm(&mut ring, rx.as_raw_fd(), bufs.bgid());
    let (res, bid, _) = next(&mut ring);
    assert_eq!((res, bid), (5, Some(2)), "the data waiting since ENOBUFS");
    tx.write_all(b"sixth!").unwrap();
    let (res, bid, _) = next(&mut ring);
    assert_eq!((res, bid), (6, Some(0)));
    // SAFETY: handed to us by the completions above.
    assert_eq!(&unsafe { bufs.buf_mut(2) }[..5], b"fifth");
    assert_eq!(&unsafe { bufs.buf_mut(0) }[..6], b"sixth!");
}

#[test]
fn eof_ends_the_receive_with_zero() {
    let (mut ring, bufs, tx, rx) = setup(2, 32);
    arm(&mut ring, rx.as_raw_fd(), bufs.bgid());
    drop(tx);
    let (res, bid, more) = next(&mut ring);
    assert_eq!((res, bid, more), (0, None, false));
    assert_eq!(bufs.available(), 2, "no buffer used");
}

#[test]
fn an_unregistered_ring_hands_out_buffers_oldest_first_and_takes_them_back_in_any_order() {
    let ring = BufRing::new(4, 64, 0).expect("bufring");
    let mut got = Vec::new();
    while let Some(bid) = ring.pop() {
        ring.taken(bid);
        got.push(bid);
    }
    assert_eq!(got, vec![0, 1, 2, 3], "ring order");
    assert_eq!(ring.available(), 0);
    assert_eq!(ring.pop(), None, "an empty ring hands out nothing");
    // Back in any order; they come out again in the order they went back.
    for bid in [2, 0, 3] {
        assert!(ring.release(bid));
    }
    assert_eq!(ring.available(), 3);
    let again: Vec<u16> = std::iter::from_fn(|| {
        let b = ring.pop()?;
        ring.taken(b);
        Some(b)
    })
    .collect();
    assert_eq!(again, vec![2, 0, 3]);
    // A buffer taken and put straight back (a read that brought nothing).
    ring.recycle(1);
    let b = ring.pop().expect("one left");
    assert_eq!(b, 1);
    ring.taken(b);
    ring.recycle(b);
    assert_eq!(ring.available(), 1);
}
