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
//! | delay, jitter, reordering | `tc qdisc netem` on both ends of the node's veth where the kernel has netem; otherwise `iptables -j NFQUEUE` in the node's namespace and our delayer (`delayer.rs`) holding each packet for the delay plus a random share of the jitter (reordering is jitter larger than the gap between packets) |
//!
//! The lab is torn down when dropped. A run that was killed before it
//! could tear down leaves its namespaces behind; each lab records its
//! owner (`/run/pg-xtask-lab/<prefix>.owner`), and a new lab first removes
//! every chaos or soak namespace whose owner is gone, processes in it
//! included, while another run's live lab is left alone (and a run with
//! the same prefix as a live one refuses to start).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};

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
    prefix: String,
    nodes: usize,
    /// (from, to) -> fault.
    faults: BTreeMap<(usize, usize), LinkFault>,
    /// Node -> rate limit in kbit/s.
    rates: BTreeMap<usize, u32>,
    /// Whether the kernel has netem (probed at creation).
    netem: bool,
    /// Node -> its delay, and the delayer process when NFQUEUE makes it.
    delays: BTreeMap<usize, Option<Child>>,
}

/// A delay on every packet to and from a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delay {
    pub(crate) millis: u32,
    /// Up to this much more, at random per packet (reorders packets
    /// closer together than it).
    pub(crate) jitter_millis: u32,
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
    // iptables is only needed for delays where the kernel has no netem
    // (checked when the lab is made).
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
    pub(crate) fn create(nodes: usize, prefix: String) -> anyhow::Result<Lab> {
        if nodes == 0 || nodes > 200 {
            bail!("1 to 200 nodes");
        }
        if let Some(pid) = owner_elsewhere(&prefix) {
            bail!(
                "a lab named {prefix} is in use by process {pid} (the same kind of run with the same seed): wait for it or pick another --seed"
            );
        }
        remove_abandoned(&prefix);
        std::fs::create_dir_all(OWNERS)?;
        std::fs::write(owner_file(&prefix), std::process::id().to_string())?;
        let lab = Lab {
            prefix,
            nodes,
            faults: BTreeMap::new(),
            rates: BTreeMap::new(),
            netem: false,
            delays: BTreeMap::new(),
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
        let mut lab = lab;
        lab.netem = lab.probe_netem();
        lab.probe_kernel()?;
        Ok(lab)
    }

    /// Fails now, not minutes into a run, if a fault cannot be made here:
    /// `tbf` for rate limits, and without netem, `iptables` with
    /// `NFQUEUE` for delays.
    fn probe_kernel(&self) -> anyhow::Result<()> {
        let ns = self.netns(0);
        let tbf = [
            "ip", "netns", "exec", &ns, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate",
            "256kbit", "burst", "32kbit", "latency", "200ms",
        ];
        run(&tbf, None).context("rate limits need the tbf qdisc (sch_tbf)")?;
        run(
            &[
                "ip", "netns", "exec", &ns, "tc", "qdisc", "del", "dev", "eth0", "root",
            ],
            None,
        )?;
        if self.netem {
            return Ok(());
        }
        let nfqueue = nfqueue_rule(&ns, "OUTPUT", "-o", "eth0");
        run(&nfqueue, None).context(
            "this kernel has no netem, so delays need `iptables` (apt-get install iptables) with NFQUEUE (xt_NFQUEUE) for the delayer",
        )?;
        run(
            &["ip", "netns", "exec", &ns, "iptables", "-F", "OUTPUT"],
            None,
        )
    }

    /// Whether `tc qdisc ... netem` works here (tried on node 0's veth,
    /// inside the lab).
    fn probe_netem(&self) -> bool {
        let ns = self.netns(0);
        let add = [
            "ip", "netns", "exec", &ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
            "delay", "1ms",
        ];
        let works = run(&add, None).is_ok();
        if works {
            let _ = run(
                &[
                    "ip", "netns", "exec", &ns, "tc", "qdisc", "del", "dev", "eth0", "root",
                ],
                None,
            );
        }
        works
    }

    /// How delays are made: `netem` or `nfqueue`.
    pub(crate) fn delay_method(&self) -> &'static str {
        if self.netem { "netem" } else { "nfqueue" }
    }

    /// Delays every packet to and from node `i` (or with `None` stops
    /// doing so, releasing what is held). `seed` seeds the delayer's
    /// jitter.
    pub(crate) fn set_delay(
        &mut self,
        i: usize,
        delay: Option<Delay>,
        seed: u64,
    ) -> anyhow::Result<()> {
        let ns = self.netns(i);
        let hub = self.hub();
        let (veth, port) = (format!("eth{i}"), format!("p{i}"));
        if let Some(delayer) = self.delays.remove(&i) {
            match delayer {
                None => {
                    run(
                        &[
                            "ip", "netns", "exec", &ns, "tc", "qdisc", "del", "dev", &veth, "root",
                        ],
                        None,
                    )?;
                    run(
                        &[
                            "ip", "netns", "exec", &hub, "tc", "qdisc", "del", "dev", &port, "root",
                        ],
                        None,
                    )?;
                }
                Some(mut child) => {
                    // Rules first, so nothing new is queued; then the
                    // delayer releases what it holds and exits.
                    run(
                        &["ip", "netns", "exec", &ns, "iptables", "-F", "OUTPUT"],
                        None,
                    )?;
                    run(
                        &["ip", "netns", "exec", &ns, "iptables", "-F", "INPUT"],
                        None,
                    )?;
                    drop(child.stdin.take());
                    let status = child.wait()?;
                    if !status.success() {
                        bail!("the NFQUEUE delayer of n{i} failed ({status})");
                    }
                }
            }
        }
        let Some(d) = delay else {
            return Ok(());
        };
        let (ms, jitter) = (format!("{}ms", d.millis), format!("{}ms", d.jitter_millis));
        if self.netem {
            for (space, dev) in [(&ns, &veth), (&hub, &port)] {
                run(
                    &[
                        "ip", "netns", "exec", space, "tc", "qdisc", "add", "dev", dev, "root",
                        "netem", "delay", &ms, &jitter,
                    ],
                    None,
                )?;
            }
            self.delays.insert(i, None);
            return Ok(());
        }
        // This very program, even if its file was replaced by a rebuild
        // since it started (`current_exe` would then name a deleted file).
        let exe = format!("/proc/{}/exe", std::process::id());
        let child = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(exe)
            .args([
                "nfq-delay",
                "--queue",
                "0",
                "--delay-ms",
                &d.millis.to_string(),
            ])
            .args([
                "--jitter-ms",
                &d.jitter_millis.to_string(),
                "--seed",
                &seed.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("starting the NFQUEUE delayer")?;
        self.delays.insert(i, Some(child));
        for (chain, dir) in [("OUTPUT", "-o"), ("INPUT", "-i")] {
            run(&nfqueue_rule(&ns, chain, dir, &veth), None)?;
        }
        Ok(())
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
        for i in self.delays.keys().copied().collect::<Vec<_>>() {
            self.set_delay(i, None, 0)?;
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

/// The command that sends what passes `dev` in `chain` (`dir`: `-o` or
/// `-i`) of namespace `ns` to netfilter queue 0 (let through while nothing
/// reads the queue).
fn nfqueue_rule<'a>(ns: &'a str, chain: &'a str, dir: &'a str, dev: &'a str) -> [&'a str; 14] {
    [
        "ip",
        "netns",
        "exec",
        ns,
        "iptables",
        "-A",
        chain,
        dir,
        dev,
        "-j",
        "NFQUEUE",
        "--queue-num",
        "0",
        "--queue-bypass",
    ]
}

/// Where labs record their owners.
const OWNERS: &str = "/run/pg-xtask-lab";

/// The prefixes of chaos and soak labs (see `chaos::run`).
const LAB_KINDS: [&str; 2] = ["pgchaos", "pgsoak"];

fn owner_file(prefix: &str) -> String {
    format!("{OWNERS}/{prefix}.owner")
}

/// The running xtask other than us that owns the lab `prefix`, if any (a
/// recorded pid whose process is gone, or is no xtask any more, owns
/// nothing).
fn owner_elsewhere(prefix: &str) -> Option<u32> {
    let pid = recorded_owner(prefix)?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (pid != std::process::id() && comm.trim() == "xtask").then_some(pid)
}

fn recorded_owner(prefix: &str) -> Option<u32> {
    std::fs::read_to_string(owner_file(prefix))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Removes the namespaces of `prefix` (ours: an earlier run of the same
/// seed left them) and of every other chaos or soak lab that is abandoned:
/// its recorded owner is gone, or, with no owner recorded (a lab of an
/// older xtask), nothing runs in it. The processes still in a namespace
/// are killed first (a paused node never exits by itself, and deleting a
/// namespace does not end its processes).
fn remove_abandoned(prefix: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let mut labs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some((lab, _)) = name.rsplit_once('-') else {
            continue;
        };
        let a_lab = LAB_KINDS.iter().any(|k| {
            lab.strip_prefix(k)
                .is_some_and(|seed| seed.parse::<u64>().is_ok())
        });
        if lab == prefix || a_lab {
            labs.entry(lab.to_owned())
                .or_default()
                .push(name.to_owned());
        }
    }
    for (lab, spaces) in labs {
        let abandoned = if lab == prefix {
            true
        } else if recorded_owner(&lab).is_some() {
            owner_elsewhere(&lab).is_none()
        } else {
            spaces.iter().all(|ns| namespace_pids(ns).is_empty())
        };
        if !abandoned {
            continue;
        }
        for ns in &spaces {
            remove_namespace(ns);
        }
        if lab != prefix {
            let _ = std::fs::remove_file(owner_file(&lab));
        }
    }
}

fn namespace_pids(name: &str) -> Vec<String> {
    Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Kills what runs in namespace `name`, then deletes it.
fn remove_namespace(name: &str) {
    for pid in namespace_pids(name) {
        // SIGKILL ends a stopped process too.
        let _ = run(&["kill", "-KILL", &pid], None);
    }
    let _ = run(&["ip", "netns", "del", name], None);
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, delayer) in std::mem::take(&mut self.delays) {
            if let Some(mut child) = delayer {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Only if the lab is still ours: a run that found it abandoned
        // (this one was killed and its pid reused) may hold it now.
        if recorded_owner(&self.prefix) == Some(std::process::id()) {
            remove_abandoned(&self.prefix);
            let _ = std::fs::remove_file(owner_file(&self.prefix));
        }
    }
}
