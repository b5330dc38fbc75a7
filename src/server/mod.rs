//! The client-facing side: accept, the upgrade handshake, authentication.
pub mod accept;
pub mod auth;
pub mod handshake;
