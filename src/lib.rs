//! tollgate — a thread-per-core io_uring edge relay for LLM WebSocket APIs
//! (the OpenAI Responses API "WebSocket mode", and xAI / Azure which speak it too).
//!
//! # The data flow is the module layout
//!
//! ```text
//! client ──TCP/TLS──► server::accept      per-core SO_REUSEPORT listener (runtime)
//!                      server::handshake  bounded sans-IO HTTP/1.1 upgrade parser + RFC 6455 checks
//!                      server::auth       relay keys → tenant (or passthrough fingerprint)
//!                      route              tenant's route or path prefix → upstream; model prefixes
//!                      upstream::dial     TCP (+TLS, `tls`) + client handshake, timed
//!                      upstream::handshake  request rewrite, 101 validation, refusal → status map
//!                      relay::core        sans-IO session: walker (ws::frame, ws::mask in place),
//!                                         decisions on client messages (relay::rewrite), close
//!                                         rules (relay::lifecycle), deadlines
//!                      dataplane          plain TCP on io_uring: multishot receive into a per-worker
//!                                         buffer ring, sends straight from it
//!                      relay::session     the same core on monoio streams (TLS legs, epoll)
//!                      tap                SIMD peek at the top-level JSON "type"; rare frames parsed
//!                      metering           one durable usage record per response.id
//!                      metrics            per-core counters, Prometheus text on the admin listener
//! ```
//!
//! `config` turns the command line (and `--config` file) into a validated
//! [`config::Config`]; `runtime` starts one
//! pinned monoio worker per core (io_uring, epoll fallback).

pub mod config;
pub mod dataplane;
pub mod fleet;
pub mod flow;
pub mod heap;
pub mod limits;
pub mod metering;
pub mod metrics;
pub mod relay;
pub mod route;
pub mod runtime;
pub mod server;
pub mod tap;
pub mod tls;
pub mod upstream;
pub mod utc;
pub mod ws;
