//! A randomized run in two phases, after TigerBeetle's VOPR: a faulty phase
//! (churn of joins, leaves and exits over a lossy, duplicating, reordering
//! network, with partitions, crashes and restarts), then a healing phase
//! (network whole and reliable, no more commands) that must converge within
//! a bound. Everything is chosen from the seed.

use std::fmt;
use std::time::Duration;

use super::check::Violation;
use super::{Cluster, NetStats, SimConfig, SimError, SimNetConfig};
use crate::{GroupName, Pid, ScopeConfig};

/// What a scenario does.
#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    /// The cluster, network and seed.
    pub sim: SimConfig,
    /// The network during the faulty phase (the healing phase is reliable).
    pub faulty_net: SimNetConfig,
    /// Number of distinct group names used.
    pub groups: usize,
    /// Length of the faulty phase in virtual time.
    pub faulty_for: Duration,
    /// Virtual time between two commands.
    pub command_every: Duration,
    /// Mean virtual time between two faults (partition, heal, crash,
    /// restart).
    pub fault_every: Duration,
    /// A partition holds at least this long before it may heal.
    pub min_partition: Duration,
    /// Whether nodes crash (and later restart) in the faulty phase.
    pub crashes: bool,
    /// Whether partitions happen in the faulty phase.
    pub partitions: bool,
    /// The healing phase must converge within this much virtual time.
    pub heal_bound: Duration,
}

impl ScenarioConfig {
    /// Defaults for `nodes` nodes and `seed`: a 10 s faulty phase with every
    /// fault enabled.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Self {
            sim: SimConfig {
                nodes,
                seed,
                scope: ScopeConfig {
                    // Parts of a few dozen memberships: most syncs travel
                    // as several pieces, so lost, duplicated and reordered
                    // pieces are part of every sweep.
                    sync_part_entries: 8,
                    // And a downed node's part goes in several steps (due
                    // at once in virtual time, so other input comes in
                    // between only at the same instant; tests/node_down.rs
                    // interleaves returns and joins with the steps).
                    part_removal_step: 5,
                    ..SimConfig::default().scope
                },
                ..SimConfig::default()
            },
            faulty_net: SimNetConfig::faulty(),
            groups: 8,
            faulty_for: Duration::from_secs(10),
            command_every: Duration::from_millis(10),
            fault_every: Duration::from_secs(1),
            min_partition: Duration::from_millis(500),
            crashes: true,
            partitions: true,
            heal_bound: Duration::from_secs(20),
        }
    }
}

/// What a passing run did and measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Number of nodes.
    pub nodes: usize,
    /// Commands that changed state / that were refused.
    pub commands: (u64, u64),
    /// Crashes, restarts and partitions injected.
    pub faults: Faults,
    /// Virtual time the healing phase took to converge.
    pub converged_after: Duration,
    /// Distinct memberships in the converged view.
    pub memberships: usize,
    /// Network traffic over the whole run.
    pub net: NetStats,
    /// Frames and bytes sent per node during the healing phase, averaged.
    pub heal_traffic_per_node: (f64, f64),
    /// Steps the scopes running at the end took to remove downed nodes'
    /// parts, past each down's own (see `part_removal_step`).
    pub part_removal_steps: u64,
}

/// Faults injected in a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Nodes crashed.
    pub crashes: u64,
    /// Nodes restarted with a new incarnation.
    pub restarts: u64,
    /// Partitions started.
    pub partitions: u64,
}

/// A failed run: the broken invariant and the seed that reproduces it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The seed that reproduces the failure.
    pub seed: u64,
    /// Number of nodes.
    pub nodes: usize,
    /// Faulty or healing.
    pub phase: &'static str,
    /// Virtual time of detection.
    pub at: Duration,
    /// What broke.
    pub violation: Violation,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} ({} nodes) failed in the {} phase at {:?}: {} \
             (reproduce: cargo xtask cluster-sim --deterministic --nodes {} --seed {} --seeds 1)",
            self.seed, self.nodes, self.phase, self.at, self.violation, self.nodes, self.seed
        )
    }
}

impl std::error::Error for Failure {}

/// Runs one scenario.
pub fn run(config: &ScenarioConfig) -> Result<Report, Failure> {
    let mut run = Run::new(config);
    run.faulty_phase()?;
    run.healing_phase()
}

struct Run<'a> {
    config: &'a ScenarioConfig,
    cluster: Cluster,
    groups: Vec<GroupName>,
    /// Live processes per node (of its current run).
    processes: Vec<Vec<Pid>>,
    commands: (u64, u64),
    faults: Faults,
    partitioned_at: Option<Duration>,
}

impl<'a> Run<'a> {
    fn new(config: &'a ScenarioConfig) -> Self {
        let cluster = Cluster::new(config.sim.clone());
        let groups = (0..config.groups.max(1))
            .map(|g| {
                // Invariant: "g" followed by digits is a valid group name.
                GroupName::new(&format!("g{g}")).expect("valid group name")
            })
            .collect();
        Self {
            processes: vec![Vec::new(); config.sim.nodes],
            config,
            cluster,
            groups,
            commands: (0, 0),
            faults: Faults::default(),
            partitioned_at: None,
        }
    }

    fn failure(&self, phase: &'static str, violation: Violation) -> Failure {
        Failure {
            seed: self.config.sim.seed,
            nodes: self.config.sim.nodes,
            phase,
            at: self.cluster.elapsed(),
            violation,
        }
    }

    fn faulty_phase(&mut self) -> Result<(), Failure> {
        self.cluster.set_net(self.config.faulty_net.clone());
        let steps = (self.config.faulty_for.as_nanos()
            / self.config.command_every.as_nanos().max(1)) as u64;
        let fault_odds = (self.config.fault_every.as_nanos()
            / self.config.command_every.as_nanos().max(1))
        .max(1) as u64;
        for step in 0..steps {
            self.random_command();
            if self.cluster.random_below(fault_odds) == 0 {
                self.random_fault();
            }
            self.cluster.drive_for(self.config.command_every);
            if let Some(v) = self.cluster.violation() {
                return Err(self.failure("faulty", v.clone()));
            }
            if step % 50 == 49 {
                self.cluster
                    .check_replays()
                    .map_err(|v| self.failure("faulty", v))?;
            }
        }
        Ok(())
    }

    fn healing_phase(mut self) -> Result<Report, Failure> {
        self.cluster.heal();
        self.cluster.set_net(SimNetConfig::reliable());
        let before = (0..self.cluster.len())
            .map(|i| self.cluster.sent_by(i))
            .collect::<Vec<_>>();
        let took =
            self.cluster
                .drive_until(self.config.heal_bound, Duration::from_millis(100), |c| {
                    c.is_settled() && c.versions_converged()
                });
        let Some(took) = took else {
            let v = self.cluster.check_converged().err().unwrap_or_else(|| {
                Violation::new(
                    "converges within the bound",
                    "views agree but versions still differ",
                )
            });
            return Err(self.failure(
                "healing",
                Violation::new(
                    "converges within the bound",
                    format!("not converged after {:?}: {v}", self.config.heal_bound),
                ),
            ));
        };
        self.cluster
            .check_converged()
            .map_err(|v| self.failure("healing", v))?;
        let n = self.cluster.len() as f64;
        let (frames, bytes) = (0..self.cluster.len()).fold((0u64, 0u64), |acc, i| {
            let (f, b) = self.cluster.sent_by(i);
            (acc.0 + f - before[i].0, acc.1 + b - before[i].1)
        });
        // Converged and quiet: anti-entropy must find nothing to repair.
        let quiet_from = self.cluster.net_stats().by_kind;
        let answered_from = self.cluster.net_stats().requested_syncs;
        let interval = self.config.sim.scope.anti_entropy_interval;
        self.cluster.drive_for(interval * 3);
        let quiet_to = self.cluster.net_stats().by_kind;
        let answered = self.cluster.net_stats().requested_syncs - answered_from;
        // Nothing but digests, with one exception that no protocol can
        // avoid: a request (a sync with `known: None` included) that left
        // while its sender really lacked the part is answered, even if the
        // faulty network delivers it late (reordered behind the frame that
        // filled the gap) or twice. Requests made after convergence,
        // pushes, answers to out-of-date syncs and answers to anything else
        // are all violations.
        let repairs = |c: super::FrameCounts| (c.deltas, c.sync_requests, c.discovers);
        let syncs = quiet_to.syncs - quiet_from.syncs;
        if repairs(quiet_to) != repairs(quiet_from) || syncs > answered {
            return Err(self.failure(
                "healing",
                Violation::new(
                    "a converged cluster exchanges only digests",
                    format!(
                        "frames sent while quiet: before {quiet_from:?}, after {quiet_to:?} \
                         ({answered} sync(s) answered requests that were needed when sent)"
                    ),
                ),
            ));
        }
        // And few of them: each live node starts one exchange (a digest
        // and its reply) per interval; one more round may be in flight.
        let live = self.cluster.live_nodes().len() as u64;
        let digests = quiet_to.digests - quiet_from.digests;
        let bound = 2 * live * (3 + 1);
        if digests > bound {
            return Err(self.failure(
                "healing",
                Violation::new(
                    "a converged cluster sends O(1) digests per node and interval",
                    format!(
                        "{digests} digests in 3 intervals from {live} live nodes (bound {bound})"
                    ),
                ),
            ));
        }
        self.cluster
            .check_converged()
            .map_err(|v| self.failure("healing", v))?;
        Ok(Report {
            seed: self.config.sim.seed,
            nodes: self.cluster.len(),
            commands: self.commands,
            faults: self.faults,
            converged_after: took,
            memberships: self.cluster.expected_view().len(),
            net: self.cluster.net_stats().clone(),
            heal_traffic_per_node: (frames as f64 / n, bytes as f64 / n),
            part_removal_steps: (0..self.cluster.len())
                .filter_map(|i| self.cluster.scope(i))
                .map(|scope| scope.stats().part_removal_steps)
                .sum(),
        })
    }

    /// A registry command on node `node` (which has processes): keys come
    /// from a few, so registrations on both sides of a partition collide.
    fn random_registry_command(&mut self, node: usize) -> Result<(), SimError> {
        let idx = self.cluster.random_below(self.processes[node].len() as u64) as usize;
        let pid = self.processes[node][idx].clone();
        let key = self.random_group();
        if self.cluster.random_below(3) == 0 {
            return self.cluster.unregister(node, &pid, &key);
        }
        let meta = match self.cluster.random_below(3) {
            0 => None,
            v => Some(crate::Meta::from(vec![v as u8])),
        };
        // Tags from a small set, so tag listings overlap across nodes.
        let tag = match self.cluster.random_below(3) {
            0 => None,
            v => Some(GroupName::new(&format!("tag{v}"))?),
        };
        let spec = crate::RegisterSpec {
            meta,
            tag,
            exit_on_loss: false,
        };
        self.cluster.register(node, &pid, &key, spec)
    }

    fn random_group(&mut self) -> GroupName {
        let i = self.cluster.random_below(self.groups.len() as u64) as usize;
        self.groups[i].clone()
    }

    fn random_command(&mut self) {
        let node = self.cluster.random_below(self.cluster.len() as u64) as usize;
        if !self.cluster.is_alive(node) {
            return;
        }
        let procs = self.processes[node].len() as u64;
        let roll = self.cluster.random_below(100);
        let result = if procs > 0 && roll >= 90 {
            self.random_registry_command(node)
        } else if procs == 0 || roll < 30 {
            let pid = self.cluster.spawn(node);
            let n = 1 + self.cluster.random_below(3);
            let groups: Vec<GroupName> = (0..n).map(|_| self.random_group()).collect();
            self.processes[node].push(pid.clone());
            self.cluster.join(node, &pid, &groups)
        } else {
            let idx = self.cluster.random_below(procs) as usize;
            let pid = self.processes[node][idx].clone();
            match roll {
                30..40 => {
                    let g = self.random_group();
                    self.cluster.join(node, &pid, &[g])
                }
                40..50 => {
                    // Metadata from a few values, so re-joins both keep
                    // and replace it, and partitions update it on both
                    // sides.
                    let g = self.random_group();
                    let meta = crate::Meta::from(vec![self.cluster.random_below(3) as u8]);
                    self.cluster.join_with_meta(node, &pid, &g, meta)
                }
                50..75 => {
                    let g = self.random_group();
                    self.cluster.leave(node, &pid, &[g])
                }
                75..85 => {
                    let gs = [self.random_group(), self.random_group()];
                    self.cluster.leave(node, &pid, &gs)
                }
                _ => {
                    self.processes[node].swap_remove(idx);
                    self.cluster.exit(node, &pid).map(drop)
                }
            }
        };
        match result {
            Ok(()) => self.commands.0 += 1,
            Err(SimError::Command(_)) => self.commands.1 += 1,
            Err(SimError::NodeDown(_)) => {}
        }
    }

    fn random_fault(&mut self) {
        let n = self.cluster.len();
        let now = self.cluster.elapsed();
        let roll = self.cluster.random_below(4);
        match roll {
            0 if self.config.partitions => match self.partitioned_at {
                Some(at) if now - at >= self.config.min_partition => {
                    self.cluster.heal();
                    self.partitioned_at = None;
                }
                Some(_) => {}
                None if n > 1 => {
                    let side: Vec<usize> = (0..n)
                        .filter(|_| self.cluster.random_below(2) == 0)
                        .collect();
                    self.cluster.partition(&[side]);
                    self.partitioned_at = Some(now);
                    self.faults.partitions += 1;
                }
                None => {}
            },
            1 if self.config.partitions && n > 1 && self.partitioned_at.is_none() => {
                let a = self.cluster.random_below(n as u64) as usize;
                let b = self.cluster.random_below(n as u64) as usize;
                if a != b {
                    self.cluster.cut(a, b);
                    self.partitioned_at = Some(now);
                    self.faults.partitions += 1;
                }
            }
            2 if self.config.crashes => {
                let live = self.cluster.live_nodes().len();
                let i = self.cluster.random_below(n as u64) as usize;
                // Keep at least half the cluster up.
                if self.cluster.is_alive(i) && live * 2 > n {
                    self.cluster.crash(i);
                    self.processes[i].clear();
                    self.faults.crashes += 1;
                }
            }
            3 if self.config.crashes => {
                let i = self.cluster.random_below(n as u64) as usize;
                if !self.cluster.is_alive(i) || self.cluster.random_below(4) == 0 {
                    if self.cluster.random_below(2) == 0 {
                        self.cluster.restart(i);
                    } else {
                        // The node is up and connected before its scope starts.
                        let liveness = self.cluster.config().net.liveness_delay;
                        let extra = self.cluster.random_below(500);
                        let delay = liveness * 2 + Duration::from_millis(extra);
                        self.cluster.restart_with_late_scope(i, delay);
                    }
                    self.processes[i].clear();
                    self.faults.restarts += 1;
                }
            }
            _ => {}
        }
    }
}
