//! Running `ws-fanout` processes for the tests: certificates, ports, a
//! configuration per node, and the process killed when dropped.

#![allow(dead_code, clippy::unwrap_used)] // each test uses a part; helpers fail loudly

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use pg_api::DevCa;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_ws-fanout");

/// A running service; killed when dropped.
pub(crate) struct Service {
    pub(crate) child: Child,
    /// Where it serves HTTP and WebSockets.
    pub(crate) http: SocketAddr,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the service with `config` (and `env`), and reads the HTTP
/// address it prints.
pub(crate) fn run(config: &Path, env: &[(&str, &str)]) -> Service {
    let mut command = Command::new(BIN);
    command.arg("--config").arg(config).stdout(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let http = line.trim().strip_prefix("http ").unwrap().parse().unwrap();
    Service { child, http }
}

/// Starts node `name` of cluster `cluster` on 127.0.0.1:`port` (seeded at
/// `seed`), with its certificate from `dir` (see [`certificates`]).
pub(crate) fn start(
    dir: &Path,
    cluster: &str,
    name: &str,
    port: u16,
    seed: Option<u16>,
) -> Service {
    let seeds = seed.map(|p| format!("127.0.0.1:{p}")).unwrap_or_default();
    let yaml = format!(
        "- name: chat\n  kind: pg.scope\n\
         - name: {name}\n  kind: pg.node\n  cluster: {cluster}\n  listen: 127.0.0.1:{port}\n  seeds: [{seeds}]\n  \
         tls: {{ ca: ca.pem, cert: {name}.pem, key: {name}.key }}\n\
         - name: http\n  kind: ws-fanout.http\n  listen: 127.0.0.1:0\n"
    );
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(&config, yaml).unwrap();
    run(&config, &[])
}

/// A fresh directory `tag` holding a CA (`ca.pem`) and a certificate and
/// key for each of `names`.
pub(crate) fn certificates(tag: &str, names: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ws-fanout-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = DevCa::generate(tag).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.certificate_pem()).unwrap();
    for name in names {
        let (cert, key) = ca.issue_pem(name).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key).unwrap();
    }
    dir
}

/// `n` UDP ports free on 127.0.0.1 right now.
pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let sockets: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    sockets
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect()
}
