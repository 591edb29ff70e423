//! Whole-part syncs: applying a peer's differentially (events only for
//! real changes). Sending this node's part is in `sync_stream.rs`.

use crate::frame::{SyncGroup, SyncReg};
use crate::id::NodeId;
use crate::membership::{LOCAL_SLOT, MetaUpdate};
use crate::meta::LeaveReason;

use super::Scope;
use crate::timer::Timer;

impl Scope {
    pub(super) fn on_sync(
        &mut self,
        from: &NodeId,
        seq: u64,
        known: Option<u64>,
        groups: Vec<SyncGroup>,
        registrations: Vec<SyncReg>,
    ) {
        // A whole sync at or past the version being assembled makes the
        // unfinished pieces useless: drop them.
        if let Some(peer) = self.peers.get_mut(&from.name)
            && peer.assembly.as_ref().is_some_and(|a| a.seq() <= seq)
        {
            peer.assembly = None;
        }
        let repairing = self.peer_flag(from, |p| p.repairing);
        let held_seq = self.table.slot_of(from).map(|slot| self.table.seq(slot));
        let held_before = held_seq.is_some();
        // A sync older than the part held left before a frame of the same
        // run that already arrived (the network reordered them): what it
        // says of us is out of date. The sender's version never goes
        // back, so a sync it sends after dropping our part is never older.
        let overtaken = held_seq.is_some_and(|held| seq < held);
        let slot = match self.table.slot_of(from) {
            Some(slot)
                if seq < self.table.seq(slot) || (seq == self.table.seq(slot) && !repairing) =>
            {
                self.stats.syncs_stale += 1;
                None
            }
            Some(slot) => Some(slot),
            None => {
                // The same run back while its old part is still going.
                self.table.finish_removal_of(from, &mut self.events);
                match self.table.add_part(from.clone()) {
                    Ok(slot) => Some(slot),
                    Err(_) => {
                        self.stats.parts_refused += 1;
                        None
                    }
                }
            }
        };
        if let Some(slot) = slot {
            self.apply_sync(slot, groups);
            self.reg_apply_sync(slot, registrations);
            self.table.set_seq(slot, seq);
            self.stats.syncs_applied += 1;
            if let Some(peer) = self.peers.get_mut(&from.name) {
                peer.sync_requested_at = None;
                peer.repairing = false;
            }
        }
        // The sender lacks our part. Answer if we never sent it (its scope
        // may have started after our push), or if we already held its part
        // before this sync (it dropped ours on a down we did not see); not
        // when our own push to a new peer is merely crossing this one. A
        // stale `known` is never answered: our deltas are on their way, and
        // answering would ping-pong full syncs while both sides change. Nor
        // is an overtaken sync: a reordered frame must not cost a full sync.
        // (A duplicate at the version held is answered: it cannot be told
        // from the sender dropping our part on a down we did not see.)
        let sent = self.peer_flag(from, |p| p.part_sent);
        if known.is_none() && !overtaken && (!sent || held_before) && self.has_own_state() {
            self.send_own_sync(from);
        }
    }

    /// Makes the part in `slot` equal to `groups`, with events only for
    /// real changes (metadata included).
    fn apply_sync(&mut self, slot: u16, groups: Vec<SyncGroup>) {
        if self.table.part_is_empty(slot) {
            // A first sync (a new peer, or a restarted one): every member
            // is new, with nothing to compare against.
            self.table.add_fresh_part(slot, groups, &mut self.events);
            // Its process index is built in the next step (see fresh.rs).
            self.timers.set(Timer::PartIndex, self.seen_now);
            return;
        }
        // What the part holds now; whatever the sync does not mention goes.
        let mut unseen = self.table.part_counts(slot);
        for SyncGroup {
            group,
            members,
            metas,
        } in groups
        {
            // Looked up once per group, and again only after a change that
            // may have created or deleted the group.
            let mut gid = self.table.group_id(group.as_str());
            let mut metas = metas.into_iter();
            for (serial, count) in members {
                let meta = metas.next().flatten();
                let held = match gid {
                    Some(gid) => {
                        unseen.remove(&(gid, serial));
                        self.table.count_in(slot, serial, gid)
                    }
                    None => 0,
                };
                if count > held {
                    let update = MetaUpdate::Set(meta);
                    self.table
                        .add(slot, serial, &group, count - held, update, &mut self.events);
                    if gid.is_none() {
                        gid = self.table.group_id(group.as_str());
                    }
                    continue;
                }
                let Some(id) = gid else { continue };
                if count < held {
                    let reason = LeaveReason::Resync;
                    self.table
                        .sub(slot, serial, id, held - count, reason, &mut self.events);
                }
                // The member stays (count >= 1), so the group does too.
                if self.table.meta_in(slot, serial, id) != meta {
                    self.table
                        .set_meta(slot, serial, id, meta, &mut self.events);
                }
            }
        }
        // Groups named in `unseen` still hold those members, so their ids
        // were neither freed nor reused above.
        let mut unseen: Vec<_> = unseen.into_iter().collect();
        unseen.sort_unstable_by_key(|&((gid, serial), _)| (gid, serial));
        for ((gid, serial), count) in unseen {
            let reason = LeaveReason::Resync;
            self.table
                .sub(slot, serial, gid, count, reason, &mut self.events);
        }
    }

    /// Whether this node's part holds anything (memberships or keys).
    pub(super) fn has_own_state(&self) -> bool {
        self.table.part_memberships(LOCAL_SLOT) > 0 || self.registry.count(LOCAL_SLOT) > 0
    }
}
