//! Workloads at scale: W8 (a change in a big group), M2 (an idle process),
//! filling 1M memberships through pg-api, and 100k processes exiting at
//! once while another task keeps joining.

use std::time::Instant;

use pg_api::ScopeOptions as ApiScopeOptions;
use pg_runtime::Process;

use crate::{fresh, g, micros, pct, resident_bytes};

/// W8: one process joins and leaves a group that already holds `size`
/// other members (joined beforehand in batches of 1000).
pub(crate) fn w8() {
    for size in [10_000usize, 100_000, 1_000_000] {
        let (node, scope) = fresh(1);
        let group = g("big");
        let members: Vec<Process> = (0..size).map(|_| node.spawn()).collect();
        for batch in members.chunks(1000) {
            let pids: Vec<_> = batch.iter().map(|p| p.pid().clone()).collect();
            scope.join_pids(&group, &pids).unwrap();
        }
        let p = node.spawn();
        let one = std::slice::from_ref(&group);
        let n = 20_000;
        let mut pairs = Vec::with_capacity(n);
        let start = Instant::now();
        for _ in 0..n {
            let t0 = Instant::now();
            scope.join(p.pid(), one).unwrap();
            scope.leave(p.pid(), one).unwrap();
            pairs.push(micros(t0.elapsed()));
        }
        let secs = start.elapsed().as_secs_f64();
        pairs.sort_by(f64::total_cmp);
        println!(
            "{{\"system\":\"pg-rs\",\"workload\":\"W8_big_group\",\"group_size\":{size},\"n\":{n},\"ns_per_op\":{:.1},\"p50_us\":{:.3},\"p99_us\":{:.3}}}",
            secs * 1e9 / n as f64,
            pct(&pairs, 0.5),
            pct(&pairs, 0.99)
        );
        assert_eq!(scope.members("big").len(), size);
        drop(members);
        node.shutdown();
    }
}

/// M2: resident memory of 100k idle processes (no membership), per process.
pub(crate) fn m2() {
    let (node, _scope) = fresh(64);
    let n = 100_000;
    let before = resident_bytes();
    let procs: Vec<Process> = (0..n).map(|_| node.spawn()).collect();
    let after = resident_bytes();
    println!(
        "{{\"system\":\"pg-rs\",\"workload\":\"M2_process_memory\",\"processes\":{n},\"mailbox_capacity\":64,\"bytes_per_process\":{:.1}}}",
        after.saturating_sub(before) as f64 / n as f64
    );
    drop(procs);
    node.shutdown();
}

/// 100k processes each join their own 10 of 10k groups (M1's shape: 1M
/// memberships) through pg-api, one process at a time, as a service
/// re-homing its connections would; then all 100k exit at once while
/// another task keeps doing join+leave pairs, whose latency is reported.
pub(crate) async fn fill_and_exit() {
    let node = pg_api::Node::builder()
        .name("fill")
        .scope("app:pg", ApiScopeOptions::default())
        .start()
        .unwrap();
    let n = 100_000usize;
    let names: Vec<String> = (0..10_000).map(|i| format!("room:{i}")).collect();
    let start = Instant::now();
    let mut procs = Vec::with_capacity(n);
    for i in 0..n {
        let p = node.spawn("conn");
        let pg = p.open("app:pg").unwrap();
        let mine: Vec<&str> = (0..10)
            .map(|k| names[(i * 10 + k) % 10_000].as_str())
            .collect();
        pg.join(mine).unwrap();
        procs.push(p);
    }
    let fill = start.elapsed();
    println!(
        "{{\"system\":\"pg-rs\",\"workload\":\"F1_fill_through_api\",\"processes\":{n},\"memberships\":{},\"converged_ms\":{:.1},\"memberships_per_s\":{:.0}}}",
        n * 10,
        fill.as_secs_f64() * 1e3,
        (n * 10) as f64 / fill.as_secs_f64()
    );

    // A probe keeps joining and leaving its own group during the exits.
    let probe = node.spawn("probe");
    let probe_pg = probe.open("app:pg").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_probe = std::sync::Arc::clone(&stop);
    let prober = tokio::spawn(async move {
        let mut lat = Vec::new();
        while !stop_probe.load(std::sync::atomic::Ordering::Relaxed) {
            let t0 = Instant::now();
            probe_pg.join("probe").unwrap();
            probe_pg.leave("probe").unwrap();
            lat.push(micros(t0.elapsed()));
            tokio::task::yield_now().await;
        }
        (lat, probe_pg)
    });
    tokio::task::yield_now().await;
    let watcher = node.spawn("observer");
    let observer = watcher.open("app:pg").unwrap();
    let cleanup_before = node.scope_counters("app:pg").unwrap().exit_cleanup;
    let start = Instant::now();
    let dropper = tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        drop(procs);
        t0.elapsed()
    });
    let drop_time = dropper.await.unwrap();
    // Awaited, not polled: a reader polling `which_groups` rebuilt its
    // 10k-name list at nearly every poll (the probe's group keeps
    // emptying and filling, which changes the list) and took about a
    // quarter of this two-core machine from the cleanup it was timing.
    node.flush_exits().await;
    let cleaned = start.elapsed();
    let left = observer.which_groups().unwrap();
    assert!(
        left.iter().all(|g| g.as_str() == "probe"),
        "groups left after the exits were flushed: {}",
        left.len()
    );
    // The writer's own time: what the cleanup cost everybody else.
    let writer = node.scope_counters("app:pg").unwrap().exit_cleanup - cleanup_before;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut lat, _probe_pg) = prober.await.unwrap();
    lat.sort_by(f64::total_cmp);
    println!(
        "{{\"system\":\"pg-rs\",\"workload\":\"X1_mass_exit\",\"processes\":{n},\"memberships\":{},\"converged_ms\":{:.1},\"writer_ms\":{:.1},\"drop_ms\":{:.1},\"probe_pairs\":{},\"probe_p50_us\":{:.3},\"probe_p99_us\":{:.3},\"probe_max_us\":{:.3}}}",
        n * 10,
        cleaned.as_secs_f64() * 1e3,
        writer.as_secs_f64() * 1e3,
        drop_time.as_secs_f64() * 1e3,
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    drop((probe, watcher));
    node.shutdown();
}
