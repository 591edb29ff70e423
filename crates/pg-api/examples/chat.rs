//! Chat-room fan-out across three nodes, in the spirit of a WebSocket notification service
//! (WebSocket connections spread over a cluster): every connection is a
//! process that joins its room's group with its presence as metadata (user
//! name and role); a message posted anywhere reaches every connection in
//! the room, once, on every node; a prefix monitor on `room:` sees who
//! comes, who changes role (with the role before) and who goes (with the
//! presence they had, and why).
//!
//! `cargo run -p pg-api --example chat`

use std::time::{Duration, Instant};

use pg_api::{DevCa, EventKind, LeaveReason, NetConfig, Node, Pattern, Process, ScopeOptions};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct ChatMessage {
    author: String,
    text: String,
}

/// A connection's presence in a room: its group metadata.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Presence {
    user: String,
    role: String,
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
    // Two connections per node, all in room "lobby", each with its
    // presence (user name, role) as metadata.
    let mut connections: Vec<Process> = Vec::new();
    for node in &nodes {
        for i in 0..2 {
            let user = format!("user-{}-{i}", node.id().name);
            let conn = node.spawn(&user);
            let presence = Presence {
                user,
                role: "member".into(),
            };
            conn.open("app:chat")?
                .join_with_meta_typed("room:lobby", &presence)?;
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
    // Who is in the room, and with what role.
    for (pid, _, meta) in watcher_pg.get_members_with_meta("room:lobby")? {
        let presence: Presence = pg_api::decode_meta(&meta.ok_or("no presence")?)?;
        println!("{pid}: {} ({})", presence.user, presence.role);
    }
    // Every change in every room: a prefix monitor, with its snapshot.
    let (mut sub, rooms) = watcher_pg.monitor_pattern(Pattern::Prefix("room:".into()))?;
    assert_eq!(rooms.iter().map(|(_, m)| m.len()).sum::<usize>(), 6);
    println!("room:lobby has {} members over {} nodes", 6, nodes.len());

    // A connection is promoted: re-joining with new metadata replaces its
    // presence in place (and a leave keeps its join count at one).
    let promoted = connections[1].open("app:chat")?;
    let mut presence: Presence = pg_api::decode_meta(
        &promoted
            .get_local_members_with_meta("room:lobby")?
            .into_iter()
            .find(|(pid, _, _)| pid == connections[1].pid())
            .and_then(|(_, _, meta)| meta)
            .ok_or("no presence")?,
    )?;
    presence.role = "moderator".into();
    promoted.join_with_meta_typed("room:lobby", &presence)?;
    promoted.leave("room:lobby")?;
    let event = tokio::time::timeout(Duration::from_secs(10), sub.recv()).await??;
    assert_eq!(event.kind, EventKind::Joined);
    let before: Presence = pg_api::decode_meta(event.previous_meta(0).ok_or("no previous")?)?;
    let after: Presence = pg_api::decode_meta(event.meta(0).ok_or("no meta")?)?;
    println!("{} is now {} (was {})", after.user, after.role, before.role);
    assert_eq!(after, presence);
    let _count_back = tokio::time::timeout(Duration::from_secs(10), sub.recv()).await??;

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
    assert_eq!(event.reason, Some(LeaveReason::Exit));
    assert!(event.pids().any(|p| *p == left_pid));
    let gone: Presence = pg_api::decode_meta(event.meta(0).ok_or("no presence")?)?;
    println!(
        "{} left {} ({})",
        gone.user,
        event.group,
        event.reason.map_or("", |r| r.as_str())
    );
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
