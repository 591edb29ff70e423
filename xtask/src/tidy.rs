//! Repository hygiene: every Rust file opens with `//!` docs, and pg-core
//! stays free of IO and async runtimes.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Crates pg-core must never depend on, directly or not: async runtimes,
/// sockets and TLS belong to pg-runtime and pg-net.
const FORBIDDEN_IN_CORE: &[&str] = &[
    "tokio",
    "quinn",
    "quinn-proto",
    "mio",
    "socket2",
    "async-std",
    "smol",
    "rustls",
    "futures",
];

/// The workspace root (the parent of this crate).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Every problem found, as a readable line.
pub(crate) fn check(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for file in rust_files(root)? {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        if !text.trim_start().starts_with("//!") {
            let rel = file.strip_prefix(root).unwrap_or(&file);
            problems.push(format!("{} does not open with `//!` docs", rel.display()));
        }
    }
    for dep in core_dependencies(root)? {
        if FORBIDDEN_IN_CORE.contains(&dep.as_str()) {
            problems.push(format!("pg-core depends on `{dep}`: it must stay sans-IO"));
        }
    }
    Ok(problems)
}

fn rust_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Names of every crate in pg-core's normal (non-dev) dependency tree.
fn core_dependencies(root: &Path) -> anyhow::Result<Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(root)
        .args([
            "tree",
            "-p",
            "pg-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .output()
        .context("running cargo tree")?;
    if !output.status.success() {
        bail!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy() {
        let problems = check(&workspace_root()).unwrap();
        assert!(
            problems.is_empty(),
            "tidy problems:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn detects_a_file_without_docs() {
        let dir = std::env::temp_dir().join(format!("pg-tidy-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/bad.rs"), "fn main() {}\n").unwrap();
        std::fs::write(dir.join("src/good.rs"), "//! Fine.\n").unwrap();
        let files = rust_files(&dir).unwrap();
        assert_eq!(files.len(), 2);
        let undocumented: Vec<_> = files
            .iter()
            .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
            .collect();
        assert_eq!(undocumented, vec![&dir.join("src/bad.rs")]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn core_tree_is_listed() {
        let deps = core_dependencies(&workspace_root()).unwrap();
        assert!(deps.iter().any(|d| d == "pg-core"));
        assert!(deps.iter().any(|d| d == "postcard"));
    }
}
