//! The session core and steering: a successor still to come keeps the drain (and a
//! shutdown) waiting after its predecessor's terminal event.

use std::time::{Duration, Instant};

use super::tests::{client_frame, created_frame, fixture, server_frame, Fixture, CREATE};
use super::{Next, Step};
use crate::flow::{Direction, Side};
use crate::relay::lifecycle::{Deadline, Event, PumpEnd};
use crate::ws::frame::Opcode;

/// A steer's successor comes after its predecessor's terminal event: a client leaving in
/// that gap still starts the drain, its close is held, and the drain (and a shutdown) waits
/// for the successor's terminal event.
#[test]
fn the_drain_waits_for_a_steered_responses_successor() {
    let mut f = fixture();
    let now = Instant::now();
    let upstream = |f: &mut Fixture, json: &str| {
        let mut buf = server_frame(json.as_bytes());
        f.core
            .on_bytes(Direction::UpstreamToClient, &mut buf, now)
            .next
    };
    let mut buf = client_frame(Opcode::Text, CREATE);
    f.core.on_bytes(Direction::ClientToUpstream, &mut buf, now);
    let mut buf = created_frame("resp_1");
    f.core.on_bytes(Direction::UpstreamToClient, &mut buf, now);
    let mut buf = client_frame(
        Opcode::Text,
        br#"{"type":"response.steer","previous_response_id":"resp_1","input":"stop"}"#,
    );
    let step = f.core.on_bytes(Direction::ClientToUpstream, &mut buf, now);
    assert_eq!(step.forward, buf.len(), "forwarded as it is");
    upstream(
        &mut f,
        r#"{"type":"response.incomplete","stream_id":"lane-1","response":{"id":"resp_1","usage":{"input_tokens":1,"output_tokens":1}}}"#,
    );
    assert_eq!(f.core.open_responses(), 0);
    let dl = now + Duration::from_secs(10);
    assert_eq!(
        f.core.next_deadline(Some(dl), [None, None], now),
        Some((dl, Event::Deadline(Deadline::Shutdown))),
        "a shutdown waits for the successor (with none to come: now)"
    );
    let mut close = client_frame(Opcode::Close, &1000u16.to_be_bytes());
    let step = f
        .core
        .on_bytes(Direction::ClientToUpstream, &mut close, now);
    assert_eq!(
        step.next,
        Next::Ended(PumpEnd::PeerClose {
            code: Some(1000),
            held: true
        }),
        "the close is held: a successor is to come"
    );
    let a = f.core.on_event(step_end(step), true, now);
    assert!(a.start_drain && f.core.draining());
    // The answer in openai-python 3.54's shape (`ResponseSteerAcceptedEvent`).
    let answer = r#"{"type":"response.steer.accepted","sequence_number":9,"stream_id":"lane-1","steer":{"id":"steer_1","previous_response_id":"resp_1"}}"#;
    assert_eq!(upstream(&mut f, answer), Next::Read);
    let successor =
        r#"{"type":"response.created","stream_id":"lane-1","response":{"id":"resp_2"}}"#;
    assert_eq!(upstream(&mut f, successor), Next::Read);
    let done = r#"{"type":"response.completed","stream_id":"lane-1","response":{"id":"resp_2","usage":{"input_tokens":1,"output_tokens":1}}}"#;
    assert_eq!(upstream(&mut f, done), Next::Drained);
}

fn step_end(step: Step) -> Event {
    match step.next {
        Next::Ended(end) => Event::Ended(Side::Client, end),
        other => panic!("not an end: {other:?}"),
    }
}
