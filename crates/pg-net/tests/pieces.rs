//! A sync cut into many pieces over real QUIC: the peer's writer encodes
//! each piece (not the scope's step), and the receiver still ends up with
//! exactly the sender's part, join counts and metadata included. A piece
//! over the frame limit is refused by the writer and counted, never sent.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use common::{LIMIT, TestNode, config, eventually, g, start};
use pg_core::{GroupName, Meta, Pid};
use pg_net::DevCa;
use pg_runtime::{Process, Scope, ScopeOptions};

const GROUPS: usize = 40;

/// Opens scope `p` on `node`, cutting its syncs into pieces of at most
/// `entries` members and `bytes` bytes.
fn scope(node: &TestNode, entries: usize, bytes: usize) -> Scope {
    let mut options = ScopeOptions::default();
    options.core.sync_part_entries = entries;
    options.core.sync_part_bytes = bytes;
    node.node.open_scope("p", options).unwrap()
}

fn names() -> Vec<GroupName> {
    (0..GROUPS).map(|i| g(&format!("g{i:02}"))).collect()
}

/// One group's members: `(pid, count, meta)`, by serial.
type Listed = Vec<(Pid, u32, Option<Meta>)>;

/// Every group's members as `scope` lists them.
fn view(scope: &Scope) -> Vec<(GroupName, Listed)> {
    names()
        .into_iter()
        .map(|group| {
            let mut members: Vec<_> = scope.members(group.as_str()).iter_with_meta().collect();
            members.sort_by_key(|(pid, _, _)| pid.serial());
            (group, members)
        })
        .collect()
}

/// 300 processes, each in 10 of the groups; every seventh joins twice,
/// and the members of every fifth group carry metadata.
fn fill(node: &TestNode, scope: &Scope) -> Vec<Process> {
    let groups = names();
    let procs: Vec<Process> = (0..300).map(|_| node.node.spawn()).collect();
    for (i, p) in procs.iter().enumerate() {
        for k in 0..10 {
            let index = (i + 3 * k) % GROUPS;
            let group = &groups[index];
            if index.is_multiple_of(5) {
                let meta = Meta::new(format!("metadata of process {i:08}").into_bytes());
                scope.join_with_meta(p.pid(), group, meta).unwrap();
            } else {
                scope.join(p.pid(), std::slice::from_ref(group)).unwrap();
            }
            if i.is_multiple_of(7) {
                scope.join(p.pid(), std::slice::from_ref(group)).unwrap();
            }
        }
    }
    procs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_in_many_pieces_reaches_a_fresh_peer_whole() {
    let ca = DevCa::generate("test").unwrap();
    let a = start("a", &ca.issue("a").unwrap(), config("test", &[]));
    let a_scope = scope(&a, 16, 1 << 20);
    let _procs = fill(&a, &a_scope);
    let want = view(&a_scope);
    let memberships: usize = want.iter().map(|(_, m)| m.len()).sum();
    assert_eq!(memberships, 3000, "300 processes in 10 groups each");
    let sent_before = a.transport.stats().messages_sent;

    let b = start(
        "b",
        &ca.issue("b").unwrap(),
        config("test", &[a.transport.local_addr()]),
    );
    let b_scope = scope(&b, 16, 1 << 20);
    eventually("B lists exactly A's part", LIMIT, || view(&b_scope) == want).await;

    // 3000 member entries at 16 a piece: at least 188 messages.
    let sent = a.transport.stats().messages_sent - sent_before;
    assert!(sent >= 188, "the sync went in pieces: {sent} messages");
    assert_eq!(a.transport.stats().oversized, 0, "no piece over the limit");
    assert_eq!(b_scope.protocol_stats().frames_invalid, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_piece_over_the_frame_limit_is_counted_and_not_sent() {
    let ca = DevCa::generate("test").unwrap();
    let mut small = config("test", &[]);
    small.max_frame_size = 8 << 10;
    let a = start("a", &ca.issue("a").unwrap(), small);
    // Pieces of 1500 entries and no byte budget to speak of: both pieces
    // of this part (about 7 bytes an entry) are over 8 KiB.
    let a_scope = scope(&a, 1500, 1 << 30);
    let _procs = fill(&a, &a_scope);

    let b = start(
        "b",
        &ca.issue("b").unwrap(),
        config("test", &[a.transport.local_addr()]),
    );
    let b_scope = scope(&b, 1500, 1 << 30);
    eventually("A's writer refused the pieces", LIMIT, || {
        a.transport.stats().oversized >= 2
    })
    .await;
    // The link stays up and everything else still flows: B's part, one
    // membership small enough for any frame, reaches A.
    let p = b.node.spawn();
    b_scope.join(p.pid(), &[g("small")]).unwrap();
    eventually("A hears B's join", LIMIT, || {
        a_scope.members("small").len() == 1
    })
    .await;
    assert!(b_scope.members("g00").is_empty(), "no piece arrived");
    assert_eq!(a.node.peers().len(), 1);
}
