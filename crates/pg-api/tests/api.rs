//! docs/semantics.md, method by method and error row by error row, through the
//! public API only.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use pg_api::{Config, ErrorKind, EventKind, Node, NodeOptions, ScopeOptions};

fn node() -> Node {
    Node::builder()
        .name("n")
        .scope("app:pg", ScopeOptions::default())
        .start()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn open_errors() {
    let node = node();
    let p = node.spawn("p");
    assert_eq!(p.open("app:nope").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(p.open("").unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(p.open("app:pg").unwrap().id(), "app:pg");
}

#[tokio::test(start_paused = true)]
async fn join_leave_and_multi_join() {
    let node = node();
    let p = node.spawn("p");
    let pg = p.open("app:pg").unwrap();
    pg.join("workers").unwrap();
    pg.join(["workers", "all"]).unwrap();
    // Listed once per join, as Erlang's pg does.
    assert_eq!(
        pg.get_members("workers").unwrap().to_vec(),
        vec![p.pid().clone(); 2]
    );
    assert_eq!(
        pg.get_local_members("workers").unwrap().to_vec(),
        vec![p.pid().clone(); 2]
    );
    let counted: Vec<_> = pg.get_members("workers").unwrap().iter_counted().collect();
    assert_eq!(counted, vec![(p.pid().clone(), 2)]);
    pg.leave("workers").unwrap();
    assert_eq!(
        pg.get_members("workers").unwrap().to_vec(),
        vec![p.pid().clone()],
        "joined twice, left once"
    );
    // Batch leave: best effort, an error only if in none of them.
    pg.leave(["workers", "nothing"]).unwrap();
    assert!(pg.get_members("workers").unwrap().is_empty());
    let err = pg.leave(["workers", "nothing"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "leave without membership");
    assert_eq!(
        &*pg.which_groups().unwrap(),
        &[pg_api::GroupName::new("all").unwrap()]
    );
}

#[tokio::test(start_paused = true)]
async fn missing_or_empty_arguments_are_invalid() {
    let node = node();
    let p = node.spawn("p");
    let pg = p.open("app:pg").unwrap();
    let empty: [&str; 0] = [];
    for err in [
        pg.join("").unwrap_err(),
        pg.join(empty).unwrap_err(),
        pg.join(["ok", ""]).unwrap_err(),
        pg.leave("").unwrap_err(),
        pg.get_members("").unwrap_err(),
        pg.get_local_members("").unwrap_err(),
        pg.broadcast("", "t", "x").unwrap_err(),
        pg.broadcast("g", "", "x").unwrap_err(),
        pg.broadcast_local("", "t", "x").unwrap_err(),
        pg.monitor("").unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    }
    assert!(pg.which_groups().unwrap().is_empty(), "nothing was joined");
}

#[tokio::test(start_paused = true)]
async fn reads_local_and_cluster() {
    let node = node();
    let a = node.spawn("a");
    let b = node.spawn("b");
    let pa = a.open("app:pg").unwrap();
    let pb = b.open("app:pg").unwrap();
    pa.join("g").unwrap();
    pb.join("h").unwrap();
    assert_eq!(pa.get_members("g").unwrap().len(), 1);
    assert_eq!(pa.get_local_members("g").unwrap().len(), 1);
    assert!(
        pa.get_members("unknown").unwrap().is_empty(),
        "unknown group: empty"
    );
    assert_eq!(pa.which_groups().unwrap().len(), 2);
    assert_eq!(pb.which_local_groups().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn broadcasts_reach_each_member_once() {
    let node = node();
    let mut m1 = node.spawn("m1");
    let mut m2 = node.spawn("m2");
    let sender = node.spawn("s");
    m1.open("app:pg").unwrap().join(["w", "w"]).unwrap();
    m2.open("app:pg").unwrap().join("w").unwrap();
    let pg = sender.open("app:pg").unwrap();
    assert_eq!(pg.broadcast("w", "job", "x").unwrap(), 2);
    assert_eq!(pg.broadcast_local("w", "job", "y").unwrap(), 2);
    assert_eq!(pg.broadcast_typed("w", "job", &42u32).unwrap(), 2);
    for m in [&mut m1, &mut m2] {
        assert_eq!(&m.recv().await.unwrap().payload[..], b"x");
        assert_eq!(&m.recv().await.unwrap().payload[..], b"y");
        assert_eq!(m.recv().await.unwrap().decode::<u32>().unwrap(), 42);
        assert!(m.try_recv().is_none(), "once each, whatever the join count");
    }
    let mut topic = m1.listen("job");
    pg.broadcast("w", "job", "z").unwrap();
    assert_eq!(&topic.recv().await.unwrap().payload[..], b"z");
}

#[tokio::test(start_paused = true)]
async fn monitor_and_events_are_atomic_with_their_snapshots() {
    let node = node();
    let watcher = node.spawn("watcher");
    let joiner = node.spawn("joiner");
    let wpg = watcher.open("app:pg").unwrap();
    let jpg = joiner.open("app:pg").unwrap();
    jpg.join("w").unwrap();
    jpg.join("w").unwrap();
    let (mut sub, members) = wpg.monitor("w").unwrap();
    assert_eq!(members.to_vec(), vec![joiner.pid().clone(); 2]);
    assert_eq!(
        members.iter_counted().next(),
        Some((joiner.pid().clone(), 2))
    );
    let (mut all, snapshot) = wpg.events().unwrap();
    assert_eq!(snapshot.len(), 1);
    jpg.join(["w", "x"]).unwrap();
    let e = sub.recv().await.unwrap();
    assert_eq!((e.kind, e.group.as_str()), (EventKind::Joined, "w"));
    let mut groups = Vec::new();
    for _ in 0..2 {
        groups.push(all.recv().await.unwrap().group.to_string());
    }
    groups.sort();
    assert_eq!(groups, ["w", "x"]);
    // Multiplicity: joined three times, the exit reports it three times.
    let pid = joiner.pid().clone();
    drop(joiner);
    let e = sub.recv().await.unwrap();
    assert_eq!(e.kind, EventKind::Left);
    assert_eq!(e.members, vec![(pid.clone(), 3)]);
    assert_eq!(e.pids().filter(|p| **p == pid).count(), 3);
}

#[tokio::test(start_paused = true)]
async fn release_is_idempotent_and_final() {
    let node = node();
    let p = node.spawn("p");
    let pg = p.open("app:pg").unwrap();
    pg.join("g").unwrap();
    assert!(pg.release());
    assert!(!pg.release(), "idempotent");
    for err in [
        pg.join("g").unwrap_err(),
        pg.leave("g").unwrap_err(),
        pg.get_members("g").unwrap_err(),
        pg.get_local_members("g").unwrap_err(),
        pg.which_groups().unwrap_err(),
        pg.which_local_groups().unwrap_err(),
        pg.broadcast("g", "t", "x").unwrap_err(),
        pg.broadcast_local("g", "t", "x").unwrap_err(),
        pg.monitor("g").unwrap_err(),
        pg.events().map(|_| ()).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    }
    // Releasing the instance does not take the process out of its groups.
    let other = p.open("app:pg").unwrap();
    assert_eq!(other.get_members("g").unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn process_exit_releases_and_cleans_up() {
    let node = node();
    let p = node.spawn("p");
    let o = node.spawn("o");
    let observer = o.open("app:pg").unwrap();
    let pg = p.open("app:pg").unwrap();
    pg.join(["a", "b"]).unwrap();
    drop(p);
    node.flush_exits().await;
    assert!(observer.which_groups().unwrap().is_empty());
    assert_eq!(
        pg.join("a").unwrap_err().kind(),
        ErrorKind::Invalid,
        "released with its process"
    );
}

#[tokio::test(start_paused = true)]
async fn limits_are_limit_exceeded() {
    let config = Config::from_yaml(
        "- name: pg\n  kind: pg.scope\n  max_members_per_group: 2\n  max_groups: 1\n",
    )
    .unwrap();
    let node = Node::from_config(&config).unwrap();
    let p = node.spawn("p");
    let pg = p.open("app:pg").unwrap();
    pg.join(["g", "g"]).unwrap();
    assert_eq!(pg.join("g").unwrap_err().kind(), ErrorKind::LimitExceeded);
    assert_eq!(pg.join("h").unwrap_err().kind(), ErrorKind::LimitExceeded);
    assert_eq!(
        pg.get_members("g").unwrap().len(),
        2,
        "the limit counts joins"
    );
}

#[tokio::test(start_paused = true)]
async fn sends_and_payload_limits() {
    let node = Node::builder()
        .name("n")
        .options(NodeOptions {
            max_payload_size: 4,
            ..NodeOptions::default()
        })
        .scope("app:pg", ScopeOptions::default())
        .start()
        .unwrap();
    let a = node.spawn("a");
    let mut b = node.spawn("b");
    a.send(b.pid(), "t", "ok").unwrap();
    assert_eq!(&b.recv().await.unwrap().payload[..], b"ok");
    assert_eq!(
        a.send(b.pid(), "t", "too long").unwrap_err().kind(),
        ErrorKind::Invalid
    );
    let pg = a.open("app:pg").unwrap();
    assert_eq!(
        pg.broadcast("g", "t", "too long").unwrap_err().kind(),
        ErrorKind::Invalid
    );
}

#[tokio::test(start_paused = true)]
async fn a_networked_node_needs_tls() {
    let err = Node::builder()
        .name("n")
        .network(pg_api::NetConfig::new("c", "127.0.0.1:0".parse().unwrap()))
        .start()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(Node::builder().name("bad name").start().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_cluster_reads_differ_across_two_networked_nodes() {
    let ca = pg_api::DevCa::generate("t").unwrap();
    let start = |name: &str, seeds: &[std::net::SocketAddr]| {
        Node::builder()
            .name(name)
            .listen("t", "127.0.0.1:0".parse().unwrap())
            .seeds(seeds)
            .tls(ca.issue(name).unwrap())
            .scope("app:pg", ScopeOptions::default())
            .start()
            .unwrap()
    };
    let a = start("alpha", &[]);
    let b = start("beta", &[a.local_addr().unwrap()]);
    let mut pa = a.spawn("pa");
    let mut pb = b.spawn("pb");
    let ia = pa.open("app:pg").unwrap();
    let ib = pb.open("app:pg").unwrap();
    ia.join(["shared", "alpha-only"]).unwrap();
    ib.join("shared").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ia.get_members("shared").unwrap().len() < 2
        || ib.get_members("alpha-only").unwrap().is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "no convergence");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        ia.get_local_members("shared").unwrap().to_vec(),
        vec![pa.pid().clone()]
    );
    assert!(ib.get_local_members("alpha-only").unwrap().is_empty());
    assert_eq!(ib.which_groups().unwrap().len(), 2);
    assert_eq!(ib.which_local_groups().unwrap().len(), 1);
    // broadcast_local stays on its node; broadcast crosses.
    assert_eq!(ia.broadcast_local("shared", "t", "local").unwrap(), 1);
    assert_eq!(&pa.recv().await.unwrap().payload[..], b"local");
    assert_eq!(ia.broadcast_local_typed("shared", "t", &1u8).unwrap(), 1);
    assert_eq!(pa.recv().await.unwrap().decode::<u8>().unwrap(), 1);
    assert_eq!(ia.broadcast("shared", "t", "all").unwrap(), 2);
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), pb.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &got.payload[..],
        b"all",
        "the first message beta gets is the cluster-wide one"
    );
    // A process of another node cannot open an instance here.
    assert_eq!(
        a.open(&pb, "app:pg").unwrap_err().kind(),
        ErrorKind::Invalid
    );
    a.shutdown();
    b.shutdown();
}

#[tokio::test(start_paused = true)]
async fn after_shutdown_calls_are_closed() {
    let node = node();
    let p = node.spawn("p");
    let pg = p.open("app:pg").unwrap();
    node.shutdown();
    assert_eq!(pg.join("g").unwrap_err().kind(), ErrorKind::Closed);
}

#[tokio::test(start_paused = true)]
async fn release_ends_the_instance_subscriptions() {
    let node = node();
    let p = node.spawn("p");
    let pg = p.open("app:pg").unwrap();
    let (mut sub, _) = pg.monitor("g").unwrap();
    pg.join("g").unwrap();
    pg.release();
    assert!(sub.recv().await.is_ok(), "queued before the release");
    assert!(sub.recv().await.is_err(), "then closed");
}

/// Counts permission checks, allowing all but `pg.join` on "denied".
struct CountingPolicy(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl pg_api::Policy for CountingPolicy {
    fn allows(&self, _: &str, permission: pg_api::Permission, resource: &str) -> bool {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        !(permission == pg_api::Permission::Join && resource == "denied")
    }
}

#[tokio::test(start_paused = true)]
async fn batch_joins_of_many_processes_check_permission_once() {
    let checked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let node = Node::builder()
        .name("n")
        .scope("app:pg", ScopeOptions::default())
        .policy(CountingPolicy(std::sync::Arc::clone(&checked)))
        .start()
        .unwrap();
    let service = node.spawn("service");
    let pg = service.open("app:pg").unwrap();
    let conns: Vec<_> = (0..1000).map(|_| node.spawn("conn")).collect();
    let mut pids: Vec<_> = conns.iter().map(|c| c.pid().clone()).collect();
    pids.push(pids[0].clone()); // repeated: joins twice
    let checks = checked.load(std::sync::atomic::Ordering::Relaxed);
    pg.join_pids("room:1", &pids).unwrap();
    assert_eq!(
        checked.load(std::sync::atomic::Ordering::Relaxed) - checks,
        1,
        "one permission check for the whole batch"
    );
    let members = pg.get_members("room:1").unwrap();
    assert_eq!((members.len(), members.distinct_len()), (1001, 1000));
    assert_eq!(members.count_of(&pids[0]), 2);

    // Denied, empty, or with an ended process: an error, and nothing changes.
    assert_eq!(
        pg.join_pids("denied", &pids).unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        pg.join_pids("room:2", &[]).unwrap_err().kind(),
        ErrorKind::Invalid
    );
    let ended = node.spawn("gone");
    let ended_pid = ended.pid().clone();
    drop(ended);
    let err = pg
        .join_pids("room:2", &[pids[1].clone(), ended_pid])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(
        pg.get_members("room:2").unwrap().is_empty(),
        "all or nothing"
    );
    assert_eq!(pg.which_groups().unwrap().len(), 1);

    pg.leave_pids("room:1", &pids).unwrap();
    assert!(pg.get_members("room:1").unwrap().is_empty());
    assert_eq!(
        pg.leave_pids("room:1", &pids).unwrap_err().kind(),
        ErrorKind::Invalid,
        "none of them was a member"
    );
}

/// Health, counters and protocol statistics are reachable from the facade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_a_scope_and_the_node() {
    let node = Node::builder()
        .name("status")
        .scope("app:pg", ScopeOptions::default())
        .start()
        .unwrap();
    let health = node.health("app:pg").unwrap();
    assert_eq!(health.name, "pg.broadcast_recent.app:pg");
    assert!(health.healthy, "a young scope counts as healthy");
    assert_eq!(
        node.health("app:nope").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let p = node.spawn("app");
    let pg = p.open("app:pg").unwrap();
    pg.join("g").unwrap();
    let mut q = node.spawn("app");
    let qg = q.open("app:pg").unwrap();
    qg.join("g").unwrap();
    assert_eq!(pg.broadcast("g", "t", "x").unwrap(), 2);
    q.recv().await.unwrap();
    let deliveries = node.deliveries();
    assert!(deliveries.delivered >= 1, "{deliveries:?}");
    assert_eq!(node.scope_counters("app:pg").unwrap().frames_unsent, 0);
    assert_eq!(node.protocol_stats("app:pg").unwrap().violations, 0);
}
