//! One WebSocket connection: a pg-rs process for as long as the socket
//! lives. Dropping the process when the socket ends takes it out of every
//! group on every node, so presence needs no bookkeeping of its own.

use std::sync::Arc;
use std::time::Duration;

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

/// A client that takes longer than this to accept a message is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The server pings this often...
const PING_EVERY: Duration = Duration::from_secs(25);
/// ...and drops a client it has not heard from (a pong is enough) for this
/// long: a half-open connection must not stay in presence.
const SILENCE_LIMIT: Duration = Duration::from_secs(60);

pub(crate) async fn run(mut ws: WebSocket, state: Arc<AppState>, user: String, room: String) {
    let mut process = state.node.spawn("ws");
    let pg = match process.open(&state.scope) {
        Ok(pg) => pg,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the scope for a connection");
            let _ = ws.send(Message::Close(None)).await;
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
        let _ = ws.send(Message::Close(None)).await;
        return;
    };
    if send_presence(&mut ws, &state, &room).await.is_err() {
        return;
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            envelope = process.recv() => match envelope {
                Some(envelope) => {
                    let text = String::from_utf8_lossy(&envelope.payload).into_owned();
                    if send(&mut ws, Message::Text(text.into())).await.is_err() {
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
                // Fell behind: a fresh subscription, and the presence it
                // starts from.
                Err(RecvError::Lagged) => match pg.monitor_prefix(&prefix) {
                    Ok((fresh, _)) => {
                        watch = fresh;
                        if send_presence(&mut ws, &state, &room).await.is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                },
                Err(RecvError::Closed) => break,
            },
            frame = ws.recv() => {
                heard = tokio::time::Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        if !say(&pg, &room, &user, &text) {
                            let error = r#"{"type":"error","error":"expected {\"text\": ...}"}"#;
                            if send(&mut ws, Message::Text(error.into())).await.is_err() {
                                break;
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() > SILENCE_LIMIT
                    || send(&mut ws, Message::Ping(Default::default())).await.is_err()
                {
                    break;
                }
            }
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

/// Sends one frame, giving up on a client that does not take it in time.
async fn send(ws: &mut WebSocket, message: Message) -> Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, ws.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// The room's presence (re-read whole on every change: simple, and cheap
/// for rooms of tens or hundreds; a large room would send the events
/// themselves instead).
async fn send_presence(ws: &mut WebSocket, state: &AppState, room: &str) -> Result<(), ()> {
    let users = presence(state, room);
    let text = json!({ "type": "presence", "room": room, "users": users }).to_string();
    send(ws, Message::Text(text.into())).await
}
