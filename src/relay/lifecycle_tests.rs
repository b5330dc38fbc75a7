//! One test per row of `LIFECYCLE.md`.

use super::*;

const C: usize = 0;
const U: usize = 1;

fn open(n: usize) -> Facts {
    Facts {
        awaiting: n,
        may_drain: true,
        ..Facts::default()
    }
}

fn close(code: u16) -> Option<Outgoing> {
    Some(Outgoing::Close { code, reason: "" })
}

#[test]
fn client_close_with_nothing_open_is_forwarded_and_awaits_upstreams_answer() {
    let a = on_event(
        &open(0),
        Event::Ended(
            Side::Client,
            PumpEnd::PeerClose {
                code: Some(1000),
                held: false,
            },
        ),
    );
    assert!(a.start_closing && !a.end && !a.start_drain);
    assert_eq!(a.send, [None, None], "the client's own close went upstream");
    assert!(a.close_received[C] && a.stop_reading[C]);
    assert_eq!(a.closed_by, Some(ClosedBy::Client));
}

#[test]
fn the_clients_answer_to_a_forwarded_upstream_close_ends_the_session() {
    let closing = Facts {
        closing: true,
        ..open(0)
    };
    let a = on_event(
        &closing,
        Event::Ended(
            Side::Client,
            PumpEnd::PeerClose {
                code: Some(1000),
                held: false,
            },
        ),
    );
    assert!(a.end, "both closes seen: nothing is left to wait for");
    assert_eq!(a.send, [None, None], "each side already has its close");
    assert!(a.close_received[C] && a.stop_reading[C]);
}

#[test]
fn client_close_with_responses_open_is_answered_by_the_relay_and_upstream_drained() {
    let a = on_event(
        &open(2),
        Event::Ended(
            Side::Client,
            PumpEnd::PeerClose {
                code: Some(4000),
                held: true,
            },
        ),
    );
    assert_eq!(a.send[C], close(4000), "the relay echoes the close");
    assert_eq!(
        a.send[U], None,
        "upstream gets nothing until the drain ends"
    );
    assert!(a.start_drain && !a.end);
    assert_eq!(a.end_reason, Some(EndReason::ClientDisconnected));
}

#[test]
fn a_vanished_client_starts_the_orphan_drain() {
    for end in [PumpEnd::Eof, PumpEnd::ReadError] {
        let a = on_event(&open(1), Event::Ended(Side::Client, end));
        assert!(a.kill[C] && a.start_drain && !a.end, "{end:?}");
        assert_eq!(a.closed_by, Some(ClosedBy::ClientVanished));
    }
    // With nothing open there is nothing to drain: upstream gets 1001 at the end.
    let a = on_event(&open(0), Event::Ended(Side::Client, PumpEnd::Eof));
    assert!(a.end && !a.start_drain);
    assert_eq!(a.send[U], None, "1001 comes from the end of the session");
}

#[test]
fn a_client_write_failure_and_a_client_reset_lead_to_the_same_drain() {
    // Whichever pump notices first, the outcome is one drain (the race of issue 8).
    let by_write = on_event(&open(1), Event::WriteFailed(Side::Client));
    let by_read = on_event(&open(1), Event::Ended(Side::Client, PumpEnd::ReadError));
    assert!(by_write.start_drain && by_read.start_drain);
    // The second notice while draining changes nothing.
    let draining = Facts {
        draining: true,
        ..open(1)
    };
    let again = on_event(&draining, Event::WriteFailed(Side::Client));
    assert!(!again.start_drain && !again.end);
}

#[test]
fn no_free_drain_slot_ends_the_session_at_once() {
    let facts = Facts {
        may_drain: false,
        ..open(3)
    };
    let a = on_event(&facts, Event::Ended(Side::Client, PumpEnd::Eof));
    assert!(a.end && !a.start_drain);
}

#[test]
fn a_client_protocol_error_gets_its_close_code() {
    let a = on_event(
        &open(0),
        Event::Ended(
            Side::Client,
            PumpEnd::Protocol {
                code: 1007,
                reason: "bad utf-8",
                mid_frame: false,
            },
        ),
    );
    assert_eq!(
        a.send[C],
        Some(Outgoing::Close {
            code: 1007,
            reason: "bad utf-8"
        })
    );
    assert!(a.end);
    assert_eq!(a.closed_by, Some(ClosedBy::ClientProtocolError));
    let a = on_event(
        &open(1),
        Event::Ended(
            Side::Client,
            PumpEnd::Protocol {
                code: 1009,
                reason: "too big",
                mid_frame: true,
            },
        ),
    );
    assert!(
        !a.end && a.start_drain,
        "responses open: upstream is drained for usage"
    );
}

#[test]
fn upstream_close_is_forwarded_and_awaits_the_clients_answer() {
    let a = on_event(
        &open(0),
        Event::Ended(
            Side::Upstream,
            PumpEnd::PeerClose {
                code: Some(1009),
                held: false,
            },
        ),
    );
    assert!(a.start_closing && !a.end && a.close_received[U]);
    assert_eq!(a.end_reason, None);
    // Open responses are cut: recorded upstream_disconnected.
    let a = on_event(
        &open(1),
        Event::Ended(
            Side::Upstream,
            PumpEnd::PeerClose {
                code: None,
                held: false,
            },
        ),
    );
    assert_eq!(a.end_reason, Some(EndReason::UpstreamDisconnected));
    // The answer to a close the client started ends the session.
    let closing = Facts {
        closing: true,
        ..open(0)
    };
    let a = on_event(
        &closing,
        Event::Ended(
            Side::Upstream,
            PumpEnd::PeerClose {
                code: Some(1000),
                held: false,
            },
        ),
    );
    assert!(a.end);
}

#[test]
fn a_vanished_upstream_gets_the_client_an_error_event_and_1011() {
    for ev in [
        Event::Ended(Side::Upstream, PumpEnd::Eof),
        Event::Ended(Side::Upstream, PumpEnd::ReadError),
        Event::WriteFailed(Side::Upstream),
    ] {
        let a = on_event(&open(1), ev);
        assert_eq!(
            a.send[C],
            Some(Outgoing::ErrorThenClose {
                error: RelayError::UpstreamDisconnected,
                code: 1011,
                reason: "upstream disconnected"
            }),
            "{ev:?}"
        );
        assert!(a.kill[U] && a.end);
        assert_eq!(a.end_reason, Some(EndReason::UpstreamDisconnected));
    }
}

#[test]
fn an_upstream_protocol_error_is_1014_or_1009_for_the_client() {
    let ev = |code| {
        Event::Ended(
            Side::Upstream,
            PumpEnd::Protocol {
                code,
                reason: "x",
                mid_frame: false,
            },
        )
    };
    let a = on_event(&open(0), ev(1002));
    assert_eq!(
        a.send[U],
        Some(Outgoing::Close {
            code: 1002,
            reason: "x"
        })
    );
    assert!(matches!(
        a.send[C],
        Some(Outgoing::Close { code: 1014, .. })
    ));
    let a = on_event(&open(0), ev(1009));
    assert!(matches!(
        a.send[C],
        Some(Outgoing::Close { code: 1009, .. })
    ));
}

#[test]
fn a_stalled_client_is_cut_and_its_responses_drained() {
    let a = on_event(&open(1), Event::Stalled(Side::Client));
    assert!(a.kill[C] && a.start_drain && !a.end);
    assert_eq!(a.closed_by, Some(ClosedBy::ClientStalled));
    let a = on_event(&open(0), Event::Stalled(Side::Client));
    assert!(a.kill[C] && a.end, "nothing open: upstream gets 1001");
}

#[test]
fn a_stalled_upstream_is_cut_and_the_client_told() {
    let a = on_event(&open(1), Event::Stalled(Side::Upstream));
    assert!(a.kill[U] && a.end);
    assert!(matches!(
        a.send[C],
        Some(Outgoing::ErrorThenClose {
            error: RelayError::UpstreamUnresponsive,
            code: 1011,
            ..
        })
    ));
}

#[test]
fn deadlines_end_the_session_with_their_reason() {
    let a = on_event(&open(0), Event::Deadline(Deadline::Idle));
    assert!(a.end && a.send == [None, None]);
    assert_eq!(a.closed_by, Some(ClosedBy::IdleTimeout));
    let a = on_event(&open(1), Event::Deadline(Deadline::Response));
    assert_eq!(a.end_reason, Some(EndReason::ResponseTimeout));
    assert!(matches!(
        a.send[C],
        Some(Outgoing::ErrorThenClose {
            error: RelayError::ResponseTimeout,
            code: 1001,
            ..
        })
    ));
    let a = on_event(&open(2), Event::Deadline(Deadline::Shutdown));
    assert_eq!(a.end_reason, Some(EndReason::RelayShutdown));
    let a = on_event(&open(0), Event::Deadline(Deadline::MaxAge));
    assert_eq!(
        (a.end_reason, a.closed_by),
        (None, Some(ClosedBy::MaxConnectionAge))
    );
    let draining = Facts {
        draining: true,
        ..open(1)
    };
    let a = on_event(&draining, Event::Deadline(Deadline::Shutdown));
    assert_eq!(
        a.end_reason, None,
        "a drained client keeps client_disconnected"
    );
    let a = on_event(&draining, Event::Deadline(Deadline::OrphanDrain));
    assert!(a.end && a.end_reason.is_none());
}

#[test]
fn a_panic_closes_both_legs_1011() {
    let a = on_event(&open(1), Event::Panicked);
    assert_eq!(
        a.send[C],
        Some(Outgoing::Close {
            code: 1011,
            reason: "relay error"
        })
    );
    assert_eq!(a.send[U], a.send[C]);
    assert_eq!(a.end_reason, Some(EndReason::RelayError));
}

#[test]
fn closed_by_maps_to_the_record_status() {
    assert_eq!(
        ClosedBy::UpstreamStalled.end_reason(),
        EndReason::UpstreamDisconnected
    );
    assert_eq!(
        ClosedBy::ClientStalled.end_reason(),
        EndReason::ClientDisconnected
    );
    assert_eq!(
        ClosedBy::MaxConnectionAge.end_reason(),
        EndReason::RelayShutdown
    );
    assert_eq!(ClosedBy::RelayError.end_reason(), EndReason::RelayError);
}
