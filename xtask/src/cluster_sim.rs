//! `cargo xtask cluster-sim`: run a cluster and check its invariants.
//!
//! The deterministic mode drives pg-core nodes through `pg_core::sim`:
//! a faulty phase (loss, duplication, reordering, partitions, crashes and
//! restarts), then a healing phase that must converge within a bound. Each
//! seed reproduces its run exactly, whatever `--jobs` is; a failure prints
//! the seed and the command that replays it.

use std::io::{IsTerminal, Stderr, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::bail;
use pg_core::sim::scenario::{self, ScenarioConfig};

/// Options of `cargo xtask cluster-sim`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Simulate pg-core nodes in virtual time instead of running real nodes.
    #[arg(long)]
    deterministic: bool,
    /// First seed to run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of consecutive seeds to run, starting at --seed.
    #[arg(long, default_value_t = 20)]
    seeds: u64,
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// With --deterministic: run seeds on this many threads (default: one
    /// per CPU). The results do not depend on it.
    #[arg(long)]
    jobs: Option<usize>,
    /// With --deterministic: report how traffic per node grows with the
    /// cluster size (10, 100, 1000 nodes) at fixed membership.
    #[arg(long)]
    scaling: bool,
    /// Where the real mode writes its report and plot.
    #[arg(long, default_value = "target/cluster-sim")]
    out: std::path::PathBuf,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if args.deterministic && args.scaling {
        return scaling(args.seed);
    }
    if args.deterministic {
        return deterministic(args);
    }
    let root = crate::tidy::workspace_root();
    // The same profile xtask itself was built with.
    let binary = crate::nodes::build_binary(&root, "pg-node", "pg-node", !cfg!(debug_assertions))?;
    crate::cluster_real::run(crate::cluster_real::RealArgs {
        nodes: args.nodes,
        seed: args.seed,
        out: root.join(&args.out),
        binary,
    })
}

/// What one seed of the deterministic sweep came to.
enum Outcome {
    Passed(Box<scenario::Report>),
    Failed(Box<scenario::Failure>),
    /// The simulator or the code under test panicked: a bug all the same,
    /// reported with its seed instead of taking the sweep down.
    Panicked(String),
}

/// Runs one seed, catching a panic so a sweep on many threads still
/// reports which seed it was.
fn run_seed(nodes: usize, seed: u64) -> Outcome {
    let config = ScenarioConfig::new(nodes, seed);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario::run(&config))) {
        Ok(Ok(report)) => Outcome::Passed(Box::new(report)),
        Ok(Err(failure)) => Outcome::Failed(Box::new(failure)),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            Outcome::Panicked(message)
        }
    }
}

/// The command that replays one seed.
fn replay_command(nodes: usize, seed: u64) -> String {
    format!("cargo xtask cluster-sim --deterministic --nodes {nodes} --seed {seed} --seeds 1")
}

/// The number of worker threads when `--jobs` is not given: one per CPU.
fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn deterministic(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let total = args.seeds;
    let first = args.seed;
    let Some(end) = first.checked_add(total) else {
        bail!("--seed {first} plus --seeds {total} is past the last seed");
    };
    let nodes = args.nodes;
    let jobs = args.jobs.unwrap_or_else(default_jobs).max(1);
    // More threads than seeds would only idle.
    let workers = usize::try_from(total).map_or(jobs, |t| jobs.min(t.max(1)));
    let mut failures: Vec<(u64, String)> = Vec::new();
    let mut converged = Vec::new();
    let mut frames = 0u64;
    let mut bytes = 0u64;
    let mut stderr = std::io::stderr();
    // Workers take the next seed from a shared counter, so a slow seed does
    // not hold up the others; results come back in completion order and
    // everything printed at the end is independent of that order.
    let next = AtomicU64::new(0);
    let (tx, rx) = mpsc::channel::<(u64, Outcome)>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let seed = first + i;
                    if tx.send((seed, run_seed(nodes, seed))).is_err() {
                        break;
                    }
                }
            });
        }
        // Only the workers hold senders now: the loop ends when they do.
        drop(tx);
        for (done, (seed, outcome)) in rx.into_iter().enumerate() {
            match outcome {
                Outcome::Passed(report) => {
                    converged.push(report.converged_after);
                    frames += report.net.frames_sent;
                    bytes += report.net.bytes_sent;
                }
                Outcome::Failed(failure) => {
                    eprintln!("\nFAIL {failure}");
                    failures.push((seed, failure.to_string()));
                }
                Outcome::Panicked(message) => {
                    eprintln!(
                        "\nFAIL seed {seed} ({nodes} nodes) panicked: {message} (reproduce: {})",
                        replay_command(nodes, seed)
                    );
                    failures.push((seed, format!("panicked: {message}")));
                }
            }
            progress(&mut stderr, done as u64 + 1, total, failures.len());
        }
    });
    failures.sort_by_key(|&(seed, _)| seed);
    converged.sort();
    let runs = converged.len().max(1) as u64;
    println!("deterministic cluster-sim: {nodes} nodes, seeds {first}..{end}, {workers} job(s)");
    println!("  passed: {}/{}", converged.len(), total);
    if let (Some(min), Some(max)) = (converged.first(), converged.last()) {
        println!(
            "  healing phase converged in (virtual): min {:?}, median {:?}, max {:?}",
            min,
            converged[converged.len() / 2],
            max
        );
    }
    println!(
        "  traffic per run: {} frames, {} bytes (mean)",
        frames / runs,
        bytes / runs
    );
    println!("  wall time: {:.1?}", started.elapsed());
    if failures.is_empty() {
        println!(
            "  invariants: convergence, no dead members, event replay = state, quiet after convergence; registry: one holder per key, same winner everywhere, no key of a dead node, event replay = state, each loser told once: PASS"
        );
        return Ok(());
    }
    println!("  failed seeds, each with the command that replays it:");
    for (seed, _) in &failures {
        println!("    {}", replay_command(nodes, *seed));
    }
    bail!("{} of {} seed(s) failed", failures.len(), total)
}

/// A progress bar on a terminal; a line per tenth of the run in a log.
fn progress(stderr: &mut Stderr, done: u64, total: u64, failed: usize) {
    let total = total.max(1);
    if stderr.is_terminal() {
        let width = 30;
        let filled = (done * width / total) as usize;
        let _ = write!(
            stderr,
            "\r[{}{}] {done}/{total} seeds, {failed} failed",
            "#".repeat(filled),
            " ".repeat(width as usize - filled),
        );
        if done == total {
            let _ = writeln!(stderr);
        }
        let _ = stderr.flush();
    } else if done == total || done.is_multiple_of((total / 10).max(1)) {
        let _ = writeln!(stderr, "{done}/{total} seeds, {failed} failed");
    }
}

/// Traffic per node as the cluster grows, membership fixed: 1000
/// memberships in total, spread over the nodes; measured while they join
/// (deltas), then over a quiet minute of anti-entropy (digests only).
fn scaling(seed: u64) -> anyhow::Result<()> {
    use pg_core::GroupName;
    use pg_core::sim::{Cluster, SimConfig};
    use std::time::Duration;

    println!(
        "deterministic scaling: 1000 memberships in 10 groups, reliable network, anti-entropy every 5 s"
    );
    println!(
        "{:>6} {:>14} {:>14} {:>16} {:>16} {:>10}",
        "nodes", "join msgs/node", "join B/node", "quiet msgs/node/min", "quiet B/node/min", "wall"
    );
    for n in [10usize, 100, 1000] {
        let started = Instant::now();
        let scope = pg_core::ScopeConfig {
            anti_entropy_interval: Duration::from_secs(5),
            ..pg_core::ScopeConfig::default()
        };
        let mut cluster = Cluster::new(SimConfig {
            nodes: n,
            seed,
            scope,
            check_events: false,
            ..SimConfig::default()
        });
        cluster.drive_for(Duration::from_secs(2));
        let groups: Vec<GroupName> = (0..10)
            .filter_map(|g| GroupName::new(&format!("g{g}")).ok())
            .collect();
        let before = traffic(&cluster);
        for k in 0..1000usize {
            let node = k % n;
            let pid = cluster.spawn(node);
            cluster.join(node, &pid, std::slice::from_ref(&groups[k % groups.len()]))?;
            if k % 50 == 49 {
                cluster.drive_for(Duration::from_millis(10));
            }
        }
        cluster.drive_for(Duration::from_secs(1));
        if !cluster.versions_converged() {
            bail!("{n} nodes did not converge");
        }
        let joined = traffic(&cluster);
        cluster.drive_for(Duration::from_secs(60));
        let quiet = traffic(&cluster);
        cluster.check_converged()?;
        let per = |a: (u64, u64), b: (u64, u64)| {
            ((b.0 - a.0) as f64 / n as f64, (b.1 - a.1) as f64 / n as f64)
        };
        let (jm, jb) = per(before, joined);
        let (qm, qb) = per(joined, quiet);
        println!(
            "{n:>6} {jm:>14.1} {jb:>14.0} {qm:>16.1} {qb:>16.0} {:>9.1?}",
            started.elapsed()
        );
    }
    println!(
        "(joins send each change to every peer: O(N) per node; a converged cluster sends O(1) digests per node per interval, each O(N) bytes)"
    );
    Ok(())
}

fn traffic(cluster: &pg_core::sim::Cluster) -> (u64, u64) {
    let stats = cluster.net_stats();
    (stats.frames_sent, stats.bytes_sent)
}
