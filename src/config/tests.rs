//! Unit tests of the command line → Config validation.
use super::*;
use clap::Parser;

fn cli(args: &[&str]) -> Result<Config, String> {
    let mut v = vec!["tollgate"];
    v.extend_from_slice(args);
    let c = Cli::try_parse_from(v).map_err(|e| e.to_string())?;
    c.into_config().map_err(|e| e.to_string())
}

#[test]
fn sizes_and_durations() {
    assert_eq!(parse_size("64KiB"), Ok(65536));
    assert_eq!(parse_size("16MiB"), Ok(16 << 20));
    assert_eq!(parse_size("100"), Ok(100));
    assert!(parse_size("12XB").is_err());
    assert!(parse_size("").is_err());
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert!(parse_duration("ten").is_err());
}

#[test]
fn exactly_one_auth_mode() {
    let e = cli(&["--upstream", "ws://127.0.0.1:1"]).unwrap_err();
    assert!(
        e.contains("--client-keys") && e.contains("--passthrough-auth"),
        "{e}"
    );
    let e = cli(&["--passthrough-auth", "--client-keys", "/dev/null"]).unwrap_err();
    assert!(e.contains("exactly one"), "{e}");
    let c = cli(&["--passthrough-auth", "--upstream", "ws://127.0.0.1:9"]).unwrap();
    assert!(matches!(c.auth, AuthMode::Passthrough));
    assert!(c.routes.list[0].inject_headers.is_empty());
}

#[test]
fn upstream_header_expands_env_and_fails_on_unset() {
    std::env::set_var("TOLLGATE_TEST_KEY_A", "sk-test-123");
    let c = cli(&[
        "--client-keys",
        "/dev/null",
        "--upstream-header",
        "Authorization: Bearer ${TOLLGATE_TEST_KEY_A}",
    ])
    .unwrap();
    assert_eq!(
        c.routes.list[0].inject_headers,
        vec![("Authorization".into(), "Bearer sk-test-123".into())]
    );
    let e = cli(&[
        "--client-keys",
        "/dev/null",
        "--upstream-header",
        "X-Key: ${TOLLGATE_TEST_UNSET_VAR_Z}",
    ])
    .unwrap_err();
    assert!(
        e.contains("--upstream-header") && e.contains("TOLLGATE_TEST_UNSET_VAR_Z"),
        "{e}"
    );
    let e = cli(&[
        "--client-keys",
        "/dev/null",
        "--upstream-header",
        "no colon",
    ])
    .unwrap_err();
    assert!(e.contains("--upstream-header"), "{e}");
}

#[test]
fn range_errors_name_the_flag() {
    let e = cli(&["--passthrough-auth", "--workers", "0"]).unwrap_err();
    assert!(e.contains("--workers"), "{e}");
    let e = cli(&["--passthrough-auth", "--buffer-bytes", "10"]).unwrap_err();
    assert!(e.contains("--buffer-bytes"), "{e}");
    let e = cli(&["--passthrough-auth", "--upstream", "ftp://x"]).unwrap_err();
    assert!(e.contains("--upstream"), "{e}");
    let e = cli(&["--client-keys", "/nonexistent/keys"]).unwrap_err();
    assert!(e.contains("--client-keys"), "{e}");
}
