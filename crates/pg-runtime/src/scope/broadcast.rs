//! Broadcast: the member list read from the snapshot, delivered outside
//! the writer, each distinct member once; one message per remote node.

use std::sync::Arc;

use bytes::Bytes;
use pg_core::{GroupName, Members, NodeId, Pid};
use rustc_hash::FxHashMap;

use crate::error::Error;
use crate::process::Envelope;
use crate::transport::Wire;

use super::Scope;

impl Scope {
    /// Sends `payload` under `topic` from `from` to every member of `group`
    /// on every node, once per member whatever its join count. Returns the
    /// number of members addressed. Local members get it in their mailbox
    /// (each waits at most `broadcast_timeout` for room, without delaying
    /// the others); each remote node gets one message carrying the payload
    /// and its targets.
    pub fn broadcast(
        &self,
        from: &Pid,
        group: &str,
        topic: &str,
        payload: Bytes,
    ) -> Result<usize, Error> {
        self.deliver(from, self.members_checked(group)?, topic, payload)
    }

    /// [`broadcast`](Self::broadcast) of `value`, encoded with postcard
    /// (receivers use [`Envelope::decode`](crate::Envelope::decode)).
    pub fn broadcast_typed<T: serde::Serialize>(
        &self,
        from: &Pid,
        group: &str,
        topic: &str,
        value: &T,
    ) -> Result<usize, Error> {
        self.broadcast(from, group, topic, crate::process::encode(value)?)
    }

    /// [`broadcast_local`](Self::broadcast_local) of `value`, encoded with
    /// postcard.
    pub fn broadcast_local_typed<T: serde::Serialize>(
        &self,
        from: &Pid,
        group: &str,
        topic: &str,
        value: &T,
    ) -> Result<usize, Error> {
        self.broadcast_local(from, group, topic, crate::process::encode(value)?)
    }

    /// As [`broadcast`](Self::broadcast), to this node's members only.
    pub fn broadcast_local(
        &self,
        from: &Pid,
        group: &str,
        topic: &str,
        payload: Bytes,
    ) -> Result<usize, Error> {
        GroupName::new(group)?;
        self.deliver(from, self.local_members(group), topic, payload)
    }

    pub(super) fn members_checked(&self, group: &str) -> Result<Members, Error> {
        GroupName::new(group)?;
        Ok(self.members(group))
    }

    pub(super) fn deliver(
        &self,
        from: &Pid,
        members: Members,
        topic: &str,
        payload: Bytes,
    ) -> Result<usize, Error> {
        let node = self.shared.links.node.upgrade().ok_or(Error::NodeClosed)?;
        node.check_payload(topic, &payload)?;
        let topic: Arc<str> = Arc::from(topic);
        let local_node = node.id().clone();
        let mut remote: FxHashMap<NodeId, Vec<u64>> = FxHashMap::default();
        let envelope = Envelope {
            from: from.clone(),
            topic: Arc::clone(&topic),
            payload: payload.clone(),
        };
        let mut local: Vec<u64> = Vec::new();
        // Once per distinct member, whatever its join count: multi-join
        // counts references, not copies.
        for pid in members.iter_distinct() {
            if *pid.node() == local_node {
                local.push(pid.serial());
            } else {
                remote
                    .entry(pid.node().clone())
                    .or_default()
                    .push(pid.serial());
            }
        }
        let count = members.distinct_len();
        node.deliver_local_many(local, &envelope, self.shared.options.broadcast_timeout);
        for (to_node, serials) in remote {
            let n = serials.len() as u64;
            let message = Wire::Deliver {
                scope: Some(Arc::clone(&self.shared.id)),
                from: from.clone(),
                to: serials,
                topic: Arc::clone(&topic),
                payload: payload.clone(),
            };
            if self.shared.links.transport.send(&to_node, message).is_err() {
                node.count_failed_deliveries(n, "unreachable");
            }
        }
        if count > 0 {
            self.shared.saw_broadcast();
        }
        Ok(count)
    }
}
