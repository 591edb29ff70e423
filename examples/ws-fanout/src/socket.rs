//! One WebSocket connection: a pg-rs process for as long as the socket
//! lives. Dropping the process when the socket ends takes it out of every
//! group on every node, so presence needs no bookkeeping of its own.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use pg_api::{Instance, RecvError};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::routes::{message, presence};

#[derive(Deserialize)]
struct Incoming {
    text: String,
}

pub(crate) async fn run(mut ws: WebSocket, state: Arc<AppState>, user: String, room: String) {
    let mut process = state.node.spawn("ws");
    let pg = match process.open(&state.scope) {
        Ok(pg) => pg,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the scope for a connection");
            return;
        }
    };
    let groups = [
        format!("room:{room}"),
        format!("user:{user}"),
        format!("presence:{room}:{user}"),
    ];
    if let Err(e) = pg.join(&groups[..]) {
        tracing::warn!(error = %e, "a connection could not join its groups");
        let _ = ws.send(Message::Close(None)).await;
        return;
    }
    let prefix = format!("presence:{room}:");
    let Ok((mut watch, _)) = pg.monitor_prefix(&prefix) else {
        return;
    };
    if send_presence(&mut ws, &state, &room).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            envelope = process.recv() => match envelope {
                Some(envelope) => {
                    let text = String::from_utf8_lossy(&envelope.payload).into_owned();
                    if ws.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            event = watch.recv() => match event {
                Ok(_) => {
                    if send_presence(&mut ws, &state, &room).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Lagged) => match pg.monitor_prefix(&prefix) {
                    Ok((fresh, _)) => watch = fresh,
                    Err(_) => break,
                },
                Err(RecvError::Closed) => break,
            },
            frame = ws.recv() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if !say(&pg, &room, &user, &text) {
                        let _ = ws.send(Message::Text(r#"{"type":"error","error":"expected {\"text\": ...}"}"#.into())).await;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    // The process ends here: its memberships go, on every node.
}

/// Sends what the browser said to the whole room; false if it was not
/// `{"text": ...}`.
fn say(pg: &Instance, room: &str, user: &str, text: &str) -> bool {
    let Ok(incoming) = serde_json::from_str::<Incoming>(text) else {
        return false;
    };
    let payload = message(Some(room), None, user, &incoming.text);
    if let Err(e) = pg.broadcast(&format!("room:{room}"), "msg", payload) {
        tracing::warn!(error = %e, "a message could not be sent");
    }
    true
}

async fn send_presence(
    ws: &mut WebSocket,
    state: &AppState,
    room: &str,
) -> Result<(), axum::Error> {
    let users = presence(state, room);
    let text = json!({ "type": "presence", "room": room, "users": users }).to_string();
    ws.send(Message::Text(text.into())).await
}
