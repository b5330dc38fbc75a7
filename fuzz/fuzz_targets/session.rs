//! Drives one session's sans-IO core (`relay::core::SessionCore`) the way an adapter does —
//! both legs' bytes in reads cut at arbitrary points, what a step keeps carried to the next
//! read, the ends, deadlines and write failures it reports — with a script of Responses
//! events read from the input, then finishes the session and reads back the usage log its
//! real sink wrote. Nothing may panic, and the log must keep the relay's promise:
//! - **no record doubled**: no `response.id` in two records;
//! - **none lost**: every response whose `response.created` or terminal event reached the
//!   core over a clean upstream stream (no raw bytes before it) has its record;
//! - **real usage kept**: a response whose terminal event reached the core is recorded with
//!   that terminal's tokens (the first terminal of its id), not a guess.
//!
//! Response ids come from a set of six, so ids repeat: created twice, terminals twice, a
//! terminal with no created. The script (one op per byte, its arguments from the bytes after
//! it): 0 client `response.create` (lane, model, warm-up); 1 client `response.steer` or an
//! unknown event; 2 upstream `response.created`; 3 a delta; 4 a terminal event with usage;
//! 5 an `error` event or a steer's answer (`response.steer.accepted`, `.pending`, `.failed`);
//! 6 raw bytes towards the client; 7 raw bytes towards the upstream; 8 the client ends
//! (close frame, EOF or reset); 9 the upstream ends; 10 the nearest deadline passes; 11 a
//! write fails or stalls. Before each op's bytes arrive, one byte sets how much of each
//! leg's pending bytes arrives now (the rest with a later op, or at the end).
//!
//! The harness is `tests/session_script/harness.rs`, shared with `tests/session_script.rs`,
//! which runs it on pseudo-random scripts in every `cargo test`.
#![no_main]

include!("../../tests/session_script/harness.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    run(data);
});
