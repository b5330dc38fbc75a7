//! `tollgate` binary: parse the CLI, set up logging, run the workers until SIGTERM.
use clap::Parser;
use tollgate::config::{Cli, LogFormat};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => 64,
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tollgate: {e}");
            std::process::exit(64);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    std::process::exit(tollgate::runtime::run(config));
}
