//! Helpers of the trust-boundary tests: clients with the relay key (and extra headers),
//! `response.create` messages, waiting for an event; refusals are taken apart by
//! `common::relay_client::refused`.
#![allow(dead_code)]

use std::time::Duration;

use crate::common::*;
use tollgate_loadtest::client::{connect, ClientOpts, Message, WsClient};

pub fn opts_with(headers: &[(&str, &str)]) -> ClientOpts {
    let mut h = vec![("Authorization".to_string(), format!("Bearer {RELAY_KEY}"))];
    h.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    ClientOpts {
        headers: h,
        recv_timeout: Some(Duration::from_secs(20)),
        ..ClientOpts::default()
    }
}

pub async fn client(addr: std::net::SocketAddr) -> WsClient {
    connect(&format!("ws://{addr}/v1/responses"), opts_with(&[]))
        .await
        .expect("upgrade")
}

pub fn create(model: &str, lane: &str) -> String {
    format!(r#"{{"type":"response.create","model":"{model}","stream_id":"{lane}","input":"hi"}}"#)
}

/// Text messages until one contains `needle` (returns it), failing on a close.
pub async fn until(c: &mut WsClient, needle: &str) -> String {
    loop {
        match c.recv().await.expect("recv") {
            Message::Text(t) if t.contains(needle) => return t,
            Message::Close(code, reason) => panic!("closed {code:?} {reason} waiting for {needle}"),
            _ => {}
        }
    }
}
