//! Channel sequencing over real QUIC, from a peer that writes records by
//! hand: a retransmission on a second stream is delivered once and in
//! order, the node acknowledges what it delivered, and a gap or an
//! acknowledgement of something never sent closes the link as a protocol
//! error.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use bytes::Bytes;
use common::{LIMIT, STREAM_MEMBERSHIP, config, eventually, handshake, send_raw, start};
use pg_core::NodeId;
use pg_net::wire::{self, Record};
use pg_net::{DevCa, NetMessage};

fn payload(to: u64, text: &'static str) -> NetMessage {
    NetMessage::Deliver {
        scope: None,
        from: NodeId::parse_name("h", 1).unwrap().pid(1).unwrap(),
        to: vec![to],
        topic: "t".into(),
        payload: Bytes::from_static(text.as_bytes()),
    }
}

fn records(messages: &[(u64, NetMessage)]) -> Vec<u8> {
    let mut buf = Vec::new();
    for (seq, message) in messages {
        wire::encode_data_into(*seq, message, &mut buf);
    }
    buf
}

/// The node's membership stream to us.
async fn membership_from(conn: &quinn::Connection) -> quinn::RecvStream {
    let mut recv = conn.accept_uni().await.unwrap();
    let mut tag = [0u8; 1];
    recv.read_exact(&mut tag).await.unwrap();
    assert_eq!(tag[0], STREAM_MEMBERSHIP);
    recv
}

/// Reads the node's membership stream until it acknowledges `next`
/// messages of our membership channel.
async fn acknowledged(recv: &mut quinn::RecvStream, next: u64) {
    loop {
        let mut prefix = [0u8; 4];
        recv.read_exact(&mut prefix).await.unwrap();
        let mut body = vec![0u8; wire::body_len(prefix, 1 << 20).unwrap()];
        recv.read_exact(&mut body).await.unwrap();
        if let Record::Ack { channel, next: n } = wire::decode_record(&body).unwrap()
            && channel == STREAM_MEMBERSHIP
            && n >= next
        {
            assert_eq!(n, next, "acknowledged more than was delivered");
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmissions_are_delivered_once_in_order_and_gaps_close_the_link() {
    let ca = DevCa::generate("test").unwrap();
    let a = start("a", &ca.issue("a").unwrap(), config("test", &[]));
    let addr = a.transport.local_addr();
    let mut p = a.node.spawn();
    let to = p.pid().serial();

    let conn = handshake(&ca, "h", addr).await;
    let h = NodeId::parse_name("h", 1).unwrap();
    eventually("the peer is up", LIMIT, || a.node.peers().contains(&h)).await;
    // Messages 0 and 1 on a first stream, then (as after a failed write)
    // 0, 1, 2 again on a second one, and 3 after them, where a sender
    // that retried writes what follows: the two streams are read in any
    // interleaving, and the process gets each message once, in order.
    // (A message after 2 on the first stream would be a sender skipping
    // ahead on an abandoned stream: a gap the receiver may see first.)
    let _first = send_raw(
        &conn,
        &records(&[(0, payload(to, "0")), (1, payload(to, "1"))]),
    )
    .await;
    let mut second = send_raw(
        &conn,
        &records(&[
            (0, payload(to, "0")),
            (1, payload(to, "1")),
            (2, payload(to, "2")),
        ]),
    )
    .await;
    second
        .write_all(&records(&[(3, payload(to, "3"))]))
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 4 {
        let envelope = tokio::time::timeout(LIMIT, p.recv())
            .await
            .unwrap()
            .unwrap();
        got.push(envelope.payload);
    }
    assert_eq!(
        got,
        ["0", "1", "2", "3"].map(|s| Bytes::from_static(s.as_bytes()))
    );
    let mut from_a = membership_from(&conn).await;
    acknowledged(&mut from_a, 4).await;
    // A probe is answered with the acknowledgement again, at once.
    let mut probe = Vec::new();
    wire::encode_probe_into(&mut probe);
    second.write_all(&probe).await.unwrap();
    acknowledged(&mut from_a, 4).await;
    eventually("duplicates counted", LIMIT, || {
        a.transport.stats().duplicates_dropped >= 2
    })
    .await;

    // A gap: message 9 while 4 is expected.
    second
        .write_all(&records(&[(9, payload(to, "9"))]))
        .await
        .unwrap();
    let reason = conn.closed().await;
    assert!(
        reason.to_string().contains("expecting 4"),
        "closed: {reason}"
    );
    assert!(p.try_recv().is_none(), "nothing past the gap delivered");

    // An acknowledgement of messages never sent.
    let conn = handshake(&ca, "h", addr).await;
    let mut ack = Vec::new();
    wire::encode_ack_into(STREAM_MEMBERSHIP, 1_000_000, &mut ack);
    let _stream = send_raw(&conn, &ack).await;
    let reason = conn.closed().await;
    assert!(
        reason.to_string().contains("acknowledged"),
        "closed: {reason}"
    );
}
