//! What the harness's processes check about the messages they receive,
//! for `cargo xtask chaos` and `cargo xtask soak`: no broadcast delivered
//! twice to a process, and messages from one process to another in the
//! order they were sent (gaps are allowed: the API delivers at most once,
//! not always).
//!
//! Payloads: `b <sender pid>.<n>` for a broadcast (`n` increases with
//! every broadcast of the sending node), `s <from> <seq>` for a direct
//! message (`seq` counts per sender and receiver from 1). Both are checked
//! with a high-water mark per sender, so what a process remembers is
//! bounded by the processes that wrote to it (a soak runs for hours), and
//! forgotten when it exits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Per receiving process: the last broadcast number and the last direct
/// sequence seen from each sender.
#[derive(Default)]
struct Seen {
    last_broadcast: HashMap<String, u64>,
    last: HashMap<String, u64>,
}

/// Shared by every receiving task of a node.
#[derive(Default)]
pub(crate) struct Tracker {
    seen: Mutex<HashMap<u64, Seen>>,
    broadcasts: AtomicU64,
    directs: AtomicU64,
    duplicates: AtomicU64,
    disorders: AtomicU64,
    /// Next id of a broadcast from this node.
    next_broadcast: AtomicU64,
    /// Next sequence per (sender serial, receiver pid).
    next_seq: Mutex<HashMap<(u64, String), u64>>,
}

impl Tracker {
    /// A message to process `serial` of this node.
    pub(crate) fn observe(&self, serial: u64, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        let mut words = text.split(' ');
        match (words.next(), words.next(), words.next()) {
            (Some("b"), Some(id), None) => {
                let Some((sender, n)) = id.rsplit_once('.') else {
                    return;
                };
                let Ok(n) = n.parse::<u64>() else { return };
                self.broadcasts.fetch_add(1, Ordering::Relaxed);
                let mut seen = self.seen.lock();
                let last = seen
                    .entry(serial)
                    .or_default()
                    .last_broadcast
                    .entry(sender.to_owned())
                    .or_insert(0);
                // Numbers of one sender only increase, and its messages
                // to one process arrive in order: anything not above the
                // mark was delivered twice (or overtook a later one).
                if n <= *last {
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
                } else {
                    *last = n;
                }
            }
            (Some("s"), Some(from), Some(seq)) => {
                let Ok(seq) = seq.parse::<u64>() else { return };
                self.directs.fetch_add(1, Ordering::Relaxed);
                let mut seen = self.seen.lock();
                let last = seen
                    .entry(serial)
                    .or_default()
                    .last
                    .entry(from.to_owned())
                    .or_insert(0);
                if seq <= *last {
                    self.disorders.fetch_add(1, Ordering::Relaxed);
                } else {
                    *last = seq;
                }
            }
            _ => {}
        }
    }

    /// The payload of the next broadcast of process `sender`.
    pub(crate) fn broadcast_payload(&self, sender: &str) -> String {
        // From 1: the high-water mark of a sender not seen yet is 0.
        let n = self.next_broadcast.fetch_add(1, Ordering::Relaxed) + 1;
        format!("b {sender}.{n}")
    }

    /// Process `serial` of this node ended: forget what it saw and sent.
    pub(crate) fn forget(&self, serial: u64) {
        self.seen.lock().remove(&serial);
        self.next_seq.lock().retain(|(from, _), _| *from != serial);
    }

    /// The payload of the next direct message from `serial` to `to`.
    pub(crate) fn direct_payload(&self, from: &str, serial: u64, to: &str) -> String {
        let mut next = self.next_seq.lock();
        let seq = next.entry((serial, to.to_owned())).or_insert(0);
        *seq += 1;
        format!("s {from} {seq}")
    }

    /// `ok <broadcasts received> <direct messages received> <duplicates>
    /// <out of order>`.
    pub(crate) fn report(&self) -> String {
        format!(
            "ok {} {} {} {}",
            self.broadcasts.load(Ordering::Relaxed),
            self.directs.load(Ordering::Relaxed),
            self.duplicates.load(Ordering::Relaxed),
            self.disorders.load(Ordering::Relaxed)
        )
    }
}

/// The gauges `cargo xtask soak` samples: the tokio runtime's task count
/// and queue, and, when `PG_NODE_GAUGES=1` asked for a Prometheus
/// recorder, the library's own gauges (queue depths, backlogs, sizes).
pub(crate) struct Gauges {
    recorder: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// The library gauges reported, summed over scopes.
const LIBRARY_GAUGES: [&str; 5] = [
    "pg_action_queue_depth",
    "pg_exit_backlog",
    "pg_subscriber_lag",
    "pg_groups",
    "pg_local_memberships",
];

impl Gauges {
    /// Installs the recorder if `PG_NODE_GAUGES=1`. Only then: a recorder
    /// makes every metric update real work, which the benchmarks that use
    /// this harness must not pay.
    pub(crate) fn install_if_asked() -> Result<Gauges, Box<dyn std::error::Error>> {
        let recorder = match std::env::var("PG_NODE_GAUGES").as_deref() {
            Ok("1") => {
                Some(metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?)
            }
            _ => None,
        };
        Ok(Gauges { recorder })
    }

    /// `ok tasks=<n> runtime_queue=<n> pg_...=<v> ...`.
    pub(crate) fn report(&self, runtime: &tokio::runtime::Runtime) -> String {
        let metrics = runtime.metrics();
        let mut out = format!(
            "ok tasks={} runtime_queue={}",
            metrics.num_alive_tasks(),
            metrics.global_queue_depth()
        );
        if let Some(recorder) = &self.recorder {
            let text = recorder.render();
            for name in LIBRARY_GAUGES {
                out.push_str(&format!(" {name}={}", sum_of(&text, name)));
            }
        }
        out
    }
}

/// The sum of every series of metric `name` in a Prometheus exposition.
fn sum_of(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_disorder_are_counted() {
        let t = Tracker::default();
        let b = t.broadcast_payload("<1.1@a>");
        t.observe(1, b.as_bytes());
        t.observe(2, b.as_bytes());
        t.observe(1, b.as_bytes());
        let s1 = t.direct_payload("<1.1@a>", 1, "<2.1@b>");
        let s2 = t.direct_payload("<1.1@a>", 1, "<2.1@b>");
        t.observe(2, s2.as_bytes());
        t.observe(2, s1.as_bytes());
        assert_eq!(t.report(), "ok 3 2 1 1");
    }

    #[test]
    fn sums_every_series_of_a_gauge() {
        let text = "# TYPE pg_exit_backlog gauge\npg_exit_backlog{scope=\"a\"} 3\npg_exit_backlog{scope=\"b\"} 4\npg_exit_backlog_x 9\npg_groups 2\n";
        assert_eq!(sum_of(text, "pg_exit_backlog"), 7.0);
        assert_eq!(sum_of(text, "pg_groups"), 2.0);
        assert_eq!(sum_of(text, "pg_subscriber_lag"), 0.0);
    }

    #[test]
    fn later_broadcasts_of_a_sender_are_fresh_and_forget_clears() {
        let t = Tracker::default();
        let b1 = t.broadcast_payload("<1.1@a>");
        let b2 = t.broadcast_payload("<1.1@a>");
        t.observe(1, b1.as_bytes());
        t.observe(1, b2.as_bytes());
        assert_eq!(t.report(), "ok 2 0 0 0");
        t.forget(1);
        assert!(t.seen.lock().is_empty());
        // An older number after a newer one counts.
        t.observe(2, b2.as_bytes());
        t.observe(2, b1.as_bytes());
        assert_eq!(t.report(), "ok 4 0 1 0");
    }
}
