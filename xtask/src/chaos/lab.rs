//! The network the chaos nodes live on, and the faults applied to it from
//! outside the processes: one Linux network namespace per node, joined by
//! a bridge in a namespace of its own (nothing on the host's interfaces or
//! firewall changes), with nftables rules and a tbf qdisc for the faults.
//!
//! | fault | how |
//! |---|---|
//! | partition, symmetric or one-way | nft `bridge` table in the hub: drop frames by source and destination address |
//! | loss | the same rule with `numgen random mod 100 < p` |
//! | duplication | nft `netdev` ingress on the sender's hub port: `dup to` the receiver's port (the copy skips the bridge, so it is not duplicated again) |
//! | rate limit | `tc qdisc tbf` on the node's veth |
//! | delay, jitter, reordering | not yet: this kernel has no netem, and the NFQUEUE delayer is still to be written |
//!
//! The lab is torn down when dropped (and any leftover of an earlier run
//! with the same prefix is removed first).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The port every node listens on, in its own namespace.
pub(crate) const PORT: u16 = 4000;

/// One link fault between two nodes (by index), in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkFault {
    /// Every packet dropped.
    Cut,
    /// This percentage of packets dropped.
    Loss(u8),
    /// This percentage of packets delivered twice.
    Dup(u8),
}

pub(crate) struct Lab {
    /// Prefix of every namespace this lab creates (a chaos run and a soak
    /// use different ones, so one never removes the other's).
    prefix: &'static str,
    nodes: usize,
    /// (from, to) -> fault.
    faults: BTreeMap<(usize, usize), LinkFault>,
    /// Node -> rate limit in kbit/s.
    rates: BTreeMap<usize, u32>,
}

fn run(args: &[&str], input: Option<&str>) -> anyhow::Result<()> {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// What the lab needs, said plainly when missing.
pub(crate) fn check_prerequisites() -> anyhow::Result<()> {
    let mut missing = Vec::new();
    // Root: namespaces and nftables need it.
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        });
    if uid.as_deref() != Some("0") {
        missing.push("root (network namespaces and nftables)".to_owned());
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables"), ("tc", "iproute2")] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            missing.push(format!("`{tool}` (apt-get install {package})"));
        }
    }
    if !missing.is_empty() {
        bail!("cargo xtask chaos needs: {}", missing.join(", "));
    }
    Ok(())
}

impl Lab {
    /// The namespace of node `i`.
    pub(crate) fn netns(&self, i: usize) -> String {
        format!("{}-n{i}", self.prefix)
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    /// Node `i`'s address.
    pub(crate) fn addr(i: usize) -> SocketAddr {
        SocketAddr::from((Self::ip(i), PORT))
    }

    fn ip(i: usize) -> Ipv4Addr {
        // Nodes are few (checked by the caller): .1 to .200.
        Ipv4Addr::new(10, 77, 0, (i + 1) as u8)
    }

    /// Creates the namespaces (named `<prefix>-...`), the bridge and one
    /// veth per node.
    pub(crate) fn create(nodes: usize, prefix: &'static str) -> anyhow::Result<Lab> {
        if nodes == 0 || nodes > 200 {
            bail!("1 to 200 nodes");
        }
        remove_leftovers(prefix);
        let lab = Lab {
            prefix,
            nodes,
            faults: BTreeMap::new(),
            rates: BTreeMap::new(),
        };
        let hub = lab.hub();
        run(&["ip", "netns", "add", &hub], None)?;
        run(
            &["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"],
            None,
        )?;
        run(&["ip", "-n", &hub, "link", "set", "br0", "up"], None)?;
        for i in 0..nodes {
            let ns = lab.netns(i);
            let (veth, port) = (format!("eth{i}"), format!("p{i}"));
            let cidr = format!("{}/24", Self::ip(i));
            run(&["ip", "netns", "add", &ns], None)?;
            run(
                &[
                    "ip", "link", "add", &veth, "netns", &ns, "type", "veth", "peer", "name",
                    &port, "netns", &hub,
                ],
                None,
            )?;
            run(&["ip", "-n", &ns, "addr", "add", &cidr, "dev", &veth], None)?;
            run(&["ip", "-n", &ns, "link", "set", &veth, "up"], None)?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"], None)?;
            run(
                &["ip", "-n", &hub, "link", "set", &port, "master", "br0"],
                None,
            )?;
            run(&["ip", "-n", &hub, "link", "set", &port, "up"], None)?;
        }
        Ok(lab)
    }

    /// Sets (or with `None` clears) the fault from `from` to `to`.
    pub(crate) fn set(&mut self, from: usize, to: usize, fault: Option<LinkFault>) {
        match fault {
            Some(f) => self.faults.insert((from, to), f),
            None => self.faults.remove(&(from, to)),
        };
    }

    /// Limits node `i`'s outgoing rate (or with `None` lifts it).
    pub(crate) fn set_rate(&mut self, i: usize, kbit: Option<u32>) -> anyhow::Result<()> {
        let ns = self.netns(i);
        let dev = format!("eth{i}");
        if self.rates.remove(&i).is_some() {
            run(
                &[
                    "ip", "netns", "exec", &ns, "tc", "qdisc", "del", "dev", &dev, "root",
                ],
                None,
            )?;
        }
        if let Some(kbit) = kbit {
            let rate = format!("{kbit}kbit");
            run(
                &[
                    "ip", "netns", "exec", &ns, "tc", "qdisc", "add", "dev", &dev, "root", "tbf",
                    "rate", &rate, "burst", "32kbit", "latency", "200ms",
                ],
                None,
            )?;
            self.rates.insert(i, kbit);
        }
        Ok(())
    }

    /// Clears every link fault and rate limit.
    pub(crate) fn heal(&mut self) -> anyhow::Result<()> {
        self.faults.clear();
        for i in self.rates.keys().copied().collect::<Vec<_>>() {
            self.set_rate(i, None)?;
        }
        self.apply()
    }

    /// Writes the hub's whole ruleset from the faults now set (replacing
    /// the previous one in one transaction).
    pub(crate) fn apply(&self) -> anyhow::Result<()> {
        let mut rules = String::from(
            "flush ruleset\ntable bridge chaos {\n chain forward {\n  type filter hook forward priority 0;\n",
        );
        let mut dups = String::new();
        for (&(from, to), fault) in &self.faults {
            let (a, b) = (Self::ip(from), Self::ip(to));
            match fault {
                LinkFault::Cut => {
                    rules.push_str(&format!("  ip saddr {a} ip daddr {b} drop\n"));
                }
                LinkFault::Loss(p) => rules.push_str(&format!(
                    "  ip saddr {a} ip daddr {b} numgen random mod 100 < {p} drop\n"
                )),
                LinkFault::Dup(p) => dups.push_str(&format!(
                    " chain dup{from}to{to} {{\n  type filter hook ingress device \"p{from}\" priority 0;\n  ip daddr {b} numgen random mod 100 < {p} dup to \"p{to}\"\n }}\n"
                )),
            }
        }
        rules.push_str(" }\n}\n");
        if !dups.is_empty() {
            rules.push_str(&format!("table netdev chaosdup {{\n{dups}}}\n"));
        }
        run(
            &["ip", "netns", "exec", &self.hub(), "nft", "-f", "-"],
            Some(&rules),
        )
    }

    /// Number of nodes.
    pub(crate) fn len(&self) -> usize {
        self.nodes
    }
}

/// Deletes every namespace of an earlier lab (a run that was killed).
fn remove_leftovers(prefix: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(name) = line.split_whitespace().next()
            && name.starts_with(&format!("{prefix}-"))
        {
            let _ = run(&["ip", "netns", "del", name], None);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        remove_leftovers(self.prefix);
    }
}
