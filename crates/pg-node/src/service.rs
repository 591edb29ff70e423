//! Service mode: the node runs until SIGTERM or SIGINT, with `/healthz` and
//! `/metrics` over HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use pg_api::{Config, Node};
use serde_json::json;

struct App {
    node: Node,
    scopes: Vec<String>,
    metrics: PrometheusHandle,
    stopping: AtomicBool,
}

pub(crate) fn run(config: &Config, http: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(config, http))
}

async fn serve(config: &Config, http: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    // Installed before the node starts: metric handles are registered as
    // scopes open.
    let metrics = PrometheusBuilder::new().install_recorder()?;
    let node = Node::from_config(config)?;
    let scopes = config
        .scopes
        .iter()
        .filter(|s| s.auto_start)
        .map(|s| s.id.clone())
        .collect();
    let app = Arc::new(App {
        node: node.clone(),
        scopes,
        metrics,
        stopping: AtomicBool::new(false),
    });
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(Arc::clone(&app));
    let listener = tokio::net::TcpListener::bind(http).await?;
    let bound = listener.local_addr()?;
    // For whoever started us with port 0 (tests, supervisors).
    println!("http {bound}");
    tracing::info!(node = %node.id(), %bound, "pg-node serving /healthz and /metrics");
    let stop = Arc::clone(&app);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            stop_signal().await;
            stop.stopping.store(true, Ordering::Release);
        })
        .await?;
    // Peers drop our members at once rather than after the idle timeout.
    tracing::info!(node = %node.id(), "leaving the cluster");
    node.shutdown();
    // Let the close reach the peers before the process ends.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    Ok(())
}

/// SIGTERM (Kubernetes, systemd) or SIGINT (a terminal).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on SIGINT only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// 200 while the node runs, 503 once it is shutting down; the body says
/// who we are, who we see, and each scope's broadcast health (reported,
/// not gated on: a quiet scope is not a broken one).
async fn healthz(State(app): State<Arc<App>>) -> Response {
    let stopping = app.stopping.load(Ordering::Acquire);
    let scopes: Vec<_> = app
        .scopes
        .iter()
        .filter_map(|id| app.node.health(id).ok().map(|h| (id, h)))
        .map(|(id, h)| {
            json!({
                "scope": id,
                "check": h.name,
                "broadcast_recent": h.healthy,
                "since_last_broadcast_ms": h.since_last_broadcast.map(|d| d.as_millis() as u64),
                "loop_lag_us": h.loop_lag.as_micros() as u64,
            })
        })
        .collect();
    let peers: Vec<String> = app.node.peers().iter().map(ToString::to_string).collect();
    let body = json!({
        "node": app.node.id().to_string(),
        "status": if stopping { "stopping" } else { "ok" },
        "peers": peers,
        "scopes": scopes,
    });
    let status = if stopping {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}
