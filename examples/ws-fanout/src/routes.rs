//! The HTTP side: publish, presence, the page, health and metrics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::socket;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/ws", get(websocket))
        .route("/publish/room/{room}", post(publish_room))
        .route("/publish/user/{user}", post(publish_user))
        .route("/presence/room/{room}", get(presence_room))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn page() -> Html<&'static str> {
    Html(include_str!("../static/index.html"))
}

#[derive(Deserialize)]
struct Who {
    user: String,
    room: String,
}

/// Names become parts of group names: keep them plain.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

async fn websocket(
    State(state): State<Arc<AppState>>,
    Query(who): Query<Who>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !valid_name(&who.user) || !valid_name(&who.room) {
        return (
            StatusCode::BAD_REQUEST,
            "user and room: 1-64 of [A-Za-z0-9._-]",
        )
            .into_response();
    }
    upgrade.on_upgrade(move |ws| socket::run(ws, state, who.user, who.room))
}

/// The message every connection receives, as JSON text.
pub(crate) fn message(room: Option<&str>, user: Option<&str>, from: &str, text: &str) -> String {
    json!({ "type": "message", "room": room, "user": user, "from": from, "text": text }).to_string()
}

async fn publish_room(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: String,
) -> Response {
    let payload = message(Some(&room), None, "http", &body);
    publish(&state, &format!("room:{room}"), payload, &room)
}

async fn publish_user(
    State(state): State<Arc<AppState>>,
    Path(user): Path<String>,
    body: String,
) -> Response {
    let payload = message(None, Some(&user), "http", &body);
    publish(&state, &format!("user:{user}"), payload, &user)
}

fn publish(state: &AppState, group: &str, payload: String, name: &str) -> Response {
    if !valid_name(name) {
        return (StatusCode::BAD_REQUEST, "bad name").into_response();
    }
    match state.publisher.1.broadcast(group, "msg", payload) {
        Ok(addressed) => axum::Json(json!({ "addressed": addressed })).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// Who is in `room`, cluster-wide: user -> connections.
pub(crate) fn presence(state: &AppState, room: &str) -> BTreeMap<String, usize> {
    let prefix = format!("presence:{room}:");
    state
        .publisher
        .1
        .get_members_prefix(&prefix)
        .map(|groups| {
            groups
                .into_iter()
                .map(|(group, members)| {
                    let user = group.as_str()[prefix.len()..].to_owned();
                    (user, members.len())
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn presence_room(State(state): State<Arc<AppState>>, Path(room): Path<String>) -> Response {
    if !valid_name(&room) {
        return (StatusCode::BAD_REQUEST, "bad room").into_response();
    }
    axum::Json(json!({ "room": room, "users": presence(&state, &room) })).into_response()
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let stopping = state.stopping.load(Ordering::Acquire);
    let health = state.node.health(&state.scope).ok();
    let peers: Vec<String> = state.node.peers().iter().map(ToString::to_string).collect();
    let body = json!({
        "node": state.node.id().to_string(),
        "status": if stopping { "stopping" } else { "ok" },
        "peers": peers,
        "broadcast_recent": health.map(|h| h.healthy),
    });
    let status = if stopping {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
