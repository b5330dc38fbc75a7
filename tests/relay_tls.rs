//! The relay with TLS legs: a `wss://` listener and a `wss://` upstream (certificates made
//! in the test), on the data plane and on the async adapter (`--no-ring`), every driver.
//! The plain suite is tests/relay.rs; an upstream cut mid-response over TLS is tested there
//! next to its plain twin.
mod common;

use common::relay_client::*;
use common::*;
use std::time::Duration;
use tollgate_loadtest::client::{connect, ClientOpts};
use tollgate_loadtest::mock::{MockConfig, MockUpstream};

#[tokio::test(flavor = "multi_thread")]
async fn wss_upstream_and_wss_listener_with_a_generated_ca() {
    let files = TlsFiles::generate();
    let tls = &files.tls;
    for driver in DRIVERS {
        let mock = MockUpstream::start(MockConfig {
            tls: Some(tls.server_config().unwrap()),
            ..MockConfig::default()
        })
        .await
        .unwrap();
        assert!(mock.url().starts_with("wss://"));
        let mut args = files.upstream_ca_args().to_vec();
        args.extend([
            "--tls-cert",
            files.cert.to_str().unwrap(),
            "--tls-key",
            files.key.to_str().unwrap(),
        ]);
        let relay = start_relay(driver, &mock.url(), &args);
        let o = ClientOpts {
            tls_ca_pem: Some(tls.ca_pem.clone().into_bytes()),
            server_name: Some("localhost".into()),
            ..opts()
        };
        let mut c = connect(
            &format!("wss://localhost:{}/v1/responses", relay.addr.port()),
            o,
        )
        .await
        .expect("wss through the relay");
        for _ in 0..2 {
            let events = c.turn(&create("gpt-5", "")).await.unwrap();
            assert_eq!(events.last().unwrap()["type"], "response.completed");
        }
        assert_eq!(
            mock.requests()[0].header("authorization"),
            Some(format!("Bearer {PROVIDER_KEY}").as_str())
        );
        c.close(1000, "bye").await.unwrap();
        let (code, _) = recv_until_close(&mut c).await;
        assert_eq!(code, Some(1000), "{driver}: both TLS legs close cleanly");
    }
    // Without the CA the relay refuses to trust the upstream: 502, never a 101.
    let mock = MockUpstream::start(MockConfig {
        tls: Some(tls.server_config().unwrap()),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let (status, _, body) = refused_status("auto", &mock.url(), &[]).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("upstream_tls_failed"), "{body}");
}

/// Production's shape — a plain client, a `wss://` upstream — on the data plane: under the
/// ring drivers the session is handed to it, TLS leg and all (`tollgate_ring_sessions_total`;
/// `--no-ring` keeps it on the async adapter), deltas larger than a ring buffer and than a
/// TLS record come through whole, the client's messages reach the upstream sealed, and
/// every response gets one record equal to what the upstream billed.
#[tokio::test(flavor = "multi_thread")]
async fn a_wss_upstream_leg_runs_on_the_data_plane_and_meters_every_response() {
    let files = TlsFiles::generate();
    for driver in DRIVERS {
        let mock = MockUpstream::start(MockConfig {
            tls: Some(files.tls.server_config().unwrap()),
            deltas: 12,
            delta_bytes: 40_000,
            echo_text_limit: Some(64),
            ..MockConfig::default()
        })
        .await
        .unwrap();
        let mut args = files.upstream_ca_args().to_vec();
        args.extend([
            "--usage-log",
            "{usage_log}",
            "--admin-listen",
            "127.0.0.1:0",
        ]);
        let relay = start_relay(driver, &mock.url(), &args);
        let mut c = client(&relay).await;
        for turn in 0..3 {
            let events = c.turn(&create("gpt-5", "")).await.unwrap();
            let deltas: Vec<_> = events
                .iter()
                .filter(|e| e["type"] == "response.output_text.delta")
                .collect();
            assert_eq!(deltas.len(), 12, "{driver} turn {turn}");
            for d in &deltas {
                let len = d["delta"].as_str().map_or(0, str::len);
                assert!(len >= 30_000, "{driver}: a delta of {len} bytes");
            }
            assert_eq!(events.last().unwrap()["type"], "response.completed");
        }
        let on_ring = metric_at_least(relay.admin(), "tollgate_ring_sessions_total", 1.0);
        if driver.ends_with("-async") {
            assert_eq!(
                on_ring, 0.0,
                "{driver}: --no-ring keeps sessions off the data plane"
            );
        } else {
            assert_eq!(
                on_ring, 1.0,
                "{driver}: the TLS session runs on the data plane"
            );
        }
        c.close(1000, "bye").await.unwrap();
        let (code, _) = recv_until_close(&mut c).await;
        assert_eq!(code, Some(1000), "{driver}");
        let ledger = mock.wait_for_ledger(3, Duration::from_secs(5)).await;
        let (clean, recs) = relay.stop_and_read(Duration::from_secs(2));
        assert!(clean, "{driver}");
        assert_eq!(recs.len(), 3, "{driver}: one record per response");
        assert_matches_ledger(&recs, &ledger);
    }
}
