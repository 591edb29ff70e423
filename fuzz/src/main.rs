//! `pg-fuzz`: runs the fuzz targets for a while (see the crate docs), one
//! after another in turns, and reports what it found. Run by
//! `cargo xtask fuzz --minutes N`.
//!
//! The corpus starts from `fuzz/corpus/<target>/` (committed: inputs worth
//! replaying on every `cargo test`) plus structure-aware seeds; inputs
//! that reach a new outcome are written to `target/fuzz/corpus/<target>/`,
//! and findings to `target/fuzz/findings/<target>-<n>` with what went
//! wrong; the exit status is 1 if there was any.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use pg_fuzz::{Target, mutate, run, seed_input};

#[derive(Parser)]
struct Args {
    /// How long to run, in minutes, over all targets.
    #[arg(long, default_value_t = 1.0)]
    minutes: f64,
    /// Only this target (frame, message, record, config, scope).
    #[arg(long)]
    target: Option<String>,
    /// Seed of the random generator (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// The committed corpus.
    #[arg(long, default_value = "fuzz/corpus")]
    corpus: PathBuf,
    /// Where new corpus entries and findings go.
    #[arg(long, default_value = "target/fuzz")]
    out: PathBuf,
}

/// Most entries kept in memory per target.
const MAX_CORPUS: usize = 4096;

struct State {
    target: Target,
    corpus: Vec<Vec<u8>>,
    outcomes: HashSet<String>,
    runs: u64,
    findings: u64,
}

fn load(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

fn save(dir: &Path, name: &str, data: &[u8]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A short stable name for an input.
fn digest(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    format!("{h:016x}")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let targets: Vec<Target> = match &args.target {
        Some(name) => vec![Target::from_name(name).context("unknown target")?],
        None => Target::ALL.to_vec(),
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("pg-fuzz: seed {seed}, {} minute(s)", args.minutes);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut states: Vec<State> = targets
        .iter()
        .map(|&target| {
            let mut corpus = load(&args.corpus.join(target.name()));
            corpus.extend((0..64).map(|_| seed_input(target, &mut rng)));
            State {
                target,
                corpus,
                outcomes: HashSet::new(),
                runs: 0,
                findings: 0,
            }
        })
        .collect();
    // Panics are findings, reported by the run; keep stderr quiet.
    std::panic::set_hook(Box::new(|_| {}));
    let deadline = Instant::now() + Duration::from_secs_f64(args.minutes * 60.0);
    let slice = Duration::from_millis(500);
    while Instant::now() < deadline {
        for state in &mut states {
            let until = Instant::now() + slice;
            while Instant::now() < until {
                step(state, &mut rng, &args.out)?;
            }
        }
    }
    let mut total_findings = 0;
    for s in &states {
        eprintln!(
            "pg-fuzz: {:<8} {:>10} runs, {:>5} outcomes, corpus {:>5}, findings {}",
            s.target.name(),
            s.runs,
            s.outcomes.len(),
            s.corpus.len(),
            s.findings
        );
        total_findings += s.findings;
    }
    if total_findings > 0 {
        anyhow::bail!(
            "{total_findings} finding(s) in {}",
            args.out.join("findings").display()
        );
    }
    Ok(())
}

fn step(state: &mut State, rng: &mut fastrand::Rng, out: &Path) -> anyhow::Result<()> {
    let target = state.target;
    let input = if rng.u8(0..16) == 0 {
        seed_input(target, rng)
    } else {
        let a = &state.corpus[rng.usize(..state.corpus.len())];
        let b = &state.corpus[rng.usize(..state.corpus.len())];
        mutate(a, b, rng)
    };
    state.runs += 1;
    match run(target, &input) {
        Ok(outcome) => {
            if state.outcomes.insert(outcome) {
                save(
                    &out.join("corpus").join(target.name()),
                    &digest(&input),
                    &input,
                )?;
                if state.corpus.len() < MAX_CORPUS {
                    state.corpus.push(input);
                } else {
                    let i = rng.usize(..state.corpus.len());
                    state.corpus[i] = input;
                }
            }
        }
        Err(finding) => {
            state.findings += 1;
            let name = format!("{}-{}", target.name(), digest(&input));
            let path = save(&out.join("findings"), &name, &input)?;
            save(
                &out.join("findings"),
                &format!("{name}.txt"),
                finding.to_string().as_bytes(),
            )?;
            eprintln!("pg-fuzz: {}: {finding} ({})", target.name(), path.display());
        }
    }
    Ok(())
}
