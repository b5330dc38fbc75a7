//! `tollgate` binary: parse the CLI (and its config file), set up logging, run the workers
//! until SIGTERM. `--check-config` validates and exits; `tollgate keys …` manages keys.
use tollgate::config::{Cli, KeysTool, LogFormat, ParseError, Tool};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// EX_USAGE: a bad flag, config file or file it names.
const EX_USAGE: i32 = 64;

fn main() {
    let mut cli = match Cli::parse_from_all(std::env::args_os()) {
        Ok(c) => c,
        Err(ParseError::Clap(e)) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => EX_USAGE,
            };
            let _ = e.print();
            std::process::exit(code);
        }
        Err(e) => {
            eprintln!("tollgate: {e}");
            std::process::exit(EX_USAGE);
        }
    };
    if let Some(tool) = cli.tool.take() {
        std::process::exit(run_tool(tool));
    }
    let check = cli.check_config;
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tollgate: {e}");
            std::process::exit(EX_USAGE);
        }
    };
    if check {
        match tollgate::runtime::check_files(&config) {
            Ok(summary) => {
                println!("tollgate: {summary}");
                std::process::exit(0);
            }
            Err(e) => {
                eprintln!("tollgate: {e}");
                std::process::exit(EX_USAGE);
            }
        }
    }
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

/// `tollgate keys new|hash`: print to stdout; the key itself only for `new`.
fn run_tool(tool: Tool) -> i32 {
    use tollgate::server::auth::{keys_file_line, new_key};
    let Tool::Keys(k) = tool;
    let (key, tenant, show) = match k {
        KeysTool::New { tenant } => (new_key(), tenant, true),
        KeysTool::Hash { key, tenant } => (key, tenant, false),
    };
    match keys_file_line(&tenant, &key) {
        Ok(line) => {
            if show {
                println!("key: {key}");
                println!("keys-file line: {line}");
            } else {
                println!("{line}");
            }
            0
        }
        Err(e) => {
            eprintln!("tollgate keys: {e}");
            EX_USAGE
        }
    }
}
