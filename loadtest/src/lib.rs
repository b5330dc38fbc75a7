//! `tollgate-loadtest`: an independent WebSocket peer for testing the tollgate relay.
//!
//! Everything here is built on tokio + fastwebsockets (frame codec) with its own
//! HTTP/1.1 upgrade code, and shares nothing with the relay's `ws` module, so a
//! framing bug common to both cannot hide.
//!
//! - [`mock`]: a fake OpenAI Responses WebSocket upstream with fault modes, an echo
//!   mode, and records of every request, frame and billed usage.
//! - [`client`]: a test client (connect, send frames, receive reassembled
//!   messages, run a whole `response.create` turn).
//! - [`tls`]: runtime-generated CA + `localhost` certificate for `wss` tests.
//! - [`bench`](mod@bench): `loadtest bench`, every peer side by side (tables, SVG).
//! - [`demo`]: `loadtest demo`, a scripted conversation through the relay.
//! - [`gen`]: the load generator behind `loadtest run` (thread-per-core,
//!   open-loop, HdrHistogram latencies, SUT CPU from `/proc`).
//! - [`ledger`]: the usage record shared by both sides.
//! - [`frame_tap`], [`handshake`], [`net`]: the small sans-IO and socket pieces.

pub mod bench;
pub mod client;
pub mod demo;
pub mod frame_tap;
pub mod gen;
pub mod handshake;
pub mod ledger;
pub mod mock;
pub mod net;
pub mod tls;

pub use ledger::LedgerEntry;
pub use tls::{test_tls, TestTls};
