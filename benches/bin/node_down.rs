//! X2: the cost, on a peer, of a node holding 1M memberships going down.
//!
//! The peer's core removes the whole part in one step (one writer step in
//! the runtime): this times that step in the core, with no subscriber
//! (group names reported) and with one (an event per membership).

use std::time::{Duration, Instant};

use pg_core::{EventDetail, Frame, GroupName, NodeId, Scope, ScopeConfig};

/// `X2_node_down`: node P holds 100k processes x 10 of 10k groups (M1's
/// shape); node A has synced it; P goes down on A.
pub(crate) fn x2() {
    for detail in [EventDetail::GroupsOnly, EventDetail::Full] {
        let (mut a, p_id, groups) = synced_peer();
        a.set_event_detail(detail);
        let start = Instant::now();
        a.handle_node_down(&p_id);
        let reported = std::iter::from_fn(|| a.poll_event()).count()
            + std::iter::from_fn(|| a.poll_changed_group()).count();
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        assert!(groups.iter().all(|g| a.members(g.as_str()).is_empty()));
        let events = detail == EventDetail::Full;
        println!(
            "{{\"system\":\"pg-rs\",\"workload\":\"X2_node_down\",\"memberships\":1000000,\"events\":{events},\"reported\":{reported},\"step_ms\":{ms:.1}}}"
        );
    }
}

/// A scope that has synced a peer's 1M memberships, the peer's id, and
/// the groups.
fn synced_peer() -> (Scope, NodeId, Vec<GroupName>) {
    let now = Instant::now();
    let a_id = NodeId::parse_name("a", 1).unwrap();
    let p_id = NodeId::parse_name("p", 1).unwrap();
    let mut a = Scope::new(a_id.clone(), ScopeConfig::default(), now);
    let mut p = Scope::new(p_id.clone(), ScopeConfig::default(), now);
    a.set_event_detail(EventDetail::GroupsOnly);
    p.set_event_detail(EventDetail::GroupsOnly);
    let groups: Vec<GroupName> = (0..10_000)
        .map(|g| GroupName::new(&format!("g{g}")).unwrap())
        .collect();
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
        < 1_000_000
    {
        t += Duration::from_millis(100);
        assert!(t < now + Duration::from_secs(60), "the sync did not finish");
        a.handle_timeout(t);
        p.handle_timeout(t);
        while let Some(x) = p.poll_transmit() {
            a.handle_frame(&p_id, Frame::decode(&x.frame.encode()).unwrap(), t);
        }
        while let Some(x) = a.poll_transmit() {
            p.handle_frame(&a_id, Frame::decode(&x.frame.encode()).unwrap(), t);
        }
    }
    while a.poll_changed_group().is_some() {}
    (a, p_id, groups)
}
