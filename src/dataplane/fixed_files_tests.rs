use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;

use super::*;
use crate::dataplane::DataPlane;

fn uring() -> monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>> {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime")
}

/// What the peer of a socket reads now: `Some(0)` at EOF, `None` while nothing is there.
fn peer_reads(peer: &mut UnixStream) -> Option<usize> {
    let mut b = [0u8; 8];
    match peer.read(&mut b) {
        Ok(n) => Some(n),
        Err(e) if e.kind() == ErrorKind::WouldBlock => None,
        Err(e) => panic!("peer read: {e}"),
    }
}

fn close(fd: RawFd) {
    // SAFETY: the test owns `fd` (taken with `into_raw_fd`) and closes it once.
    unsafe {
        libc::close(fd);
    }
}

#[test]
fn the_table_holds_two_entries_per_session_within_the_open_file_limit() {
    assert_eq!(entries(100, 20_000), 200);
    assert_eq!(entries(15_000, 20_000), 20_000);
    // Whole sessions only.
    assert_eq!(entries(10, 7), 6);
    assert_eq!(entries(0, 20_000), 0);
    assert_eq!(entries(usize::MAX, usize::MAX), KERNEL_MAX as u32);
}

#[test]
fn an_io_uring_data_plane_registers_a_table_and_an_epoll_one_has_none() {
    uring().block_on(async {
        let dp = DataPlane::new(16, 4096, 8).expect("data plane");
        assert_eq!(dp.fixed_files(), 16);
    });
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("epoll runtime")
        .block_on(async {
            let dp = DataPlane::new(16, 4096, 8).expect("data plane");
            assert_eq!(dp.fixed_files(), 0);
            assert_eq!(register(8), 0);
        });
}

#[test]
fn slots_beyond_the_table_get_no_entries() {
    uring().block_on(async {
        let files = register(2);
        assert_eq!(files, 4);
        let (a, _pa) = UnixStream::pair().expect("pair");
        let (b, _pb) = UnixStream::pair().expect("pair");
        let fds = [a.as_raw_fd(), b.as_raw_fd()];
        assert_eq!(install(files, 0, fds), Some(0));
        assert_eq!(install(files, 1, fds), Some(2));
        assert_eq!(install(files, 2, fds), None);
        assert_eq!(install(files, u32::MAX, fds), None);
        assert_eq!(install(0, 0, fds), None, "no table, no entries");
        remove(0);
        remove(2);
    });
}

/// The order `Conn::close_fds` keeps: an installed socket survives `close(2)` of its
/// descriptor (its peer sees no EOF) until its entry is removed.
#[test]
fn an_installed_socket_stays_open_until_its_entry_is_removed() {
    uring().block_on(async {
        let files = register(1);
        assert_eq!(files, 2);
        let (a, mut pa) = UnixStream::pair().expect("pair");
        let (b, mut pb) = UnixStream::pair().expect("pair");
        pa.set_nonblocking(true).expect("nonblocking");
        pb.set_nonblocking(true).expect("nonblocking");
        let (a, b) = (a.into_raw_fd(), b.into_raw_fd());
        assert_eq!(install(files, 0, [a, b]), Some(0));

        close(a);
        close(b);
        assert_eq!(
            peer_reads(&mut pa),
            None,
            "the table still holds the socket"
        );
        assert_eq!(
            peer_reads(&mut pb),
            None,
            "the table still holds the socket"
        );

        remove(0);
        assert_eq!(peer_reads(&mut pa), Some(0), "released: EOF");
        assert_eq!(peer_reads(&mut pb), Some(0), "released: EOF");
    });
}
