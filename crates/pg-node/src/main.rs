//! `pg-node`: a pg-rs node as a process.
//!
//! ```text
//! pg-node [--http ADDR] [--log-format text|json] CONFIG.yaml
//! pg-node --stdin CONFIG.yaml
//! pg-node certs create-ca --dir DIR --cluster NAME [--days N]
//! pg-node certs create-node NAME --dir DIR [--days N]
//! ```
//!
//! - **Service mode** (the default): starts the node of the configuration
//!   file (docs/configuration.md; `${VAR}` expanded), serves `GET /healthz`
//!   (JSON: node, peers, each scope's health; 503 once shutting down) and
//!   `GET /metrics` (Prometheus text: every `pg_*` and `pg_net_*` metric)
//!   on `--http` (default `127.0.0.1:9100`; port 0 picks one, printed on
//!   stdout as `http <address>`), and on SIGTERM or SIGINT leaves the
//!   cluster gracefully (peers drop its members at once) and exits 0. A
//!   pure pg-rs node: a relay, an observer, a seed.
//! - **Harness mode** (`--stdin`): the line commands `cargo xtask` drives
//!   (see `harness.rs`).
//! - **Certificates** (`certs`): a cluster CA saved to files, and node
//!   certificates issued from it.
//!
//! Logs go to stderr, filtered by `PG_LOG` (`warn` by default, e.g.
//! `PG_LOG=info,pg_net=debug`).

mod certs;
mod chaos_cmds;
mod harness;
mod registry_cmds;
mod service;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "pg-node",
    version,
    about = "A pg-rs node as a process",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The configuration file (YAML).
    config: Option<PathBuf>,
    /// Take line commands on stdin instead of serving (the harness of
    /// `cargo xtask`).
    #[arg(long)]
    stdin: bool,
    /// Where to serve /healthz and /metrics.
    #[arg(long, default_value = "127.0.0.1:9100")]
    http: SocketAddr,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Makes TLS material as PEM files.
    Certs {
        #[command(subcommand)]
        action: certs::CertsCommand,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() {
    let args = Args::parse();
    // The library's warnings (refused handshakes, dropped frames, lagging
    // subscribers) reach the operator on stderr; PG_LOG filters them.
    let filter = tracing_subscriber::EnvFilter::try_from_env("PG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    if let Err(e) = run(&args) {
        eprintln!("pg-node: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(Command::Certs { action }) = &args.command {
        return certs::run(action);
    }
    let path = args
        .config
        .as_ref()
        .ok_or("a configuration file is required (pg-node --help)")?;
    let config = pg_api::Config::from_file(path)?;
    if args.stdin {
        harness::run(&config)
    } else {
        service::run(&config, args.http)
    }
}
