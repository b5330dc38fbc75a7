//! Unit tests of the metrics module.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::flow::Direction;
use crate::tap::Usage;

fn usage(i: u64, c: u64, o: u64, r: u64) -> Usage {
    Usage {
        input_tokens: i,
        cached_tokens: c,
        output_tokens: o,
        reasoning_tokens: r,
        total_tokens: i + o,
    }
}

/// The sample lines (no comments) of a family, in order.
fn samples<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with([' ', '{', '_']))
        })
        .collect()
}

#[test]
fn render_sums_workers_with_exact_lines() {
    let reg = Arc::new(Registry::new());
    reg.set_driver("io_uring");
    let w0 = WorkerMetrics::new(reg.clone());
    let w1 = WorkerMetrics::new(reg.clone());
    w0.session_opened();
    w0.session_opened();
    w1.session_opened();
    w0.session_closed(Duration::from_millis(500));
    w1.session_closed(Duration::from_secs(4000));
    w0.handshake_failed("invalid_key");
    w1.handshake_failed("invalid_key");
    w1.handshake_failed("timeout");
    w0.frames("openai", Direction::ClientToUpstream, 3, 300);
    w1.frames("openai", Direction::UpstreamToClient, 10, 2000);
    w1.frames("xai", Direction::UpstreamToClient, 4, 40);
    w0.close(1000, Side::Client, "openai");
    w1.close(1000, Side::Client, "openai");
    w1.close(4321, Side::Upstream, "xai");
    w0.tokens("gpt-5", "acme", "openai", &usage(100, 10, 20, 5));
    w1.tokens("gpt-5", "acme", "openai", &usage(1, 0, 2, 0));
    w0.response("completed", "openai");
    w1.response("client_disconnected", "openai");
    w0.orphan_drain_started();
    w0.publish(0);
    w1.publish(1);
    let text = reg.render();

    assert_eq!(
        samples(&text, names::SESSIONS_OPENED),
        ["tollgate_sessions_opened_total 3"]
    );
    assert_eq!(
        samples(&text, names::SESSIONS_ACTIVE),
        ["tollgate_sessions_active 1"]
    );
    assert_eq!(
        samples(&text, names::SESSION_DURATION),
        [
            "tollgate_session_duration_seconds_bucket{le=\"0.1\"} 0",
            "tollgate_session_duration_seconds_bucket{le=\"1\"} 1",
            "tollgate_session_duration_seconds_bucket{le=\"10\"} 1",
            "tollgate_session_duration_seconds_bucket{le=\"60\"} 1",
            "tollgate_session_duration_seconds_bucket{le=\"300\"} 1",
            "tollgate_session_duration_seconds_bucket{le=\"900\"} 1",
            "tollgate_session_duration_seconds_bucket{le=\"1800\"} 1",
            "tollgate_session_duration_seconds_bucket{le=\"3600\"} 1",
            "tollgate_session_duration_seconds_bucket{le=\"+Inf\"} 2",
            "tollgate_session_duration_seconds_sum 4000.5",
            "tollgate_session_duration_seconds_count 2",
        ]
    );
    assert_eq!(
        samples(&text, names::HANDSHAKE_FAILURES),
        [
            "tollgate_handshake_failures_total{reason=\"invalid_key\"} 2",
            "tollgate_handshake_failures_total{reason=\"timeout\"} 1",
        ]
    );
    assert_eq!(
        samples(&text, names::FRAMES),
        [
            "tollgate_frames_total{route=\"openai\",dir=\"client_to_upstream\"} 3",
            "tollgate_frames_total{route=\"openai\",dir=\"upstream_to_client\"} 10",
            "tollgate_frames_total{route=\"xai\",dir=\"client_to_upstream\"} 0",
            "tollgate_frames_total{route=\"xai\",dir=\"upstream_to_client\"} 4",
        ]
    );
    assert_eq!(
        samples(&text, names::CLOSES),
        [
            "tollgate_closes_total{code=\"1000\",side=\"client\",route=\"openai\"} 2",
            "tollgate_closes_total{code=\"4xxx\",side=\"upstream\",route=\"xai\"} 1",
        ]
    );
    assert_eq!(
        samples(&text, names::TOKENS),
        [
            "tollgate_tokens_total{model=\"gpt-5\",tenant=\"acme\",route=\"openai\",kind=\"input\"} 101",
            "tollgate_tokens_total{model=\"gpt-5\",tenant=\"acme\",route=\"openai\",kind=\"cached\"} 10",
            "tollgate_tokens_total{model=\"gpt-5\",tenant=\"acme\",route=\"openai\",kind=\"output\"} 22",
            "tollgate_tokens_total{model=\"gpt-5\",tenant=\"acme\",route=\"openai\",kind=\"reasoning\"} 5",
        ]
    );
    assert_eq!(
        samples(&text, names::RESPONSES),
        [
            "tollgate_responses_total{status=\"client_disconnected\",route=\"openai\"} 1",
            "tollgate_responses_total{status=\"completed\",route=\"openai\"} 1",
        ]
    );
    assert_eq!(
        samples(&text, names::ORPHAN_DRAINS_ACTIVE),
        ["tollgate_orphan_drains_active 1"]
    );
    assert_eq!(
        samples(&text, names::DRIVER_INFO),
        ["tollgate_driver_info{driver=\"io_uring\"} 1"]
    );
    assert_eq!(
        samples(&text, names::BUILD_INFO),
        [format!(
            "tollgate_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )]
    );
    assert_eq!(
        samples(&text, names::USAGE_LOG_HEALTHY),
        ["tollgate_usage_log_healthy 1"]
    );
    assert!(text.contains(
        "# HELP tollgate_sessions_opened_total Sessions accepted past the handshake.\n\
         # TYPE tollgate_sessions_opened_total counter\ntollgate_sessions_opened_total 3\n"
    ));
}

#[test]
fn republish_replaces_rather_than_adds() {
    let reg = Arc::new(Registry::new());
    let w = WorkerMetrics::new(reg.clone());
    w.session_opened();
    w.publish(3);
    w.publish(3);
    w.session_opened();
    w.publish(3);
    assert_eq!(
        samples(&reg.render(), names::SESSIONS_OPENED),
        ["tollgate_sessions_opened_total 2"]
    );
}

#[test]
fn every_family_is_well_formed() {
    let reg = Arc::new(Registry::new());
    let w = WorkerMetrics::new(reg.clone());
    w.tokens("m", "t", "openai", &usage(1, 1, 1, 1));
    w.publish(0);
    let text = reg.render();
    let mut typed = std::collections::HashMap::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(text.contains(&format!("# HELP {name} ")), "{name} has HELP");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name} ends in _total");
            }
            assert!(
                typed.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{name} typed once"
            );
        } else if !l.starts_with('#') {
            let name = l.split(['{', ' ']).next().expect("name");
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(
                typed.contains_key(name) || typed.contains_key(base),
                "sample {l} has a TYPE"
            );
            let value = l.rsplit(' ').next().expect("value");
            assert!(value.parse::<f64>().is_ok(), "value of {l}");
        }
    }
    assert!(text.ends_with('\n'));
}

#[test]
fn label_values_are_escaped_and_bounded() {
    let reg = Arc::new(Registry::new());
    let w = WorkerMetrics::new(reg.clone());
    w.tokens("a\"b\\c\nd", "t", "openai", &usage(1, 0, 0, 0));
    for i in 0..MAX_TOKEN_SERIES + 5 {
        w.tokens(&format!("m{i}"), "t", "openai", &usage(1, 0, 0, 0));
    }
    w.close(65535, Side::Relay, "openai");
    w.publish(0);
    let text = reg.render();
    assert!(text.contains(
        "tollgate_tokens_total{model=\"a\\\"b\\\\c\\nd\",tenant=\"t\",route=\"openai\",kind=\"input\"} 1\n"
    ));
    assert!(text
        .contains("tollgate_tokens_total{model=\"_other\",tenant=\"_other\",route=\"openai\",kind=\"input\"} 6\n"));
    assert_eq!(
        samples(&text, names::TOKENS).len(),
        (MAX_TOKEN_SERIES + 1) * 4
    );
    assert!(
        text.contains("tollgate_closes_total{code=\"other\",side=\"relay\",route=\"openai\"} 1\n")
    );
    assert_eq!(close_code_label(1015), "1015");
}

#[test]
fn response_statuses_are_bounded_and_counted_per_route() {
    let reg = Arc::new(Registry::new());
    let w = WorkerMetrics::new(reg.clone());
    w.response("completed", "openai");
    w.response("completed", "openai");
    for i in 0..MAX_STATUS_SERIES + 3 {
        w.response(&format!("s{i}"), "openai");
    }
    // A status already counted keeps its label on another route, past the cap too.
    w.response("completed", "xai");
    w.publish(0);
    let text = reg.render();
    assert!(text.contains("tollgate_responses_total{status=\"completed\",route=\"openai\"} 2\n"));
    assert!(text.contains("tollgate_responses_total{status=\"completed\",route=\"xai\"} 1\n"));
    // `completed` took one series, s0..s30 the rest; the four after them are `_other`.
    assert!(text.contains("tollgate_responses_total{status=\"s30\",route=\"openai\"} 1\n"));
    assert!(!text.contains("status=\"s31\""));
    assert!(text.contains("tollgate_responses_total{status=\"_other\",route=\"openai\"} 4\n"));
    assert_eq!(
        samples(&text, names::RESPONSES).len(),
        MAX_STATUS_SERIES + 2
    );
}

#[test]
fn tenant_labels_are_bounded_for_passthrough_fingerprints() {
    let reg = Arc::new(Registry::new());
    let w = WorkerMetrics::new(reg.clone());
    for i in 0..MAX_TENANT_LABELS + 50 {
        w.tokens(
            "gpt-5",
            &format!("fp-{i:012x}"),
            "openai",
            &usage(1, 0, 0, 0),
        );
    }
    w.publish(0);
    let text = reg.render();
    let tenants: std::collections::BTreeSet<&str> = samples(&text, names::TOKENS)
        .iter()
        .filter_map(|l| l.split("tenant=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(tenants.len(), MAX_TENANT_LABELS + 1, "the cap plus _other");
    assert!(text
        .contains("tollgate_tokens_total{model=\"gpt-5\",tenant=\"_other\",route=\"openai\",kind=\"input\"} 50\n"));
    assert_eq!(close_code_label(1016), "other");
    assert_eq!(close_code_label(3000), "3xxx");
}

#[test]
fn sink_metrics_render() {
    let reg = Registry::new();
    let s = reg.sink_metrics();
    s.add_written(5);
    s.add_durable(4);
    s.set_queue_depth(7);
    s.fail();
    let text = reg.render();
    for line in [
        "tollgate_usage_records_written_total 5",
        "tollgate_usage_records_durable_total 4",
        "tollgate_usage_log_fsyncs_total 1",
        "tollgate_usage_log_queue_depth 7",
        "tollgate_usage_log_errors_total 1",
        "tollgate_usage_log_healthy 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}");
    }
}

fn get(addr: SocketAddr, req: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("head/body");
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head.to_owned(), body.to_owned())
}

#[test]
fn admin_listener_serves_metrics_health_and_readiness() {
    let reg = Arc::new(Registry::new());
    let w = WorkerMetrics::new(reg.clone());
    w.session_opened();
    w.publish(0);
    let ready = Arc::new(AtomicBool::new(false));
    let (addr, _h) = spawn_admin(
        "127.0.0.1:0".parse().expect("addr"),
        reg.clone(),
        ready.clone(),
    )
    .expect("spawn");

    let (st, head, body) = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(st, 200);
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(head.contains(&format!("Content-Length: {}", body.len())));
    assert_eq!(body, reg.render());
    assert!(body.contains("tollgate_sessions_active 1\n"));

    assert_eq!(get(addr, "GET /healthz HTTP/1.1\r\n\r\n").2, "ok");
    assert_eq!(
        get(addr, "GET /readyz HTTP/1.1\r\n\r\n").0,
        503,
        "not ready yet"
    );
    ready.store(true, Ordering::Release);
    assert_eq!(get(addr, "GET /readyz?verbose=1 HTTP/1.1\r\n\r\n").0, 200);
    reg.sink_metrics().fail();
    let (st, _, body) = get(addr, "GET /readyz HTTP/1.1\r\n\r\n");
    assert_eq!((st, body.as_str()), (503, "usage log unavailable\n"));
    assert_eq!(get(addr, "GET /nope HTTP/1.1\r\n\r\n").0, 404);
    let (st, head, _) = get(addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(st, 405);
    assert!(head.contains("Allow: GET, HEAD"));
    let (st, _, body) = get(addr, "HEAD /healthz HTTP/1.1\r\n\r\n");
    assert_eq!((st, body.as_str()), (200, ""));
    assert_eq!(get(addr, "GET / HTTP/1.1\r\nbad header\r\n\r\n").0, 400);
    let big = format!(
        "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(MAX_REQUEST)
    );
    assert_eq!(get(addr, &big).0, 431);
}
