//! `cargo xtask`: repository automation (rust-analyzer style), one module
//! per subcommand.
//!
//! - `cargo xtask cluster-sim [--nodes N] [--seed S] [--out DIR]`: real node
//!   processes over QUIC (the default)
//! - `cargo xtask cluster-sim --deterministic [--seed S] [--seeds K] [--nodes N] [--jobs J]`
//! - `cargo xtask bench [--cluster-only]`: the BENCHMARKS.md workloads, as
//!   JSON lines
//! - `cargo xtask fuzz [--minutes M] [--target T] [--seed S]`
//! - `cargo xtask chaos [--nodes N] [--seed S] [--minutes M]` and
//!   `cargo xtask soak [--nodes N] [--seed S] [--minutes M]` (root)
//! - `cargo xtask tidy`

mod bench;
mod chaos;
mod cluster_real;
mod cluster_sim;
mod model;
mod nodes;
mod plot;
mod tidy;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "pg-rs repository tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a simulated cluster and check its invariants.
    ClusterSim(cluster_sim::Args),
    /// Run the workloads of ../shared/BENCHMARKS.md (release build) and
    /// print JSON lines.
    Bench {
        /// Only the cluster workloads C1-C5 (for iterating on the network
        /// path).
        #[arg(long)]
        cluster_only: bool,
        /// Only the registry workloads R1-R3 (on the three-node cluster).
        #[arg(long)]
        registry_only: bool,
    },
    /// Fuzz every decoder a peer or a config file reaches (the pg-fuzz
    /// crate, release build); exits non-zero on any finding.
    Fuzz {
        /// How long, in minutes, over all targets.
        #[arg(long, default_value_t = 1.0)]
        minutes: f64,
        /// Only this target (frame, message, record, config, scope).
        #[arg(long)]
        target: Option<String>,
        /// Seed of the generator (default: from the clock).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Real node processes in network namespaces under churn and faults
    /// from outside (nftables, tc, signals); needs root, nftables and
    /// iproute2.
    Chaos {
        /// Nodes.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Seed of the fault schedule and the churn.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How long to inject faults, in minutes.
        #[arg(long, default_value_t = 2.0)]
        minutes: f64,
        /// Run this pg-node binary instead of building one (to replay a
        /// build, or to run several seeds at once while the tree changes).
        #[arg(long)]
        node_binary: Option<std::path::PathBuf>,
    },
    /// A long chaos run measured: a real cluster in network namespaces
    /// under churn and the faults that leave processes alive, sampling
    /// each node's memory, descriptors, tasks and queues every second;
    /// plots them and fails if any keeps growing once steady.
    Soak {
        /// Nodes.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Seed of the fault schedule and the churn.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How long, in minutes.
        #[arg(long, default_value_t = 30.0)]
        minutes: f64,
        /// Run this pg-node binary instead of building one.
        #[arg(long)]
        node_binary: Option<std::path::PathBuf>,
    },
    /// The chaos lab's NFQUEUE delayer (run by the lab inside a node's
    /// namespace; not for direct use).
    #[command(hide = true)]
    NfqDelay {
        #[arg(long)]
        queue: u16,
        #[arg(long)]
        delay_ms: u64,
        #[arg(long)]
        jitter_ms: u64,
        #[arg(long)]
        seed: u64,
    },
    /// Repository hygiene checks (also run by `cargo test -p xtask`).
    Tidy,
}

/// Prints an error as one line (with its causes) and exits with status 1.
/// Returning the error from `main` instead would print its `Debug` form,
/// which adds a stack backtrace whenever `RUST_BACKTRACE` is set, so an
/// expected outcome such as a failing seed would read like a crash.
fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::ClusterSim(args) => cluster_sim::run(&args),
        Command::Bench {
            cluster_only,
            registry_only,
        } => bench::run(cluster_only || registry_only, registry_only),
        Command::Fuzz {
            minutes,
            target,
            seed,
        } => fuzz(minutes, target, seed),
        Command::Chaos {
            nodes,
            seed,
            minutes,
            node_binary,
        } => chaos_run(nodes, seed, minutes, node_binary, false),
        Command::Soak {
            nodes,
            seed,
            minutes,
            node_binary,
        } => chaos_run(nodes, seed, minutes, node_binary, true),
        Command::NfqDelay {
            queue,
            delay_ms,
            jitter_ms,
            seed,
        } => chaos::delay_packets(
            queue,
            std::time::Duration::from_millis(delay_ms),
            std::time::Duration::from_millis(jitter_ms),
            seed,
        ),
        Command::Tidy => {
            let root = tidy::workspace_root();
            let problems = tidy::check(&root)?;
            if problems.is_empty() {
                println!("tidy: ok");
                Ok(())
            } else {
                for p in &problems {
                    eprintln!("tidy: {p}");
                }
                anyhow::bail!("{} tidy problem(s)", problems.len())
            }
        }
    }
}

/// Builds `pg-node` and runs a chaos run or a soak with it.
fn chaos_run(
    nodes: usize,
    seed: u64,
    minutes: f64,
    node_binary: Option<std::path::PathBuf>,
    soak: bool,
) -> anyhow::Result<()> {
    let root = tidy::workspace_root();
    let binary = match node_binary {
        Some(path) => std::path::absolute(path)?,
        None => nodes::build_binary(&root, "pg-node", "pg-node", true)?,
    };
    chaos::run(chaos::ChaosArgs {
        nodes,
        seed,
        minutes,
        out: root
            .join("target")
            .join(if soak { "soak" } else { "chaos" }),
        binary,
        soak,
    })
}

/// Builds and runs `pg-fuzz` from the workspace root (where its corpus and
/// output directories are).
fn fuzz(minutes: f64, target: Option<String>, seed: Option<u64>) -> anyhow::Result<()> {
    let root = tidy::workspace_root();
    let binary = nodes::build_binary(&root, "pg-fuzz", "pg-fuzz", true)?;
    let mut cmd = std::process::Command::new(binary);
    cmd.current_dir(&root)
        .args(["--minutes", &minutes.to_string()]);
    if let Some(target) = target {
        cmd.args(["--target", &target]);
    }
    if let Some(seed) = seed {
        cmd.args(["--seed", &seed.to_string()]);
    }
    if !cmd.status()?.success() {
        anyhow::bail!("pg-fuzz reported findings (target/fuzz/findings)");
    }
    Ok(())
}
