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

use crate::error::FrameInvariant;
use crate::frame::{Frame, SyncGroup, SyncReg};

/// Most member entries in one [`Frame::SyncPart`]; a piece with more is
/// invalid.
pub const MAX_SYNC_PART_ENTRIES: usize = 65_536;

/// Most pieces one sync may be cut into.
pub const MAX_SYNC_PARTS: u32 = 4096;

/// Cuts a canonical group list into pieces of at most `per_part` member
/// entries and about `part_bytes` encoded bytes (see `sync_layout.rs`; a
/// group with more spans several pieces; long group names count). Returns
/// one piece when everything fits.
#[cfg(test)]
pub(crate) fn split(
    groups: Vec<SyncGroup>,
    registrations: Vec<SyncReg>,
    per_part: usize,
    part_bytes: usize,
) -> Vec<SyncPiece> {
    use crate::sync_layout::{Listed, PartSource, build_piece, layout, reg_size, shape};
    let mut source = Listed {
        groups,
        registrations,
    };
    let shapes: Vec<_> = (0..source.group_count())
        .map(|g| shape(&mut source, g))
        .collect();
    let sizes: Vec<usize> = source.registrations.iter().map(reg_size).collect();
    let marks = layout(shapes.into_iter(), sizes.into_iter(), per_part, part_bytes);
    (0..marks.len())
        .map(|k| build_piece(&mut source, &marks, k))
        .collect()
}

/// One piece of a sync: groups, then registrations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SyncPiece {
    pub(crate) groups: Vec<SyncGroup>,
    pub(crate) registrations: Vec<SyncReg>,
}

/// Joins pieces back into one canonical group list: consecutive pieces of
/// one group are merged (metadata too: a group whose first piece carried
/// none gets `None`s for it once a later piece carries some). Each piece
/// is canonical (checked on arrival); so is the whole if, at each seam,
/// names and keys go on rising and a group that continues goes on with
/// larger serials: checked here, so the whole needs no second pass.
pub(crate) fn join(parts: Vec<SyncPiece>) -> Result<SyncPiece, FrameInvariant> {
    let mut out: Vec<SyncGroup> = Vec::new();
    let mut registrations: Vec<SyncReg> = Vec::new();
    for part in parts {
        if let (Some(last), Some(first)) = (registrations.last(), part.registrations.first())
            && last.key >= first.key
        {
            return Err(FrameInvariant::SyncOrder);
        }
        registrations.extend(part.registrations);
        for piece in part.groups {
            match out.last_mut() {
                Some(last) if last.group > piece.group => {
                    return Err(FrameInvariant::SyncOrder);
                }
                Some(last) if last.group == piece.group => {
                    let (Some(end), Some(start)) = (last.members.last(), piece.members.first())
                    else {
                        return Err(FrameInvariant::EmptyGroup);
                    };
                    if end.0 >= start.0 {
                        return Err(FrameInvariant::SyncOrder);
                    }
                    if !piece.metas.is_empty() || !last.metas.is_empty() {
                        last.metas.resize(last.members.len(), None);
                        if piece.metas.is_empty() {
                            last.metas
                                .resize(last.members.len() + piece.members.len(), None);
                        } else {
                            last.metas.extend(piece.metas);
                        }
                    }
                    last.members.extend(piece.members);
                }
                _ => out.push(piece),
            }
        }
    }
    Ok(SyncPiece {
        groups: out,
        registrations,
    })
}

/// The pieces of one sync received so far from one peer run.
#[derive(Debug)]
pub(crate) struct Assembly {
    seq: u64,
    known: Option<u64>,
    parts: Vec<Option<SyncPiece>>,
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
    /// The last missing piece, but the pieces do not join into one
    /// canonical list (out of order at a seam): the sync is invalid.
    Broken,
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
        piece: SyncPiece,
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
            *place = Some(piece);
            assembly.missing -= 1;
        }
        if assembly.missing > 0 {
            return Piece::Pending;
        }
        let Some(done) = slot.take() else {
            return Piece::Pending;
        };
        let Ok(whole) = join(done.parts.into_iter().flatten().collect()) else {
            return Piece::Broken;
        };
        Piece::Complete(Frame::Sync {
            seq: done.seq,
            known: done.known,
            groups: whole.groups,
            registrations: whole.registrations,
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
                // Every other group carries metadata, on some members.
                metas: if g % 2 == 0 {
                    (0..n)
                        .map(|s| (s % 4 != 1).then(|| crate::Meta::from(vec![s as u8; s % 50])))
                        .collect()
                } else {
                    Vec::new()
                },
            })
            .collect()
    }

    impl SyncPiece {
        fn is_empty(&self) -> bool {
            self.groups.is_empty() && self.registrations.is_empty()
        }
    }

    // The cutting rule as it was written before pieces were built one at
    // a time: the layout must cut exactly where it did.
    /// Most bytes one member entry takes encoded (a serial and a count, as
    /// varints), for the byte budget of a piece.
    const R_ENTRY_BYTES: usize = 16;
    /// Bytes a group costs in a piece beside its name (lengths, framing).
    const R_GROUP_BYTES: usize = 8;
    /// A tag's presence byte and length prefix, at most.
    const R_TAG_BYTES: usize = 4;

    /// Cuts a canonical group list into pieces of at most `per_part` member
    /// entries and about `part_bytes` encoded bytes (a group with more spans
    /// several pieces; long group names count). Returns one piece when
    /// everything fits.
    fn reference_split(
        groups: Vec<SyncGroup>,
        registrations: Vec<SyncReg>,
        per_part: usize,
        part_bytes: usize,
    ) -> Vec<SyncPiece> {
        let per_part = per_part.clamp(1, super::MAX_SYNC_PART_ENTRIES);
        // Room for at least one group of the longest name; an entry larger
        // than the budget (large metadata) still goes, alone.
        let part_bytes = part_bytes.max(2 * crate::MAX_GROUP_NAME_LEN);
        let mut parts: Vec<SyncPiece> = Vec::new();
        let mut current = SyncPiece::default();
        let (mut entries, mut bytes) = (0usize, 0usize);
        for SyncGroup {
            group,
            mut members,
            mut metas,
        } in groups
        {
            let entry_bytes = |i: usize| {
                R_ENTRY_BYTES + metas.get(i).and_then(|m| m.as_ref()).map_or(0, |m| m.len())
            };
            let mut start = 0;
            loop {
                let head = group.as_str().len() + R_GROUP_BYTES;
                if !current.is_empty()
                    && (entries == per_part || bytes + head + entry_bytes(start) > part_bytes)
                {
                    parts.push(std::mem::take(&mut current));
                    (entries, bytes) = (0, 0);
                }
                // At least one entry per piece; then as many as fit.
                let mut end = start;
                let mut used = head;
                while end < members.len()
                    && entries + (end - start) < per_part
                    && (end == start || bytes + used + entry_bytes(end) <= part_bytes)
                {
                    used += entry_bytes(end);
                    end += 1;
                }
                entries += end - start;
                bytes += used;
                if start == 0 && end == members.len() {
                    // The whole group in this piece (the common case): moved,
                    // not copied.
                    let (members, metas) =
                        (std::mem::take(&mut members), std::mem::take(&mut metas));
                    current.groups.push(SyncGroup {
                        group,
                        members,
                        metas,
                    });
                    break;
                }
                current.groups.push(SyncGroup {
                    group: group.clone(),
                    members: members[start..end].to_vec(),
                    metas: if metas.is_empty() {
                        Vec::new()
                    } else {
                        metas[start..end].to_vec()
                    },
                });
                start = end;
                if start == members.len() {
                    break;
                }
            }
        }
        // Registrations follow, one entry each.
        for reg in registrations {
            let size = R_ENTRY_BYTES
                + R_GROUP_BYTES
                + reg.key.as_str().len()
                + reg.meta.as_ref().map_or(0, |m| m.len())
                + reg
                    .tag
                    .as_ref()
                    .map_or(0, |t| t.as_str().len() + R_TAG_BYTES);
            if !current.is_empty() && (entries == per_part || bytes + size > part_bytes) {
                parts.push(std::mem::take(&mut current));
                (entries, bytes) = (0, 0);
            }
            current.registrations.push(reg);
            entries += 1;
            bytes += size;
        }
        if !current.is_empty() || parts.is_empty() {
            parts.push(current);
        }
        parts
    }

    proptest! {
        /// The layout, which decides the cuts from sizes alone, cuts
        /// exactly where the rule applied to the whole list does.
        #[test]
        fn the_layout_cuts_where_the_whole_list_rule_does(
            sizes in proptest::collection::vec(1usize..300, 0..30),
            keys in 0usize..40,
            per_part in 1usize..400,
            bytes in prop_oneof![Just(0usize), 1usize..6000, Just(usize::MAX)],
        ) {
            let list = groups(&sizes);
            let regs = registrations(keys);
            prop_assert_eq!(
                split(list.clone(), regs.clone(), per_part, bytes),
                reference_split(list, regs, per_part, bytes)
            );
        }

        /// Pieces joined in any order (each canonical on its own) give a
        /// canonical whole or are refused: what `join` accepts needs no
        /// second check.
        #[test]
        fn joined_pieces_are_canonical_or_refused(
            sizes in proptest::collection::vec(1usize..40, 0..12),
            keys in 0usize..30,
            per_part in 1usize..20,
            order_seed in any::<u64>(),
        ) {
            let parts = split(groups(&sizes), registrations(keys), per_part, usize::MAX);
            let mut order: Vec<usize> = (0..parts.len()).collect();
            fastrand_shuffle(&mut order, order_seed);
            let shuffled: Vec<SyncPiece> = order.iter().map(|&i| parts[i].clone()).collect();
            match join(shuffled) {
                Ok(whole) => {
                    let sync = Frame::Sync {
                        seq: 1,
                        known: None,
                        groups: whole.groups,
                        registrations: whole.registrations,
                    };
                    prop_assert!(sync.validate().is_ok(), "accepted out of order: {:?}", order);
                }
                Err(_) => prop_assert!(order.windows(2).any(|w| w[0] > w[1])),
            }
        }

        /// Any cut, reassembled in any order with duplicates, gives back
        /// the list; every piece holds at most `per_part` entries and is a
        /// valid frame.
        #[test]
        fn split_then_assemble_in_any_order_is_the_identity(
            sizes in proptest::collection::vec(1usize..40, 0..12),
            keys in 0usize..30,
            per_part in 1usize..20,
            by_bytes in any::<bool>(),
            order_seed in any::<u64>(),
        ) {
            let list = groups(&sizes);
            let regs = registrations(keys);
            // The smallest byte budget (two longest names) also cuts by
            // bytes, with the metadata counted.
            let bytes = if by_bytes { 0 } else { usize::MAX };
            let parts = split(list.clone(), regs.clone(), per_part, bytes);
            let whole = SyncPiece { groups: list.clone(), registrations: regs.clone() };
            prop_assert_eq!(join(parts.clone()), Ok(whole));
            let total = parts.len() as u32;
            let mut order: Vec<usize> = (0..parts.len()).chain(0..parts.len() / 2).collect();
            fastrand_shuffle(&mut order, order_seed);
            let mut slot = None;
            let mut done = None;
            for i in order {
                let piece = &parts[i];
                let entries = piece.groups.iter().map(|g| g.members.len()).sum::<usize>();
                prop_assert!(entries + piece.registrations.len() <= per_part);
                let frame = Frame::SyncPart {
                    seq: 5,
                    known: None,
                    index: i as u32,
                    total,
                    groups: piece.groups.clone(),
                    registrations: piece.registrations.clone(),
                };
                if total > 1 {
                    prop_assert!(frame.validate().is_ok());
                }
                if let Piece::Complete(sync) = Assembly::add(&mut slot, 5, None, i as u32, total, piece.clone()) {
                    prop_assert!(done.is_none(), "completed twice");
                    done = Some(sync);
                }
            }
            prop_assert_eq!(done, Some(Frame::Sync { seq: 5, known: None, groups: list, registrations: regs }));
        }
    }

    fn registrations(n: usize) -> Vec<SyncReg> {
        (0..n)
            .map(|i| SyncReg {
                key: GroupName::new(&format!("k{i:03}")).unwrap(),
                serial: i as u64,
                stamp: 1 + i as u64,
                tag: (i % 2 == 0).then(|| GroupName::new(&format!("t{}", i % 5)).unwrap()),
                meta: (i % 3 == 0).then(|| crate::Meta::from(vec![i as u8; i])),
            })
            .collect()
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
    fn metadata_counts_towards_a_piece_s_bytes() {
        let big = crate::Meta::from(vec![1u8; 30 * 1024]);
        let list = vec![SyncGroup {
            group: GroupName::new("g").unwrap(),
            members: (0..10).map(|s| (s, 1)).collect(),
            metas: vec![Some(big); 10],
        }];
        // Two of these entries fit in 70 000 bytes, three do not.
        let parts = split(list.clone(), Vec::new(), 1000, 70_000);
        assert_eq!(parts.len(), 5);
        for part in &parts {
            assert_eq!(part.groups[0].members.len(), 2);
            assert_eq!(part.groups[0].metas.len(), 2);
            let frame = Frame::SyncPart {
                seq: 1,
                known: None,
                index: 0,
                total: 5,
                groups: part.groups.clone(),
                registrations: Vec::new(),
            };
            assert!(frame.encode().len() < 70_000);
        }
        assert_eq!(join(parts).unwrap().groups, list.clone());
        // Under the smallest budget, each goes alone.
        assert_eq!(split(list, Vec::new(), 1000, 0).len(), 10);
    }

    #[test]
    fn a_newer_sync_replaces_an_unfinished_one_and_older_pieces_are_stale() {
        let parts = split(groups(&[10]), Vec::new(), 4, usize::MAX);
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
