//! What the harness's processes check about the messages they receive,
//! for `cargo xtask chaos`: no broadcast delivered twice to a process, and
//! direct messages between a pair in the order they were sent (gaps are
//! allowed: the API delivers at most once, not always).
//!
//! Payloads: `b <id>` for a broadcast (`id` unique in the cluster: the
//! sending node's name, run and a counter), `s <from> <seq>` for a direct
//! message (`seq` counts per sender and receiver from 1).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Per receiving process: broadcast ids seen, last sequence per sender.
#[derive(Default)]
struct Seen {
    broadcasts: HashSet<String>,
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
                self.broadcasts.fetch_add(1, Ordering::Relaxed);
                let fresh = self
                    .seen
                    .lock()
                    .entry(serial)
                    .or_default()
                    .broadcasts
                    .insert(id.to_owned());
                if !fresh {
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
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

    /// The payload of this node's next broadcast.
    pub(crate) fn broadcast_payload(&self, node: &str) -> String {
        let n = self.next_broadcast.fetch_add(1, Ordering::Relaxed);
        format!("b {node}.{n}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_disorder_are_counted() {
        let t = Tracker::default();
        let b = t.broadcast_payload("a/1");
        t.observe(1, b.as_bytes());
        t.observe(2, b.as_bytes());
        t.observe(1, b.as_bytes());
        let s1 = t.direct_payload("<1.1@a>", 1, "<2.1@b>");
        let s2 = t.direct_payload("<1.1@a>", 1, "<2.1@b>");
        t.observe(2, s2.as_bytes());
        t.observe(2, s1.as_bytes());
        assert_eq!(t.report(), "ok 3 2 1 1");
    }
}
