use super::*;

#[test]
fn an_epoll_read_is_reported_like_a_multishot_completion() {
    let flags = conn::more_with_buffer(513);
    assert_eq!(cqueue::buffer_select(flags), Some(513));
    assert!(cqueue::more(flags));
}

/// An idle session's memory is mostly its `Conn` (plus the kernel's socket buffers):
/// the slow-path walker and held messages live behind boxes allocated only while a
/// message is split across reads. This keeps someone from inlining them again.
#[test]
fn an_idle_sessions_state_stays_small() {
    let conn = std::mem::size_of::<conn::Conn>();
    eprintln!(
        "Conn={conn} SessionCore={} Tap={} Walker={}",
        std::mem::size_of::<crate::relay::core::SessionCore>(),
        std::mem::size_of::<crate::tap::Tap>(),
        std::mem::size_of::<crate::relay::walker::Walker>(),
    );
    assert!(conn <= 1536, "Conn grew to {conn} bytes");
}
