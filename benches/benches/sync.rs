//! Applying a whole sync of a peer's part that this node does not hold yet
//! (C5's receiving side, without the network): 1M memberships, 100k
//! processes each in 10 of 10k groups.

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pg_benches::{drain_events, group, node, pid, scope};
use pg_core::{EventDetail, Frame, Pid, SyncGroup};

const PROCESSES: u64 = 100_000;
const GROUPS: u64 = 10_000;
const GROUPS_PER_PROCESS: u64 = 10;

/// The part as its owner sends it: groups by name, members by serial.
fn part() -> Vec<SyncGroup> {
    let mut members: Vec<Vec<(u64, u32)>> = vec![Vec::new(); GROUPS as usize];
    for serial in 1..=PROCESSES {
        for k in 0..GROUPS_PER_PROCESS {
            let g = (serial + k * (GROUPS / GROUPS_PER_PROCESS)) % GROUPS;
            members[g as usize].push((serial, 1));
        }
    }
    let mut groups: Vec<SyncGroup> = members
        .into_iter()
        .enumerate()
        .map(|(g, members)| SyncGroup {
            group: group(&format!("g{g}")),
            members,
            metas: Vec::new(),
        })
        .collect();
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    groups
}

fn fresh_sync(c: &mut Criterion) {
    let (me, a) = (node("b"), node("a"));
    let groups = part();
    let mut grp = c.benchmark_group("fresh_sync");
    grp.throughput(Throughput::Elements(PROCESSES * GROUPS_PER_PROCESS));
    grp.sample_size(10);
    // Without subscribers the runtime asks for changed group names only;
    // with one, for every membership's event.
    // The process index is built in the step after the sync's; the
    // `_indexed` case runs that step too.
    for (name, detail, indexed) in [
        ("1M_memberships_10k_groups", EventDetail::GroupsOnly, false),
        (
            "1M_memberships_10k_groups_indexed",
            EventDetail::GroupsOnly,
            true,
        ),
        (
            "1M_memberships_10k_groups_monitored",
            EventDetail::Full,
            false,
        ),
    ] {
        grp.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let (mut s, now) = scope(&me);
                    s.set_event_detail(detail);
                    s.handle_node_up(a.clone());
                    while s.poll_transmit().is_some() {}
                    let frame = Frame::Sync {
                        seq: 1,
                        known: None,
                        groups: groups.clone(),
                        registrations: Vec::new(),
                    };
                    (s, frame, now)
                },
                |(mut s, frame, now)| {
                    s.handle_frame(&a, frame, now);
                    drain_events(&mut s);
                    if indexed {
                        s.handle_timeout(now);
                    }
                    assert_eq!(s.stats().syncs_applied, 1, "the sync was applied");
                    s
                },
                BatchSize::PerIteration,
            )
        });
    }
    grp.finish();
}

/// The sending side: a node holding 1M memberships of its own meets a new
/// peer and builds its sync (split into pieces, a few per step), then
/// encodes each piece as the transport does.
fn send_sync(c: &mut Criterion) {
    let (me, b) = (node("a"), node("b"));
    let (mut s, now) = scope(&me);
    s.set_event_detail(EventDetail::GroupsOnly);
    let mut members: Vec<Vec<Pid>> = vec![Vec::new(); GROUPS as usize];
    for serial in 1..=PROCESSES {
        for k in 0..GROUPS_PER_PROCESS {
            let g = (serial + k * (GROUPS / GROUPS_PER_PROCESS)) % GROUPS;
            members[g as usize].push(pid(&me, serial));
        }
    }
    for (g, pids) in members.iter().enumerate() {
        s.join_pids(&group(&format!("g{g}")), pids)
            .expect("a fresh scope takes 1M memberships");
    }
    drain_events(&mut s);
    while s.poll_transmit().is_some() {}
    let mut grp = c.benchmark_group("send_sync");
    grp.throughput(Throughput::Elements(PROCESSES * GROUPS_PER_PROCESS));
    grp.sample_size(10);
    grp.bench_function("1M_memberships_10k_groups", |bench| {
        bench.iter(|| {
            s.handle_node_up(b.clone());
            let mut bytes = 0;
            // The pieces are built a few per step, the next step due at once.
            loop {
                while let Some(t) = s.poll_transmit() {
                    bytes += t.frame.encode().len();
                }
                if s.poll_timeout().is_none_or(|at| at > now) {
                    break;
                }
                s.handle_timeout(now);
            }
            s.handle_node_down(&b);
            assert!(bytes > PROCESSES as usize, "the whole part was sent");
            bytes
        })
    });
    grp.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    targets = fresh_sync, send_sync
}
criterion_main!(benches);
