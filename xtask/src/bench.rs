//! `cargo xtask bench`: the workloads of ../shared/BENCHMARKS.md, in a
//! release build, printed as one JSON object per line on stdout (progress
//! and notes on stderr), in the schema `../shared/tools/bench-compare`
//! reads.
//!
//! The single-node workloads W1-W8, M1, M2 (and F1/X1, the fill and mass
//! exit at 1M memberships) run in the `pg-workloads` binary of the benches
//! crate. The cluster workloads C1-C5 run three `pg-node` processes (and a
//! fourth for C5's cold sync) over QUIC with mutual TLS on 127.0.0.1, driven
//! over their stdin; every figure is timed inside the nodes (or across
//! them on the shared wall clock), never through the control channel.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;
use pg_net::DevCa;

use crate::nodes::{NodeProc, build_binary, free_ports, start_node};

pub(crate) fn run(cluster_only: bool, registry_only: bool) -> anyhow::Result<()> {
    let root = crate::tidy::workspace_root();
    eprintln!("bench: building the workloads (release)...");
    let node = build_binary(&root, "pg-node", "pg-node", true)?;
    if !cluster_only {
        let workloads = build_binary(&root, "pg-benches", "pg-workloads", true)?;
        eprintln!("bench: single-node workloads W1-W8, M1, M2, F1, X1 (about a minute)");
        if !Command::new(&workloads).status()?.success() {
            bail!("pg-workloads failed");
        }
        // M1 with metadata in a fresh process: its resident memory must not
        // reuse what the other workloads freed.
        if !Command::new(&workloads).arg("M1_meta").status()?.success() {
            bail!("pg-workloads M1_meta failed");
        }
    }
    eprintln!("bench: cluster workloads C1-C5 (node processes over QUIC + mTLS)");
    let dir = node
        .parent()
        .map_or_else(|| root.join("target"), Path::to_path_buf)
        .join("bench-cluster");
    cluster(&node, &dir, registry_only)
}

fn json(value: serde_json::Value) {
    println!("{value}");
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Polls `done` every millisecond; the time it took, or an error.
fn until(what: &str, mut done: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if done()? {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    bail!("{what}: timed out")
}

fn count(node: &mut NodeProc) -> anyhow::Result<usize> {
    Ok(node.ok("count")?.parse()?)
}

/// Waits (on the node) for one recorded event time, for up to 10 s.
const AWAIT_ONE: &str = "await_times 1 10000";

/// The first time in an `await_times` answer; an error if none came.
fn first_of(answer: &str, what: &str) -> anyhow::Result<f64> {
    match answer.split_whitespace().next() {
        Some(t) => Ok(t.parse()?),
        None => bail!("{what}: nothing within 10 s"),
    }
}

/// R1-R3: the registry on the quiet cluster (process 0 of each node).
fn registry(a: &mut NodeProc, b: &mut NodeProc) -> anyhow::Result<()> {
    // R1: register + unregister pairs on A, 10k distinct keys.
    let pairs = 100_000;
    let r1 = a.ok(&format!("r1 0 {pairs} 10000"))?;
    let mut r1 = r1.split_whitespace().map(str::parse::<f64>);
    let (ops, p50, p99) = (
        r1.next().transpose()?.unwrap_or(0.0),
        r1.next().transpose()?.unwrap_or(0.0),
        r1.next().transpose()?.unwrap_or(0.0),
    );
    json(serde_json::json!({
        "system": "pg-rs", "workload": "R1_register_unregister", "n": pairs, "keys": 10000,
        "ops_per_s": ops, "p50_us": p50, "p99_us": p99,
    }));
    // R2: lookups of a registered key on A.
    let n = 1_000_000;
    let ns: f64 = a.ok(&format!("r2 0 r2/key {n}"))?.parse()?;
    json(serde_json::json!({
        "system": "pg-rs", "workload": "R2_lookup", "n": n, "ns_per_op": ns,
    }));
    // R3: register on A until a lookup on B returns it (B polls, as
    // Erlang's anchor polls `global:whereis_name`); then the same until
    // B's registry monitor has the event (a subscriber's view of it).
    let samples = 1000;
    let by_lookup = r3_samples(a, b, samples, "r3l", |key| {
        format!("await_lookup {key} 10000")
    })?;
    json(serde_json::json!({
        "system": "pg-rs", "workload": "R3_registry_propagation", "observer": "B", "n": samples,
        "p50_us": pct(&by_lookup, 0.5), "p99_us": pct(&by_lookup, 0.99),
    }));
    b.ok("reg_monitor r3e/")?;
    let by_event = r3_samples(a, b, samples, "r3e", |_| AWAIT_ONE.to_owned())?;
    json(serde_json::json!({
        "system": "pg-rs", "workload": "R3_registry_propagation", "observer": "B_event",
        "n": samples, "p50_us": pct(&by_event, 0.5), "p99_us": pct(&by_event, 0.99),
    }));
    Ok(())
}

/// R3's samples, sorted: B is asked to wait (`wait(key)`, answered with
/// the time it saw the key) before A registers it; A unregisters it after.
fn r3_samples(
    a: &mut NodeProc,
    b: &mut NodeProc,
    samples: usize,
    prefix: &str,
    wait: impl Fn(&str) -> String,
) -> anyhow::Result<Vec<f64>> {
    let mut lat = Vec::with_capacity(samples);
    for s in 0..samples {
        let key = format!("{prefix}/{s}");
        // B waits for the key instead of being polled while it is on its
        // way (see `await_times`).
        b.send(&wait(&key))?;
        let t0: f64 = a.ok(&format!("reg_t 0 {key}"))?.parse()?;
        let seen = first_of(&b.answer()?, "R3 registration seen on B")?;
        lat.push(seen - t0);
        a.ok(&format!("unregister 0 {key}"))?;
    }
    lat.sort_by(f64::total_cmp);
    Ok(lat)
}

fn cluster(binary: &Path, dir: &Path, registry_only: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let ca = DevCa::generate("bench")?;
    std::fs::write(dir.join("ca.pem"), ca.certificate_pem())?;
    let ports = free_ports(5)?;
    let seed = [SocketAddr::from(([127, 0, 0, 1], ports[0]))];
    let mut a = start_node(dir, binary, &ca, "a", ports[0], &[])?;
    let mut b = start_node(dir, binary, &ca, "b", ports[1], &seed)?;
    let mut c = start_node(dir, binary, &ca, "c", ports[2], &seed)?;
    until("full mesh", || {
        Ok([&mut a, &mut b, &mut c]
            .into_iter()
            .all(|n| n.ok("peers").is_ok_and(|p| p == "2")))
    })?;
    for n in [&mut a, &mut b, &mut c] {
        n.ok("spawn 1")?; // process 0: for reads
    }

    if registry_only {
        return registry(&mut a, &mut b);
    }

    // C1: join/leave on A until a monitor on B (and on C) has the event;
    // each monitor acknowledges it to a process on A, for the round trip
    // (the later of the two acks of a join).
    let acker = a.ok("acker")?;
    b.ok(&format!("monitor_ack c1 {acker}"))?;
    c.ok(&format!("monitor_ack c1 {acker}"))?;
    let samples = 1000;
    let mut lat: [Vec<f64>; 4] = Default::default();
    let mut round_trip = Vec::with_capacity(samples);
    for _ in 0..samples {
        for (k, op) in [(0usize, "join_t"), (2, "leave_t")] {
            // The observers wait for their event rather than being polled
            // while it is on its way (see `await_times`); A waits for the
            // two acks once its join has returned.
            b.send(AWAIT_ONE)?;
            c.send(AWAIT_ONE)?;
            let t0: f64 = a.ok(&format!("{op} 0 c1"))?.parse()?;
            let acks = a.ok("await_times 2 10000")?;
            let acks = acks
                .split_whitespace()
                .map(str::parse::<f64>)
                .collect::<Result<Vec<_>, _>>()?;
            if acks.len() < 2 {
                bail!("C1: {} acks back on A within 10 s", acks.len());
            }
            lat[k].push(first_of(&b.answer()?, "C1 event on B")? - t0);
            lat[k + 1].push(first_of(&c.answer()?, "C1 event on C")? - t0);
            if op == "join_t" {
                round_trip.push(acks.iter().copied().fold(t0, f64::max) - t0);
            }
        }
    }
    round_trip.sort_by(f64::total_cmp);
    json(serde_json::json!({
        "system": "pg-rs", "workload": "C1_propagation", "event": "join",
        "observer": "B_and_C_ack_back_to_A", "n": samples,
        "p50_us": pct(&round_trip, 0.5), "p99_us": pct(&round_trip, 0.99),
    }));
    let rows = [("join", "B"), ("join", "C"), ("leave", "B"), ("leave", "C")];
    for (k, (event, observer)) in rows.into_iter().enumerate() {
        let v = &mut lat[k];
        v.sort_by(f64::total_cmp);
        json(serde_json::json!({
            "system": "pg-rs", "workload": "C1_propagation", "event": event, "observer": observer,
            "n": samples, "p50_us": pct(v, 0.5), "p99_us": pct(v, 0.99),
        }));
    }

    registry(&mut a, &mut b)?;

    // C2: 100k processes on A in 1k groups x 100.
    let n = 100_000;
    let first = 1; // after process 0
    a.ok(&format!("spawn {n}"))?;
    let base = (count(&mut b)?, count(&mut c)?);
    let phases = [
        ("C2_bulk_convergence", "join", n),
        ("C2_bulk_leave_batched", "leave_batched", 0),
        ("C2_bulk_join_batched", "join_batched", n),
        ("C2_exit_cleanup", "exit", 0),
    ];
    for (workload, op, want) in phases {
        let start = Instant::now();
        let a_side: f64 = a.ok(&format!("bulk {op} {first} {n} 1000"))?.parse()?;
        until(workload, || {
            Ok(count(&mut b)? == base.0 + want && count(&mut c)? == base.1 + want)
        })?;
        json(serde_json::json!({
            "system": "pg-rs", "workload": workload, "groups": 1000,
            "converged_ms": start.elapsed().as_secs_f64() * 1000.0, "a_side_ms": a_side,
        }));
    }

    // C4: echo members over A/B/C, broadcasts from A acked with send.
    let broadcaster = a.ok("broadcaster")?;
    for (group, per_node, rounds) in [
        ("c4", [3334usize, 3333, 3333], 50usize),
        ("c4s", [33, 33, 33], 2000),
    ] {
        for (node, k) in [&mut a, &mut b, &mut c].into_iter().zip(per_node) {
            node.ok(&format!("echo {k} {group} {broadcaster}"))?;
        }
        let members: usize = per_node.iter().sum();
        until("C4 membership", || {
            Ok(a.ok(&format!("members {group}"))?
                .split_whitespace()
                .count()
                == members)
        })?;
        let ms: f64 = a
            .ok(&format!("rounds {rounds} {group} {members}"))?
            .parse()?;
        json(serde_json::json!({
            "system": "pg-rs", "workload": "C4_remote_broadcast", "members": members, "rounds": rounds,
            "deliveries_per_s": (members * rounds) as f64 / (ms / 1000.0),
        }));
    }

    // C3: C holds 10k members in 100 groups and dies (SIGKILL); then a new
    // run of C does the same and shuts down gracefully.
    for phase in ["sigkill", "graceful"] {
        if phase == "graceful" {
            c = start_node(dir, binary, &ca, "c", ports[3], &seed)?;
            until("c back", || {
                Ok(a.ok("peers")? == "2" && b.ok("peers")? == "2")
            })?;
            c.ok("spawn 1")?;
        }
        // C's own memberships (its echoes) go with it too.
        let share: usize = c.ok("local_count")?.parse()?;
        let base = (count(&mut a)? - share, count(&mut b)? - share);
        c.ok("spawn 10000")?;
        c.ok("bulk join 1 10000 100")?;
        let held = 10_000 + share;
        until("C3 members seen", || {
            Ok(count(&mut a)? == base.0 + held && count(&mut b)? == base.1 + held)
        })?;
        let start = Instant::now();
        if phase == "sigkill" {
            c.child.kill()?;
        } else {
            c.ok("quit")?;
        }
        until("C3 cleanup", || {
            Ok(count(&mut a)? == base.0 && count(&mut b)? == base.1)
        })?;
        json(serde_json::json!({
            "system": "pg-rs", "workload": "C3_node_down", "groups": 100, "phase": phase,
            "converged_ms": start.elapsed().as_secs_f64() * 1000.0,
        }));
        let _ = c.child.wait();
    }

    // C5: A holds 1M memberships (100k processes x 10 of 10k groups, M1's
    // shape); a fresh node D starts, seeded at A: time from its start
    // until it lists all of them, and its resident memory then.
    let first: usize = a.ok("size")?.parse()?;
    a.ok("spawn 100000")?;
    a.ok(&format!("bulk join10_batched {first} 100000 10000"))?;
    let total = count(&mut a)?;
    until("C5 B has A's million", || Ok(count(&mut b)? == total))?;
    let start = Instant::now();
    let mut d = start_node(dir, binary, &ca, "d", ports[4], &seed)?;
    let started_ms = start.elapsed().as_secs_f64() * 1000.0;
    d.ok("spawn 1")?;
    // Where the time goes: the process up, its first link up (TLS and
    // the node handshake), then the sync itself. Erlang's anchor times
    // only the last part (`pg:start` on an already connected node).
    // D counts every membership it lists only once it lists every group:
    // a count walks 10k groups, and polled each millisecond it took a
    // good part of a CPU from the sync it was waiting for.
    let groups: usize = a.ok("group_count")?.parse()?;
    let mut linked_ms = None;
    until("C5 D lists everything", || {
        if linked_ms.is_none() && d.ok("peers")?.parse::<usize>()? > 0 {
            linked_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(d.ok("group_count")?.parse::<usize>()? >= groups && count(&mut d)? == total)
    })?;
    let converged_ms = start.elapsed().as_secs_f64() * 1000.0;
    let linked_ms = linked_ms.unwrap_or(converged_ms);
    let d_memory: u64 = d.ok("rss")?.parse()?;
    json(serde_json::json!({
        "system": "pg-rs", "workload": "C5_cold_sync", "groups": 10000, "memberships": total,
        "converged_ms": converged_ms, "d_memory_total_bytes": d_memory,
        "started_ms": started_ms, "linked_ms": linked_ms,
        "sync_ms": converged_ms - linked_ms,
    }));
    for node in [&mut a, &mut b, &mut d] {
        let _ = node.cmd("quit");
        let _ = node.child.wait();
    }
    Ok(())
}
