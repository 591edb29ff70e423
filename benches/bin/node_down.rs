//! X2: the cost, on a peer, of a node holding 1M memberships going down.
//!
//! The peer's core removes the part in bounded steps (the down's own, then
//! timer steps due at once; each one writer step in the runtime): this
//! times every step in the core, with no subscriber (group names
//! reported) and with one (an event per membership), and reports the
//! longest step (what a join waits for at most) and the total.

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
        let (mut steps, mut longest, mut total) = (0u32, Duration::ZERO, Duration::ZERO);
        let mut reported = 0;
        let mut step = |a: &mut Scope, due: Option<Instant>| {
            let start = Instant::now();
            match due {
                None => a.handle_node_down(&p_id),
                Some(at) => a.handle_timeout(at),
            }
            // Taken in the step, as the runtime publishes after each.
            reported += std::iter::from_fn(|| a.poll_event()).count()
                + std::iter::from_fn(|| a.poll_changed_group()).count();
            let took = start.elapsed();
            steps += 1;
            longest = longest.max(took);
            total += took;
        };
        step(&mut a, None);
        // The next steps are due at once: at the latest time the scope
        // was given, which the same deadline keeps naming until the end.
        let due = a.poll_timeout();
        while due.is_some() && a.poll_timeout() == due {
            step(&mut a, due);
        }
        let (max_ms, ms) = (longest.as_secs_f64() * 1000.0, total.as_secs_f64() * 1000.0);
        let left = if shared { 100 } else { 0 };
        assert!(groups.iter().all(|g| a.members(g.as_str()).len() == left));
        let events = detail == EventDetail::Full;
        println!(
            "{{\"system\":\"pg-rs\",\"workload\":\"X2_node_down\",\"memberships\":1000000,\"shared\":{shared},\"events\":{events},\"reported\":{reported},\"steps\":{steps},\"max_step_ms\":{max_ms:.2},\"total_ms\":{ms:.1}}}"
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
