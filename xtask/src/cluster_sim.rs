//! `cargo xtask cluster-sim`: run a cluster and check its invariants.
//!
//! The deterministic mode drives pg-core nodes through `pg_core::sim`:
//! a faulty phase (loss, duplication, reordering, partitions, crashes and
//! restarts), then a healing phase that must converge within a bound. Each
//! seed reproduces its run exactly; a failure prints the seed.

use std::io::{IsTerminal, Stderr, Write};
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
    /// Where the real mode writes its report and plot.
    #[arg(long, default_value = "target/cluster-sim")]
    out: std::path::PathBuf,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if args.deterministic {
        return deterministic(args);
    }
    let root = crate::tidy::workspace_root();
    let binary = build_node(&root)?;
    crate::cluster_real::run(crate::cluster_real::RealArgs {
        nodes: args.nodes,
        seed: args.seed,
        out: root.join(&args.out),
        binary,
    })
}

/// Builds the `pg-node` binary the real mode runs, in the profile xtask
/// itself was built with.
fn build_node(root: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let release = !cfg!(debug_assertions);
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--quiet", "-p", "pg-api", "--bin", "pg-node"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status()?;
    if !status.success() {
        bail!("building pg-node failed");
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into);
    Ok(target
        .join(if release { "release" } else { "debug" })
        .join("pg-node"))
}

fn deterministic(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut converged = Vec::new();
    let mut frames = 0u64;
    let mut bytes = 0u64;
    let mut stderr = std::io::stderr();
    for (i, seed) in (args.seed..args.seed + args.seeds).enumerate() {
        let config = ScenarioConfig::new(args.nodes, seed);
        match scenario::run(&config) {
            Ok(report) => {
                converged.push(report.converged_after);
                frames += report.net.frames_sent;
                bytes += report.net.bytes_sent;
            }
            Err(failure) => {
                eprintln!("\nFAIL {failure}");
                failures.push(seed);
            }
        }
        progress(&mut stderr, i as u64 + 1, args.seeds, failures.len());
    }
    converged.sort();
    let runs = converged.len().max(1) as u64;
    println!(
        "deterministic cluster-sim: {} nodes, seeds {}..{}",
        args.nodes,
        args.seed,
        args.seed + args.seeds
    );
    println!("  passed: {}/{}", converged.len(), args.seeds);
    if let (Some(first), Some(last)) = (converged.first(), converged.last()) {
        println!(
            "  healing phase converged in (virtual): min {:?}, median {:?}, max {:?}",
            first,
            converged[converged.len() / 2],
            last
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
            "  invariants: convergence, no dead members, event replay = state, quiet after convergence: PASS"
        );
        Ok(())
    } else {
        bail!(
            "{} seed(s) failed: {:?} (rerun one with --deterministic --nodes {} --seed S --seeds 1)",
            failures.len(),
            failures,
            args.nodes
        )
    }
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
