//! The session: bytes in, decisions, bytes out.
//!
//! [`core::SessionCore`] is the whole session sans-IO — the frame walkers ([`walker`]), the
//! taps, the meter, the decision on each client message and the deadlines — and
//! [`lifecycle`] holds the close rules as pure functions (`LIFECYCLE.md` in this folder is
//! the table). [`session::run`] is the I/O adapter over async streams: two pumps and a
//! control loop carry out what the core answers, writing through [`leg::Leg`]s that can be
//! interrupted; [`control`] builds the frames the relay writes itself.
pub mod control;
pub mod core;
pub mod leg;
pub mod lifecycle;
pub mod pump;
pub mod ready;
pub mod rewrite;
pub mod session;
pub mod walker;
