//! The config file and the tools, through the real binary: `--check-config` on the
//! repository's example config (as CI runs it), precedence (command line > environment >
//! file > defaults), every kind of mistake exiting 64 with a message naming it,
//! `tollgate keys`, and README.md's flag table against the binary's defaults.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tollgate::config::Cli;
use tollgate::server::auth::ClientKeys;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    for var in ["OPENAI_API_KEY", "XAI_API_KEY", "AZURE_OPENAI_API_KEY"] {
        c.env_remove(var);
    }
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A temp dir with `tollgate.toml` = `config` and `keys` = `keys`.
fn setup(config: &str, keys: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let keys_path = dir.path().join("keys");
    std::fs::write(&keys_path, keys).expect("keys");
    let cfg = dir.path().join("tollgate.toml");
    std::fs::write(
        &cfg,
        config.replace("{keys}", &keys_path.display().to_string()),
    )
    .expect("config");
    (dir, cfg)
}

fn check(cfg: &Path, extra: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut c = bin();
    c.arg("--check-config").arg("--config").arg(cfg).args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("run tollgate");
    (o.status.code().unwrap_or(-1), text(&o))
}

const ROUTES: &str = r#"
client-keys = "{keys}"
[[route]]
name = "openai"
upstream = "ws://127.0.0.1:9"
headers = []
[[route]]
name = "xai"
upstream = "ws://127.0.0.1:9"
headers = ["Authorization: Bearer x"]
"#;

#[test]
fn the_example_config_checks_out() {
    let (code, out) = check(
        Path::new("examples/tollgate.toml"),
        &[],
        &[
            ("OPENAI_API_KEY", "sk-a"),
            ("XAI_API_KEY", "xai-b"),
            ("AZURE_OPENAI_API_KEY", "az-c"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration OK"), "{out}");
    assert!(out.contains("xai=wss://api.x.ai"), "{out}");
    assert!(!out.contains("sk-a"), "no secret in the summary: {out}");
    // The same file without the provider keys in the environment names what is missing.
    let (code, out) = check(Path::new("examples/tollgate.toml"), &[], &[]);
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("OPENAI_API_KEY is not set"), "{out}");
}

#[test]
fn the_command_line_beats_the_environment_beats_the_file() {
    let (_d, cfg) = setup(
        &format!("{ROUTES}\n").replacen(
            "client-keys",
            "idle-timeout = \"7s\"\nworkers = 3\nclient-keys",
            1,
        ),
        "acme k1\n",
    );
    let parse = |extra: &[&str]| {
        let mut args = vec!["tollgate", "--config", cfg.to_str().expect("utf-8")];
        args.extend_from_slice(extra);
        Cli::parse_from_all(args)
            .expect("parse")
            .into_config()
            .expect("config")
    };
    let c = parse(&[]);
    assert_eq!(c.idle_timeout.as_secs(), 7, "from the file");
    assert_eq!(c.workers, 3);
    assert_eq!(c.routes.list.len(), 2);
    assert_eq!(
        &*c.routes.list[c.routes.default].name, "openai",
        "the first route"
    );
    let c = parse(&["--idle-timeout", "9s", "--default-route", "xai"]);
    assert_eq!(c.idle_timeout.as_secs(), 9, "the command line wins");
    assert_eq!(&*c.routes.list[c.routes.default].name, "xai");
    // The environment beats the file (checked through the binary: no env races here).
    let bad = cfg.with_file_name("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&cfg)
            .expect("read")
            .replace("\"7s\"", "\"soon\""),
    )
    .expect("write");
    let (code, out) = check(&bad, &[], &[]);
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains("bad.toml") && out.contains("idle-timeout"),
        "{out}"
    );
    let (code, out) = check(&bad, &[], &[("TOLLGATE_IDLE_TIMEOUT", "5s")]);
    assert_eq!(
        code, 0,
        "the environment's value replaces the file's bad one: {out}"
    );
    let (code, out) = check(&bad, &["--idle-timeout", "5s"], &[]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn every_mistake_exits_64_and_names_it() {
    let cases: &[(&str, &str, &[&str], &str)] = &[
        ("idle-timeot = \"5s\"\n", "acme k1\n", &[], "unknown setting `idle-timeot`"),
        ("workers = [1, 2]\n", "acme k1\n", &[], "`workers`: takes one value"),
        ("tunnel = \"yes\"\n", "acme k1\n", &[], "`tunnel`: expected true or false"),
        ("listen = \n", "acme k1\n", &[], "line 1"),
        ("check-config = true\n", "acme k1\n", &[], "unknown setting `check-config`"),
        ("", "acme k1\n", &["--upstream", "ws://127.0.0.1:1"], "--upstream cannot be combined with [[route]]"),
        ("", "acme k1\n", &["--default-route", "anthropic"], "--default-route \"anthropic\": no such route"),
        ("", "acme k1 route=anthropic\n", &[], "route=anthropic names no configured route"),
        ("[[route]]\nname = \"openai\"\nupstream = \"ws://127.0.0.1:9\"\nheaders = []\n", "acme k1\n", &[], "route \"openai\": defined twice"),
        ("[[route]]\nname = \"a/b\"\nupstream = \"ws://127.0.0.1:9\"\nheaders = []\n", "acme k1\n", &[], "name: 1-64 characters"),
        ("[[route]]\nname = \"n\"\nupstream = \"ws://127.0.0.1:9\"\n", "acme k1\n", &[], "headers: required with --client-keys"),
        ("[[route]]\nname = \"n\"\nupstream = \"ws://127.0.0.1:9\"\nheaders = []\nallow-paths = [\"v1\"]\n", "acme k1\n", &[], "--allow-path \"v1\""),
        ("[[route]]\nname = \"n\"\nupstream = \"http//x\"\nheaders = []\n", "acme k1\n", &[], "route \"n\": upstream"),
        ("[[route]]\nname = \"n\"\nupstream = \"ws://127.0.0.1:9\"\nheaders = []\nmodel = [\"m\"]\n", "acme k1\n", &[], "unknown field `model`"),
        ("", "acme\n", &[], "keys file line 1"),
        ("huge-pages = \"maybe\"\n", "acme k1\n", &[], "--huge-pages"),
        ("", "acme k1\n", &["--usage-journal-mib", "5000"], "--usage-journal-mib"),
    ];
    for (prefix, keys, extra, want) in cases {
        // Top-level settings go before the routes (after them they would belong to a
        // route); extra routes after them.
        let text = if prefix.starts_with("[[route]]") {
            format!("{ROUTES}{prefix}")
        } else {
            format!("{prefix}{ROUTES}")
        };
        let (_d, cfg) = setup(&text, keys);
        let (code, out) = check(&cfg, extra, &[]);
        assert_eq!(code, 64, "{prefix:?} {extra:?}: {out}");
        assert!(
            out.contains(want),
            "{prefix:?} {extra:?}: wanted {want:?} in {out}"
        );
    }
    let o = bin()
        .args(["--config", "/nonexistent/t.toml"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(64));
    assert!(
        text(&o).contains("--config /nonexistent/t.toml"),
        "{}",
        text(&o)
    );
}

#[test]
fn keys_new_prints_a_key_and_the_line_that_accepts_it() {
    let o = bin()
        .args(["keys", "new", "--tenant", "acme"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8(o.stdout).expect("utf-8");
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .expect("key line");
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("keys-file line: "))
        .expect("keys-file line");
    assert!(!line.contains(key), "the line holds only the hash");
    let keys = ClientKeys::parse(line).expect("a valid keys-file line");
    assert_eq!(keys.authenticate(key.as_bytes()).as_deref(), Some("acme"));
    // `hash` gives the same line for the same key.
    let o = bin()
        .args(["keys", "hash", key, "--tenant", "acme"])
        .output()
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), line);
    let o = bin()
        .args(["keys", "hash", key, "--tenant", "no spaces"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(64));
}

/// The flag table in README.md states each flag's default; where the flag has a default
/// value (not one computed at start, which the table describes in words), it is the one the
/// binary uses. Catches a default changed in one place and not the other.
#[test]
fn the_readme_flag_table_states_the_binarys_defaults() {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let mut compared = 0;
    for line in readme.lines() {
        // | `--flag ARG` [/ `--other`] | `default` [(words)] [/ `other's`] | what it does |
        let Some(rest) = line.strip_prefix("| `--") else {
            continue;
        };
        let cells: Vec<&str> = rest.split(" | ").collect();
        let (Some(flag), Some(stated)) = (cells.first(), cells.get(1)) else {
            continue;
        };
        // The row's first flag and its default (the first of " / "-separated ones).
        let name = flag
            .split([' ', '`', '=', ','])
            .next()
            .expect("split yields one piece");
        let stated = stated.split(" / ").next().expect("split yields one piece");
        let stated = match stated.split('`').nth(1) {
            Some(quoted) => quoted,
            None => stated.trim(),
        };
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(name))
            .unwrap_or_else(|| {
                panic!("README.md's flag table names --{name}, which the binary does not have")
            });
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if defaults.is_empty() {
            continue;
        }
        let default = defaults.join(",");
        // A switch's default is `false`, which the table writes "off" (or "—").
        let same = stated == default || (default == "false" && matches!(stated, "off" | "—"));
        assert!(
            same,
            "README.md's flag table gives --{name} the default {stated:?}; the binary's is {default:?}"
        );
        compared += 1;
    }
    assert!(
        compared >= 15,
        "only {compared} defaults compared: has the table's shape changed?"
    );
}
