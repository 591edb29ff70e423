//! The chat page in a real browser (headless Chromium over the DevTools
//! protocol): two pages on two different nodes join one room; each sees
//! the other arrive, a message posted on one appears on the other, and a
//! page that leaves leaves the other's presence. A screenshot is saved to
//! `target/ws-fanout-browser.png`.
//!
//! Needs Chromium (`apt-get install chromium`; `.ci/run` installs it).

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::page::Page;
use common::{certificates, free_ports, start};
use futures_util::StreamExt;

const LIMIT: Duration = Duration::from_secs(30);

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
    let dir = certificates("web", &["w0", "w1"]);
    let ports = free_ports(2);
    let a = start(&dir, "web", "w0", ports[0], None);
    let b = start(&dir, "web", "w1", ports[1], Some(ports[0]));

    let config = BrowserConfig::builder()
        .chrome_executable(chromium())
        .no_sandbox()
        .user_data_dir(dir.join("profile"))
        .build()
        .unwrap();
    let (mut browser, mut handler) = Browser::launch(config).await.unwrap();
    let driver = tokio::spawn(async move { while handler.next().await.is_some() {} });

    let ann = browser
        .new_page(format!("http://{}/", a.http))
        .await
        .unwrap();
    let bob = browser
        .new_page(format!("http://{}/", b.http))
        .await
        .unwrap();
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
