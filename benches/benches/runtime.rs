//! Criterion benchmarks of pg-runtime on one node: the read path (exact
//! and by prefix), joins (alone and from two threads at once), and local
//! broadcast fan-out.

// A benchmark whose set-up fails must stop loudly.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pg_benches::group;
use pg_core::NodeId;
use pg_runtime::{MemoryNetwork, Node, NodeOptions, Process, Scope, ScopeOptions};

fn start(mailbox: usize) -> (tokio::runtime::Runtime, Node, Scope) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (node, scope) = {
        let _enter = rt.enter();
        let id = NodeId::parse_name("bench", 1).unwrap();
        let net = MemoryNetwork::new();
        let options = NodeOptions {
            mailbox_capacity: mailbox,
            ..NodeOptions::default()
        };
        let node = Node::start_as(id.clone(), net.transport(&id), options).unwrap();
        let scope = node.open_scope("s", ScopeOptions::default()).unwrap();
        (node, scope)
    };
    (rt, node, scope)
}

fn read_path(c: &mut Criterion) {
    let (_rt, node, scope) = start(16);
    let mut keep: Vec<Process> = Vec::new();
    let mut grp = c.benchmark_group("runtime_members");
    for size in [1usize, 100, 10_000] {
        let name = format!("g{size}");
        let g = group(&name);
        let procs: Vec<Process> = (0..size).map(|_| node.spawn()).collect();
        let pids: Vec<_> = procs.iter().map(|p| p.pid().clone()).collect();
        scope.join_pids(&g, &pids).unwrap();
        keep.extend(procs);
        grp.bench_with_input(BenchmarkId::from_parameter(size), &name, |b, name| {
            b.iter(|| black_box(scope.members(black_box(name))))
        });
        grp.bench_with_input(BenchmarkId::new("local", size), &name, |b, name| {
            b.iter(|| black_box(scope.local_members(black_box(name))))
        });
    }
    grp.finish();
    let mut grp = c.benchmark_group("runtime_which_groups");
    let p = node.spawn();
    let groups: Vec<_> = (0..10_000).map(|i| group(&format!("w{i}"))).collect();
    scope.join(p.pid(), &groups).unwrap();
    grp.bench_function("10000", |b| b.iter(|| black_box(scope.which_groups())));
    grp.finish();
}

/// Prefix reads among 10 000 groups, 100 of which match: the cost must
/// follow the matches, not the groups.
fn prefix_reads(c: &mut Criterion) {
    let (_rt, node, scope) = start(16);
    let p = node.spawn();
    let groups: Vec<_> = (0..10_000)
        .map(|i| group(&format!("room/{:02}/{i}", i % 100)))
        .collect();
    scope.join(p.pid(), &groups).unwrap();
    let mut grp = c.benchmark_group("runtime_prefix_10000_groups");
    // 100 groups (room/07/...) match; 1 for the narrow one.
    grp.bench_function("count_prefix_100", |b| {
        b.iter(|| black_box(scope.count_prefix(black_box("room/07/"))))
    });
    grp.bench_function("members_prefix_100", |b| {
        b.iter(|| black_box(scope.members_prefix(black_box("room/07/"))))
    });
    grp.bench_function("count_prefix_1", |b| {
        b.iter(|| black_box(scope.count_prefix(black_box("room/07/7"))))
    });
    grp.bench_function("count", |b| {
        b.iter(|| black_box(scope.count(black_box("room/07/7"))))
    });
    grp.finish();
}

fn joins(c: &mut Criterion) {
    let (_rt, node, scope) = start(16);
    let p = node.spawn();
    let g = [group("g")];
    c.bench_function("runtime_join_leave_pair", |b| {
        b.iter(|| {
            scope.join(p.pid(), &g).unwrap();
            scope.leave(p.pid(), &g).unwrap();
        })
    });
    let mut grp = c.benchmark_group("runtime_join_leave_two_threads");
    grp.throughput(Throughput::Elements(2));
    let q = node.spawn();
    grp.bench_function("pairs", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            std::thread::scope(|t| {
                for pid in [p.pid(), q.pid()] {
                    let scope = &scope;
                    t.spawn(move || {
                        let g = [group("h")];
                        for _ in 0..iters {
                            scope.join(pid, &g).unwrap();
                            scope.leave(pid, &g).unwrap();
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    grp.finish();
}

fn fan_out(c: &mut Criterion) {
    let mut grp = c.benchmark_group("runtime_broadcast_local");
    for size in [100usize, 10_000] {
        let (_rt, node, scope) = start(4);
        let g = group("g");
        let mut members: Vec<Process> = (0..size).map(|_| node.spawn()).collect();
        let pids: Vec<_> = members.iter().map(|p| p.pid().clone()).collect();
        scope.join_pids(&g, &pids).unwrap();
        let sender = node.spawn();
        let payload = Bytes::from_static(&[0u8; 64]);
        grp.throughput(Throughput::Elements(size as u64));
        grp.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| {
                scope
                    .broadcast_local(sender.pid(), "g", "t", payload.clone())
                    .unwrap();
                for m in &mut members {
                    black_box(m.try_recv().unwrap());
                }
            })
        });
    }
    grp.finish();
}

fn local_send(c: &mut Criterion) {
    let (_rt, node, _scope) = start(1 << 16);
    let sender = node.spawn();
    let mut receiver = node.spawn();
    let to = receiver.pid().clone();
    let payload = Bytes::from_static(&[0u8; 64]);
    let mut grp = c.benchmark_group("runtime_send_local");
    grp.throughput(Throughput::Elements(1));
    grp.bench_function("send_and_receive", |b| {
        b.iter(|| {
            sender.send(&to, "t", payload.clone()).unwrap();
            black_box(receiver.try_recv().unwrap());
        })
    });
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
    targets = read_path, prefix_reads, joins, fan_out, local_send
}
criterion_main!(benches);
