//! `loadtest`: mock Responses upstream (and, later, the load generator).

mod cli;

use clap::error::ErrorKind;
use clap::Parser;
use cli::{Cli, Command, MockArgs};
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
        Command::Run | Command::Bench => {
            eprintln!("loadtest: not implemented yet");
            2
        }
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
