//! Counts, prefix reads and prefix monitors through the public API: on one
//! node (exact answers, bad input, permissions, a monitor racing churn from
//! several threads) and across three nodes over QUIC + mutual TLS.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::collections::BTreeMap;
use std::time::Duration;

use pg_api::{
    Effect, ErrorKind, EventKind, GroupsSnapshot, Instance, Node, Pattern, Permission, Pid, Rule,
    RulePolicy, ScopeOptions, Subscription,
};

mod common;
use common::{eventually, three_nodes};

/// group -> pid -> join count.
type State = BTreeMap<String, BTreeMap<Pid, u32>>;

fn state(snapshot: &GroupsSnapshot) -> State {
    snapshot
        .iter()
        .map(|(g, m)| (g.to_string(), m.iter_counted().collect()))
        .collect()
}

/// Applies every queued event to `state`.
fn replay(state: &mut State, sub: &mut Subscription) {
    while let Some(event) = sub.try_recv() {
        let event = event.unwrap();
        let group = state.entry(event.group.to_string()).or_default();
        for (pid, n) in &event.members {
            let count = group.entry(pid.clone()).or_default();
            match event.kind {
                EventKind::Joined => *count += n,
                EventKind::Left => {
                    assert!(*count >= *n, "{pid} left more often than it joined");
                    *count -= n;
                }
                EventKind::Updated => assert!(*count > 0, "{pid} updated without a join"),
            }
            if *count == 0 {
                group.remove(pid);
            }
        }
        if group.is_empty() {
            state.remove(event.group.as_str());
        }
    }
}

fn solo() -> Node {
    Node::builder()
        .name("solo")
        .scope("app:pg", ScopeOptions::default())
        .start()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_and_prefix_reads_on_one_node() {
    let node = solo();
    let procs: Vec<_> = (0..5).map(|_| node.spawn("app")).collect();
    let pg: Vec<Instance> = procs.iter().map(|p| p.open("app:pg").unwrap()).collect();
    pg[0].join(["chat/1", "chat/1"]).unwrap();
    pg[1].join("chat/1").unwrap();
    pg[2].join("chat/2").unwrap();
    pg[3].join("chatter").unwrap();
    pg[4].join("room/1").unwrap();

    let q = &pg[0];
    assert_eq!(q.count("chat/1").unwrap(), 3, "join counts included");
    assert_eq!(q.local_count("chat/1").unwrap(), 3);
    assert_eq!(q.count("nobody").unwrap(), 0);
    assert_eq!(q.count_prefix("chat/").unwrap(), 4);
    assert_eq!(q.count_prefix("chat").unwrap(), 5, "a prefix, not a path");
    assert_eq!(q.local_count_prefix("room/").unwrap(), 1);
    assert_eq!(q.count_prefix("zzz").unwrap(), 0);

    let under = q.get_members_prefix("chat/").unwrap();
    let names: Vec<&str> = under.iter().map(|(g, _)| g.as_str()).collect();
    assert_eq!(names, ["chat/1", "chat/2"], "in name order");
    assert_eq!(under[0].1.len(), 3);
    assert_eq!(under[0].1.count_of(procs[0].pid()), 2);
    assert_eq!(
        q.which_groups_prefix("chat").unwrap(),
        ["chat/1", "chat/2", "chatter"]
            .map(|g| pg_api::GroupName::new(g).unwrap())
            .to_vec()
    );
    assert_eq!(q.get_local_members_prefix("room/").unwrap().len(), 1);

    // A group that empties leaves every prefix answer.
    pg[2].leave("chat/2").unwrap();
    assert_eq!(q.which_groups_prefix("chat/").unwrap().len(), 1);
    assert_eq!(q.count_prefix("chat/").unwrap(), 3);

    // Bad input is a typed error that changes nothing.
    let too_long = "x".repeat(pg_api::MAX_GROUP_NAME_LEN + 1);
    for bad in ["", too_long.as_str()] {
        assert_eq!(q.count_prefix(bad).unwrap_err().kind(), ErrorKind::Invalid);
        assert_eq!(
            q.monitor_prefix(bad).unwrap_err().kind(),
            ErrorKind::Invalid
        );
    }
    assert_eq!(q.count("").unwrap_err().kind(), ErrorKind::Invalid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_permissions_are_checked_on_the_prefix() {
    let policy = RulePolicy {
        rules: vec![Rule {
            effect: Effect::Deny,
            principal: "guest".into(),
            permission: "pg.*prefix".into(),
            resource: "secret/*".into(),
        }],
        default: Effect::Allow,
    };
    let node = Node::builder()
        .name("solo")
        .scope("app:pg", ScopeOptions::default())
        .policy(policy)
        .start()
        .unwrap();
    let guest = node.spawn("guest");
    let pg = guest.open("app:pg").unwrap();
    for call in [
        pg.count_prefix("secret/").map(|_| ()),
        pg.local_count_prefix("secret/").map(|_| ()),
        pg.get_members_prefix("secret/").map(|_| ()),
        pg.get_local_members_prefix("secret/").map(|_| ()),
        pg.which_groups_prefix("secret/").map(|_| ()),
        pg.monitor_prefix("secret/").map(|_| ()),
    ] {
        assert_eq!(call.unwrap_err().kind(), ErrorKind::PermissionDenied);
    }
    assert!(pg.count_prefix("public/").is_ok());
    assert!(
        pg.count("secret/x").is_ok(),
        "pg.count is not a prefix permission"
    );
    for p in [
        Permission::Count,
        Permission::LocalCount,
        Permission::CountPrefix,
        Permission::LocalCountPrefix,
        Permission::GetMembersPrefix,
        Permission::GetLocalMembersPrefix,
        Permission::WhichGroupsPrefix,
        Permission::MonitorPrefix,
    ] {
        assert_eq!(p.as_str().parse::<Permission>(), Ok(p));
    }
}

/// Several threads churn groups under `chat/` and beside it while prefix
/// monitors start at random moments: each monitor's snapshot plus its
/// events equals the final prefix read exactly, and it never hears of a
/// group outside its prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_monitor_replays_exactly_under_concurrent_churn() {
    let node = solo();
    let watcher = node.spawn("watch");
    let watch = watcher.open("app:pg").unwrap();
    let mut monitors = Vec::new();
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let node = node.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().unwrap();
                let _guard = rt.enter();
                let procs: Vec<_> = (0..4).map(|_| node.spawn("app")).collect();
                let pg: Vec<_> = procs.iter().map(|p| p.open("app:pg").unwrap()).collect();
                let mut rng = 0x9e37_79b9_u64 + t;
                for _ in 0..3000 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let who = &pg[(rng % 4) as usize];
                    let group = match (rng >> 8) % 4 {
                        0 => "chat/a",
                        1 => "chat/b",
                        2 => "chatroom",
                        _ => "other",
                    };
                    if (rng >> 16).is_multiple_of(3) {
                        let _ = who.leave(group);
                    } else {
                        who.join(group).unwrap();
                    }
                }
                drop(pg);
                procs
            })
        })
        .collect();
    for _ in 0..20 {
        let (sub, snapshot) = watch.monitor_prefix("chat/").unwrap();
        monitors.push((state(&snapshot), sub));
        tokio::task::yield_now().await;
    }
    let procs: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let expected = state(&watch.get_members_prefix("chat/").unwrap());
    assert!(!expected.is_empty());
    for (mut seen, mut sub) in monitors {
        replay(&mut seen, &mut sub);
        assert!(seen.keys().all(|g| g.starts_with("chat/")), "{seen:?}");
        assert_eq!(seen, expected);
    }
    drop(procs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_reads_and_monitors_across_three_nodes() {
    let nodes = three_nodes();
    eventually("a full mesh", || nodes.iter().all(|n| n.peers().len() == 2)).await;
    let watcher = nodes[0].spawn("watch");
    let watch = watcher.open("app:pg").unwrap();
    let (mut sub, snapshot) = watch
        .monitor_pattern(Pattern::Prefix("room/".into()))
        .unwrap();
    let mut seen = state(&snapshot);
    let (mut all, everything) = watch.monitor_pattern(Pattern::All).unwrap();
    let mut seen_all = state(&everything);

    let procs: Vec<_> = nodes.iter().map(|n| n.spawn("app")).collect();
    let pg: Vec<_> = procs.iter().map(|p| p.open("app:pg").unwrap()).collect();
    pg[1].join(["room/1", "room/1", "lobby"]).unwrap();
    pg[2].join(["room/2", "room/1"]).unwrap();
    eventually("a counts every room", || {
        watch.count_prefix("room/").unwrap() == 4 && watch.count("lobby").unwrap() == 1
    })
    .await;
    assert_eq!(watch.local_count_prefix("room/").unwrap(), 0);
    assert_eq!(pg[1].local_count_prefix("room/").unwrap(), 2);
    assert_eq!(pg[1].get_local_members_prefix("room/").unwrap().len(), 1);
    eventually("the monitor heard it all", || {
        replay(&mut seen, &mut sub);
        seen == state(&watch.get_members_prefix("room/").unwrap())
    })
    .await;
    assert!(!seen.contains_key("lobby"));

    // A node going away takes its rooms out of every answer and event.
    nodes[2].shutdown();
    eventually("c's memberships gone", || {
        watch.count_prefix("room/").unwrap() == 2
    })
    .await;
    eventually("the monitors followed", || {
        replay(&mut seen, &mut sub);
        replay(&mut seen_all, &mut all);
        seen == state(&watch.get_members_prefix("room/").unwrap())
            && seen_all.get("lobby").is_some_and(|m| m.len() == 1)
            && !seen_all.contains_key("room/2")
    })
    .await;
}

/// A rule that denies some groups cannot be got round with a shorter
/// prefix: prefix calls answer only for the groups on which the caller
/// holds the per-group permission, in reads, counts, snapshots and events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_prefix_does_not_reveal_denied_groups() {
    let policy = RulePolicy {
        rules: vec![Rule {
            effect: Effect::Deny,
            principal: "guest".into(),
            permission: "pg.*".into(),
            resource: "secret*".into(),
        }],
        default: Effect::Allow,
    };
    let node = Node::builder()
        .name("solo")
        .scope("app:pg", ScopeOptions::default())
        .policy(policy)
        .start()
        .unwrap();
    let admin = node.spawn("admin");
    let apg = admin.open("app:pg").unwrap();
    apg.join(["secret/plans", "seen/news"]).unwrap();
    let guest = node.spawn("guest");
    let g = guest.open("app:pg").unwrap();
    let names = |groups: &GroupsSnapshot| -> Vec<String> {
        groups.iter().map(|(n, _)| n.to_string()).collect()
    };
    assert_eq!(names(&g.get_members_prefix("se").unwrap()), ["seen/news"]);
    assert_eq!(
        names(&g.get_local_members_prefix("s").unwrap()),
        ["seen/news"]
    );
    assert_eq!(g.count_prefix("s").unwrap(), 1);
    assert_eq!(g.local_count_prefix("s").unwrap(), 1);
    assert_eq!(g.which_groups_prefix("s").unwrap().len(), 1);
    let (mut sub, snapshot) = g.monitor_prefix("se").unwrap();
    assert_eq!(names(&snapshot), ["seen/news"]);
    apg.join("secret/more").unwrap();
    apg.join("seen/more").unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        event.group.as_str(),
        "seen/more",
        "no event of a denied group"
    );
    assert!(sub.try_recv().is_none());
    // The admin sees everything.
    assert_eq!(apg.count_prefix("s").unwrap(), 4);
}

/// Every membership this node owns, with join counts, and none of
/// another node's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_entries_list_this_nodes_memberships() {
    let nodes = three_nodes();
    eventually("a full mesh", || nodes.iter().all(|n| n.peers().len() == 2)).await;
    let p = nodes[0].spawn("app");
    let q = nodes[0].spawn("app");
    let r = nodes[1].spawn("app");
    let (pp, qp, rp) = (
        p.open("app:pg").unwrap(),
        q.open("app:pg").unwrap(),
        r.open("app:pg").unwrap(),
    );
    pp.join(["b", "a", "a"]).unwrap();
    qp.join_with_meta("a", "q's meta").unwrap();
    rp.join("a").unwrap();
    eventually("r's join seen on node 0", || pp.count("a").unwrap() == 4).await;
    let mut entries: Vec<_> = pp
        .local_entries()
        .unwrap()
        .into_iter()
        .map(|e| (e.group, e.pid, e.count, e.meta))
        .collect();
    entries.sort();
    let group = |name| pg_api::GroupName::new(name).unwrap();
    let mut expected = vec![
        (group("a"), p.pid().clone(), 2, None),
        (
            group("a"),
            q.pid().clone(),
            1,
            Some(pg_api::Meta::from("q's meta")),
        ),
        (group("b"), p.pid().clone(), 1, None),
    ];
    expected.sort();
    assert_eq!(
        entries, expected,
        "node 0's memberships only, with counts and metadata"
    );
    assert_eq!(rp.local_entries().unwrap().len(), 1);
}
