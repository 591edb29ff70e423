//! `pg-node --stdin <config.yaml>`: the line-command harness that
//! `cargo xtask cluster-sim` and `cargo xtask bench` drive. It takes one
//! command per line on stdin and answers one line on stdout; a line it
//! cannot run is answered `err <KIND> <message>`, never fatal.
//!
//! | command | answer |
//! |---|---|
//! | `spawn <k>` | `ok <pid> ...` (k new processes, in order) |
//! | `join <i> <group>` / `leave <i> <group>` | `ok` or `err <KIND> <message>` |
//! | `exit <i>` | `ok` (process i ends) |
//! | `broadcast <i> <group>` | `ok <members addressed>` |
//! | `members <group>` | `ok <pid> ...` (every node, sorted) |
//! | `groups` | `ok <group> ...` |
//! | `group_count` | `ok <groups with a member>` (cheap: the group list is cached between changes) |
//! | `received` | `ok <messages received by this node's processes>` |
//! | `stats` | `ok <messages sent> <bytes sent>` |
//! | `peers` | `ok <connected peers>` |
//! | `peer_names` | `ok <name> ...` (connected peers, sorted) |
//! | `block <node>` / `unblock <node>` | `ok` (fault injection) |
//! | `bcast <i> <group>` | `ok <members addressed>` (a broadcast with a unique id) |
//! | `send <i> <pid>` | `ok` or `err ...` (a numbered direct message) |
//! | `checks` | `ok <broadcasts received> <directs received> <duplicates> <out of order> <delivered> <failed>` (the last two: the node's delivery counters) |
//! | `gauges` | `ok tasks=<n> runtime_queue=<n> [pg_<gauge>=<value> ...]` (the library's gauges with `PG_NODE_GAUGES=1`) |
//! | `quit` | `ok`, then a graceful shutdown |
//!
//! Measurement commands for `cargo xtask bench` (timed inside the node):
//!
//! | command | answer |
//! |---|---|
//! | `join_t <i> <group>` / `leave_t <i> <group>` | `ok <wall-clock µs just before the call>` |
//! | `monitor <group>` | `ok` (records the wall-clock µs of each event) |
//! | `monitor_ack <group> <pid>` | `ok` (as `monitor`, and sends `pid` an `ack` per event) |
//! | `acker` | `ok <pid>` (a process that records the wall-clock µs of each message it gets, read with `monitor_times`) |
//! | `monitor_times` | `ok <µs> ...` (and forgets them) |
//! | `await_times <n> <timeout ms>` | as `monitor_times`, once at least `n` are recorded (or the timeout ends) |
//! | `count` | `ok <memberships seen, all groups>` |
//! | `local_count` | `ok <memberships of this node's processes>` |
//! | `bulk <join\|leave\|join_batched\|leave_batched\|join10_batched\|exit> <first> <n> <groups>` | `ok <ms>` |
//! | `size` | `ok <processes spawned through spawn>` |
//! | `rss` | `ok <resident bytes of this node process>` |
//! | `broadcaster` | `ok <pid>` (a process that collects acks) |
//! | `echo <k> <group> <pid>` | `ok` (k processes in group, acking each message to pid) |
//! | `rounds <n> <group> <acks>` | `ok <ms>` (n broadcasts, each until acks acks) |
//!
//! Registry commands:
//!
//! | command | answer |
//! |---|---|
//! | `register <i> <key>` / `unregister <i> <key>` | `ok`, `taken <pid>`, or `err ...` |
//! | `reg_t <i> <key>` | `ok <wall-clock µs just before the call>` |
//! | `lookup <key>` | `ok <pid>` or `ok none` |
//! | `await_lookup <key> <timeout ms>` | `ok <wall-clock µs when a lookup first found the key>` (polls in a loop, as a caller waiting for a name would), or `ok` if the timeout ended first |
//! | `registrations` | `ok <key>=<pid> ...` (key order) |
//! | `reg_monitor <prefix>` | `ok` (records the wall-clock µs of each `registered` event, read with `monitor_times`) |
//! | `r1 <i> <pairs> <keys>` | `ok <ops/s> <p50 µs> <p99 µs>` |
//! | `r2 <i> <key> <n>` | `ok <ns per lookup>` |

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pg_api::{Config, Instance, Node, Pid, Process};

struct Member {
    /// Held to keep the process alive (dropping it ends the process); it
    /// also sends the direct messages of `send`.
    process: Process,
    instance: Instance,
}

/// Runs the harness on `config` until `quit` or the end of stdin.
pub(crate) fn run(config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    let scope = config
        .scopes
        .first()
        .map(|s| s.id.clone())
        .ok_or("the configuration has no pg.scope entry")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Before the node: the library's gauges bind to the recorder present
    // when its scopes start.
    let gauges = crate::chaos_cmds::Gauges::install_if_asked()?;
    let node = runtime.block_on(async { Node::from_config(config) })?;
    let received = Arc::new(AtomicU64::new(0));
    let tracker = Arc::new(crate::chaos_cmds::Tracker::default());
    // By index, as the driver names processes; an ended one leaves a
    // boxed slot's `None` (8 bytes), so a long run's churn costs little.
    let mut members: Vec<Option<Box<Member>>> = Vec::new();
    let events: Arc<times::Times> = Arc::default();
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    let mut broadcaster: Option<(Process, Instance)> = None;
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let _guard = runtime.enter();
        if words.as_slice() == ["quit"] {
            writeln!(out, "ok")?;
            out.flush()?;
            node.shutdown();
            // Let the close reach the peers.
            runtime.block_on(async {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            });
            return Ok(());
        }
        // A command that fails is answered, never fatal.
        let mut command = || -> Result<String, Box<dyn std::error::Error>> {
            Ok(match words.as_slice() {
                ["spawn", k] => {
                    let k: usize = k.parse()?;
                    let mut pids = Vec::with_capacity(k);
                    for _ in 0..k {
                        let mut process = node.spawn("sim");
                        let instance = process.open(&scope)?;
                        pids.push(process.pid().to_string());
                        // Count what reaches the process, without keeping it.
                        let mut inbox = process.listen("sim");
                        let counter = Arc::clone(&received);
                        let tracker = Arc::clone(&tracker);
                        let serial = process.pid().serial();
                        runtime.spawn(async move {
                            while let Some(envelope) = inbox.recv().await {
                                counter.fetch_add(1, Ordering::Relaxed);
                                tracker.observe(serial, &envelope.payload);
                            }
                            // Only once the inbox is drained: what was
                            // queued before the end is still checked
                            // against what the process saw before.
                            tracker.forget(serial);
                        });
                        while process.try_recv().is_some() {}
                        members.push(Some(Box::new(Member { process, instance })));
                    }
                    format!("ok {}", pids.join(" "))
                }
                ["join", i, group] => result(member(&members, i)?.instance.join(*group)),
                ["leave", i, group] => result(member(&members, i)?.instance.leave(*group)),
                ["exit", i] => {
                    let i: usize = i.parse()?;
                    // The listener forgets the process once its inbox ends.
                    members.get_mut(i).and_then(Option::take);
                    "ok".to_owned()
                }
                ["bcast", i, group] => {
                    let m = member(&members, i)?;
                    let payload = tracker.broadcast_payload(&m.instance.pid().to_string());
                    match m.instance.broadcast(group, "sim", payload) {
                        Ok(n) => format!("ok {n}"),
                        Err(e) => format!("err {} {}", e.kind().as_str(), e.message()),
                    }
                }
                ["send", i, to] => {
                    let to: Pid = to.parse()?;
                    let i: usize = i.parse()?;
                    let m = members
                        .get(i)
                        .and_then(Option::as_ref)
                        .ok_or("no such process")?;
                    let from = m.instance.pid();
                    let payload =
                        tracker.direct_payload(&from.to_string(), from.serial(), &to.to_string());
                    match m.process.send(&to, "sim", payload) {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => format!("err {} {}", e.kind().as_str(), e.message()),
                    }
                }
                ["checks"] => {
                    // The trackers first: a message read after this read
                    // is then also counted as delivered below, except the
                    // few the library is handing over at this instant (it
                    // counts a delivery just after the mailbox takes it).
                    let seen = tracker.report();
                    let d = node.deliveries();
                    format!("{seen} {} {}", d.delivered, d.failed)
                }
                ["gauges"] => gauges.report(&runtime),
                ["broadcast", i, group] => {
                    match member(&members, i)?.instance.broadcast(group, "sim", "x") {
                        Ok(n) => format!("ok {n}"),
                        Err(e) => format!("err {} {}", e.kind().as_str(), e.message()),
                    }
                }
                ["members", group] => {
                    let any = members.iter().flatten().next().ok_or("no live process")?;
                    let mut pids: Vec<String> = any
                        .instance
                        .get_members(group)?
                        .iter()
                        .map(|p| p.to_string())
                        .collect();
                    pids.sort();
                    format!("ok {}", pids.join(" "))
                }
                ["group_count"] => {
                    let any = members.iter().flatten().next().ok_or("no live process")?;
                    format!("ok {}", any.instance.which_groups()?.len())
                }
                ["groups"] => {
                    let any = members.iter().flatten().next().ok_or("no live process")?;
                    let groups: Vec<String> = any
                        .instance
                        .which_groups()?
                        .iter()
                        .map(|g| g.to_string())
                        .collect();
                    format!("ok {}", groups.join(" "))
                }
                ["received"] => format!("ok {}", received.load(Ordering::Relaxed)),
                ["stats"] => {
                    let stats = node.net_stats().unwrap_or_default();
                    format!("ok {} {}", stats.messages_sent, stats.bytes_sent)
                }
                ["peers"] => format!("ok {}", node.peers().len()),
                ["peer_names"] => {
                    let mut names: Vec<String> =
                        node.peers().iter().map(|p| p.name.to_string()).collect();
                    names.sort();
                    format!("ok {}", names.join(" "))
                }
                ["block", name] => {
                    node.block(&pg_api::NodeId::parse_name(name, 0)?.name);
                    "ok".to_owned()
                }
                ["unblock", name] => {
                    node.unblock(&pg_api::NodeId::parse_name(name, 0)?.name);
                    "ok".to_owned()
                }
                ["join_t", i, group] => {
                    let m = member(&members, i)?;
                    let t = wall_micros();
                    tracing::trace!(target: "pg_hop", group, "op start");
                    result(m.instance.join(*group)).replacen("ok", &format!("ok {t}"), 1)
                }
                ["leave_t", i, group] => {
                    let m = member(&members, i)?;
                    let t = wall_micros();
                    tracing::trace!(target: "pg_hop", group, "op start");
                    result(m.instance.leave(*group)).replacen("ok", &format!("ok {t}"), 1)
                }
                ["monitor", group] => {
                    let watcher = node.spawn("sim");
                    let (mut sub, _) = watcher.open(&scope)?.monitor(group)?;
                    let times = Arc::clone(&events);
                    runtime.spawn(async move {
                        while let Ok(event) = sub.recv().await {
                            let now = wall_micros();
                            tracing::trace!(target: "pg_hop", group = %event.group, "event received");
                            times.push(now, event.references());
                        }
                    });
                    keep.push(Box::new(watcher));
                    "ok".to_owned()
                }
                ["monitor_ack", group, to] => {
                    // As `monitor`, and each event is acknowledged to `to`.
                    let to: Pid = to.parse()?;
                    let watcher = node.spawn("sim");
                    let (mut sub, _) = watcher.open(&scope)?.monitor(group)?;
                    let times = Arc::clone(&events);
                    runtime.spawn(async move {
                        while let Ok(event) = sub.recv().await {
                            times.push(wall_micros(), event.references());
                            let _ = watcher.send(&to, "ack", "x");
                        }
                    });
                    "ok".to_owned()
                }
                ["acker"] => {
                    let mut acker = node.spawn("sim");
                    let pid = acker.pid().to_string();
                    let times = Arc::clone(&events);
                    runtime.spawn(async move {
                        while acker.recv().await.is_some() {
                            times.push(wall_micros(), 1);
                        }
                    });
                    format!("ok {pid}")
                }
                ["register", i, key] => {
                    crate::registry_cmds::register(&member(&members, i)?.instance, key)?
                }
                ["unregister", i, key] => result(member(&members, i)?.instance.unregister(key)),
                ["reg_t", i, key] => {
                    let m = member(&members, i)?;
                    let t = wall_micros();
                    tracing::trace!(target: "pg_hop", key, "op start");
                    let answer = crate::registry_cmds::register(&m.instance, key)?;
                    answer.replacen("ok", &format!("ok {t}"), 1)
                }
                ["lookup", key] => {
                    let any = members.iter().flatten().next().ok_or("no live process")?;
                    crate::registry_cmds::lookup(&any.instance, key)?
                }
                ["await_lookup", key, timeout_ms] => {
                    let any = members.iter().flatten().next().ok_or("no live process")?;
                    let timeout = std::time::Duration::from_millis(timeout_ms.parse()?);
                    crate::registry_cmds::await_lookup(&any.instance, key, timeout)?
                }
                ["registrations"] => {
                    let any = members.iter().flatten().next().ok_or("no live process")?;
                    crate::registry_cmds::registrations(&any.instance)?
                }
                ["reg_monitor", prefix] => {
                    let watcher = node.spawn("sim");
                    let pattern = pg_api::Pattern::Prefix((*prefix).into());
                    let (mut sub, _) = watcher.open(&scope)?.monitor_registry(pattern)?;
                    let times = Arc::clone(&events);
                    runtime.spawn(async move {
                        while let Ok(event) = sub.recv().await {
                            if event.kind == pg_api::RegistryEventKind::Registered {
                                tracing::trace!(target: "pg_hop", key = %event.key, "event received");
                                times.push(wall_micros(), 1);
                            }
                        }
                    });
                    keep.push(Box::new(watcher));
                    "ok".to_owned()
                }
                ["r1", i, pairs, keys] => crate::registry_cmds::r1(
                    &member(&members, i)?.instance,
                    pairs.parse()?,
                    keys.parse()?,
                )?,
                ["r2", i, key, n] => {
                    crate::registry_cmds::r2(&member(&members, i)?.instance, key, n.parse()?)?
                }
                ["await_times", n, timeout_ms] => {
                    let timeout = std::time::Duration::from_millis(timeout_ms.parse()?);
                    let times: Vec<String> = events
                        .take_at_least(n.parse()?, timeout)
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    format!("ok {}", times.join(" "))
                }
                ["monitor_times"] => {
                    let times: Vec<String> =
                        events.take().iter().map(ToString::to_string).collect();
                    format!("ok {}", times.join(" "))
                }
                ["count"] => {
                    let any = members.iter().flatten().next().ok_or("no live process")?;
                    let total: usize = any
                        .instance
                        .which_groups()?
                        .iter()
                        .map(|g| any.instance.get_members(g.as_str()).map_or(0, |m| m.len()))
                        .sum();
                    format!("ok {total}")
                }
                ["local_count"] => {
                    let any = members.iter().flatten().next().ok_or("no live process")?;
                    let total: usize = any
                        .instance
                        .which_local_groups()?
                        .iter()
                        .map(|g| {
                            any.instance
                                .get_local_members(g.as_str())
                                .map_or(0, |m| m.len())
                        })
                        .sum();
                    format!("ok {total}")
                }
                ["bulk", what, first, n, groups] => {
                    let (first, n, groups): (usize, usize, usize) =
                        (first.parse()?, n.parse()?, groups.parse()?);
                    let range = first..first + n;
                    let t = std::time::Instant::now();
                    match *what {
                        "join" | "leave" => {
                            for i in range {
                                let m = member_at(&members, i)?;
                                let g = format!("b{}", i % groups);
                                if *what == "join" {
                                    m.instance.join(g.as_str())?;
                                } else {
                                    m.instance.leave(g.as_str())?;
                                }
                            }
                        }
                        "join_batched" | "leave_batched" => {
                            // One call per group with its 100 (or so) pids.
                            let rt = node.runtime();
                            let sc = rt.scope(&scope)?;
                            let mut by_group: Vec<Vec<Pid>> = vec![Vec::new(); groups];
                            for i in range {
                                by_group[i % groups]
                                    .push(member_at(&members, i)?.instance.pid().clone());
                            }
                            for (g, pids) in by_group.iter().enumerate() {
                                let name = pg_api::GroupName::new(&format!("b{g}"))?;
                                if *what == "join_batched" {
                                    sc.join_pids(&name, pids)?;
                                } else {
                                    sc.leave_pids(&name, pids)?;
                                }
                            }
                        }
                        "join10_batched" => {
                            // M1's shape: process i joins groups (10 i + k) mod
                            // groups, k < 10; one call per group.
                            let rt = node.runtime();
                            let sc = rt.scope(&scope)?;
                            let mut by_group: Vec<Vec<Pid>> = vec![Vec::new(); groups];
                            for i in range {
                                let pid = member_at(&members, i)?.instance.pid().clone();
                                for k in 0..10 {
                                    by_group[(i * 10 + k) % groups].push(pid.clone());
                                }
                            }
                            for (g, pids) in by_group.iter().enumerate() {
                                let name = pg_api::GroupName::new(&format!("m{g}"))?;
                                sc.join_pids(&name, pids)?;
                            }
                        }
                        "exit" => {
                            for i in range {
                                members.get_mut(i).and_then(Option::take);
                            }
                        }
                        other => return Err(format!("unknown bulk operation {other}").into()),
                    }
                    format!("ok {:.3}", t.elapsed().as_secs_f64() * 1000.0)
                }
                ["size"] => format!("ok {}", members.len()),
                ["rss"] => {
                    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
                    let pages: u64 = statm
                        .split_whitespace()
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    format!("ok {}", pages * 4096)
                }
                ["broadcaster"] => {
                    let process = node.spawn("sim");
                    let instance = process.open(&scope)?;
                    let pid = process.pid().to_string();
                    broadcaster = Some((process, instance));
                    format!("ok {pid}")
                }
                ["echo", k, group, to] => {
                    let to: Pid = to.parse()?;
                    for _ in 0..k.parse::<usize>()? {
                        let mut echo = node.spawn("sim");
                        echo.open(&scope)?.join(*group)?;
                        let to = to.clone();
                        runtime.spawn(async move {
                            while let Some(m) = echo.recv().await {
                                let _ = echo.send(&to, "ack", m.payload);
                            }
                        });
                    }
                    "ok".to_owned()
                }
                ["rounds", n, group, acks] => {
                    let (n, acks): (usize, usize) = (n.parse()?, acks.parse()?);
                    let (process, instance) = broadcaster.as_mut().ok_or("no broadcaster")?;
                    let t = std::time::Instant::now();
                    let outcome: Result<(), String> = runtime.block_on(async {
                        for _ in 0..n {
                            instance
                                .broadcast(group, "ping", "x")
                                .map_err(|e| e.to_string())?;
                            for _ in 0..acks {
                                tokio::time::timeout(
                                    std::time::Duration::from_secs(30),
                                    process.recv(),
                                )
                                .await
                                .map_err(|_| "acks timed out".to_owned())?
                                .ok_or("mailbox closed")?;
                            }
                        }
                        Ok(())
                    });
                    outcome?;
                    format!("ok {:.3}", t.elapsed().as_secs_f64() * 1000.0)
                }
                _ => format!("err INVALID unknown command {line:?}"),
            })
        };
        let answer = command().unwrap_or_else(|e| format!("err INVALID {line:?}: {e}"));
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(())
}

fn member<'a>(
    members: &'a [Option<Box<Member>>],
    i: &str,
) -> Result<&'a Member, Box<dyn std::error::Error>> {
    let i: usize = i.parse()?;
    members
        .get(i)
        .and_then(Option::as_deref)
        .ok_or_else(|| format!("no live process {i}").into())
}

fn result(r: Result<(), pg_api::PgError>) -> String {
    match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("err {} {}", e.kind().as_str(), e.message()),
    }
}

/// Microseconds since the Unix epoch: comparable between the nodes of one
/// machine, which is all the measurements need.
pub(crate) fn wall_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Event times recorded by a monitor task, one entry per reference.
mod times {
    use std::sync::{Condvar, Mutex};
    use std::time::Duration;

    /// Times recorded by monitors and ackers, and a signal for a driver
    /// waiting on them.
    #[derive(Default)]
    pub(super) struct Times {
        times: Mutex<Vec<u64>>,
        grew: Condvar,
    }

    impl Times {
        pub(super) fn push(&self, at: u64, references: u64) {
            if let Ok(mut v) = self.times.lock() {
                v.extend(std::iter::repeat_n(at, references as usize));
                self.grew.notify_all();
            }
        }

        pub(super) fn take(&self) -> Vec<u64> {
            self.times
                .lock()
                .map(|mut v| std::mem::take(&mut *v))
                .unwrap_or_default()
        }

        /// Blocks until at least `n` times are recorded or `timeout` ends,
        /// then takes them. A driver waits here instead of polling, so no
        /// command of its own runs on this node while an event is on its
        /// way (a poll's wake-up competed with the event for the CPU).
        pub(super) fn take_at_least(&self, n: usize, timeout: Duration) -> Vec<u64> {
            let Ok(v) = self.times.lock() else {
                return Vec::new();
            };
            match self.grew.wait_timeout_while(v, timeout, |v| v.len() < n) {
                Ok((mut v, _)) => std::mem::take(&mut *v),
                Err(_) => Vec::new(),
            }
        }
    }
}

fn member_at(
    members: &[Option<Box<Member>>],
    i: usize,
) -> Result<&Member, Box<dyn std::error::Error>> {
    members
        .get(i)
        .and_then(Option::as_deref)
        .ok_or_else(|| format!("no live process {i}").into())
}
