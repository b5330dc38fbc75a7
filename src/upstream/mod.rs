//! The upstream side: dialing the provider and the client half of the handshake.
pub mod dial;
pub mod handshake;
pub mod url;
