//! Three `ws-fanout` processes on 127.0.0.1 (QUIC + mutual TLS between
//! them) and 300 real WebSocket clients across them in 10 rooms:
//! - every message published through any node reaches every connection in
//!   its room exactly once, and no other connection; a user's message
//!   reaches that user only;
//! - a SIGKILLed service's connections leave presence everywhere within
//!   the failure-detection time;
//! - restarted, its clients reconnect and presence converges again.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Service, certificates, free_ports, run, start};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const ROOMS: usize = 10;
const CLIENTS: usize = 300;
const PER_ROOM: usize = CLIENTS / ROOMS;
const MESSAGES_PER_ROOM: usize = 5;
const LIMIT: Duration = Duration::from_secs(20);

async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: e2e\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

async fn json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = http(addr, "GET", path, "").await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) -> Duration {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Users present in `room` as node `addr` sees it, if each has exactly
/// one connection (a leaked membership would show as 2).
async fn present(addr: SocketAddr, room: usize) -> Option<usize> {
    let users = json(addr, &format!("/presence/room/r{room}")).await["users"]
        .as_object()
        .unwrap()
        .clone();
    users.values().all(|n| n == 1).then_some(users.len())
}

async fn all_present(nodes: &[SocketAddr], expected: usize) -> bool {
    for addr in nodes {
        for room in 0..ROOMS {
            if present(*addr, room).await != Some(expected) {
                return false;
            }
        }
    }
    true
}

/// A client connected to `node`: its messages' texts, collected until it
/// has seen the end marker of every publishing node (each once), then for
/// a quiet period more, so that a late duplicate is caught too.
fn client(node: SocketAddr, i: usize, ends: usize) -> tokio::task::JoinHandle<Vec<String>> {
    let url = format!("ws://{node}/ws?user=u{i}&room=r{}", i % ROOMS);
    tokio::spawn(async move {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut texts = Vec::new();
        let mut seen_ends = std::collections::BTreeSet::new();
        loop {
            let wait = if seen_ends.len() < ends {
                LIMIT
            } else {
                Duration::from_millis(300)
            };
            let frame = match tokio::time::timeout(wait, ws.next()).await {
                Ok(frame) => frame.unwrap().unwrap(),
                Err(_) if seen_ends.len() == ends => break,
                Err(_) => panic!("client u{i} waited too long"),
            };
            let Message::Text(text) = frame else { continue };
            let message: serde_json::Value = serde_json::from_str(&text).unwrap();
            if message["type"] != "message" {
                continue;
            }
            let text = message["text"].as_str().unwrap().to_owned();
            if text.starts_with("END") {
                assert!(
                    seen_ends.insert(text.clone()),
                    "client u{i} got {text} twice"
                );
            } else {
                texts.push(text);
            }
        }
        let _ = ws.close(None).await;
        texts
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_services_and_300_clients() {
    let dir = certificates("e2e", &["n0", "n1", "n2"]);
    let ports = free_ports(3);
    let mut services: Vec<Service> = (0..3)
        .map(|n| {
            start(
                &dir,
                "e2e",
                &format!("n{n}"),
                ports[n],
                (n > 0).then_some(ports[0]),
            )
        })
        .collect();
    let mut nodes: Vec<SocketAddr> = services.iter().map(|s| s.http).collect();
    eventually("a full mesh", || {
        let nodes = nodes.clone();
        async move {
            for addr in &nodes {
                if json(*addr, "/healthz").await["peers"]
                    .as_array()
                    .unwrap()
                    .len()
                    != 2
                {
                    return false;
                }
            }
            true
        }
    })
    .await;

    // 300 clients, a third on each node; three end markers (one per
    // publishing node) close each client's collection.
    let clients: Vec<_> = (0..CLIENTS).map(|i| client(nodes[i % 3], i, 3)).collect();
    let joined = eventually("everyone present everywhere", || {
        let nodes = nodes.clone();
        async move { all_present(&nodes, PER_ROOM).await }
    })
    .await;
    eprintln!("300 connections present on every node after {joined:?}");

    // Through every node: room messages, and a message to a few users.
    let mut expected: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for room in 0..ROOMS {
        for m in 0..MESSAGES_PER_ROOM {
            let text = format!("r{room}-m{m}");
            let via = nodes[(room + m) % 3];
            let (status, body) = http(via, "POST", &format!("/publish/room/r{room}"), &text).await;
            assert_eq!(status, 200, "{body}");
            let addressed: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(addressed["addressed"], PER_ROOM);
            for i in (room..CLIENTS).step_by(ROOMS) {
                expected.entry(i).or_default().push(text.clone());
            }
        }
    }
    for i in [0, 7, 151, 299] {
        let text = format!("to-u{i}");
        let (status, _) = http(nodes[i % 2], "POST", &format!("/publish/user/u{i}"), &text).await;
        assert_eq!(status, 200);
        expected.entry(i).or_default().push(text);
    }
    // Each node's publisher sends its end marker after all of its messages.
    for (n, node) in nodes.iter().enumerate() {
        for room in 0..ROOMS {
            http(
                *node,
                "POST",
                &format!("/publish/room/r{room}"),
                &format!("END{n}"),
            )
            .await;
        }
    }
    for (i, client) in clients.into_iter().enumerate() {
        let mut got = client.await.unwrap();
        got.sort();
        let mut want = expected.remove(&i).unwrap();
        want.sort();
        assert_eq!(
            got, want,
            "client u{i}: exactly its room's and its own messages, once"
        );
    }

    // Reconnect everyone (the clients above closed), then kill n2.
    let mut sockets = Vec::new();
    for i in 0..CLIENTS {
        let url = format!("ws://{}/ws?user=u{i}&room=r{}", nodes[i % 3], i % ROOMS);
        sockets.push(tokio_tungstenite::connect_async(url).await.unwrap().0);
    }
    eventually("everyone back", || {
        let nodes = nodes.clone();
        async move { all_present(&nodes, PER_ROOM).await }
    })
    .await;
    services[2].child.kill().unwrap();
    services[2].child.wait().unwrap();
    let survivors = nodes[..2].to_vec();
    let gone = eventually("n2's connections gone from presence", || {
        let survivors = survivors.clone();
        async move { all_present(&survivors, PER_ROOM - PER_ROOM / 3).await }
    })
    .await;
    eprintln!("a SIGKILLed node's 100 connections left presence everywhere after {gone:?}");
    assert!(gone < Duration::from_secs(5), "{gone:?}");

    // Restarted (a new run on the same port), its clients reconnect.
    services[2] = start(&dir, "e2e", "n2", ports[2], Some(ports[0]));
    nodes[2] = services[2].http;
    for i in (2..CLIENTS).step_by(3) {
        let url = format!("ws://{}/ws?user=u{i}&room=r{}", nodes[2], i % ROOMS);
        sockets[i] = tokio_tungstenite::connect_async(url).await.unwrap().0;
    }
    let back = eventually("presence converged after the restart", || {
        let nodes = nodes.clone();
        async move { all_present(&nodes, PER_ROOM).await }
    })
    .await;
    eprintln!("restarted node and its reconnected clients converged after {back:?}");
    for mut ws in sockets {
        let _ = ws.send(Message::Close(None)).await;
    }
    drop(services);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The committed `solo.yaml` runs as is: the page is served, and a
/// browser-like client in a room hears its own message and presence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_solo_configuration_runs_as_committed() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("solo.yaml");
    let service = run(&config, &[("WS_LISTEN", "127.0.0.1:0")]);
    let (status, page) = http(service.http, "GET", "/", "").await;
    assert_eq!(status, 200);
    assert!(page.contains("new WebSocket"), "the chat page");
    let url = format!("ws://{}/ws?user=ann&room=lobby", service.http);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::Text(r#"{"text":"hello"}"#.into()))
        .await
        .unwrap();
    let (mut heard, mut present) = (false, false);
    while !(heard && present) {
        let frame = tokio::time::timeout(LIMIT, ws.next()).await.unwrap();
        let Some(Ok(Message::Text(text))) = frame else {
            continue;
        };
        let m: serde_json::Value = serde_json::from_str(&text).unwrap();
        heard |= m["type"] == "message" && m["from"] == "ann" && m["text"] == "hello";
        present |= m["type"] == "presence" && m["users"]["ann"] == 1;
    }
    let bad = format!("ws://{}/ws?user=a%20b&room=x", service.http);
    assert!(
        tokio_tungstenite::connect_async(bad).await.is_err(),
        "names are checked"
    );
}
