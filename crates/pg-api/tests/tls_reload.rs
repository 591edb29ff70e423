//! Certificate rotation without a restart: a node started from PEM files
//! takes new ones (here even a new CA) for its next handshakes.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::path::Path;
use std::time::{Duration, Instant};

use pg_api::{Config, DevCa, Node, ScopeOptions};

fn write_identity(dir: &Path, ca: &DevCa, name: &str) {
    let (cert, key) = ca.issue_pem(name).unwrap();
    // Written aside and renamed, as a certificate manager swaps files.
    for (file, text) in [
        ("ca.pem", ca.certificate_pem()),
        (&format!("{name}.pem")[..], cert),
        (&format!("{name}.key")[..], key),
    ] {
        let tmp = dir.join(format!("{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(file)).unwrap();
    }
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_takes_rotated_certificates_without_a_restart() {
    let dir = std::env::temp_dir().join(format!("pg-tls-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let old_ca = DevCa::generate("t").unwrap();
    write_identity(&dir, &old_ca, "a");
    std::fs::write(
        dir.join("a.yaml"),
        "- name: pg\n  kind: pg.scope\n\
         - name: a\n  kind: pg.node\n  cluster: t\n  listen: 127.0.0.1:0\n  tls_reload: 50ms\n  \
         tls: { ca: ca.pem, cert: a.pem, key: a.key }\n",
    )
    .unwrap();
    let a = Node::from_config(&Config::from_file(&dir.join("a.yaml")).unwrap()).unwrap();

    // c holds a certificate of a new CA: a refuses it, and it refuses a.
    let new_ca = DevCa::generate("t").unwrap();
    let c = Node::builder()
        .name("c")
        .listen("t", "127.0.0.1:0".parse().unwrap())
        .seeds(&[a.local_addr().unwrap()])
        .tls(new_ca.issue("c").unwrap())
        .scope("app:pg", ScopeOptions::default())
        .start()
        .unwrap();
    eventually("c refused by a", || {
        c.net_stats().unwrap().handshakes_failed > 0
    })
    .await;
    assert!(c.peers().is_empty());

    // The files rotate to the new CA: a's next handshakes use them.
    write_identity(&dir, &new_ca, "a");
    eventually("a and c connected after the rotation", || {
        c.peers().len() == 1 && a.peers().len() == 1
    })
    .await;
    std::fs::remove_dir_all(&dir).unwrap();
}
