//! Applying a whole sync of a peer's part that this node does not hold yet
//! (C5's receiving side, without the network): 1M memberships, 100k
//! processes each in 10 of 10k groups.

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pg_benches::{drain_events, group, node, scope};
use pg_core::{Frame, SyncGroup};

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
    grp.bench_function("1M_memberships_10k_groups", |b| {
        b.iter_batched(
            || {
                let (mut s, now) = scope(&me);
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
                assert_eq!(s.stats().syncs_applied, 1, "the sync was applied");
                s
            },
            BatchSize::PerIteration,
        )
    });
    grp.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    targets = fresh_sync
}
criterion_main!(benches);
