//! `pg-node` processes driven over their stdin, shared by the real
//! cluster-sim and the cluster workloads of `cargo xtask bench`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use pg_net::DevCa;

const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `pg-node` process.
pub(crate) struct NodeProc {
    pub(crate) name: String,
    pub(crate) child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    /// Process index -> pid text, `None` once exited.
    pub(crate) pids: Vec<Option<String>>,
    pub(crate) alive: bool,
}

impl NodeProc {
    pub(crate) fn cmd(&mut self, line: &str) -> anyhow::Result<String> {
        writeln!(self.stdin, "{line}")
            .with_context(|| format!("{}: writing {line:?}", self.name))?;
        self.stdin.flush()?;
        let answer = self
            .lines
            .recv_timeout(REPLY_TIMEOUT)
            .map_err(|_| anyhow!("{}: no answer to {line:?}", self.name))?;
        Ok(answer)
    }

    /// Sends a command without waiting for its answer (read it with
    /// [`answer`](Self::answer)): a node can wait for an event while the
    /// driver acts on another.
    pub(crate) fn send(&mut self, line: &str) -> anyhow::Result<()> {
        writeln!(self.stdin, "{line}")
            .with_context(|| format!("{}: writing {line:?}", self.name))?;
        self.stdin.flush()?;
        Ok(())
    }

    /// The answer to the command sent last, which must succeed; returns
    /// what follows `ok`.
    pub(crate) fn answer(&mut self) -> anyhow::Result<String> {
        let answer = self
            .lines
            .recv_timeout(REPLY_TIMEOUT)
            .map_err(|_| anyhow!("{}: no answer", self.name))?;
        match answer.strip_prefix("ok") {
            Some(rest) => Ok(rest.trim().to_owned()),
            None => bail!("{}: answered {answer:?}", self.name),
        }
    }

    /// A command that must succeed; returns what follows `ok`.
    pub(crate) fn ok(&mut self, line: &str) -> anyhow::Result<String> {
        let answer = self.cmd(line)?;
        match answer.strip_prefix("ok") {
            Some(rest) => Ok(rest.trim().to_owned()),
            None => bail!("{}: {line:?} answered {answer:?}", self.name),
        }
    }

    pub(crate) fn live_pids(&self) -> impl Iterator<Item = (usize, &String)> {
        self.pids
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
    }
}

/// Starts a `pg-node` process named `name` listening on `port`, with its
/// certificate from `ca` and its configuration written to `dir`.
pub(crate) fn start_node(
    dir: &Path,
    binary: &Path,
    ca: &DevCa,
    name: &str,
    port: u16,
    seeds: &[SocketAddr],
) -> anyhow::Result<NodeProc> {
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let place = Placement {
        listen,
        netns: None,
        env: &[],
    };
    start_node_at(dir, binary, ca, name, seeds, &place)
}

/// Where and how a node process runs.
pub(crate) struct Placement<'a> {
    /// The address it listens on.
    pub(crate) listen: SocketAddr,
    /// The network namespace it runs in (through `ip netns exec`, which
    /// execs the node, so the child's pid is the node's).
    pub(crate) netns: Option<&'a str>,
    /// Extra environment variables.
    pub(crate) env: &'a [(&'a str, &'a str)],
}

/// [`start_node`] as `place` says.
pub(crate) fn start_node_at(
    dir: &Path,
    binary: &Path,
    ca: &DevCa,
    name: &str,
    seeds: &[SocketAddr],
    place: &Placement<'_>,
) -> anyhow::Result<NodeProc> {
    let listen = place.listen;
    let (cert, key) = ca.issue_pem(name)?;
    std::fs::write(dir.join(format!("{name}.pem")), cert)?;
    std::fs::write(dir.join(format!("{name}.key")), key)?;
    let seeds: Vec<String> = seeds.iter().map(ToString::to_string).collect();
    let yaml = format!(
        "- name: sim\n  kind: pg.scope\n  anti_entropy_interval: 2s\n\
         - name: \"{name}\"\n  kind: pg.node\n  cluster: sim\n  mailbox_capacity: 65536\n  listen: {listen}\n  seeds: [{}]\n  \
         tls: {{ ca: ca.pem, cert: {name}.pem, key: {name}.key }}\n",
        seeds.join(", ")
    );
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(&config, yaml)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))?;
    let mut command = match place.netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    let mut child = command
        .envs(place.env.iter().copied())
        .arg("--stdin")
        .arg(&config)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok(NodeProc {
        name: name.to_owned(),
        child,
        stdin,
        lines,
        pids: Vec::new(),
        alive: true,
    })
}

/// `n` ports free on 127.0.0.1 right now.
pub(crate) fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let sockets: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    Ok(sockets
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()?)
}

/// Builds binary `bin` of package `package` (release or debug) and returns
/// its path.
pub(crate) fn build_binary(
    root: &Path,
    package: &str,
    bin: &str,
    release: bool,
) -> anyhow::Result<std::path::PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--quiet", "-p", package, "--bin", bin]);
    if release {
        cmd.arg("--release");
    }
    if !cmd.status()?.success() {
        bail!("building {bin} failed");
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into);
    Ok(target
        .join(if release { "release" } else { "debug" })
        .join(bin))
}
