//! The upstream side: dialing the provider and the client half of the handshake.
pub mod handshake;
