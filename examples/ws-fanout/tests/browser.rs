//! The chat page in a real browser (headless Chromium over the DevTools
//! protocol): two pages on two different nodes join one room; each sees
//! the other arrive, a message posted on one appears on the other, and a
//! page that leaves leaves the other's presence. A screenshot is saved to
//! `target/ws-fanout-browser.png`.
//!
//! Needs Chromium (`apt-get install chromium`; `.ci/run` installs it).

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::page::Page;
use futures_util::StreamExt;
use pg_api::DevCa;

const BIN: &str = env!("CARGO_BIN_EXE_ws-fanout");
const LIMIT: Duration = Duration::from_secs(30);

struct Service(Child, SocketAddr);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, name: &str, port: u16, seed: Option<u16>) -> Service {
    let seeds = seed.map(|p| format!("127.0.0.1:{p}")).unwrap_or_default();
    let yaml = format!(
        "- name: chat\n  kind: pg.scope\n\
         - name: {name}\n  kind: pg.node\n  cluster: web\n  listen: 127.0.0.1:{port}\n  seeds: [{seeds}]\n  \
         tls: {{ ca: ca.pem, cert: {name}.pem, key: {name}.key }}\n\
         - name: http\n  kind: ws-fanout.http\n  listen: 127.0.0.1:0\n"
    );
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(&config, yaml).unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let http = line.trim().strip_prefix("http ").unwrap().parse().unwrap();
    Service(child, http)
}

fn chromium() -> PathBuf {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            let out = Command::new("which").arg(name).output().ok()?;
            out.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
        .expect("the browser test needs Chromium: apt-get install chromium")
}

/// Evaluates `script` in `page` until it returns true.
async fn until(page: &Page, what: &str, script: &str) {
    let start = Instant::now();
    loop {
        let done: bool = page
            .evaluate(script)
            .await
            .unwrap()
            .into_value()
            .unwrap_or(false);
        if done {
            return;
        }
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn join(page: &Page, user: &str, room: &str) {
    page.evaluate(format!(
        "document.getElementById('user').value = '{user}';\
         document.getElementById('room').value = '{room}';\
         document.getElementById('join').click(); true"
    ))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_on_two_nodes_chat_and_see_presence() {
    let dir = std::env::temp_dir().join(format!("ws-fanout-browser-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = DevCa::generate("web").unwrap();
    std::fs::write(dir.join("ca.pem"), ca.certificate_pem()).unwrap();
    for name in ["w0", "w1"] {
        let (cert, key) = ca.issue_pem(name).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key).unwrap();
    }
    let sockets: Vec<UdpSocket> = (0..2)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = sockets
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    drop(sockets);
    let a = start(&dir, "w0", ports[0], None);
    let b = start(&dir, "w1", ports[1], Some(ports[0]));

    let config = BrowserConfig::builder()
        .chrome_executable(chromium())
        .no_sandbox()
        .user_data_dir(dir.join("profile"))
        .build()
        .unwrap();
    let (mut browser, mut handler) = Browser::launch(config).await.unwrap();
    let driver = tokio::spawn(async move { while handler.next().await.is_some() {} });

    let ann = browser.new_page(format!("http://{}/", a.1)).await.unwrap();
    let bob = browser.new_page(format!("http://{}/", b.1)).await.unwrap();
    join(&ann, "ann", "lobby").await;
    join(&bob, "bob", "lobby").await;
    let presence = "document.getElementById('presence').textContent";
    until(
        &ann,
        "ann sees bob arrive",
        &format!("{presence}.includes('bob')"),
    )
    .await;
    until(&bob, "bob sees ann", &format!("{presence}.includes('ann')")).await;

    bob.evaluate(
        "document.getElementById('text').value = 'hello from the other node';\
         document.getElementById('send').click(); true",
    )
    .await
    .unwrap();
    until(
        &ann,
        "bob's message on ann's page",
        "document.getElementById('log').textContent.includes('bob: hello from the other node')",
    )
    .await;
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ws-fanout-browser.png");
    ann.save_screenshot(
        chromiumoxide::page::ScreenshotParams::builder().build(),
        &shot,
    )
    .await
    .unwrap();
    eprintln!("screenshot: {}", shot.display());

    // Bob's page goes away: he leaves ann's presence.
    bob.close().await.unwrap();
    until(&ann, "bob gone", &format!("!{presence}.includes('bob')")).await;

    browser.close().await.unwrap();
    let _ = browser.wait().await;
    driver.abort();
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}
