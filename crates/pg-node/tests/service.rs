//! `pg-node` as operators run it: a real process from a YAML file, probed
//! over real HTTP, stopped with SIGTERM; and the harness mode answering a
//! bad line instead of dying.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pg-node");

fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pg-node-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("node.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// One HTTP/1.1 GET over a fresh connection: (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Waits for the process to exit, at most `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < limit, "pg-node did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn serves_health_and_metrics_and_leaves_on_sigterm() {
    let config = config_file(
        "service",
        "- name: pg\n  kind: pg.scope\n- name: solo-${PG_TEST_SUFFIX:-x}\n  kind: pg.node\n",
    );
    let mut child = Command::new(BIN)
        .args(["--http", "127.0.0.1:0", "--log-format", "json"])
        .arg(&config)
        .env("PG_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("http ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();

    let (status, body) = get(addr, "/healthz");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(health["node"].as_str().unwrap().starts_with("solo-x"));
    assert_eq!(health["status"], "ok");
    assert_eq!(health["scopes"][0]["scope"], "app:pg");
    assert_eq!(health["scopes"][0]["check"], "pg.broadcast_recent.app:pg");

    let (status, metrics) = get(addr, "/metrics");
    assert_eq!(status, 200);
    for name in ["pg_groups", "pg_local_memberships", "pg_action_queue_depth"] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    assert_eq!(get(addr, "/nope").0, 404);

    // SIGTERM: a graceful exit, logged as JSON lines.
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let leaving = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|l| l["fields"]["message"] == "leaving the cluster");
    assert!(leaving, "no JSON log of the graceful exit in:\n{logs}");
}

#[test]
fn the_harness_answers_a_bad_line_and_keeps_going() {
    let config = config_file(
        "harness",
        "- name: pg\n  kind: pg.scope\n- name: solo\n  kind: pg.node\n",
    );
    let mut child = Command::new(BIN)
        .arg("--stdin")
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut ask = |command: &str| {
        writeln!(stdin, "{command}").unwrap();
        let mut answer = String::new();
        stdout.read_line(&mut answer).unwrap();
        answer.trim().to_owned()
    };
    assert!(ask("spawn notanumber").starts_with("err INVALID"));
    assert!(ask("join 7 g").starts_with("err"));
    assert!(ask("bogus").starts_with("err INVALID"));
    assert!(ask("spawn 1").starts_with("ok "));
    assert_eq!(ask("join 0 g"), "ok");
    assert_eq!(ask("count"), "ok 1");
    // The registry commands, and R3's observer: a key that is there is
    // answered with a time, one that never comes with `ok` alone.
    assert_eq!(ask("register 0 k"), "ok");
    let seen: u64 = ask("await_lookup k 10000")
        .strip_prefix("ok ")
        .and_then(|t| t.parse().ok())
        .unwrap();
    assert!(seen > 0);
    assert_eq!(ask("await_lookup missing 20"), "ok");
    assert!(ask("await_lookup k soon").starts_with("err INVALID"));
    assert_eq!(ask("quit"), "ok");
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}
