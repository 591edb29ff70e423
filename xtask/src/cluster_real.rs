//! `cargo xtask cluster-sim` (real mode): a cluster of `pg-node` processes
//! over QUIC with mutual TLS on 127.0.0.1, certificates generated on the
//! fly, driven through a scenario: churn with multi-joins, broadcasts
//! counted at the receivers, a partition (fault injection) and its heal, a
//! SIGKILL, a graceful shutdown, a restart, then a SIGKILL and restart of
//! the seed (the smallest name, seeded at nobody) and a new node seeded at
//! it, and a cut of 12 s between two nodes (longer than any give-up window
//! the dialer ever had). After every phase, every live node has every other as a peer, and
//! its view equals the union of the live processes' memberships (so no
//! member of a dead node remains), every live node lists the same holder
//! for every registry key (keys are registered and unregistered during the
//! churn, colliding across partitions), and no key is held by a process
//! that ended or a node that died, and every broadcast must reach exactly
//! its members. A report (JSON) and a plot (SVG, members seen per
//! node over time) are written to the output directory.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use pg_net::DevCa;

use crate::model::{Expected, check};
use crate::nodes::{NodeProc, free_ports, start_node};

const GROUPS: usize = 6;
/// Registry keys the churn registers (few, so partitions make conflicts).
const KEYS: usize = 4;

/// Options of the real mode.
pub(crate) struct RealArgs {
    pub(crate) nodes: usize,
    pub(crate) seed: u64,
    pub(crate) out: PathBuf,
    pub(crate) binary: PathBuf,
}

/// One phase's outcome.
struct Phase {
    name: &'static str,
    converged_ms: Option<u128>,
    detail: String,
}

struct Run {
    args: RealArgs,
    dir: PathBuf,
    nodes: Vec<NodeProc>,
    expected: Expected,
    rng: fastrand::Rng,
    started: Instant,
    /// (ms since start, node name, members seen over all groups).
    samples: Vec<(u128, String, usize)>,
    phases: Vec<Phase>,
    broadcasts: (u64, u64),
}

pub(crate) fn run(args: RealArgs) -> anyhow::Result<()> {
    if args.nodes < 3 {
        bail!("the real mode needs at least 3 nodes (--nodes)");
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let dir = args.out.join(format!("run-{stamp}"));
    std::fs::create_dir_all(&dir)?;
    let ca = DevCa::generate("sim")?;
    std::fs::write(dir.join("ca.pem"), ca.certificate_pem())?;
    let mut run = Run {
        rng: fastrand::Rng::with_seed(args.seed),
        args,
        dir,
        nodes: Vec::new(),
        expected: Expected::default(),
        started: Instant::now(),
        samples: Vec::new(),
        phases: Vec::new(),
        broadcasts: (0, 0),
    };
    let bar = indicatif::ProgressBar::new(9);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let outcome = run.scenario(&ca, &bar);
    bar.finish_and_clear();
    let passed = outcome.is_ok() && run.phases.iter().all(|p| p.converged_ms.is_some());
    let reported = run.report(passed, outcome.as_ref().err());
    for node in &mut run.nodes {
        if node.alive {
            let _ = node.cmd("quit");
        }
        let _ = node.child.kill();
        let _ = node.child.wait();
    }
    reported?;
    match outcome {
        Ok(()) if passed => Ok(()),
        Ok(()) => bail!("a phase did not converge (see the report)"),
        Err(e) => Err(e),
    }
}

impl Run {
    fn scenario(&mut self, ca: &DevCa, bar: &indicatif::ProgressBar) -> anyhow::Result<()> {
        let n = self.args.nodes;
        // 1. Start: a full mesh from one seed.
        bar.set_message("starting nodes");
        let ports = free_ports(n)?;
        for (i, port) in ports.iter().enumerate() {
            let seeds = if i == 0 {
                vec![]
            } else {
                vec![SocketAddr::from(([127, 0, 0, 1], ports[0]))]
            };
            let node = self.start_node(ca, &format!("n{i}"), *port, &seeds)?;
            self.nodes.push(node);
        }
        let t = Instant::now();
        self.wait("mesh", Duration::from_secs(20), |run| run.full_mesh())?;
        self.phase(
            "start",
            Some(t.elapsed().as_millis()),
            format!("{n} nodes, full mesh"),
        );
        bar.inc(1);

        // 2. Churn: joins (with multi-joins), leaves, exits.
        bar.set_message("churn");
        for i in 0..n {
            self.spawn(i, 10)?;
        }
        for _ in 0..300 {
            self.random_op()?;
        }
        self.converge("churn", Duration::from_secs(20))?;
        bar.inc(1);

        // 3. Broadcasts, counted at the receivers.
        bar.set_message("broadcasts");
        self.broadcast_phase()?;
        bar.inc(1);

        // 4. Partition: n0 cut off, churn on both sides, heal.
        bar.set_message("partition");
        let isolated = self.nodes[0].name.clone();
        for i in 1..n {
            let other = self.nodes[i].name.clone();
            self.nodes[0].ok(&format!("block {other}"))?;
            self.nodes[i].ok(&format!("block {isolated}"))?;
        }
        let t = Instant::now();
        self.wait("partition", Duration::from_secs(20), |run| {
            run.partition_seen(&isolated)
        })?;
        let split_ms = t.elapsed().as_millis();
        for _ in 0..60 {
            self.random_op()?;
        }
        for i in 1..n {
            let other = self.nodes[i].name.clone();
            self.nodes[0].ok(&format!("unblock {other}"))?;
            self.nodes[i].ok(&format!("unblock {isolated}"))?;
        }
        self.converge("partition healed", Duration::from_secs(30))?;
        if let Some(p) = self.phases.last_mut() {
            p.detail = format!("split seen in {split_ms} ms; {}", p.detail);
        }
        bar.inc(1);

        // 5. SIGKILL the last node.
        bar.set_message("SIGKILL");
        let last = n - 1;
        self.nodes[last].child.kill()?;
        let _ = self.nodes[last].child.wait();
        self.nodes[last].alive = false;
        let name = self.nodes[last].name.clone();
        self.expected.remove_node(&name);
        self.converge("SIGKILL", Duration::from_secs(10))?;
        bar.inc(1);

        // 6. Graceful shutdown of another.
        bar.set_message("graceful shutdown");
        let quitting = n - 2;
        self.nodes[quitting].ok("quit")?;
        self.nodes[quitting].alive = false;
        let name = self.nodes[quitting].name.clone();
        self.expected.remove_node(&name);
        self.converge("graceful shutdown", Duration::from_secs(10))?;
        bar.inc(1);

        // 7. Restart the killed node as a new run, and churn.
        bar.set_message("restart");
        let seed = SocketAddr::from(([127, 0, 0, 1], ports[0]));
        let port = free_ports(1)?[0];
        let node = self.start_node(ca, &format!("n{last}"), port, &[seed])?;
        self.nodes[last] = node;
        self.wait("restarted node connected", Duration::from_secs(20), |run| {
            run.full_mesh()
        })?;
        self.spawn(last, 10)?;
        for _ in 0..100 {
            self.random_op()?;
        }
        self.converge("restart", Duration::from_secs(20))?;
        bar.inc(1);

        // 8. SIGKILL the seed (the smallest name, which has no seed of its
        // own) and restart it on its address: the others must find it
        // again, and a node seeded at it must join the one cluster.
        bar.set_message("seed restart");
        self.nodes[0].child.kill()?;
        let _ = self.nodes[0].child.wait();
        self.nodes[0].alive = false;
        let name = self.nodes[0].name.clone();
        self.expected.remove_node(&name);
        self.converge("seed killed", Duration::from_secs(10))?;
        let node = self.start_node(ca, &name, ports[0], &[])?;
        self.nodes[0] = node;
        self.spawn(0, 10)?;
        for _ in 0..50 {
            self.random_op()?;
        }
        self.converge("seed restarted", Duration::from_secs(30))?;
        if n > 2 {
            let quitting = n - 2;
            let node = self.start_node(ca, &format!("n{quitting}"), free_ports(1)?[0], &[seed])?;
            self.nodes[quitting] = node;
            self.spawn(quitting, 5)?;
            self.converge("node seeded at the restarted seed", Duration::from_secs(30))?;
        }
        bar.inc(1);

        // 9. A long cut: the first and last live nodes refuse each other
        // for longer than any dial give-up window the mesh ever had (12 s:
        // it used to give up an address after 8 failed dials, about 6 s),
        // with churn on both sides; then the link must come back.
        bar.set_message("long cut");
        let live = self.live();
        let (a, b) = (live[0], live[live.len() - 1]);
        let (name_a, name_b) = (self.nodes[a].name.clone(), self.nodes[b].name.clone());
        self.nodes[a].ok(&format!("block {name_b}"))?;
        self.nodes[b].ok(&format!("block {name_a}"))?;
        let cut = Instant::now();
        while cut.elapsed() < Duration::from_secs(12) {
            self.random_op()?;
            std::thread::sleep(Duration::from_millis(100));
        }
        self.nodes[a].ok(&format!("unblock {name_b}"))?;
        self.nodes[b].ok(&format!("unblock {name_a}"))?;
        self.converge("long cut healed", Duration::from_secs(30))?;
        bar.inc(1);
        Ok(())
    }

    fn start_node(
        &self,
        ca: &DevCa,
        name: &str,
        port: u16,
        seeds: &[SocketAddr],
    ) -> anyhow::Result<NodeProc> {
        start_node(&self.dir, &self.args.binary, ca, name, port, seeds)
    }

    fn spawn(&mut self, node: usize, k: usize) -> anyhow::Result<()> {
        let pids = self.nodes[node].ok(&format!("spawn {k}"))?;
        self.nodes[node]
            .pids
            .extend(pids.split_whitespace().map(|p| Some(p.to_owned())));
        Ok(())
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive)
            .collect()
    }

    fn random_op(&mut self) -> anyhow::Result<()> {
        let live = self.live();
        let node = live[self.rng.usize(..live.len())];
        let procs: Vec<(usize, String)> = self.nodes[node]
            .live_pids()
            .map(|(i, p)| (i, p.clone()))
            .collect();
        if procs.is_empty() || self.rng.u8(..100) < 5 {
            return self.spawn(node, 1);
        }
        let (i, pid) = procs[self.rng.usize(..procs.len())].clone();
        let group = format!("g{}", self.rng.usize(..GROUPS));
        match self.rng.u8(..100) {
            0..55 => {
                if self.nodes[node].cmd(&format!("join {i} {group}"))? == "ok" {
                    self.expected.add(&group, &pid);
                }
            }
            55..85 => {
                if self.nodes[node].cmd(&format!("leave {i} {group}"))? == "ok" {
                    self.expected.sub(&group, &pid);
                }
            }
            // Registry churn: a few keys, so partitions make conflicts;
            // the outcome is checked by `registry_agrees`.
            85..90 => {
                let key = format!("k{}", self.rng.usize(..KEYS));
                self.nodes[node].cmd(&format!("register {i} {key}"))?;
            }
            90..92 => {
                let key = format!("k{}", self.rng.usize(..KEYS));
                self.nodes[node].cmd(&format!("unregister {i} {key}"))?;
            }
            _ => {
                self.nodes[node].ok(&format!("exit {i}"))?;
                self.nodes[node].pids[i] = None;
                self.expected.remove_pid(&pid);
            }
        }
        Ok(())
    }

    fn full_mesh(&mut self) -> anyhow::Result<bool> {
        let live = self.live();
        check::full_mesh(&mut self.nodes, &live)
    }

    /// Every live node's view of `group`, sorted.
    fn view(&mut self, node: usize, group: &str) -> anyhow::Result<Vec<String>> {
        check::view(&mut self.nodes[node], group)
    }

    fn groups_to_check(&self) -> BTreeSet<String> {
        let mut groups: BTreeSet<String> = (0..GROUPS).map(|g| format!("g{g}")).collect();
        groups.extend(self.expected.groups.keys().cloned());
        groups
    }

    /// Whether every live node's view equals the expected union; records a
    /// sample of members seen per node.
    fn converged(&mut self) -> anyhow::Result<bool> {
        // Every live node has every other live node as a peer.
        let live = self.live();
        let mesh = check::full_mesh(&mut self.nodes, &live)?;
        let at = self.started.elapsed().as_millis();
        let groups = self.groups_to_check();
        let (views, seen) = check::views_agree(&mut self.nodes, &live, &self.expected, &groups)?;
        for (&node, seen) in live.iter().zip(seen) {
            self.samples.push((at, self.nodes[node].name.clone(), seen));
        }
        Ok(mesh && views && check::registry_agrees(&mut self.nodes, &live)?)
    }

    /// Each side of a partition sees exactly its own side's members.
    fn partition_seen(&mut self, isolated: &str) -> anyhow::Result<bool> {
        let suffix = format!("@{isolated}>");
        for node in self.live() {
            let inside = self.nodes[node].name == isolated;
            for group in self.groups_to_check() {
                let want: Vec<String> = self
                    .expected
                    .members(&group)
                    .into_iter()
                    .filter(|p| p.ends_with(&suffix) == inside)
                    .collect();
                if self.view(node, &group)? != want {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    fn wait(
        &mut self,
        what: &str,
        bound: Duration,
        mut done: impl FnMut(&mut Run) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < bound {
            if done(self)? {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{what}: not reached within {bound:?}")
    }

    fn converge(&mut self, name: &'static str, bound: Duration) -> anyhow::Result<()> {
        let t = Instant::now();
        let ok = self.wait(name, bound, |run| run.converged()).is_ok();
        let members: u32 = self.expected.groups.values().flat_map(|m| m.values()).sum();
        let ms = ok.then(|| t.elapsed().as_millis());
        self.phase(
            name,
            ms,
            format!("{members} memberships on {} live nodes", self.live().len()),
        );
        if !ok {
            bail!("{name}: views did not converge within {bound:?}");
        }
        Ok(())
    }

    fn phase(&mut self, name: &'static str, converged_ms: Option<u128>, detail: String) {
        self.phases.push(Phase {
            name,
            converged_ms,
            detail,
        });
    }

    fn broadcast_phase(&mut self) -> anyhow::Result<()> {
        for node in self.live() {
            let procs: Vec<(usize, String)> = self.nodes[node]
                .live_pids()
                .map(|(i, p)| (i, p.clone()))
                .collect();
            for (i, pid) in procs {
                self.nodes[node].ok(&format!("join {i} all"))?;
                self.expected.add("all", &pid);
            }
        }
        self.converge("broadcast membership", Duration::from_secs(20))?;
        let before: u64 = self.received_total()?;
        let rounds = 20u64;
        let mut expected = 0;
        for node in self.live() {
            let (i, _) = self.nodes[node]
                .live_pids()
                .next()
                .map(|(i, p)| (i, p.clone()))
                .ok_or_else(|| anyhow!("no process"))?;
            for _ in 0..rounds {
                let n: u64 = self.nodes[node]
                    .ok(&format!("broadcast {i} all"))?
                    .parse()?;
                expected += n;
            }
        }
        let members = self.expected.distinct("all") as u64;
        let live = self.live().len() as u64;
        if expected != rounds * live * members {
            bail!(
                "broadcasts addressed {expected} members, expected {}",
                rounds * live * members
            );
        }
        let t = Instant::now();
        self.wait("broadcast deliveries", Duration::from_secs(20), |run| {
            Ok(run.received_total()? - before >= expected)
        })?;
        let took = t.elapsed().as_millis();
        // Settle, then check that nothing was delivered twice.
        std::thread::sleep(Duration::from_millis(300));
        let delivered = self.received_total()? - before;
        self.broadcasts = (expected, delivered);
        let exact = delivered == expected;
        self.phase(
            "broadcast",
            exact.then_some(took),
            format!(
                "{} broadcasts, {delivered} deliveries of {expected} expected",
                rounds * live
            ),
        );
        if !exact {
            bail!("broadcast deliveries: {delivered}, expected exactly {expected}");
        }
        Ok(())
    }

    fn received_total(&mut self) -> anyhow::Result<u64> {
        let mut total = 0;
        for node in self.live() {
            total += self.nodes[node].ok("received")?.parse::<u64>()?;
        }
        Ok(total)
    }

    fn report(&mut self, passed: bool, error: Option<&anyhow::Error>) -> anyhow::Result<()> {
        let (mut messages, mut bytes) = (0u64, 0u64);
        for node in self.live() {
            if let Ok(stats) = self.nodes[node].ok("stats") {
                let mut it = stats
                    .split_whitespace()
                    .map(|s| s.parse::<u64>().unwrap_or(0));
                messages += it.next().unwrap_or(0);
                bytes += it.next().unwrap_or(0);
            }
        }
        let phases: Vec<serde_json::Value> = self
            .phases
            .iter()
            .map(|p| {
                serde_json::json!({
                    "phase": p.name,
                    "converged_ms": p.converged_ms,
                    "passed": p.converged_ms.is_some(),
                    "detail": p.detail,
                })
            })
            .collect();
        let report = serde_json::json!({
            "mode": "real",
            "nodes": self.args.nodes,
            "seed": self.args.seed,
            "passed": passed,
            "error": error.map(ToString::to_string),
            "phases": phases,
            "broadcast": { "expected_deliveries": self.broadcasts.0, "delivered": self.broadcasts.1 },
            "traffic_of_live_nodes": { "messages_sent": messages, "bytes_sent": bytes },
            "invariants": {
                "views_equal_union_of_live_memberships": passed,
                "no_member_of_a_dead_node": passed,
                "broadcasts_reach_exactly_their_members": self.broadcasts.0 > 0 && self.broadcasts.0 == self.broadcasts.1,
            },
        });
        let json = self.dir.join("report.json");
        std::fs::write(&json, serde_json::to_string_pretty(&report)?)?;
        let svg = self.dir.join("members.svg");
        // The plot is an aid, not the verdict: a machine without a font
        // still gets the report.
        if let Err(e) = crate::plot::members(&self.samples, &svg) {
            eprintln!("warning: members.svg not drawn: {e:#}");
        }
        println!(
            "real cluster-sim: {} nodes over QUIC + mTLS on 127.0.0.1",
            self.args.nodes
        );
        for p in &self.phases {
            match p.converged_ms {
                Some(ms) => println!("  {:<22} converged in {ms:>6} ms  ({})", p.name, p.detail),
                None => println!("  {:<22} FAILED                ({})", p.name, p.detail),
            }
        }
        println!(
            "  broadcast deliveries: {} of {} expected",
            self.broadcasts.1, self.broadcasts.0
        );
        println!("  traffic (live nodes): {messages} messages, {bytes} bytes");
        println!(
            "  invariants (views = live memberships, registry: one live holder per key, the same on every node): {}",
            if passed { "PASS" } else { "FAIL" }
        );
        println!("  report: {}", json.display());
        println!("  plot:   {}", svg.display());
        Ok(())
    }
}
