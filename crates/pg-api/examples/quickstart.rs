//! Quick start: two nodes over QUIC with mutual TLS on 127.0.0.1 (with a
//! development CA generated on the fly), one process each; both join a
//! group, see each other, and one broadcasts to it.
//!
//! `cargo run -p pg-api --example quickstart`

use std::time::{Duration, Instant};

use pg_api::{DevCa, NetConfig, Node, ScopeOptions};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run().await
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let ca = DevCa::generate("quickstart")?;
    let start = |name: &str,
                 seeds: Vec<std::net::SocketAddr>|
     -> Result<Node, Box<dyn std::error::Error>> {
        let mut net = NetConfig::new("quickstart", "127.0.0.1:0".parse()?);
        net.seeds = seeds;
        Ok(Node::builder()
            .name(name)
            .network(net)
            .tls(ca.issue(name)?)
            .scope("app:pg", ScopeOptions::default())
            .start()?)
    };
    let a = start("alpha", vec![])?;
    let b = start("beta", vec![a.local_addr().ok_or("alpha has no address")?])?;
    println!(
        "alpha listens on {:?}; beta joins through it",
        a.local_addr()
    );

    let alice = a.spawn("alice");
    let mut bob = b.spawn("bob");
    let alice_pg = alice.open("app:pg")?;
    let bob_pg = bob.open("app:pg")?;
    alice_pg.join("greeters")?;
    bob_pg.join("greeters")?;

    let deadline = Instant::now() + Duration::from_secs(10);
    while alice_pg.get_members("greeters")?.len() < 2 || bob_pg.get_members("greeters")?.len() < 2 {
        if Instant::now() > deadline {
            return Err("the nodes did not see each other in time".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "greeters, seen from beta: {:?}",
        bob_pg.get_members("greeters")?.to_vec()
    );

    let sent = alice_pg.broadcast("greeters", "hello", "hello from alice")?;
    println!("alice broadcast to {sent} members");
    let message = tokio::time::timeout(Duration::from_secs(10), bob.recv())
        .await?
        .ok_or("bob's mailbox closed")?;
    println!(
        "bob got {:?} from {} under topic {:?}",
        std::str::from_utf8(&message.payload)?,
        message.from,
        message.topic
    );
    assert_eq!(&message.payload[..], b"hello from alice");
    a.shutdown();
    b.shutdown();
    Ok(())
}

#[test]
fn quickstart_runs_to_completion() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run()).unwrap();
}
