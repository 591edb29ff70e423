//! A node holding 2,000,000 memberships (100k processes x 20 groups) syncs
//! to a fresh peer over real QUIC, and again after it restarts. The sync
//! travels in pieces far under the frame limit.
//!
//! Ignored by default (a release build takes seconds, a debug build much
//! longer): `cargo test --release -p pg-net --test big_sync -- --ignored
//! --nocapture` prints the times and the peak resident memory.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::time::{Duration, Instant};

use common::{TestNode, config, eventually, g, start};
use pg_core::GroupName;
use pg_net::DevCa;
use pg_runtime::Process;

const PROCESSES: u64 = 100_000;
const GROUPS_PER_PROCESS: u64 = 20;
const GROUPS: u64 = 1000;
const LIMIT: Duration = Duration::from_secs(300);

fn peak_rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// Fills `node` with 2M memberships: process i joins groups i..i+20 (mod
/// 1000), in batches of one group at a time.
fn fill(node: &TestNode) -> Vec<Process> {
    let procs: Vec<Process> = (0..PROCESSES).map(|_| node.node.spawn()).collect();
    let names: Vec<GroupName> = (0..GROUPS).map(|i| g(&format!("g{i}"))).collect();
    let mut batches: Vec<Vec<pg_core::Pid>> = vec![Vec::new(); GROUPS as usize];
    for (i, p) in procs.iter().enumerate() {
        for k in 0..GROUPS_PER_PROCESS {
            batches[((i as u64 + k) % GROUPS) as usize].push(p.pid().clone());
        }
    }
    for (group, pids) in names.iter().zip(batches) {
        node.scope.join_pids(group, &pids).unwrap();
    }
    procs
}

/// Memberships of `of`'s processes that `viewer` lists.
fn seen(viewer: &TestNode, of: &pg_core::NodeId) -> u64 {
    (0..GROUPS)
        .map(|i| {
            viewer
                .scope
                .members(&format!("g{i}"))
                .iter_counted()
                .filter(|(p, _)| p.node() == of)
                .map(|(_, c)| u64::from(c))
                .sum::<u64>()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "2M memberships: run in release with --ignored"]
async fn two_million_memberships_sync_to_a_fresh_and_to_a_restarted_peer() {
    let ca = DevCa::generate("test").unwrap();
    let a = start("a", &ca.issue("a").unwrap(), config("test", &[]));
    let t = Instant::now();
    let procs = fill(&a);
    let want = PROCESSES * GROUPS_PER_PROCESS;
    println!("A filled with {want} memberships in {:?}", t.elapsed());

    let t = Instant::now();
    let b = start(
        "b",
        &ca.issue("b").unwrap(),
        config("test", &[a.transport.local_addr()]),
    );
    let a_id = a.node.id().clone();
    eventually("B lists all of A's memberships", LIMIT, || {
        seen(&b, &a_id) == want
    })
    .await;
    println!(
        "fresh peer B converged to {want} memberships in {:?} (peak RSS of the test process {} MB)",
        t.elapsed(),
        peak_rss_mb()
    );
    let stats = b.scope.protocol_stats();
    assert!(stats.syncs_applied >= 1);
    assert_eq!(a.transport.stats().oversized, 0, "no frame over the limit");

    // A restarts as a new run on a new port, seeded at B, and fills again.
    let a_addr_before = a.transport.local_addr();
    drop(procs);
    a.node.shutdown();
    drop(a);
    eventually("B dropped A's part", LIMIT, || seen(&b, &a_id) == 0).await;
    let t = Instant::now();
    let a2 = start(
        "a",
        &ca.issue("a").unwrap(),
        config("test", &[b.transport.local_addr()]),
    );
    assert_ne!(a2.transport.local_addr(), a_addr_before);
    let _procs = fill(&a2);
    let a2_id = a2.node.id().clone();
    eventually("B lists all of A's new run", LIMIT, || {
        seen(&b, &a2_id) == want
    })
    .await;
    println!(
        "restarted A: B converged again to {want} memberships in {:?} (peak RSS {} MB)",
        t.elapsed(),
        peak_rss_mb()
    );
    assert_eq!(a2.transport.stats().oversized, 0);
}
