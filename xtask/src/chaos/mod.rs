//! `cargo xtask chaos`: `pg-node` processes in network namespaces of their
//! own, over QUIC + mTLS, under continuous churn (joins, multi-joins,
//! leaves, exits, broadcasts, direct sends, registrations) while faults
//! chosen from a seed hit them from outside: partitions (symmetric and
//! one-way), loss, duplication, delay with jitter, reordering and rate
//! limits on the network (see
//! `lab.rs` for how each is made), and SIGKILL, SIGSTOP/SIGCONT, graceful
//! shutdown and restart of the processes.
//!
//! After each fault is healed the cluster must converge: every live node
//! has every other as a peer, every live node's view equals the union of
//! the live processes' memberships, and every node lists the same live
//! holder for every registry key. At the end, no process may have received
//! a broadcast twice or a pair's direct messages out of order, and no more
//! broadcasts may have arrived than were addressed (what the API may drop
//! is counted, not hidden). The report lists, per fault kind, how many were
//! injected and the worst convergence time after its heal; a failure prints
//! the seed and the command that replays the schedule.
//!
//! `cargo xtask soak` is the same run made long and measured: only the
//! faults that leave every process alive (partitions, loss, duplication,
//! rate limits, SIGSTOP), so each node's memory, descriptors, tasks and
//! queues can be followed for the whole run and judged for growth (see
//! `soak.rs`).

mod delayer;
mod lab;
mod report;
mod soak;
mod verdict;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use pg_net::DevCa;

use crate::model::Expected;
use crate::nodes::{NodeProc, Placement, start_node_at};
pub(crate) use delayer::run as delay_packets;
use lab::{Delay, Lab, LinkFault};
use soak::Sampler;
use verdict::Checks;

const GROUPS: usize = 6;
const KEYS: usize = 4;
/// Processes per node are kept within these bounds (below the low one
/// every operation spawns; at the high one none does), so a long run has
/// a steady working set.
const PROCESSES: (usize, usize) = (4, 12);
/// How long the cluster may take to converge after a heal.
const CONVERGE_BOUND: Duration = Duration::from_secs(60);

/// A convergence after a heal at least this slow is printed where it
/// happened, not only as its kind's worst in the report.
const SLOW_HEAL: Duration = Duration::from_secs(1);

/// Options of `cargo xtask chaos`.
pub(crate) struct ChaosArgs {
    pub(crate) nodes: usize,
    pub(crate) seed: u64,
    pub(crate) minutes: f64,
    pub(crate) binary: PathBuf,
    pub(crate) out: PathBuf,
    /// A soak: only faults that leave processes alive, and gauges sampled,
    /// plotted and judged.
    pub(crate) soak: bool,
}

/// The kinds of fault, in report order.
const KINDS: [&str; 11] = [
    "partition",
    "one_way_partition",
    "loss",
    "duplication",
    "delay",
    "reordering",
    "rate_limit",
    "sigkill",
    "sigstop",
    "graceful_shutdown",
    "none",
];

/// The kinds of fault a soak injects: those that leave every process
/// alive, so its gauges tell about one process over the whole run.
const SOAK_KINDS: [&str; 9] = [
    "partition",
    "one_way_partition",
    "loss",
    "duplication",
    "delay",
    "reordering",
    "rate_limit",
    "sigstop",
    "none",
];

/// How long a node may take to shut down gracefully.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(30);

#[derive(Default, Clone, Copy)]
struct KindStats {
    injected: u32,
    worst_ms: u128,
}

struct Chaos {
    args: ChaosArgs,
    lab: Lab,
    ca: DevCa,
    dir: PathBuf,
    nodes: Vec<NodeProc>,
    /// Nodes stopped with SIGSTOP (alive, but not to be asked anything).
    paused: BTreeSet<usize>,
    expected: Expected,
    rng: fastrand::Rng,
    stats: BTreeMap<&'static str, KindStats>,
    addressed: u64,
    sends: u64,
    /// The trackers' counts of nodes already stopped or killed.
    checks: Checks,
    /// Set by SIGINT or SIGTERM: the run stops and tears its lab down.
    interrupted: Arc<AtomicBool>,
    /// The soak's gauges (a soak only).
    sampler: Option<Sampler>,
}

impl Drop for Chaos {
    /// Whatever ended the run (an error, a panic), no node outlives it:
    /// SIGKILL ends a paused process too.
    fn drop(&mut self) {
        self.stop_all();
    }
}

pub(crate) fn run(args: ChaosArgs) -> anyhow::Result<()> {
    lab::check_prerequisites()?;
    if args.nodes < 3 {
        bail!("chaos needs at least 3 nodes (--nodes)");
    }
    if !(args.minutes.is_finite() && args.minutes >= 0.0 && args.minutes <= 7.0 * 24.0 * 60.0) {
        bail!("--minutes must be between 0 and a week");
    }
    if args.soak && args.minutes < 2.0 {
        bail!("a soak needs --minutes 2 or more to judge growth");
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal ends xtask at once (the next run cleans up).
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&interrupted))?;
        signal_hook::flag::register(signal, Arc::clone(&interrupted))?;
    }
    // One namespace prefix per seed: runs of different seeds can go on at
    // once without touching each other's network. The lab first: it
    // refuses a seed a live run holds before anything of that run's
    // directory (its CA, which its restarted nodes read) is overwritten.
    let kind = if args.soak { "pgsoak" } else { "pgchaos" };
    let lab = Lab::create(args.nodes, format!("{kind}{}", args.seed))?;
    let dir = args.out.join(format!("seed-{}", args.seed));
    std::fs::create_dir_all(&dir)?;
    let ca = DevCa::generate("chaos")?;
    std::fs::write(dir.join("ca.pem"), ca.certificate_pem())?;
    let mut chaos = Chaos {
        rng: fastrand::Rng::with_seed(args.seed),
        args,
        lab,
        ca,
        dir,
        nodes: Vec::new(),
        paused: BTreeSet::new(),
        expected: Expected::default(),
        stats: BTreeMap::new(),
        addressed: 0,
        sends: 0,
        checks: Checks::default(),
        interrupted,
        sampler: None,
    };
    let outcome = chaos.scenario().and_then(|()| chaos.judge_soak());
    let reported = chaos.report(outcome.as_ref().err());
    chaos.stop_all();
    reported?;
    if let Err(e) = outcome {
        if chaos.interrupted.load(Ordering::Relaxed) {
            // Whatever failed after a Ctrl-C (the nodes get it too) is
            // the interruption, not a finding.
            bail!("interrupted (SIGINT or SIGTERM); the lab is torn down");
        }
        let command = if chaos.args.soak { "soak" } else { "chaos" };
        eprintln!(
            "{command} failed with seed {}; replay: cargo xtask {command} --nodes {} --seed {} --minutes {}",
            chaos.args.seed, chaos.args.nodes, chaos.args.seed, chaos.args.minutes
        );
        return Err(e);
    }
    Ok(())
}

impl Chaos {
    fn name(i: usize) -> String {
        format!("n{i}")
    }

    fn start(&mut self, i: usize) -> anyhow::Result<NodeProc> {
        // Seeded at the first two nodes (other than itself): a seed list,
        // as a deployment's DNS name gives.
        let seeds: Vec<_> = (0..2).filter(|&s| s != i).map(Lab::addr).collect();
        let netns = self.lab.netns(i);
        let place = Placement {
            listen: Lab::addr(i),
            netns: Some(&netns),
            // Links up and down are logged at INFO: what a failed
            // convergence is read against.
            env: &[("PG_NODE_GAUGES", "1"), ("PG_LOG", "warn,pg_net=info")],
        };
        let mut node = start_node_at(
            &self.dir,
            &self.args.binary,
            &self.ca,
            &Self::name(i),
            &seeds,
            &place,
        )?;
        let pids = match node.ok("spawn 4") {
            Ok(pids) => pids,
            Err(e) => {
                let _ = node.child.kill();
                let _ = node.child.wait();
                return Err(e);
            }
        };
        node.pids = pids
            .split_whitespace()
            .map(|p| Some(p.to_owned()))
            .collect();
        Ok(node)
    }

    /// Nodes that are up and may be asked something.
    fn usable(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && !self.paused.contains(&i))
            .collect()
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive)
            .collect()
    }

    fn scenario(&mut self) -> anyhow::Result<()> {
        for i in 0..self.lab.len() {
            let node = self.start(i)?;
            self.nodes.push(node);
        }
        self.converge("start")?;
        if self.args.soak {
            self.sampler = Some(Sampler::new());
        }
        let deadline = Instant::now() + Duration::from_secs_f64(self.args.minutes * 60.0);
        while Instant::now() < deadline {
            self.round()?;
        }
        self.restart_dead()?;
        self.converge("the final restart")?;
        self.final_checks()
    }

    /// One fault: injected, held under churn, healed, converged.
    fn round(&mut self) -> anyhow::Result<()> {
        let n = self.nodes.len();
        let kind = if self.args.soak {
            SOAK_KINDS[self.rng.usize(..SOAK_KINDS.len())]
        } else {
            KINDS[self.rng.usize(..KINDS.len())]
        };
        let victim = self.rng.usize(..n);
        let other = (victim + 1 + self.rng.usize(..n - 1)) % n;
        let hold = Duration::from_millis(self.rng.u64(500..5000));
        let up = self.nodes[victim].alive && !self.paused.contains(&victim);
        // A fault on a process that is down or paused is no fault: it is
        // reported as a quiet round.
        let kind = match kind {
            "sigkill" | "sigstop" | "graceful_shutdown" if !up => "none",
            kind => kind,
        };
        eprintln!("chaos: {kind} on n{victim} (n{other}) for {hold:?}");
        match kind {
            "partition" => {
                // A minority side, cut both ways from the rest.
                let side: Vec<usize> = (0..n).filter(|_| self.rng.u8(..3) == 0).collect();
                let side = if side.is_empty() || side.len() * 2 >= n {
                    vec![victim]
                } else {
                    side
                };
                for &a in &side {
                    for b in (0..n).filter(|b| !side.contains(b)) {
                        self.lab.set(a, b, Some(LinkFault::Cut));
                        self.lab.set(b, a, Some(LinkFault::Cut));
                    }
                }
            }
            "one_way_partition" => self.lab.set(victim, other, Some(LinkFault::Cut)),
            "loss" => {
                let p = [5, 20, 50][self.rng.usize(..3)];
                for b in (0..n).filter(|&b| b != victim) {
                    self.lab.set(victim, b, Some(LinkFault::Loss(p)));
                    self.lab.set(b, victim, Some(LinkFault::Loss(p)));
                }
            }
            "duplication" => {
                let p = [10, 30, 60][self.rng.usize(..3)];
                for b in (0..n).filter(|&b| b != victim) {
                    self.lab.set(victim, b, Some(LinkFault::Dup(p)));
                }
            }
            "delay" => {
                // Round trips from 40 ms to 600 ms, under the liveness
                // timeout (1 s) or close to it.
                let millis = [20, 80, 300][self.rng.usize(..3)];
                let delay = Delay {
                    millis,
                    jitter_millis: millis / 4,
                };
                self.lab.set_delay(victim, Some(delay), self.rng.u64(..))?;
            }
            "reordering" => {
                // Per-packet delays spread over a few milliseconds: most
                // packets closer together than that swap places.
                let delay = Delay {
                    millis: 1,
                    jitter_millis: [5, 20][self.rng.usize(..2)],
                };
                self.lab.set_delay(victim, Some(delay), self.rng.u64(..))?;
            }
            "rate_limit" => self.lab.set_rate(victim, Some(256))?,
            "sigkill" => {
                // What its processes saw dies with it: read it first.
                self.collect_checks(victim)?;
                let _ = self.nodes[victim].child.kill();
                let _ = self.nodes[victim].child.wait();
                self.ended(victim);
            }
            "sigstop" => {
                self.paused.insert(victim);
                signal(&self.nodes[victim], "STOP")?;
            }
            "graceful_shutdown" => {
                self.collect_checks(victim)?;
                let _ = self.nodes[victim].cmd("quit");
                let ended = wait_for_exit(&mut self.nodes[victim], SHUTDOWN_BOUND);
                self.ended(victim);
                ended?;
            }
            _ => {}
        }
        self.lab.apply()?;
        let until = Instant::now() + hold;
        while Instant::now() < until {
            self.check_interrupted()?;
            self.random_op()?;
            self.sample()?;
        }
        // Heal: the network, the paused, the dead.
        self.lab.heal()?;
        for i in std::mem::take(&mut self.paused) {
            signal(&self.nodes[i], "CONT")?;
        }
        // A dead node stays dead for a round or more at times, so the
        // cluster must also converge without it (its members gone from
        // every view); at most two are dead at once.
        let dead = self.nodes.iter().filter(|p| !p.alive).count();
        if dead > 1 || self.rng.bool() {
            self.restart_dead()?;
        } else if dead == 1 {
            eprintln!("chaos: a dead node stays dead this round");
        }
        let took = self.converge(kind)?;
        if took >= SLOW_HEAL {
            // The report keeps only each kind's worst: this line says
            // which fault it was (the one printed just above).
            eprintln!("chaos:   converged {took:.1?} after that heal");
        }
        let stats = self.stats.entry(kind).or_default();
        stats.injected += 1;
        stats.worst_ms = stats.worst_ms.max(took.as_millis());
        Ok(())
    }

    fn restart_dead(&mut self) -> anyhow::Result<()> {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive {
                self.nodes[i] = self.start(i)?;
            }
        }
        Ok(())
    }

    /// Samples the gauges when a soak's second is due.
    fn sample(&mut self) -> anyhow::Result<()> {
        let usable = self.usable();
        match &mut self.sampler {
            Some(sampler) => sampler.tick(&mut self.nodes, &usable),
            None => Ok(()),
        }
    }

    fn ended(&mut self, i: usize) {
        self.nodes[i].alive = false;
        self.expected.remove_node(&self.nodes[i].name);
    }

    fn random_op(&mut self) -> anyhow::Result<()> {
        let usable = self.usable();
        if usable.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
            return Ok(());
        }
        let node = usable[self.rng.usize(..usable.len())];
        let procs: Vec<(usize, String)> = self.nodes[node]
            .live_pids()
            .map(|(i, p)| (i, p.clone()))
            .collect();
        let spawn = procs.len() < PROCESSES.0 || self.rng.u8(..100) < 3;
        if spawn && procs.len() < PROCESSES.1 {
            let pids = self.nodes[node].ok("spawn 1")?;
            self.nodes[node]
                .pids
                .extend(pids.split_whitespace().map(|p| Some(p.to_owned())));
            return Ok(());
        }
        let (i, pid) = procs[self.rng.usize(..procs.len())].clone();
        let group = format!("g{}", self.rng.usize(..GROUPS));
        let key = format!("k{}", self.rng.usize(..KEYS));
        let target = &mut self.nodes[node];
        match self.rng.u8(..100) {
            0..40 => {
                if target.cmd(&format!("join {i} {group}"))? == "ok" {
                    self.expected.add(&group, &pid);
                }
            }
            40..65 => {
                if target.cmd(&format!("leave {i} {group}"))? == "ok" {
                    self.expected.sub(&group, &pid);
                }
            }
            65..75 => {
                let answer = target.cmd(&format!("bcast {i} {group}"))?;
                if let Some(n) = answer.strip_prefix("ok ") {
                    self.addressed += n.parse::<u64>()?;
                }
            }
            75..88 => {
                // A direct message to a process of another node.
                let peers: Vec<String> = self
                    .usable()
                    .into_iter()
                    .filter(|&o| o != node)
                    .flat_map(|o| {
                        self.nodes[o]
                            .live_pids()
                            .map(|(_, p)| p.clone())
                            .collect::<Vec<_>>()
                    })
                    .collect();
                if !peers.is_empty() {
                    let to = &peers[self.rng.usize(..peers.len())];
                    if self.nodes[node].cmd(&format!("send {i} {to}"))? == "ok" {
                        self.sends += 1;
                    }
                }
            }
            88..94 => {
                target.cmd(&format!("register {i} {key}"))?;
            }
            94..97 => {
                target.cmd(&format!("unregister {i} {key}"))?;
            }
            _ => {
                if procs.len() > PROCESSES.0 {
                    target.ok(&format!("exit {i}"))?;
                    target.pids[i] = None;
                    self.expected.remove_pid(&pid);
                }
            }
        }
        Ok(())
    }

    fn check_interrupted(&self) -> anyhow::Result<()> {
        if self.interrupted.load(Ordering::Relaxed) {
            bail!("interrupted (SIGINT or SIGTERM)");
        }
        Ok(())
    }

    fn stop_all(&mut self) {
        for i in std::mem::take(&mut self.paused) {
            let _ = signal(&self.nodes[i], "CONT");
        }
        for node in &mut self.nodes {
            if node.alive {
                let _ = node.child.kill();
            }
            let _ = node.child.wait();
        }
    }
}

/// Waits up to `bound` for a node that was told to quit; kills it after.
fn wait_for_exit(node: &mut NodeProc, bound: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < bound {
        if node.child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = node.child.kill();
    let _ = node.child.wait();
    bail!("{} did not shut down within {bound:?} of `quit`", node.name)
}

/// Sends `SIG<name>` to a node process.
fn signal(node: &NodeProc, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &node.child.id().to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -{name} {} failed", node.name);
    }
    Ok(())
}
