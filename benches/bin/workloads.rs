//! The single-node workloads of ../shared/BENCHMARKS.md (W1-W7, M1) on
//! pg-runtime, printed as JSON lines in the shared schema (run by
//! `cargo xtask bench`). Shapes follow ../shared/anchors/erlang/README.md.

// A benchmark whose set-up fails must stop loudly.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pg_core::{GroupName, NodeId};
use pg_runtime::{MemoryNetwork, Node, NodeOptions, Process, Scope, ScopeOptions};

mod node_down;
mod registry;
mod scale;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{{\"system\":\"pg-rs\",\"workload\":\"meta\",\"nproc\":{nproc},\"profile\":\"release\",\"version\":\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    // The workloads run in a task on the runtime's workers, as user code
    // does: a task woken by another task of the same worker runs next on
    // it, without waking a thread parked on the other CPU.
    // `pg-workloads W8 M2` runs only the workloads named (by prefix).
    let only: Vec<String> = std::env::args().skip(1).collect();
    // Workloads that need a heap of their own (M1_meta) run only when
    // named, in a process of their own.
    let named = only.clone();
    let run =
        move |name: &str| only.is_empty() || only.iter().any(|o| name.starts_with(o.as_str()));
    let run_named = move |name: &str| named.iter().any(|o| name.starts_with(o.as_str()));
    rt.block_on(async {
        tokio::spawn(async move {
            // First, while the heap holds nothing freed that it could reuse.
            if run("M2") {
                scale::m2();
            }
            if run("W1") {
                w1();
            }
            if run("W2") {
                w2();
                w2c().await;
            }
            if run("W3") {
                w3();
            }
            if run("W4") {
                w4();
            }
            if run("W5") {
                w5();
            }
            if run("W6") {
                w6().await;
            }
            if run("W7") {
                w7().await;
            }
            if run("M1") {
                m1();
            }
            if run_named("M1_meta") {
                m1_meta();
            }
            if run("W8") {
                scale::w8();
            }
            if run("R2") {
                registry::lookup_by_registry_size();
            }
            if run("F1") || run("X1") {
                scale::fill_and_exit().await;
            }
            // Not in the default run (a 1M sync to set up): `pg-workloads X2`.
            if run_named("X2") {
                node_down::x2();
            }
        })
        .await
        .unwrap();
    });
}

pub(crate) fn fresh(mailbox: usize) -> (Node, Scope) {
    let id = NodeId::parse_name("bench", 1).unwrap();
    let node = Node::start_as(
        id.clone(),
        MemoryNetwork::new().transport(&id),
        NodeOptions {
            mailbox_capacity: mailbox,
            ..NodeOptions::default()
        },
    )
    .unwrap();
    let scope = node
        .open_scope(
            "s",
            ScopeOptions {
                action_queue_max_size: 1 << 20,
                ..ScopeOptions::default()
            },
        )
        .unwrap();
    (node, scope)
}

pub(crate) fn g(name: &str) -> GroupName {
    GroupName::new(name).unwrap()
}

pub(crate) fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub(crate) fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn w1() {
    let (node, scope) = fresh(16);
    let p = node.spawn();
    let group = [g("g")];
    let n = 200_000;
    let (mut pairs, mut joins, mut leaves) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let start = Instant::now();
    for _ in 0..n {
        let t0 = Instant::now();
        scope.join(p.pid(), &group).unwrap();
        let t1 = Instant::now();
        scope.leave(p.pid(), &group).unwrap();
        let t2 = Instant::now();
        joins.push(micros(t1 - t0));
        leaves.push(micros(t2 - t1));
        pairs.push(micros(t2 - t0));
    }
    let total = start.elapsed();
    for v in [&mut pairs, &mut joins, &mut leaves] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "{{\"system\":\"pg-rs\",\"workload\":\"W1_join_leave_single\",\"n\":{n},\"ops_per_s\":{:.0},\"ns_per_op\":{:.1},\"p50_us\":{:.3},\"p99_us\":{:.3},\"join_p50_us\":{:.3},\"leave_p50_us\":{:.3}}}",
        n as f64 / total.as_secs_f64(),
        total.as_nanos() as f64 / n as f64,
        pct(&pairs, 0.5),
        pct(&pairs, 0.99),
        pct(&joins, 0.5),
        pct(&leaves, 0.5)
    );
}

fn w2() {
    let (node, scope) = fresh(16);
    let procs: Vec<Process> = (0..100_000).map(|_| node.spawn()).collect();
    let groups: Vec<GroupName> = (0..1000).map(|i| g(&format!("g{i}"))).collect();
    for phase in ["join", "leave"] {
        let start = Instant::now();
        for (i, p) in procs.iter().enumerate() {
            let group = std::slice::from_ref(&groups[i % 1000]);
            if phase == "join" {
                scope.join(p.pid(), group).unwrap();
            } else {
                scope.leave(p.pid(), group).unwrap();
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{{\"system\":\"pg-rs\",\"workload\":\"W2_join_many\",\"phase\":\"{phase}\",\"n\":100000,\"groups\":1000,\"ops_per_s\":{:.0},\"ns_per_op\":{:.1}}}",
            100_000.0 / secs,
            secs * 1e9 / 100_000.0
        );
    }
}

async fn w2c() {
    let (node, scope) = fresh(16);
    let procs: Vec<Arc<Process>> = (0..100_000).map(|_| Arc::new(node.spawn())).collect();
    for phase in ["join", "leave"] {
        let start = Instant::now();
        let tasks: Vec<_> = procs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (scope, p) = (scope.clone(), Arc::clone(p));
                let group = [g(&format!("g{}", i % 1000))];
                tokio::spawn(async move {
                    if phase == "join" {
                        scope.join(p.pid(), &group).unwrap();
                    } else {
                        scope.leave(p.pid(), &group).unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{{\"system\":\"pg-rs\",\"workload\":\"W2c_join_many_concurrent\",\"phase\":\"{phase}\",\"n\":100000,\"groups\":1000,\"ops_per_s\":{:.0},\"ns_per_op\":{:.1}}}",
            100_000.0 / secs,
            secs * 1e9 / 100_000.0
        );
    }
}

fn w3() {
    let (node, scope) = fresh(16);
    let p = node.spawn();
    let group = [g("g")];
    for phase in ["join", "leave"] {
        let n = 10_000;
        let mut lat = Vec::with_capacity(n);
        let start = Instant::now();
        for _ in 0..n {
            let t0 = Instant::now();
            if phase == "join" {
                scope.join(p.pid(), &group).unwrap();
            } else {
                scope.leave(p.pid(), &group).unwrap();
            }
            lat.push(micros(t0.elapsed()));
        }
        let secs = start.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        println!(
            "{{\"system\":\"pg-rs\",\"workload\":\"W3_multi_join\",\"phase\":\"{phase}\",\"n\":{n},\"ops_per_s\":{:.0},\"ns_per_op\":{:.1},\"p50_us\":{:.3},\"p99_us\":{:.3}}}",
            n as f64 / secs,
            secs * 1e9 / n as f64,
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
    }
}

fn w4() {
    let (node, scope) = fresh(16);
    let mut keep = Vec::new();
    for (size, n) in [(1usize, 2_000_000u64), (100, 500_000), (10_000, 5_000)] {
        let name = format!("g{size}");
        let procs: Vec<Process> = (0..size).map(|_| node.spawn()).collect();
        let pids: Vec<_> = procs.iter().map(|p| p.pid().clone()).collect();
        scope.join_pids(&g(&name), &pids).unwrap();
        keep.extend(procs);
        let time = |local: bool| {
            let start = Instant::now();
            for _ in 0..n {
                let m = if local {
                    scope.local_members(&name)
                } else {
                    scope.members(&name)
                };
                std::hint::black_box(m);
            }
            start.elapsed().as_nanos() as f64 / n as f64
        };
        let all = time(false);
        let local = time(true);
        println!(
            "{{\"system\":\"pg-rs\",\"workload\":\"W4_get_members\",\"group_size\":{size},\"n\":{n},\"ops_per_s\":{:.0},\"ns_per_op\":{all:.1},\"get_local_members_ns_per_op\":{local:.1}}}",
            1e9 / all
        );
    }
}

fn w5() {
    let (node, scope) = fresh(16);
    let p = node.spawn();
    let groups: Vec<GroupName> = (0..10_000).map(|i| g(&format!("g{i}"))).collect();
    scope.join(p.pid(), &groups).unwrap();
    let n = 1000;
    let time = |local: bool| {
        let start = Instant::now();
        for _ in 0..n {
            let list = if local {
                scope.which_local_groups()
            } else {
                scope.which_groups()
            };
            std::hint::black_box(list);
        }
        start.elapsed().as_nanos() as f64 / n as f64
    };
    let all = time(false);
    let local = time(true);
    println!(
        "{{\"system\":\"pg-rs\",\"workload\":\"W5_which_groups\",\"groups\":10000,\"n\":{n},\"ops_per_s\":{:.0},\"ns_per_op\":{all:.1},\"which_local_groups_ns_per_op\":{local:.1}}}",
        1e9 / all
    );
}

/// W6: a round is members read + send to each + wait for every ack.
async fn w6() {
    for (members, rounds) in [(10_000usize, 100usize), (100, 10_000)] {
        let (node, scope) = fresh(1 << 16);
        let mut broadcaster = node.spawn();
        let group = g("w");
        let mut echoes = Vec::new();
        for _ in 0..members {
            let mut echo = node.spawn();
            scope
                .join(echo.pid(), std::slice::from_ref(&group))
                .unwrap();
            let back = broadcaster.pid().clone();
            echoes.push(tokio::spawn(async move {
                while let Some(m) = echo.recv().await {
                    echo.send(&back, "ack", m.payload).unwrap();
                }
            }));
        }
        let payload = Bytes::from_static(b"ping");
        let mut rounds_us = Vec::with_capacity(rounds);
        let start = Instant::now();
        for _ in 0..rounds {
            let t0 = Instant::now();
            let n = scope
                .broadcast_local(broadcaster.pid(), "w", "ping", payload.clone())
                .unwrap();
            for _ in 0..n {
                broadcaster.recv().await.unwrap();
            }
            rounds_us.push(micros(t0.elapsed()));
        }
        let secs = start.elapsed().as_secs_f64();
        rounds_us.sort_by(f64::total_cmp);
        let deliveries = members * rounds;
        println!(
            "{{\"system\":\"pg-rs\",\"workload\":\"W6_broadcast_local\",\"members\":{members},\"rounds\":{rounds},\"deliveries\":{deliveries},\"deliveries_per_s\":{:.0},\"ns_per_delivery\":{:.1},\"round_p50_us\":{:.1},\"round_p99_us\":{:.1}}}",
            deliveries as f64 / secs,
            secs * 1e9 / deliveries as f64,
            pct(&rounds_us, 0.5),
            pct(&rounds_us, 0.99)
        );
        node.shutdown();
        for e in echoes {
            e.abort();
        }
    }
}

/// W7: from the join (or leave) call until a separate subscriber has the
/// event.
async fn w7() {
    let (node, scope) = fresh(16);
    let p = node.spawn();
    let group = [g("g")];
    let (mut sub, _) = scope.monitor(&group[0], None).unwrap();
    let n = 20_000;
    let received = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let counter = Arc::clone(&received);
    let watcher = tokio::spawn(async move {
        while let Ok(_event) = sub.recv().await {
            let _ = tx.send(Instant::now());
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let (mut joins, mut leaves) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        for (join, out) in [(true, &mut joins), (false, &mut leaves)] {
            let t0 = Instant::now();
            if join {
                scope.join(p.pid(), &group).unwrap();
            } else {
                scope.leave(p.pid(), &group).unwrap();
            }
            let seen = rx.recv().await.unwrap();
            out.push(micros(seen.saturating_duration_since(t0)));
        }
    }
    watcher.abort();
    for (event, mut lat) in [("join", joins), ("leave", leaves)] {
        lat.sort_by(f64::total_cmp);
        println!(
            "{{\"system\":\"pg-rs\",\"workload\":\"W7_monitor_latency\",\"event\":\"{event}\",\"n\":{n},\"p50_us\":{:.3},\"p99_us\":{:.3},\"max_us\":{:.3}}}",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or(0.0)
        );
    }
}

pub(crate) fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// M1: 100k processes, each in 10 of 10k groups (1M memberships), joined
/// as 10k batch calls of 100 pids; resident memory before and after.
fn m1() {
    let (node, scope) = fresh(1);
    let procs: Vec<Process> = (0..100_000).map(|_| node.spawn()).collect();
    let groups: Vec<GroupName> = (0..10_000).map(|i| g(&format!("{i}"))).collect();
    let mut members: Vec<Vec<pg_core::Pid>> = vec![Vec::new(); 10_000];
    for (i, p) in procs.iter().enumerate() {
        for k in 0..10 {
            members[(i * 10 + k) % 10_000].push(p.pid().clone());
        }
    }
    let before = resident_bytes();
    for (group, batch) in groups.iter().zip(&members) {
        scope.join_pids(group, batch).unwrap();
    }
    drop(members);
    let after = resident_bytes();
    let per = (after.saturating_sub(before)) as f64 / 1e6;
    println!(
        "{{\"system\":\"pg-rs\",\"workload\":\"M1_memory\",\"groups\":10000,\"memberships\":1000000,\"bytes_per_membership\":{per:.1},\"rss_before_bytes\":{before},\"rss_after_bytes\":{after}}}"
    );
    assert_eq!(scope.members("0").len(), 100);
}

/// M1 with metadata: the same 1M memberships, each joined with 32 bytes of
/// metadata of its own (one `join_with_meta` per membership).
fn m1_meta() {
    let (node, scope) = fresh(1);
    let procs: Vec<Process> = (0..100_000).map(|_| node.spawn()).collect();
    let groups: Vec<GroupName> = (0..10_000).map(|i| g(&format!("{i}"))).collect();
    let before = resident_bytes();
    for (i, p) in procs.iter().enumerate() {
        for k in 0..10 {
            let mut meta = [b'm'; 32];
            meta[..8].copy_from_slice(&((i * 10 + k) as u64).to_le_bytes());
            let group = &groups[(i * 10 + k) % 10_000];
            scope
                .join_with_meta(p.pid(), group, pg_core::Meta::from(&meta[..]))
                .unwrap();
        }
    }
    let after = resident_bytes();
    let per = (after.saturating_sub(before)) as f64 / 1e6;
    println!(
        "{{\"system\":\"pg-rs\",\"workload\":\"M1_memory_meta32\",\"groups\":10000,\"memberships\":1000000,\"meta_bytes\":32,\"bytes_per_membership\":{per:.1},\"rss_before_bytes\":{before},\"rss_after_bytes\":{after}}}"
    );
    assert_eq!(scope.members("0").len(), 100);
}
