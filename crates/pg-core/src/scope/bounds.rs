//! What a peer may send: each frame checked against the configured bounds
//! before anything of it applies, and the pieces of a split sync gathered
//! until the whole part can be checked and applied.

use rustc_hash::FxHashMap;

use crate::error::Violation;
use crate::frame::{Frame, Op, SyncGroup};
use crate::group::GroupName;
use crate::id::NodeId;
use crate::sync_parts::{Assembly, Piece};

use super::Scope;

impl Scope {
    /// Checks a peer's frame against the configured bounds before anything
    /// of it applies.
    pub(super) fn check_remote(&self, from: &NodeId, frame: &Frame) -> Result<(), Violation> {
        let limit = self.max_join_count();
        match frame {
            Frame::Delta { ops, .. } => {
                let slot = self.table.slot_of(from);
                self.check_remote_registers(slot, ops)?;
                // Joins of one member within the delta add up.
                let mut added: FxHashMap<(&GroupName, u64), u64> = FxHashMap::default();
                for op in ops {
                    if let Op::Join {
                        group,
                        serial,
                        count,
                        meta,
                    } = op
                    {
                        self.check_remote_meta(group, *serial, meta.as_ref())?;
                        // A lone op (the common delta) needs no tally.
                        let sum = if ops.len() == 1 {
                            u64::from(*count)
                        } else {
                            let sum = added.entry((group, *serial)).or_default();
                            *sum += u64::from(*count);
                            *sum
                        };
                        let held = slot.map_or(0, |s| self.table.count(s, *serial, group.as_str()));
                        let total = u64::from(held) + sum;
                        if total > u64::from(limit) {
                            return Err(Violation::JoinCount {
                                group: group.clone(),
                                serial: *serial,
                                count: total,
                                limit,
                            });
                        }
                    }
                }
            }
            Frame::Sync {
                groups,
                registrations,
                ..
            } => {
                self.check_remote_regs(registrations)?;
                for group in groups {
                    self.check_remote_entries(group, limit)?;
                }
                self.check_sync_totals(groups, registrations.len())?;
            }
            Frame::SyncPart {
                groups,
                registrations,
                ..
            } => {
                // Each piece's entries at once; the whole part's groups and
                // totals once assembled (`check_sync_totals`, in `on_sync_part`).
                self.check_remote_regs(registrations)?;
                for group in groups {
                    self.check_remote_entries(group, limit)?;
                }
            }
            Frame::SyncRequest | Frame::Discover | Frame::Digest { .. } => {}
        }
        Ok(())
    }

    /// Checks a sync (or a piece of one) group's entries: metadata size
    /// and join counts.
    fn check_remote_entries(&self, group: &SyncGroup, limit: u32) -> Result<(), Violation> {
        let SyncGroup {
            group,
            members,
            metas,
        } = group;
        for (&(serial, _), meta) in members.iter().zip(metas) {
            self.check_remote_meta(group, serial, meta.as_ref())?;
        }
        if let Some(&(serial, count)) = members.iter().find(|&&(_, c)| c > limit) {
            return Err(Violation::JoinCount {
                group: group.clone(),
                serial,
                count: u64::from(count),
                limit,
            });
        }
        Ok(())
    }

    /// Checks a whole part's size against the bounds: how many keys and
    /// groups it holds, and each group's total join count.
    fn check_sync_totals(
        &self,
        groups: &[SyncGroup],
        registrations: usize,
    ) -> Result<(), Violation> {
        let reg_limit = self.config.max_registrations;
        if reg_limit > 0 && registrations > reg_limit {
            return Err(Violation::Registrations {
                registrations,
                limit: reg_limit,
            });
        }
        let max_groups = self.config.max_groups;
        if max_groups > 0 && groups.len() > max_groups {
            return Err(Violation::Groups {
                groups: groups.len(),
                limit: max_groups,
            });
        }
        let max_members = self.config.max_members_per_group;
        if max_members == 0 {
            return Ok(());
        }
        for SyncGroup { group, members, .. } in groups {
            let total: u64 = members.iter().map(|&(_, count)| u64::from(count)).sum();
            if total > max_members as u64 {
                return Err(Violation::GroupMembers {
                    group: group.clone(),
                    total,
                    limit: max_members,
                });
            }
        }
        Ok(())
    }

    /// Checks a sync's registrations' metadata.
    fn check_remote_regs(&self, regs: &[crate::frame::SyncReg]) -> Result<(), Violation> {
        for reg in regs {
            self.check_remote_meta(&reg.key, reg.serial, reg.meta.as_ref())?;
            check_stamp(&reg.key, reg.stamp)?;
        }
        Ok(())
    }

    /// Checks a delta's registrations: metadata, and the part's count
    /// against `max_registrations` (keys the part does not hold yet).
    fn check_remote_registers(
        &self,
        slot: Option<crate::member_list::Slot>,
        ops: &[Op],
    ) -> Result<(), Violation> {
        let entry = |op: &Op| match op {
            Op::Register {
                key,
                serial,
                stamp,
                meta,
                ..
            } => {
                self.check_remote_meta(key, *serial, meta.as_ref())?;
                check_stamp(key, *stamp)
            }
            _ => Ok(()),
        };
        let limit = self.config.max_registrations;
        if limit == 0 {
            // No bound on the count (the default): each entry's own checks
            // only, without the tally below (a map of the delta's keys).
            return ops.iter().try_for_each(entry);
        }
        // Whether the part holds each key the delta touches, as the ops
        // go: adds and removals in one delta net out.
        let mut holds: FxHashMap<&GroupName, bool> = FxHashMap::default();
        let held_now = |key: &GroupName| {
            slot.is_some_and(|s| {
                self.registry
                    .holders(key.as_str())
                    .iter()
                    .any(|h| h.slot == s)
            })
        };
        let mut count = slot.map_or(0, |s| self.registry.count(s)) as i64;
        let mut peak = count;
        for op in ops {
            match op {
                Op::Register { key, .. } => {
                    entry(op)?;
                    let held = holds.entry(key).or_insert_with(|| held_now(key));
                    if !*held {
                        *held = true;
                        count += 1;
                        peak = peak.max(count);
                    }
                }
                Op::Unregister { key, .. } => {
                    let held = holds.entry(key).or_insert_with(|| held_now(key));
                    if *held {
                        *held = false;
                        count -= 1;
                    }
                }
                _ => {}
            }
        }
        if peak > limit as i64 && peak > slot.map_or(0, |s| self.registry.count(s)) as i64 {
            return Err(Violation::Registrations {
                registrations: peak as usize,
                limit,
            });
        }
        Ok(())
    }

    /// Checks one entry's metadata against `max_meta_size`.
    fn check_remote_meta(
        &self,
        group: &GroupName,
        serial: u64,
        meta: Option<&crate::Meta>,
    ) -> Result<(), Violation> {
        let limit = self.max_meta_size();
        match meta {
            Some(meta) if meta.len() > limit => Err(Violation::MetaSize {
                group: group.clone(),
                serial,
                len: meta.len(),
                limit,
            }),
            _ => Ok(()),
        }
    }

    /// Refuses a peer's frame as a violation: counted and reported.
    pub(super) fn refuse(&mut self, from: &NodeId, violation: Violation) {
        self.stats.violations += 1;
        // Bounded: a peer gets its link closed at its first violation.
        if self.violations.len() < 64 {
            self.violations.push_back((from.clone(), violation));
        }
    }

    pub(super) fn on_sync_part(&mut self, from: &NodeId, frame: Frame) {
        let Frame::SyncPart {
            seq,
            known,
            index,
            total,
            groups,
            registrations,
        } = frame
        else {
            return;
        };
        let piece = crate::sync_parts::SyncPiece {
            groups,
            registrations,
        };
        let Some(peer) = self.peers.get_mut(&from.name) else {
            return;
        };
        let whole = match Assembly::add(&mut peer.assembly, seq, known, index, total, piece) {
            Piece::Pending => return,
            Piece::Stale => {
                self.stats.syncs_stale += 1;
                return;
            }
            // Pieces that do not join into one canonical list (each was
            // checked on arrival; only the seams are new).
            Piece::Broken => {
                self.stats.frames_invalid += 1;
                return;
            }
            Piece::Complete(whole) => whole,
        };
        // Each piece's entries were checked on arrival: the whole part's
        // totals remain.
        if let Frame::Sync {
            groups,
            registrations,
            ..
        } = &whole
            && let Err(violation) = self.check_sync_totals(groups, registrations.len())
        {
            return self.refuse(from, violation);
        }
        if let Frame::Sync {
            seq,
            known,
            groups,
            registrations,
        } = whole
        {
            self.on_sync(from, seq, known, groups, registrations);
        }
    }
}

/// A registration timestamp a peer may send.
fn check_stamp(key: &GroupName, stamp: u64) -> Result<(), Violation> {
    if stamp > crate::registry::MAX_STAMP {
        return Err(Violation::Stamp {
            key: key.clone(),
            stamp,
        });
    }
    Ok(())
}
