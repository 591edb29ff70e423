//! Chat-room fan-out across three nodes, in the spirit of a WebSocket notification service
//! (WebSocket connections spread over a cluster): every connection is a
//! process that joins its room's group; a message posted anywhere reaches
//! every connection in the room, once, on every node; a connection that
//! closes leaves the room everywhere, and a monitor sees it go.
//!
//! `cargo run -p pg-api --example chat`

use std::time::{Duration, Instant};

use pg_api::{DevCa, EventKind, NetConfig, Node, Process, ScopeOptions};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct ChatMessage {
    author: String,
    text: String,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run().await
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let ca = DevCa::generate("chat")?;
    let mut nodes: Vec<Node> = Vec::new();
    for name in ["ws-1", "ws-2", "ws-3"] {
        let mut net = NetConfig::new("chat", "127.0.0.1:0".parse()?);
        net.seeds = nodes.iter().filter_map(Node::local_addr).take(1).collect();
        nodes.push(
            Node::builder()
                .name(name)
                .network(net)
                .tls(ca.issue(name)?)
                .scope("app:chat", ScopeOptions::default())
                .start()?,
        );
    }
    // Two connections per node, all in room "lobby".
    let mut connections: Vec<Process> = Vec::new();
    for node in &nodes {
        for i in 0..2 {
            let conn = node.spawn(&format!("user-{}-{i}", node.id().name));
            conn.open("app:chat")?.join("room:lobby")?;
            connections.push(conn);
        }
    }
    let watcher = nodes[2].spawn("ops");
    let watcher_pg = watcher.open("app:chat")?;
    // Every node sees all six (views of other nodes are eventually
    // consistent: a broadcast reaches the members its node knows of).
    let readers = connections
        .iter()
        .map(|c| c.open("app:chat"))
        .collect::<Result<Vec<_>, _>>()?;
    wait_until(|| {
        readers.iter().all(|pg| {
            pg.get_members("room:lobby")
                .map(|m| m.len() == 6)
                .unwrap_or(false)
        })
    })
    .await?;
    drop(readers);
    println!("room:lobby has {} members over {} nodes", 6, nodes.len());
    let (mut sub, members) = watcher_pg.monitor("room:lobby")?;
    assert_eq!(members.len(), 6);

    // A post from a connection on ws-1 reaches all six, once each.
    let poster = connections[0].open("app:chat")?;
    let message = ChatMessage {
        author: "user-ws-1-0".into(),
        text: "hi all".into(),
    };
    let reached = poster.broadcast_typed("room:lobby", "chat.message", &message)?;
    println!("posted to {reached} connections");
    for conn in &mut connections {
        let envelope = tokio::time::timeout(Duration::from_secs(10), conn.recv())
            .await?
            .ok_or("mailbox closed")?;
        let got: ChatMessage = envelope.decode()?;
        assert_eq!(got, message);
        println!("{} <- {}: {}", conn.principal(), got.author, got.text);
    }

    // A connection on ws-2 closes: it leaves the room everywhere.
    let leaving = connections.remove(2);
    let left_pid = leaving.pid().clone();
    drop(leaving);
    let event = tokio::time::timeout(Duration::from_secs(10), sub.recv()).await??;
    assert_eq!(event.kind, EventKind::Left);
    assert!(event.pids().any(|p| *p == left_pid));
    println!("{left_pid} left room:lobby ({})", event.kind);
    wait_until(|| {
        poster
            .get_members("room:lobby")
            .map(|m| m.len() == 5)
            .unwrap_or(false)
    })
    .await?;

    for node in &nodes {
        node.shutdown();
    }
    Ok(())
}

async fn wait_until(mut done: impl FnMut() -> bool) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        if Instant::now() > deadline {
            return Err("timed out".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[test]
fn chat_runs_to_completion() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run()).unwrap();
}
