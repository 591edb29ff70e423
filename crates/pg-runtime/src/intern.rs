//! A node's own name, kept for the life of the process.
//!
//! Every pid of a node carries the node's name. Held as a shared string,
//! each clone of a pid (a registry lookup returns one, a member list hands
//! them out) costs two atomic reference-count updates on one cache line
//! that every thread of the node touches. The runtime therefore keeps its
//! own node's name in storage that is never freed, so clones of local pids
//! are plain copies. Names are interned: starting and stopping nodes of
//! the same name reuses one copy, so what is kept is bounded by the number
//! of distinct names this process has started nodes under. Names from
//! peers stay shared strings (a peer must not make us keep anything).

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use pg_core::NodeName;

static NAMES: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Mutex::default);

/// `name`, backed by interned storage that lives as long as the process.
pub(crate) fn own_node_name(name: &NodeName) -> NodeName {
    // A poisoned lock only means another thread panicked while inserting:
    // the set itself is still a valid set of leaked names.
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let text = match names.get(name.as_str()) {
        Some(text) => *text,
        None => {
            let text: &'static str = Box::leak(name.as_str().into());
            names.insert(text);
            text
        }
    };
    // The text was validated as `name`'s; `from_static` checks it again
    // and cannot fail on it, but falling back keeps this total.
    NodeName::from_static(text).unwrap_or_else(|_| name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_names_equal_their_source_and_are_kept_once() {
        let name = NodeName::new("intern-test@host").unwrap();
        let first = own_node_name(&name);
        let second = own_node_name(&name);
        assert_eq!(first, name);
        assert_eq!(second, name);
        assert!(std::ptr::eq(first.as_str(), second.as_str()));
        let count = NAMES
            .lock()
            .unwrap()
            .iter()
            .filter(|n| **n == "intern-test@host")
            .count();
        assert_eq!(count, 1);
    }
}
