//! `pg-node certs`: a CA saved to files and reused later issues
//! certificates that real nodes accept from each other over QUIC + mTLS.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pg_api::{Node, ScopeOptions, TlsIdentity};

const BIN: &str = env!("CARGO_BIN_EXE_pg-node");

fn certs(args: &[&str]) -> std::process::Output {
    Command::new(BIN).arg("certs").args(args).output().unwrap()
}

fn identity(dir: &Path, name: &str) -> TlsIdentity {
    TlsIdentity::from_pem_files(
        &dir.join("ca.pem"),
        &dir.join(format!("{name}.pem")),
        &dir.join(format!("{name}.key")),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_ca_issues_certificates_nodes_accept() {
    let dir = std::env::temp_dir().join(format!("pg-node-certs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    assert!(
        certs(&["create-ca", "--dir", d, "--cluster", "t"])
            .status
            .success()
    );
    // Each node's certificate is made by a separate run, from the files.
    for name in ["a", "b"] {
        let out = certs(&["create-node", name, "--dir", d, "--days", "30"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Never overwrites a key.
    assert!(
        !certs(&["create-ca", "--dir", d, "--cluster", "t"])
            .status
            .success()
    );
    assert!(!certs(&["create-node", "a", "--dir", d]).status.success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("a.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "a private key is its owner's only");
    }
    let start = |name: &str, seeds: &[std::net::SocketAddr]| {
        Node::builder()
            .name(name)
            .listen("t", "127.0.0.1:0".parse().unwrap())
            .seeds(seeds)
            .tls(identity(&dir, name))
            .scope("app:pg", ScopeOptions::default())
            .start()
            .unwrap()
    };
    let a = start("a", &[]);
    let b = start("b", &[a.local_addr().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.peers().is_empty() || b.peers().is_empty() {
        assert!(Instant::now() < deadline, "the nodes never connected");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
