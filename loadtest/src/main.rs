//! `loadtest`: mock Responses upstream, load generator, side-by-side benchmark
//! and a self-contained demo.

mod cli;

use clap::error::ErrorKind;
use clap::Parser;
use cli::{BenchArgs, Cli, Command, DemoArgs, MockArgs, RunArgs};
use tollgate_loadtest::mock::MockUpstream;

/// Exit status for usage errors (EX_USAGE).
const EXIT_USAGE: i32 = 64;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                let _ = e.print();
                std::process::exit(EXIT_USAGE);
            }
        },
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let code = match cli.command {
        Command::MockUpstream(args) => run_mock(*args),
        Command::Run(args) => run_load(&args),
        Command::Bench(args) => run_bench(args),
        Command::Demo(args) => run_demo(args),
        Command::SplitSamples => split_samples(),
    };
    std::process::exit(code);
}

fn run_mock(args: MockArgs) -> i32 {
    let mut cfg = args.to_config();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        match tollgate_loadtest::tls::server_config_from_files(cert, key) {
            Ok(c) => cfg.tls = Some(c),
            Err(e) => {
                eprintln!("loadtest: --tls-cert/--tls-key: {e}");
                return EXIT_USAGE;
            }
        }
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: cannot start the tokio runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let mock = match MockUpstream::start(cfg).await {
            Ok(m) => m,
            Err(e) => {
                eprintln!("loadtest: --listen {}: {e}", args.listen);
                return EXIT_USAGE;
            }
        };
        println!("mock upstream listening on {}", mock.url());
        wait_for_signal().await;
        mock.shutdown();
        0
    })
}

fn split_samples() -> i32 {
    use std::io::Read;
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        eprintln!("loadtest split-samples: reading stdin: {e}");
        return 1;
    }
    for (pid, s) in tollgate_loadtest::gen::window::split_samples(&text) {
        println!("{pid} {} {}", s.user, s.kernel);
    }
    0
}

/// `tollgate` next to this executable (where `cargo build` puts both).
fn sibling_tollgate() -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("tollgate")))
        .unwrap_or_else(|| "tollgate".into())
}

fn run_load(args: &RunArgs) -> i32 {
    let report = match tollgate_loadtest::gen::run(&args.to_config()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadtest run: {e}");
            return match e {
                tollgate_loadtest::gen::GenError::InvalidTarget { .. }
                | tollgate_loadtest::gen::GenError::Config(_) => EXIT_USAGE,
                _ => 1,
            };
        }
    };
    print!("{}", report.markdown());
    if let Some(p) = &args.json {
        let body = serde_json::to_vec_pretty(&report).unwrap_or_default();
        if let Err(e) = std::fs::write(p, body) {
            eprintln!("loadtest run: --json {}: {e}", p.display());
            return 1;
        }
    }
    if let Some(p) = &args.hgrm {
        if let Err(e) = std::fs::write(p, &report.hgrm) {
            eprintln!("loadtest run: --hgrm {}: {e}", p.display());
            return 1;
        }
    }
    i32::from(report.counts.errors > 0)
}

fn run_bench(args: BenchArgs) -> i32 {
    use tollgate_loadtest::bench::{self, peers::Peer};
    if !args.history.is_empty() {
        return match bench::history(&args.history, &args.out) {
            Ok(md) => {
                print!("{md}");
                eprintln!(
                    "loadtest bench: wrote {}/history.md from {} runs",
                    args.out.display(),
                    args.history.len()
                );
                0
            }
            Err(e) => {
                eprintln!("loadtest bench: {e}");
                1
            }
        };
    }
    if let Some(json) = &args.render {
        return match bench::render(json, &args.out, &args.peers) {
            Ok((r, peers)) => {
                print!("{}", bench::markdown(&r, &peers));
                eprintln!(
                    "loadtest bench: wrote {0}/bench.md, {0}/sweep.svg from {1}",
                    args.out.display(),
                    json.display()
                );
                0
            }
            Err(e) => {
                eprintln!("loadtest bench: {e}");
                1
            }
        };
    }
    let cfg = bench::BenchConfig {
        quick: args.quick,
        full: args.full,
        reps: args.reps,
        sweep_reps: args.sweep_reps,
        cpu_reps: args.cpu_reps,
        probe_reps: args.probe_reps,
        peers: if args.peers.is_empty() {
            // The floor speaks plain TCP only: by default it runs in plain benches.
            Peer::ALL
                .into_iter()
                .filter(|p| *p != Peer::Floor || args.tls == bench::peers::TlsMode::None)
                .collect()
        } else {
            args.peers.clone()
        },
        out: args.out.clone(),
        tollgate: args.tollgate.clone().unwrap_or_else(sibling_tollgate),
        install: !args.no_install,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        only: args.only.clone(),
        tls: args.tls,
    };
    match bench::run_bench(&cfg) {
        Ok(r) => {
            print!("{}", bench::markdown(&r, &cfg.peers));
            eprintln!(
                "loadtest bench: wrote {0}/bench.json, {0}/bench.md, {0}/sweep.svg, {0}/runs/*.json",
                cfg.out.display()
            );
            0
        }
        Err(e) => {
            eprintln!("loadtest bench: {e}");
            1
        }
    }
}

fn run_demo(args: DemoArgs) -> i32 {
    let opts = tollgate_loadtest::demo::DemoOpts {
        tollgate: args.tollgate.unwrap_or_else(sibling_tollgate),
        relay_args: args.relay_args,
        mock_fault: args.mock_fault,
    };
    match tollgate_loadtest::demo::run(&opts) {
        Ok(true) => 0,
        Ok(false) => {
            eprintln!("loadtest demo: the relay's usage records do not match the mock's ledger");
            1
        }
        Err(e) => {
            eprintln!("loadtest demo: {e}");
            1
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
