//! X2: the cost, on a peer, of a node holding 1M memberships going down.
//!
//! The peer's core removes the whole part in one step (one writer step in
//! the runtime): this times that step in the core, with no subscriber
//! (group names reported) and with one (an event per membership).

use std::time::{Duration, Instant};

use pg_core::{EventDetail, Frame, GroupName, NodeId, Scope, ScopeConfig};

/// `X2_node_down`: node P holds 100k processes x 10 of 10k groups (M1's
/// shape); node A has synced it; P goes down on A. With `shared`, a node
/// Q holds the same shape in the same groups, so every group's remote
/// members are half P's and half Q's.
pub(crate) fn x2() {
    for (shared, detail) in [
        (false, EventDetail::GroupsOnly),
        (false, EventDetail::Full),
        (true, EventDetail::GroupsOnly),
        (true, EventDetail::Full),
    ] {
        let (mut a, p_id, groups) = synced_peer(shared);
        a.set_event_detail(detail);
        let start = Instant::now();
        a.handle_node_down(&p_id);
        let reported = std::iter::from_fn(|| a.poll_event()).count()
            + std::iter::from_fn(|| a.poll_changed_group()).count();
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        let left = if shared { 100 } else { 0 };
        assert!(groups.iter().all(|g| a.members(g.as_str()).len() == left));
        let events = detail == EventDetail::Full;
        println!(
            "{{\"system\":\"pg-rs\",\"workload\":\"X2_node_down\",\"memberships\":1000000,\"shared\":{shared},\"events\":{events},\"reported\":{reported},\"step_ms\":{ms:.1}}}"
        );
    }
}

/// A scope that has synced a peer's 1M memberships (and, if `shared`,
/// another peer's 1M in the same groups), the first peer's id, and the
/// groups.
fn synced_peer(shared: bool) -> (Scope, NodeId, Vec<GroupName>) {
    let groups: Vec<GroupName> = (0..10_000)
        .map(|g| GroupName::new(&format!("g{g}")).unwrap())
        .collect();
    let now = Instant::now();
    let a_id = NodeId::parse_name("a", 1).unwrap();
    let mut a = Scope::new(a_id.clone(), ScopeConfig::default(), now);
    a.set_event_detail(EventDetail::GroupsOnly);
    let p_id = NodeId::parse_name("p", 1).unwrap();
    sync_from(&mut a, &p_id, &groups, 1_000_000);
    if shared {
        sync_from(
            &mut a,
            &NodeId::parse_name("q", 1).unwrap(),
            &groups,
            2_000_000,
        );
    }
    while a.poll_changed_group().is_some() {}
    (a, p_id, groups)
}

/// Has `a` sync a new peer `p_id` holding 100 members in each group,
/// until `a` lists `total` memberships.
fn sync_from(a: &mut Scope, p_id: &NodeId, groups: &[GroupName], total: usize) {
    let now = Instant::now();
    let a_id = a.local_node().clone();
    let mut p = Scope::new(p_id.clone(), ScopeConfig::default(), now);
    p.set_event_detail(EventDetail::GroupsOnly);
    // Process i is in groups (i * 10 + k) mod 10k: 100 members per group.
    for (gi, group) in groups.iter().enumerate() {
        let pids: Vec<_> = (0..100u64)
            .map(|k| p_id.pid(1 + (gi as u64 % 1000) * 100 + k).unwrap())
            .collect();
        p.join_pids(group, &pids).unwrap();
    }
    while p.poll_changed_group().is_some() {}
    a.handle_node_up(p_id.clone());
    p.handle_node_up(a_id.clone());
    let mut t = now;
    while groups
        .iter()
        .map(|g| a.members(g.as_str()).len())
        .sum::<usize>()
        < total
    {
        t += Duration::from_millis(100);
        assert!(t < now + Duration::from_secs(60), "the sync did not finish");
        a.handle_timeout(t);
        p.handle_timeout(t);
        while let Some(x) = p.poll_transmit() {
            a.handle_frame(p_id, Frame::decode(&x.frame.encode()).unwrap(), t);
        }
        while let Some(x) = a.poll_transmit() {
            p.handle_frame(&a_id, Frame::decode(&x.frame.encode()).unwrap(), t);
        }
    }
}
