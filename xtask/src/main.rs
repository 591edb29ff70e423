//! `cargo xtask`: repository automation (rust-analyzer style), one module
//! per subcommand.
//!
//! - `cargo xtask cluster-sim [--nodes N] [--seed S] [--out DIR]`: real node
//!   processes over QUIC (the default)
//! - `cargo xtask cluster-sim --deterministic [--seed S] [--seeds K] [--nodes N] [--jobs J]`
//! - `cargo xtask bench [--cluster-only]`: the BENCHMARKS.md workloads, as
//!   JSON lines
//! - `cargo xtask tidy`

mod bench;
mod cluster_real;
mod cluster_sim;
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
