//! Seed names against a DNS server of our own whose answers change, as a
//! Kubernetes headless Service's do when pods come and go: a node follows
//! the answers to whichever node they name now.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{LIMIT, config, eventually, start};
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use pg_net::DevCa;

/// A DNS server on 127.0.0.1 answering A queries for `peers.test.` with
/// whatever `answer` holds at the time (TTL 0).
fn dns_server(answer: Arc<Mutex<Vec<Ipv4Addr>>>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::new();
            reply
                .set_id(query.id())
                .set_message_type(MessageType::Response)
                .set_op_code(query.op_code())
                .set_recursion_desired(query.recursion_desired())
                .set_recursion_available(true)
                .set_authoritative(true);
            for q in query.queries() {
                reply.add_query(q.clone());
                if q.query_type() == RecordType::A && q.name().to_ascii() == "peers.test." {
                    for ip in answer.lock().unwrap().iter() {
                        reply.add_answer(Record::from_rdata(q.name().clone(), 0, RData::A(A(*ip))));
                    }
                }
            }
            let _ = socket.send_to(&reply.to_vec().unwrap(), from);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_name_follows_a_dns_server_whose_answers_change() {
    let ca = DevCa::generate("test").unwrap();
    // Two nodes on one port at two loopback addresses, unknown to each
    // other: only DNS says where the cluster is.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let at = |ip: [u8; 4]| {
        let mut c = config("test", &[]);
        c.listen = SocketAddr::from((ip, port));
        c
    };
    let x = start("x", &ca.issue("x").unwrap(), at([127, 0, 0, 1]));
    let z = start("z", &ca.issue("z").unwrap(), at([127, 0, 0, 3]));
    let answer = Arc::new(Mutex::new(vec![Ipv4Addr::new(127, 0, 0, 1)]));
    let server = dns_server(Arc::clone(&answer));

    let mut named = config("test", &[]);
    named.seed_names = vec![format!("peers.test:{port}")];
    named.dns_servers = vec![server];
    named.dns_refresh = Duration::from_millis(100);
    let b = start("b", &ca.issue("b").unwrap(), named);
    let id = |n: &common::TestNode| n.node.id().clone();
    eventually("b finds x through the name", LIMIT, || {
        b.node.peers().contains(&id(&x))
    })
    .await;
    assert!(!b.node.peers().contains(&id(&z)));

    // The Service now lists z instead.
    *answer.lock().unwrap() = vec![Ipv4Addr::new(127, 0, 0, 3)];
    eventually("b finds z after the answer changed", LIMIT, || {
        b.node.peers().contains(&id(&z))
    })
    .await;
}
