use super::*;
use crate::server::handshake::{parse_request, Limits};

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

const FILE: &str = "\
# relay keys
acme   sk-relay-acme-0001

globex sha256:HEXGLOBEX
  # indented comment
acme sk-relay-acme-0002
";

fn keys() -> ClientKeys {
    let digest = hex(&sha256(b"sk-relay-globex-secret"));
    ClientKeys::parse(&FILE.replace("HEXGLOBEX", &digest.to_uppercase())).unwrap()
}

#[test]
fn parses_plain_and_sha256_entries() {
    let k = keys();
    assert_eq!(k.len(), 3);
    assert_eq!(
        k.authenticate(b"sk-relay-acme-0001").as_deref(),
        Some("acme")
    );
    assert_eq!(
        k.authenticate(b"sk-relay-acme-0002").as_deref(),
        Some("acme")
    );
    assert_eq!(
        k.authenticate(b"sk-relay-globex-secret").as_deref(),
        Some("globex")
    );
    assert_eq!(k.authenticate(b"sk-relay-acme-0003"), None);
    assert_eq!(k.authenticate(b""), None);
    // The digest itself is not a key.
    assert_eq!(
        k.authenticate(hex(&sha256(b"sk-relay-globex-secret")).as_bytes()),
        None
    );
}

#[test]
fn bad_lines_name_the_line_not_the_key() {
    let cases = [
        ("a k1\nonlytenant-sk-secret-1\n", 2, LineError::MissingKey),
        (
            "\n\n# c\nten sk-secret-2 extra\n",
            4,
            LineError::ExtraFields,
        ),
        ("bad/tenant sk-secret-3\n", 1, LineError::InvalidTenant),
        ("t sha256:abcd-sk-secret-4\n", 1, LineError::InvalidDigest),
        (
            &format!("t sha256:{}zz\n", "a".repeat(62)),
            1,
            LineError::InvalidDigest,
        ),
    ];
    for (text, line, reason) in cases {
        match ClientKeys::parse(text) {
            Err(e @ AuthError::Line { .. }) => {
                let msg = e.to_string();
                assert!(
                    matches!(e, AuthError::Line { line: l, reason: r } if l == line && r == reason),
                    "{msg}"
                );
                assert!(msg.contains(&format!("line {line}")), "{msg}");
                assert!(!msg.contains("sk-secret"), "{msg}");
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn duplicate_and_empty_files_are_errors() {
    let dup = format!("a k-one\nb sha256:{}\n", hex(&sha256(b"k-one")));
    match ClientKeys::parse(&dup) {
        Err(
            e @ AuthError::DuplicateKey {
                line: 2,
                first_line: 1,
            },
        ) => assert!(!e.to_string().contains("k-one")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ClientKeys::parse("# nothing\n\n"),
        Err(AuthError::Empty)
    ));
}

#[test]
fn load_reads_a_file_and_reports_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::write(&path, "t key-123\n").unwrap();
    assert_eq!(
        ClientKeys::load(&path)
            .unwrap()
            .authenticate(b"key-123")
            .as_deref(),
        Some("t")
    );
    let missing = dir.path().join("nope");
    assert!(matches!(
        ClientKeys::load(&missing),
        Err(AuthError::Io { .. })
    ));
}

#[test]
fn authenticate_compares_every_entry() {
    let text: String = (0..50).map(|i| format!("t{i} key-{i}\n")).collect();
    let k = ClientKeys::parse(&text).unwrap();
    for probe in [&b"key-0"[..], b"key-49", b"nope"] {
        COMPARISONS.with(|c| c.set(0));
        let got = k.authenticate(probe);
        assert_eq!(COMPARISONS.with(|c| c.get()), 50, "{got:?}");
    }
    assert_eq!(k.authenticate(b"key-0").as_deref(), Some("t0"));
    assert_eq!(k.authenticate(b"key-49").as_deref(), Some("t49"));
}

#[test]
fn debug_does_not_print_digests() {
    let s = format!("{:?}", keys());
    assert!(
        s.contains("len: 3") && !s.contains("sk-") && s.len() < 40,
        "{s}"
    );
}

fn request(extra: &[&str]) -> UpgradeRequest {
    let mut s = String::from(
        "GET /v1/responses HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    for l in extra {
        s.push_str(l);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    parse_request(s.as_bytes(), &Limits::default())
        .unwrap()
        .unwrap()
}

#[test]
fn presented_key_from_bearer_or_api_key() {
    assert_eq!(
        presented_key(&request(&["Authorization: Bearer sk-1"])),
        Some(&b"sk-1"[..])
    );
    assert_eq!(
        presented_key(&request(&["authorization: bearer   sk-2 "])),
        Some(&b"sk-2"[..])
    );
    assert_eq!(
        presented_key(&request(&["api-key: az-3"])),
        Some(&b"az-3"[..])
    );
    assert_eq!(
        presented_key(&request(&["Authorization: Basic Zm9v", "api-key: az-4"])),
        Some(&b"az-4"[..])
    );
    assert_eq!(
        presented_key(&request(&["Authorization: Bearer sk-5", "api-key: az-5"])),
        Some(&b"sk-5"[..])
    );
    assert_eq!(presented_key(&request(&["Authorization: Bearer"])), None);
    assert_eq!(
        presented_key(&request(&["Authorization: Bearersk-6"])),
        None
    );
    assert_eq!(presented_key(&request(&[])), None);
}

#[test]
fn fingerprint_is_short_stable_and_not_the_key() {
    let key = b"sk-proj-abcdef0123456789";
    let fp = fingerprint(key);
    assert_eq!(fp, format!("fp-{}", &hex(&sha256(key))[..12]));
    assert_eq!(fp.len(), 15);
    assert_eq!(fp, fingerprint(key));
    assert_ne!(fp, fingerprint(b"sk-proj-abcdef0123456788"));
    assert!(!fp.contains("sk-proj") && !fp.contains("abcdef0123"));
}

#[test]
fn a_tenants_route_is_read_and_must_agree_across_its_lines() {
    let k = ClientKeys::parse(
        "acme k1 route=xai\nacme k2\nbeta k3 max_sessions=2 route=openai\ngamma k4\n",
    )
    .expect("parse");
    assert_eq!(k.route_of("acme"), Some("xai"));
    assert_eq!(k.route_of("beta"), Some("openai"));
    assert_eq!(k.route_of("gamma"), None);
    let mut names: Vec<&str> = k.route_names().collect();
    names.sort_unstable();
    assert_eq!(names, ["openai", "xai"]);
    let e = ClientKeys::parse("acme k1 route=xai\nacme k2 route=openai\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "keys file line 2: the tenant's route differs from the one on an earlier line"
    );
    let e = ClientKeys::parse("acme k1 route=\n").unwrap_err();
    assert!(e.to_string().contains("route=NAME"), "{e}");
}

#[test]
fn a_new_key_and_its_hashed_line_authenticate() {
    let a = new_key();
    let b = new_key();
    assert_ne!(a, b);
    assert!(a.starts_with("tg-") && a.len() == 3 + 43, "{a}");
    let line = keys_file_line("acme", &a).expect("line");
    assert!(
        line.starts_with("acme sha256:") && !line.contains(&a[3..]),
        "{line}"
    );
    let keys = ClientKeys::parse(&line).expect("parse");
    assert_eq!(keys.authenticate(a.as_bytes()).as_deref(), Some("acme"));
    assert_eq!(keys.authenticate(b.as_bytes()), None);
    assert_eq!(
        keys_file_line("bad tenant", &a),
        Err(LineError::InvalidTenant)
    );
    assert_eq!(
        keys_file_line("acme", "has space"),
        Err(LineError::MissingKey)
    );
}
