//! `pg-node`: a node process for `cargo xtask cluster-sim`.
//!
//! `pg-node <config.yaml>` starts a node from a configuration file (see
//! docs/configuration.md) and takes one command per line on stdin,
//! answering one line on stdout:
//!
//! | command | answer |
//! |---|---|
//! | `spawn <k>` | `ok <pid> ...` (k new processes, in order) |
//! | `join <i> <group>` / `leave <i> <group>` | `ok` or `err <KIND> <message>` |
//! | `exit <i>` | `ok` (process i ends) |
//! | `broadcast <i> <group>` | `ok <members addressed>` |
//! | `members <group>` | `ok <pid> ...` (every node, sorted) |
//! | `groups` | `ok <group> ...` |
//! | `received` | `ok <messages received by this node's processes>` |
//! | `stats` | `ok <messages sent> <bytes sent>` |
//! | `peers` | `ok <connected peers>` |
//! | `block <node>` / `unblock <node>` | `ok` (fault injection) |
//! | `quit` | `ok`, then a graceful shutdown |

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pg_api::{Config, Instance, Node, Process};

struct Member {
    /// Held to keep the process alive: dropping it ends the process.
    _process: Process,
    instance: Instance,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("pg-node: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: pg-node <config.yaml>")?;
    let config = Config::from_file(path.as_ref())?;
    let scope = config
        .scopes
        .first()
        .map(|s| s.id.clone())
        .ok_or("the configuration has no pg.scope entry")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let node = runtime.block_on(async { Node::from_config(&config) })?;
    let received = Arc::new(AtomicU64::new(0));
    let mut members: Vec<Option<Member>> = Vec::new();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let _guard = runtime.enter();
        let answer = match words.as_slice() {
            ["spawn", k] => {
                let k: usize = k.parse()?;
                let mut pids = Vec::with_capacity(k);
                for _ in 0..k {
                    let mut process = node.spawn("sim");
                    let instance = process.open(&scope)?;
                    pids.push(process.pid().to_string());
                    // Count what reaches the process, without keeping it.
                    let mut inbox = process.listen("sim");
                    let counter = Arc::clone(&received);
                    runtime.spawn(async move {
                        while inbox.recv().await.is_some() {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    while process.try_recv().is_some() {}
                    members.push(Some(Member {
                        _process: process,
                        instance,
                    }));
                }
                format!("ok {}", pids.join(" "))
            }
            ["join", i, group] => result(member(&members, i)?.instance.join(*group)),
            ["leave", i, group] => result(member(&members, i)?.instance.leave(*group)),
            ["exit", i] => {
                let i: usize = i.parse()?;
                members.get_mut(i).and_then(Option::take);
                "ok".to_owned()
            }
            ["broadcast", i, group] => {
                match member(&members, i)?.instance.broadcast(group, "sim", "x") {
                    Ok(n) => format!("ok {n}"),
                    Err(e) => format!("err {} {}", e.kind().as_str(), e.message()),
                }
            }
            ["members", group] => {
                let any = members.iter().flatten().next().ok_or("no live process")?;
                let mut pids: Vec<String> = any
                    .instance
                    .get_members(group)?
                    .iter()
                    .map(|p| p.to_string())
                    .collect();
                pids.sort();
                format!("ok {}", pids.join(" "))
            }
            ["groups"] => {
                let any = members.iter().flatten().next().ok_or("no live process")?;
                let groups: Vec<String> = any
                    .instance
                    .which_groups()?
                    .iter()
                    .map(|g| g.to_string())
                    .collect();
                format!("ok {}", groups.join(" "))
            }
            ["received"] => format!("ok {}", received.load(Ordering::Relaxed)),
            ["stats"] => {
                let stats = node.net_stats().unwrap_or_default();
                format!("ok {} {}", stats.messages_sent, stats.bytes_sent)
            }
            ["peers"] => format!("ok {}", node.peers().len()),
            ["block", name] => {
                node.block(&pg_api::NodeId::parse_name(name, 0)?.name);
                "ok".to_owned()
            }
            ["unblock", name] => {
                node.unblock(&pg_api::NodeId::parse_name(name, 0)?.name);
                "ok".to_owned()
            }
            ["quit"] => {
                writeln!(out, "ok")?;
                out.flush()?;
                node.shutdown();
                // Let the close reach the peers.
                runtime.block_on(async {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await
                });
                return Ok(());
            }
            _ => format!("err INVALID unknown command {line:?}"),
        };
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(())
}

fn member<'a>(
    members: &'a [Option<Member>],
    i: &str,
) -> Result<&'a Member, Box<dyn std::error::Error>> {
    let i: usize = i.parse()?;
    members
        .get(i)
        .and_then(Option::as_ref)
        .ok_or_else(|| format!("no live process {i}").into())
}

fn result(r: Result<(), pg_api::PgError>) -> String {
    match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("err {} {}", e.kind().as_str(), e.message()),
    }
}
