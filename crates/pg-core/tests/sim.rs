//! Deterministic multi-node simulation: the protocol under faults.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::time::Duration;

use pg_core::GroupName;
use pg_core::sim::scenario::{self, ScenarioConfig};
use pg_core::sim::{Cluster, SimConfig, SimNetConfig};

fn g(name: &str) -> GroupName {
    GroupName::new(name).unwrap()
}

fn cluster(nodes: usize, seed: u64) -> Cluster {
    let mut c = Cluster::new(SimConfig {
        nodes,
        seed,
        ..SimConfig::default()
    });
    c.drive_for(Duration::from_secs(1));
    c
}

/// Seeds to sweep: `PG_SIM_SEEDS` overrides the count, `PG_SIM_SEED` runs one.
fn seeds(default: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("PG_SIM_SEED") {
        return vec![seed.parse().expect("PG_SIM_SEED is a number")];
    }
    let n = std::env::var("PG_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (0..n).collect()
}

#[test]
fn join_propagates_and_leave_follows() {
    let mut c = cluster(3, 1);
    let pid = c.spawn(0);
    c.join(0, &pid, &[g("a"), g("a"), g("b")]).unwrap();
    c.drive_for(Duration::from_millis(50));
    for i in 0..3 {
        let s = c.scope(i).unwrap();
        assert_eq!(s.members("a").to_vec(), vec![pid.clone(); 2], "node {i}");
        assert_eq!(s.join_count(&pid, "a"), 2);
        assert_eq!(s.local_members("a").len(), 2 * usize::from(i == 0));
    }
    c.leave(0, &pid, &[g("a")]).unwrap();
    c.exit(0, &pid).unwrap();
    c.drive_for(Duration::from_millis(50));
    for i in 0..3 {
        assert!(c.scope(i).unwrap().which_groups().is_empty(), "node {i}");
    }
    c.check_converged().unwrap();
}

#[test]
fn crashed_node_members_vanish_and_restart_resyncs() {
    let mut c = cluster(3, 2);
    let p0 = c.spawn(0);
    let p2 = c.spawn(2);
    c.join(0, &p0, &[g("a")]).unwrap();
    c.join(2, &p2, &[g("a")]).unwrap();
    c.drive_for(Duration::from_millis(50));
    assert_eq!(c.scope(1).unwrap().members("a").len(), 2);
    c.crash(2);
    c.drive_for(Duration::from_secs(1));
    assert_eq!(c.scope(1).unwrap().members("a").to_vec(), vec![p0.clone()]);
    c.check_converged().unwrap();
    c.restart(2);
    c.drive_for(Duration::from_secs(1));
    let p2b = c.spawn(2);
    c.join(2, &p2b, &[g("a")]).unwrap();
    c.drive_for(Duration::from_millis(50));
    let mut members = c.scope(0).unwrap().members("a").to_vec();
    members.sort();
    let mut want = vec![p0, p2b];
    want.sort();
    assert_eq!(members, want);
    assert_eq!(c.scope(2).unwrap().members("a").len(), 2);
    c.check_converged().unwrap();
}

#[test]
fn partition_drops_and_heal_restores() {
    let mut c = cluster(4, 3);
    let pids: Vec<_> = (0..4).map(|i| c.spawn(i)).collect();
    for (i, pid) in pids.iter().enumerate() {
        c.join(i, pid, &[g("all")]).unwrap();
    }
    c.drive_for(Duration::from_millis(50));
    c.partition(&[vec![0, 1]]);
    c.drive_for(Duration::from_secs(1));
    assert_eq!(c.scope(0).unwrap().members("all").len(), 2);
    assert_eq!(c.scope(3).unwrap().members("all").len(), 2);
    // Changes on one side during the partition.
    c.exit(3, &pids[3]).unwrap();
    c.heal();
    c.drive_for(Duration::from_secs(1));
    assert_eq!(c.scope(0).unwrap().members("all").len(), 3);
    c.check_converged().unwrap();
}

#[test]
fn lost_delta_is_repaired() {
    let mut c = cluster(2, 4);
    c.set_net(SimNetConfig {
        loss: 1.0,
        ..SimNetConfig::reliable()
    });
    let pid = c.spawn(0);
    c.join(0, &pid, &[g("a")]).unwrap();
    c.drive_for(Duration::from_millis(50));
    assert!(c.scope(1).unwrap().members("a").is_empty());
    c.set_net(SimNetConfig::reliable());
    // Anti-entropy (1 s in the simulator's defaults) repairs it.
    let took = c.drive_until(Duration::from_secs(5), Duration::from_millis(10), |c| {
        c.scope(1).unwrap().members("a").len() == 1
    });
    assert!(took.is_some());
    c.check_converged().unwrap();
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let config = ScenarioConfig::new(5, seed);
        let report = scenario::run(&config).unwrap();
        (
            report.net,
            report.commands,
            report.converged_after,
            report.memberships,
        )
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12));
}

#[test]
fn scenario_sweep() {
    let mut failures = Vec::new();
    let mut seen = (0, 0, 0, 0, 0, 0, 0);
    for seed in seeds(40) {
        let nodes = 2 + (seed % 6) as usize;
        let config = ScenarioConfig::new(nodes, seed);
        match scenario::run(&config) {
            Ok(r) => {
                seen.0 += r.net.by_kind.discovers;
                seen.1 += r.net.frames_lost;
                seen.2 += r.net.frames_duplicated;
                seen.3 += r.faults.crashes;
                seen.4 += r.faults.partitions;
                seen.5 += r.faults.restarts;
                seen.6 += r.part_removal_steps;
            }
            Err(f) => {
                eprintln!("{f}");
                failures.push(f.seed);
            }
        }
    }
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
    if std::env::var("PG_SIM_SEED").is_err() {
        // The sweep exercises what it claims to: discovery, loss,
        // duplication, crashes, partitions and restarts, and parts of
        // downed nodes removed over several steps.
        let (discovers, lost, duplicated, crashes, partitions, restarts, removal_steps) = seen;
        assert!(discovers > 0 && lost > 0 && duplicated > 0, "{seen:?}");
        assert!(crashes > 0 && partitions > 0 && restarts > 0, "{seen:?}");
        assert!(removal_steps > 0, "{seen:?}");
    }
}

#[test]
fn late_scope_start_discovers_the_cluster() {
    let mut c = cluster(6, 9);
    let pids: Vec<_> = (0..5).map(|i| c.spawn(i)).collect();
    for (i, pid) in pids.iter().enumerate() {
        c.join(i, pid, &[g("all")]).unwrap();
    }
    c.drive_for(Duration::from_millis(50));
    let discovers = c.net_stats().by_kind.discovers;
    c.restart_with_late_scope(5, Duration::from_secs(1));
    c.drive_for(Duration::from_secs(2));
    // Its scope contacted at most `discovery_fanout` (3) of its 5 peers...
    let sent = c.net_stats().by_kind.discovers - discovers;
    assert!((1..=3).contains(&sent), "{sent} discovers");
    // ...and still learnt every part at once, through their digests.
    assert_eq!(c.scope(5).unwrap().members("all").len(), 5);
    c.check_converged().unwrap();
}

/// The seeds of issue 19, far past the CI sweep, that sent a sync after
/// convergence. Each cause has its own minimal test in `tests/scope.rs`;
/// these replay the whole runs.
#[test]
fn issue_19_seeds_stay_quiet_after_convergence() {
    // A digest crossing a delta or a sync made its receiver push its part
    // (200535, 201624, 204779, 206594); a reordered, older sync was
    // answered (203950).
    let protocol = [200_535, 201_624, 203_950, 204_779, 206_594];
    // A request that was needed when it left, answered after the asker
    // caught up through a reordered or duplicated frame: not a violation
    // (200865, 202855, 202980, 205743; see `NetStats::requested_syncs`).
    // 7317 (from the 10k sweep): the request is a node-up `Sync` with
    // `known: None`, delayed past a later sync of the same version.
    let in_flight = [200_865, 202_855, 202_980, 205_743, 7_317];
    for seed in protocol.into_iter().chain(in_flight) {
        if let Err(f) = scenario::run(&ScenarioConfig::new(5, seed)) {
            panic!("{f}");
        }
    }
}
