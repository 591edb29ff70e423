//! Syncs of any size: a part too large for one frame travels as
//! [`Frame::SyncPart`]s, reassembled by the receiver and applied at once.
//!
//! Why split in the protocol rather than in the transport: every frame
//! then stays under the transport's frame limit (so a node of any size can
//! join a cluster), and the receiver can check each piece as it arrives.
//! Why apply at once rather than piece by piece: the differential sync must
//! know the whole part to tell who left, so readers and subscribers see one
//! atomic change with exactly the right events, as for a one-frame sync.
//!
//! The sender cuts its canonical group list (groups by name, members by
//! serial) into pieces of at most `sync_part_entries` member entries; a
//! large group spans consecutive pieces. The receiver collects the pieces
//! of one `(seq, known, total)` in any order (duplicates ignored); a newer
//! sync replaces an unfinished older one, and pieces of an older one are
//! stale. A lost piece leaves the assembly unfinished: the receiver's sync
//! request times out and asks again, and since a part's content is fixed
//! by its version, the pieces already held still count.

use crate::frame::{Frame, SyncGroup};

/// Most member entries in one [`Frame::SyncPart`]; a piece with more is
/// invalid.
pub const MAX_SYNC_PART_ENTRIES: usize = 65_536;

/// Most pieces one sync may be cut into.
pub const MAX_SYNC_PARTS: u32 = 4096;

/// Most bytes one member entry takes encoded (a serial and a count, as
/// varints), for the byte budget of a piece.
const ENTRY_BYTES: usize = 16;
/// Bytes a group costs in a piece beside its name (lengths, framing).
const GROUP_BYTES: usize = 8;

/// Cuts a canonical group list into pieces of at most `per_part` member
/// entries and about `part_bytes` encoded bytes (a group with more spans
/// several pieces; long group names count). Returns one piece when
/// everything fits.
pub(crate) fn split(
    groups: Vec<SyncGroup>,
    per_part: usize,
    part_bytes: usize,
) -> Vec<Vec<SyncGroup>> {
    let per_part = per_part.clamp(1, MAX_SYNC_PART_ENTRIES);
    // Room for at least one group of the longest name and one entry.
    let part_bytes = part_bytes.max(2 * crate::MAX_GROUP_NAME_LEN);
    let mut parts = Vec::new();
    let mut current: Vec<SyncGroup> = Vec::new();
    let (mut entries, mut bytes) = (0usize, 0usize);
    for SyncGroup { group, members } in groups {
        let mut members = members.as_slice();
        loop {
            let head = group.as_str().len() + GROUP_BYTES;
            if !current.is_empty()
                && (entries == per_part || bytes + head + ENTRY_BYTES > part_bytes)
            {
                parts.push(std::mem::take(&mut current));
                (entries, bytes) = (0, 0);
            }
            let by_bytes = (part_bytes.saturating_sub(bytes + head) / ENTRY_BYTES).max(1);
            let take = members.len().min(per_part - entries).min(by_bytes);
            current.push(SyncGroup {
                group: group.clone(),
                members: members[..take].to_vec(),
            });
            members = &members[take..];
            entries += take;
            bytes += head + take * ENTRY_BYTES;
            if members.is_empty() {
                break;
            }
        }
    }
    if !current.is_empty() || parts.is_empty() {
        parts.push(current);
    }
    parts
}

/// Joins pieces back into one canonical group list: consecutive pieces of
/// one group are merged.
pub(crate) fn join(parts: Vec<Vec<SyncGroup>>) -> Vec<SyncGroup> {
    let mut out: Vec<SyncGroup> = Vec::new();
    for part in parts {
        for SyncGroup { group, members } in part {
            match out.last_mut() {
                Some(last) if last.group == group => last.members.extend(members),
                _ => out.push(SyncGroup { group, members }),
            }
        }
    }
    out
}

/// The pieces of one sync received so far from one peer run.
#[derive(Debug)]
pub(crate) struct Assembly {
    seq: u64,
    known: Option<u64>,
    parts: Vec<Option<Vec<SyncGroup>>>,
    missing: usize,
}

/// What a piece did to its assembly.
pub(crate) enum Piece {
    /// Stored (or a duplicate); more pieces are missing.
    Pending,
    /// Older than the sync being assembled: ignored.
    Stale,
    /// The last missing piece: the whole sync, ready to apply.
    Complete(Frame),
}

impl Assembly {
    /// The version of the sync being assembled.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Adds one piece (already validated) to `slot`, starting a new
    /// assembly when it belongs to a newer or different sync.
    pub(crate) fn add(
        slot: &mut Option<Assembly>,
        seq: u64,
        known: Option<u64>,
        index: u32,
        total: u32,
        groups: Vec<SyncGroup>,
    ) -> Piece {
        if let Some(current) = slot.as_ref()
            && current.seq > seq
        {
            return Piece::Stale;
        }
        let same = slot
            .as_ref()
            .is_some_and(|a| a.seq == seq && a.known == known && a.parts.len() == total as usize);
        if !same {
            *slot = Some(Assembly {
                seq,
                known,
                parts: (0..total).map(|_| None).collect(),
                missing: total as usize,
            });
        }
        let Some(assembly) = slot.as_mut() else {
            return Piece::Pending;
        };
        if let Some(place) = assembly.parts.get_mut(index as usize)
            && place.is_none()
        {
            *place = Some(groups);
            assembly.missing -= 1;
        }
        if assembly.missing > 0 {
            return Piece::Pending;
        }
        let Some(done) = slot.take() else {
            return Piece::Pending;
        };
        Piece::Complete(Frame::Sync {
            seq: done.seq,
            known: done.known,
            groups: join(done.parts.into_iter().flatten().collect()),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;
    use crate::group::GroupName;

    fn groups(sizes: &[usize]) -> Vec<SyncGroup> {
        sizes
            .iter()
            .enumerate()
            .map(|(g, &n)| SyncGroup {
                group: GroupName::new(&format!("g{g:03}")).unwrap(),
                members: (0..n as u64).map(|s| (s, 1 + (s % 3) as u32)).collect(),
            })
            .collect()
    }

    proptest! {
        /// Any cut, reassembled in any order with duplicates, gives back
        /// the list; every piece holds at most `per_part` entries and is a
        /// valid frame.
        #[test]
        fn split_then_assemble_in_any_order_is_the_identity(
            sizes in proptest::collection::vec(1usize..40, 0..12),
            per_part in 1usize..20,
            order_seed in any::<u64>(),
        ) {
            let list = groups(&sizes);
            let parts = split(list.clone(), per_part, usize::MAX);
            prop_assert_eq!(join(parts.clone()), list.clone());
            let total = parts.len() as u32;
            let mut order: Vec<usize> = (0..parts.len()).chain(0..parts.len() / 2).collect();
            fastrand_shuffle(&mut order, order_seed);
            let mut slot = None;
            let mut done = None;
            for i in order {
                let piece = &parts[i];
                prop_assert!(piece.iter().map(|g| g.members.len()).sum::<usize>() <= per_part);
                let frame = Frame::SyncPart { seq: 5, known: None, index: i as u32, total, groups: piece.clone() };
                if total > 1 {
                    prop_assert!(frame.validate().is_ok());
                }
                if let Piece::Complete(sync) = Assembly::add(&mut slot, 5, None, i as u32, total, piece.clone()) {
                    prop_assert!(done.is_none(), "completed twice");
                    done = Some(sync);
                }
            }
            prop_assert_eq!(done, Some(Frame::Sync { seq: 5, known: None, groups: list }));
        }
    }

    /// A tiny shuffle without a dependency (xorshift).
    fn fastrand_shuffle(v: &mut [usize], seed: u64) {
        let mut x = seed | 1;
        for i in (1..v.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.swap(i, (x % (i as u64 + 1)) as usize);
        }
    }

    #[test]
    fn a_newer_sync_replaces_an_unfinished_one_and_older_pieces_are_stale() {
        let parts = split(groups(&[10]), 4, usize::MAX);
        assert_eq!(parts.len(), 3);
        let mut slot = None;
        assert!(matches!(
            Assembly::add(&mut slot, 5, None, 0, 3, parts[0].clone()),
            Piece::Pending
        ));
        assert!(matches!(
            Assembly::add(&mut slot, 6, None, 1, 3, parts[1].clone()),
            Piece::Pending
        ));
        assert!(matches!(
            Assembly::add(&mut slot, 5, None, 2, 3, parts[2].clone()),
            Piece::Stale
        ));
        assert!(matches!(
            Assembly::add(&mut slot, 6, None, 0, 3, parts[0].clone()),
            Piece::Pending
        ));
        assert!(matches!(
            Assembly::add(&mut slot, 6, None, 2, 3, parts[2].clone()),
            Piece::Complete(_)
        ));
        assert!(slot.is_none());
    }
}
