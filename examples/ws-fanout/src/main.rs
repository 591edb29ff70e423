//! `ws-fanout`: a WebSocket fan-out service on pg-rs, in the shape of a
//! notification service on Kubernetes: several instances, a user's
//! connections on any of them, instances dying and being replaced.
//!
//! ```text
//! ws-fanout --config node-1.yaml [--log-format text|json]
//! ```
//!
//! - `GET /ws?user=U&room=R`: a WebSocket. The connection is a pg-rs
//!   process in groups `room:R` and `user:U` (fan-out) and `presence:R:U`
//!   (presence: one membership per connection). Text the browser sends,
//!   `{"text": "..."}`, goes to the whole room; the socket receives the
//!   room's and the user's messages, and the room's presence whenever it
//!   changes, as JSON.
//! - `POST /publish/room/R` and `POST /publish/user/U`: the body, to every
//!   connection in the room / of the user, on every node, once each.
//! - `GET /presence/room/R`: who is in the room, cluster-wide, with their
//!   number of connections (a prefix read of `presence:R:`).
//! - `GET /`: a small chat page. `GET /healthz`, `GET /metrics` as
//!   `pg-node` serves them.
//! - SIGTERM or SIGINT: the node leaves the cluster gracefully (its
//!   connections vanish from presence everywhere at once).
//!
//! The YAML file is pg-api's (docs/configuration.md), with one entry of the
//! application's own: `kind: ws-fanout.http`, `listen: ADDR` (port 0 picks
//! one, printed on stdout as `http <address>`).

mod routes;
mod socket;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, ValueEnum};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use pg_api::{Config, Instance, Node, Process};
use serde::Deserialize;

/// The scope everything lives in: the first `pg.scope` of the file.
#[derive(Parser)]
#[command(name = "ws-fanout", about = "WebSocket fan-out on pg-rs")]
struct Args {
    /// The configuration file (YAML).
    #[arg(long)]
    config: PathBuf,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The application's entry of the configuration file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpEntry {
    listen: SocketAddr,
}

/// What every request handler shares.
pub(crate) struct AppState {
    pub(crate) node: Node,
    /// The scope id.
    pub(crate) scope: String,
    /// The process HTTP publishes come from, and its instance.
    pub(crate) publisher: (Process, Instance),
    pub(crate) metrics: PrometheusHandle,
    pub(crate) stopping: AtomicBool,
}

fn main() {
    let args = Args::parse();
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
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let config = Config::from_file(&args.config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(serve(config))
    };
    if let Err(e) = run() {
        eprintln!("ws-fanout: {e}");
        std::process::exit(1);
    }
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let http: HttpEntry = config
        .app_entries("ws-fanout.http")
        .next()
        .ok_or("the configuration has no `kind: ws-fanout.http` entry")?
        .deserialize()?;
    let scope = config
        .scopes
        .first()
        .map(|s| s.id.clone())
        .ok_or("the configuration has no pg.scope entry")?;
    // Before the node: metric handles are registered as scopes open.
    let metrics = PrometheusBuilder::new().install_recorder()?;
    let node = Node::from_config(&config)?;
    let publisher = node.spawn("http");
    let instance = publisher.open(&scope)?;
    let state = Arc::new(AppState {
        node: node.clone(),
        scope,
        publisher: (publisher, instance),
        metrics,
        stopping: AtomicBool::new(false),
    });
    let listener = tokio::net::TcpListener::bind(http.listen).await?;
    let bound = listener.local_addr()?;
    println!("http {bound}");
    tracing::info!(node = %node.id(), %bound, "ws-fanout serving");
    let stop = Arc::clone(&state);
    axum::serve(listener, routes::router(Arc::clone(&state)))
        .with_graceful_shutdown(async move {
            stop_signal().await;
            stop.stopping.store(true, Ordering::Release);
        })
        .await?;
    tracing::info!(node = %node.id(), "leaving the cluster");
    node.shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    Ok(())
}

/// SIGTERM (Kubernetes) or SIGINT (a terminal).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
