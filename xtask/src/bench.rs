//! `cargo xtask bench`: the workloads of ../shared/BENCHMARKS.md, in a
//! release build, printed as one JSON object per line on stdout (progress
//! and notes on stderr), in the schema `../shared/tools/bench-compare`
//! reads.
//!
//! Implemented: the single-node workloads W1-W7 and M1 (the
//! `pg-workloads` binary of the benches crate). The cluster workloads
//! C1-C4 (three node processes over QUIC) are not implemented yet; the
//! command says so on stderr.

use std::process::Command;

use anyhow::bail;

pub(crate) fn run() -> anyhow::Result<()> {
    let root = crate::tidy::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("bench: building the workloads (release)...");
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "pg-benches",
            "--bin",
            "pg-workloads",
        ])
        .status()?;
    if !status.success() {
        bail!("building pg-workloads failed");
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into);
    eprintln!("bench: single-node workloads W1-W7, M1 (about 10 s)");
    let status = Command::new(target.join("release").join("pg-workloads")).status()?;
    if !status.success() {
        bail!("pg-workloads failed");
    }
    eprintln!(
        "bench: the cluster workloads C1-C4 (three node processes over QUIC) are not implemented yet"
    );
    Ok(())
}
