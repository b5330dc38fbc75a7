//! One session's sans-IO core under pseudo-random scripts of client and upstream events
//! (`response.create`s, `response.created`s with repeating ids, deltas, terminal events with
//! usage, `error` events, raw bytes, ends of either side, deadlines, failed writes, every
//! leg's bytes arriving in cut reads), each finished and its usage log read back from the
//! real sink: no `response.id` in two records, none missing for a response that reached the
//! core, and the first terminal's tokens in its record. The harness is the `session` fuzz
//! target's (`session_script/harness.rs`); this runs it on every `cargo test`, the fuzz
//! target by hand (`scripts/fuzz.sh 60 session`).

#[path = "session_script/harness.rs"]
mod harness;

/// Scripts per run (each starts a sink and writes a log: 20,000 take 4–8 s in a debug build).
const SCRIPTS: usize = 20_000;

#[test]
fn random_scripts_keep_one_record_per_response_with_its_usage() {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut script = Vec::new();
    for _ in 0..SCRIPTS {
        let len = 1 + (next() % 240) as usize;
        script.clear();
        script.extend((0..len).map(|_| next() as u8));
        harness::run(&script);
    }
}

/// Scripts written out, each with the records it must leave: one turn; the same response
/// created and finished twice; a client that vanishes mid-response, with a free orphan-drain
/// slot (the upstream's terminal still reaches the log) and without one (the session ends
/// and the response is recorded as the client's disconnect); an upstream that resets with
/// three responses open.
#[test]
fn written_scripts_leave_their_records() {
    use tollgate::metering::RecordStatus::{ClientDisconnected, Completed, UpstreamDisconnected};
    // Per op: cut byte, milliseconds to advance, op, its arguments (the fuzz target's header).
    let create: &[u8] = &[0xff, 0, 0, 0, 0, 1];
    let created = |id: u8| vec![0xff, 0, 2, id, 0];
    let completed = |id: u8| vec![0xff, 0, 4, id, 0, 0, 10 + id, 20];
    let client_reset: &[u8] = &[0xff, 0, 8, 2];
    let upstream_reset: &[u8] = &[0xff, 0, 9, 2];
    // Byte 0 even: a drain slot is free.
    let (drain, no_drain): (&[u8], &[u8]) = (&[0], &[1]);
    let rec = |id: u8, status, input, output| (format!("resp_{id}"), status, input, output);

    let one_turn = [drain, create, &created(1), &completed(1)].concat();
    assert_eq!(harness::run(&one_turn), [rec(1, Completed, 11, 20)]);

    let twice = [
        drain,
        create,
        &created(1),
        &completed(1),
        &created(1),
        &completed(1),
    ]
    .concat();
    assert_eq!(harness::run(&twice), [rec(1, Completed, 11, 20)]);

    let vanished = [drain, create, &created(2), client_reset, &completed(2)].concat();
    assert_eq!(harness::run(&vanished), [rec(2, Completed, 12, 20)]);
    let vanished = [no_drain, create, &created(2), client_reset, &completed(2)].concat();
    assert_eq!(harness::run(&vanished), [rec(2, ClientDisconnected, 0, 0)]);

    let reset = [
        drain,
        create,
        create,
        create,
        &created(1),
        &created(2),
        &created(3),
        upstream_reset,
    ]
    .concat();
    let mut got = harness::run(&reset);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, [1, 2, 3].map(|id| rec(id, UpstreamDisconnected, 0, 0)));
}
