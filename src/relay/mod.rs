//! The session and its two pumps.
//!
//! [`session::run`] owns a relayed session; [`pump::pump`] moves one direction through a
//! [`walker::Walker`] that validates and (for client frames) re-masks in place; [`leg::Leg`]
//! shares a write half between the forwarding pump and relay-originated frames.
//! `LIFECYCLE.md` in this folder states the close rules.
pub mod control;
pub mod leg;
pub mod pump;
pub mod session;
pub mod signal;
pub mod walker;
