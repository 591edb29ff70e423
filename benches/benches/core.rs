//! Criterion benchmarks of pg-core: local commands, reads, sync and
//! anti-entropy, at sizes where a naive design would slow down.

// A benchmark whose set-up fails must stop loudly.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pg_benches::{drain_events, group, node, pid, scope};
use pg_core::{Frame, PartVersion, SyncGroup};

/// One process joins and leaves one group (the W1 pair).
fn join_leave(c: &mut Criterion) {
    let n = node("a");
    let (mut s, _) = scope(&n);
    let p = pid(&n, 1);
    let g = [group("g")];
    c.bench_function("join_leave_pair", |b| {
        b.iter(|| {
            s.join(&p, &g).unwrap();
            s.leave(&p, &g).unwrap();
            drain_events(&mut s);
        })
    });
}

/// A present member joins and leaves again, in groups of growing size:
/// the cost must not grow with the group (the W3 shape).
fn multi_join(c: &mut Criterion) {
    let mut grp = c.benchmark_group("multi_join_pair");
    for size in [1u64, 100, 10_000] {
        let n = node("a");
        let (mut s, _) = scope(&n);
        let g = group("g");
        let pids: Vec<_> = (1..=size).map(|i| pid(&n, i)).collect();
        s.join_pids(&g, &pids).unwrap();
        drain_events(&mut s);
        let p = pids[0].clone();
        let gs = [g];
        grp.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                s.join(&p, &gs).unwrap();
                s.leave(&p, &gs).unwrap();
                drain_events(&mut s);
            })
        });
    }
    grp.finish();
}

/// One process joins and leaves a group that already holds 10k / 100k / 1M
/// other members (the W8 shape), with a read snapshot taken after every
/// change and held until the next, as the runtime publishes one: each
/// change then pays its copy-on-write. The cost must not grow with the
/// group (the target: 1M no more than 2x 10k).
fn big_group(c: &mut Criterion) {
    let mut grp = c.benchmark_group("big_group_pair");
    for size in [10_000u64, 100_000, 1_000_000] {
        let n = node("a");
        let (mut s, _) = scope(&n);
        let g = group("g");
        for chunk in (1..=size).collect::<Vec<_>>().chunks(10_000) {
            let pids: Vec<_> = chunk.iter().map(|&i| pid(&n, i)).collect();
            s.join_pids(&g, &pids).unwrap();
            drain_events(&mut s);
        }
        let p = pid(&n, size + 1);
        let gs = [g];
        let mut published = s.members("g");
        grp.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                s.join(&p, &gs).unwrap();
                published = s.members("g");
                s.leave(&p, &gs).unwrap();
                published = s.members("g");
                drain_events(&mut s);
            })
        });
        black_box(&published);
    }
    grp.finish();
}

/// A process in 10 groups exits (timed alone; the joins are set-up).
fn exit_ten_groups(c: &mut Criterion) {
    let n = node("a");
    let (mut s, _) = scope(&n);
    let groups: Vec<_> = (0..10).map(|i| group(&format!("g{i}"))).collect();
    let mut serial = 0u64;
    c.bench_function("exit_process_in_10_groups", |b| {
        b.iter_custom(|iters| {
            let pids: Vec<_> = (0..iters)
                .map(|_| {
                    serial += 1;
                    pid(&n, serial)
                })
                .collect();
            for p in &pids {
                s.join(p, &groups).unwrap();
            }
            drain_events(&mut s);
            let start = Instant::now();
            for p in &pids {
                black_box(s.exit(p).unwrap());
                drain_events(&mut s);
            }
            start.elapsed()
        })
    });
}

/// Reading a group's members (the snapshot, and walking it) at sizes
/// 1, 100 and 10k: the snapshot must cost the same at every size.
fn read_members(c: &mut Criterion) {
    let mut grp = c.benchmark_group("members_snapshot");
    for size in [1u64, 100, 10_000] {
        let n = node("a");
        let (mut s, _) = scope(&n);
        let pids: Vec<_> = (1..=size).map(|i| pid(&n, i)).collect();
        s.join_pids(&group("g"), &pids).unwrap();
        drain_events(&mut s);
        grp.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| black_box(s.members(black_box("g"))))
        });
        grp.bench_with_input(BenchmarkId::new("local", size), &size, |b, _| {
            b.iter(|| black_box(s.local_members(black_box("g"))))
        });
    }
    grp.finish();
    let mut grp = c.benchmark_group("members_iterate");
    let n = node("a");
    let (mut s, _) = scope(&n);
    let pids: Vec<_> = (1..=10_000).map(|i| pid(&n, i)).collect();
    s.join_pids(&group("g"), &pids).unwrap();
    drain_events(&mut s);
    grp.throughput(Throughput::Elements(10_000));
    grp.bench_function("10000", |b| {
        b.iter(|| s.members("g").iter().map(|p| p.serial()).sum::<u64>())
    });
    grp.finish();
}

/// A peer's 100k-member part re-synced with 1% of it changed.
fn differential_sync(c: &mut Criterion) {
    let me = node("b");
    let a = node("a");
    let (mut s, now) = scope(&me);
    s.handle_node_up(a.clone());
    while s.poll_transmit().is_some() {}
    let part = |shift: u64| {
        let mut groups = (0..1000u64)
            .map(|g| {
                let mut members: Vec<(u64, u32)> = (0..100u64)
                    .map(|m| {
                        let serial = g * 100 + m + 1;
                        // Every 100th member differs between the two parts.
                        let serial = if m == 0 { serial + shift } else { serial };
                        (serial, 1)
                    })
                    .collect();
                members.sort_unstable();
                SyncGroup {
                    group: group(&format!("g{g}")),
                    members,
                    metas: Vec::new(),
                }
            })
            .collect::<Vec<_>>();
        // A sync is canonical: groups by name, members by serial.
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        groups
    };
    let parts = [part(0), part(1_000_000)];
    let mut seq = 0u64;
    s.handle_frame(
        &a,
        Frame::Sync {
            seq: 0,
            known: Some(0),
            groups: parts[0].clone(),
            registrations: Vec::new(),
        },
        now,
    );
    drain_events(&mut s);
    let mut grp = c.benchmark_group("differential_sync");
    grp.throughput(Throughput::Elements(100_000));
    grp.sample_size(20);
    grp.bench_function("100k_members_1pct_changed", |b| {
        b.iter_batched(
            || {
                seq += 1;
                Frame::Sync {
                    seq,
                    known: Some(0),
                    groups: parts[(seq % 2) as usize].clone(),
                    registrations: Vec::new(),
                }
            },
            |frame| {
                s.handle_frame(&a, frame, now);
                drain_events(&mut s);
                while s.poll_transmit().is_some() {}
            },
            BatchSize::LargeInput,
        )
    });
    grp.finish();
    let stats = s.stats();
    assert_eq!(
        stats.frames_invalid, 0,
        "the bench must measure applied syncs"
    );
    assert_eq!(stats.syncs_applied, seq + 1);
}

/// A converged digest from a peer, comparing 100 node parts.
fn digest_compare(c: &mut Criterion) {
    let me = node("me");
    let (mut s, now) = scope(&me);
    let peers: Vec<_> = (0..99).map(|i| node(&format!("p{i}"))).collect();
    for (i, p) in peers.iter().enumerate() {
        s.handle_node_up(p.clone());
        let groups = vec![SyncGroup {
            group: group("g"),
            members: vec![(i as u64 + 1, 1)],
            metas: Vec::new(),
        }];
        s.handle_frame(
            p,
            Frame::Sync {
                seq: 5,
                known: Some(0),
                groups,
                registrations: Vec::new(),
            },
            now,
        );
    }
    drain_events(&mut s);
    while s.poll_transmit().is_some() {}
    let parts: Vec<PartVersion> = s.parts().collect();
    assert_eq!(parts.len(), 100);
    let from = peers[0].clone();
    c.bench_function("digest_compare_100_nodes", |b| {
        b.iter_batched(
            || Frame::Digest {
                reply: true,
                parts: parts.clone(),
            },
            |frame| {
                s.handle_frame(&from, frame, now);
                assert!(
                    s.poll_transmit().is_none(),
                    "a converged digest needs no answer"
                );
            },
            BatchSize::SmallInput,
        )
    });
}

/// One process that already holds 0 / 1 / 1k / 100k keys registers and
/// unregisters one more (0: a session key taken and given up, R1's shape;
/// the others a registry of services held by one process): the cost must
/// not grow with the keys it holds.
fn register_with_many_keys(c: &mut Criterion) {
    let mut grp = c.benchmark_group("register_unregister_pair_holding");
    for held in [0u64, 1, 1_000, 100_000] {
        let n = node("a");
        let (mut s, _) = scope(&n);
        let p = pid(&n, 1);
        for i in 0..held {
            s.register(&p, &group(&format!("held/{i}")), None).unwrap();
        }
        let key = group("extra");
        grp.bench_with_input(BenchmarkId::from_parameter(held), &held, |b, _| {
            b.iter(|| {
                s.register(&p, &key, None).unwrap();
                s.unregister(&p, &key).unwrap();
                while s.poll_registry_event().is_some() {}
            })
        });
    }
    grp.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = join_leave, multi_join, big_group, exit_ten_groups, read_members, differential_sync, digest_compare, register_with_many_keys
}
criterion_main!(benches);
