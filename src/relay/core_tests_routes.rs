//! The session core with routes: a `model` prefixed with the session's route goes upstream
//! without it; another route's prefix and models off the allowlist are refused.

use std::sync::Arc;
use std::time::Instant;

use super::tests::{client_frame, fixture_routed, outbox_events, payloads, Fixture};
use crate::flow::Direction;
use crate::route::Routes;
use crate::ws::frame::Opcode;

fn two_routes() -> Arc<Routes> {
    let route = |name: &str, models: Option<Vec<String>>| crate::route::Route {
        name: Arc::from(name),
        upstream: crate::upstream::url::parse_upstream_url("ws://127.0.0.1:9").expect("url"),
        label: Arc::from("ws://127.0.0.1:9"),
        inject_headers: Vec::new(),
        ca: None,
        allow_paths: vec!["/v1/responses".into()],
        models,
    };
    Arc::new(Routes {
        list: vec![
            route("openai", None),
            route("xai", Some(vec!["grok-4".into()])),
        ],
        default: 0,
    })
}

/// Feeds one client message through the core; returns (forwarded bytes incl. a rewrite,
/// error events for the client).
fn through(f: &mut Fixture, msg: &[u8]) -> (Vec<u8>, Vec<serde_json::Value>) {
    let mut buf = client_frame(Opcode::Text, msg);
    let step = f
        .core
        .on_bytes(Direction::ClientToUpstream, &mut buf, Instant::now());
    let mut fwd = buf[..step.forward].to_vec();
    if let Some(r) = f.core.take_rewritten() {
        fwd.extend_from_slice(&r);
    }
    (fwd, outbox_events(&mut f.core))
}

#[test]
fn a_model_prefixed_with_the_sessions_route_goes_upstream_without_it() {
    let mut f = fixture_routed(None, 1 << 30, Some((two_routes(), 0)));
    let msg = br#"{"type":"response.create","model":"openai/gpt-5","stream_id":"a","input":"hi"}"#;
    let (fwd, events) = through(&mut f, msg);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(
        payloads(&fwd),
        vec![
            br#"{"type":"response.create","model":"gpt-5","stream_id":"a","input":"hi"}"#.to_vec()
        ]
    );
    assert_eq!(f.core.open_responses(), 1, "metered like any create");
    // Without a prefix nothing is rewritten.
    let plain = br#"{"type":"response.create","model":"gpt-5","input":"hi"}"#;
    let (fwd, _) = through(&mut f, plain);
    assert_eq!(payloads(&fwd), vec![plain.to_vec()]);
    assert!(f.core.take_rewritten().is_none());
}

#[test]
fn another_routes_prefix_and_models_off_the_allowlist_are_refused_with_the_lane() {
    let mut f = fixture_routed(None, 1 << 30, Some((two_routes(), 1)));
    let (fwd, events) = through(
        &mut f,
        br#"{"type":"response.create","model":"openai/gpt-5","stream_id":"lane-1"}"#,
    );
    assert!(fwd.is_empty(), "not forwarded");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "error");
    assert_eq!(events[0]["status"], 400);
    assert_eq!(events[0]["stream_id"], "lane-1");
    assert_eq!(events[0]["error"]["code"], "model_route_mismatch");
    let (fwd, events) = through(
        &mut f,
        br#"{"type":"response.create","model":"xai/grok-3","stream_id":"lane-2"}"#,
    );
    assert!(fwd.is_empty());
    assert_eq!(events[0]["error"]["code"], "model_not_allowed");
    assert_eq!(events[0]["stream_id"], "lane-2");
    assert_eq!(
        f.core.open_responses(),
        0,
        "refused creates are not metered"
    );
    // The session stays usable: an allowed model goes through, prefix stripped.
    let (fwd, events) = through(
        &mut f,
        br#"{"type":"response.create","model":"xai/grok-4"}"#,
    );
    assert!(events.is_empty());
    assert_eq!(
        payloads(&fwd),
        vec![br#"{"type":"response.create","model":"grok-4"}"#.to_vec()]
    );
}
