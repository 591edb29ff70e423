//! Where a sync is cut into pieces, decided from sizes alone, and the
//! pieces built from any source of the part's groups.
//!
//! The rule: pieces of at most `per_part` member entries and about
//! `part_bytes` encoded bytes, filled in the part's canonical order
//! (groups by name, members by serial, then registrations); a group with
//! more spans consecutive pieces, and an entry larger than the budget still
//! goes, alone. Deciding the cuts needs each group's name length and entry
//! count, and each entry's metadata size only in groups that have any: a
//! sender learns how many pieces a sync has (each piece carries the count)
//! without building them, and then builds each piece only when it is sent.

use crate::frame::{SyncGroup, SyncReg};
use crate::group::GroupName;
use crate::meta::Meta;
use crate::sync_parts::{MAX_SYNC_PART_ENTRIES, SyncPiece};

/// Most bytes one member entry takes encoded (a serial and a count, as
/// varints), for the byte budget of a piece.
const ENTRY_BYTES: usize = 16;
/// Bytes a group costs in a piece beside its name (lengths, framing).
const GROUP_BYTES: usize = 8;
/// A tag's presence byte and length prefix, at most.
const TAG_BYTES: usize = 4;

/// What the cutting rule needs to know of one group.
pub(crate) struct Shape {
    pub(crate) name_len: usize,
    /// Distinct members.
    pub(crate) len: usize,
    /// Metadata bytes of each member, by serial; empty when the group
    /// holds no metadata.
    pub(crate) meta_lens: Vec<usize>,
}

/// Where a piece starts: entry `entry` of group `group`, or, with `group`
/// past the last group, registration `reg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    group: usize,
    entry: usize,
    reg: usize,
}

/// The budgets in effect: at least one entry, and room for at least one
/// group of the longest name.
fn budgets(per_part: usize, part_bytes: usize) -> (usize, usize) {
    (
        per_part.clamp(1, MAX_SYNC_PART_ENTRIES),
        part_bytes.max(2 * crate::MAX_GROUP_NAME_LEN),
    )
}

/// The encoded size of a registration, at most, for the byte budget.
pub(crate) fn reg_size(reg: &SyncReg) -> usize {
    ENTRY_BYTES
        + GROUP_BYTES
        + reg.key.as_str().len()
        + reg.meta.as_ref().map_or(0, |m| m.len())
        + reg.tag.as_ref().map_or(0, |t| t.as_str().len() + TAG_BYTES)
}

/// The start of every piece (at least one: an empty part is one empty
/// piece).
pub(crate) fn layout(
    shapes: impl Iterator<Item = Shape>,
    reg_sizes: impl Iterator<Item = usize>,
    per_part: usize,
    part_bytes: usize,
) -> Vec<Mark> {
    let (per_part, part_bytes) = budgets(per_part, part_bytes);
    let mut marks = vec![Mark {
        group: 0,
        entry: 0,
        reg: 0,
    }];
    // The piece being filled: entries, bytes, and whether it holds anything.
    let (mut entries, mut bytes, mut filled) = (0usize, 0usize, false);
    let mut groups = 0;
    for (group, shape) in shapes.enumerate() {
        groups = group + 1;
        let entry_bytes = |i: usize| ENTRY_BYTES + shape.meta_lens.get(i).copied().unwrap_or(0);
        let head = shape.name_len + GROUP_BYTES;
        let mut start = 0;
        loop {
            if filled && (entries == per_part || bytes + head + entry_bytes(start) > part_bytes) {
                marks.push(Mark {
                    group,
                    entry: start,
                    reg: 0,
                });
                // The new piece is filled at once below.
                (entries, bytes) = (0, 0);
            }
            // At least one entry per piece; then as many as fit.
            let mut end = start;
            let mut used = head;
            if shape.meta_lens.is_empty() {
                // Every entry the same size: how many fit, at once.
                let room = part_bytes.saturating_sub(bytes + head) / ENTRY_BYTES;
                let n = (shape.len - start).min(per_part - entries).min(room.max(1));
                end += n;
                used += n * ENTRY_BYTES;
            } else {
                while end < shape.len
                    && entries + (end - start) < per_part
                    && (end == start || bytes + used + entry_bytes(end) <= part_bytes)
                {
                    used += entry_bytes(end);
                    end += 1;
                }
            }
            entries += end - start;
            bytes += used;
            filled = true;
            start = end;
            if start >= shape.len {
                break;
            }
        }
    }
    for (reg, size) in reg_sizes.enumerate() {
        if filled && (entries == per_part || bytes + size > part_bytes) {
            marks.push(Mark {
                group: groups,
                entry: 0,
                reg,
            });
            (entries, bytes) = (0, 0);
        }
        entries += 1;
        bytes += size;
        filled = true;
    }
    marks
}

/// A part's groups in canonical order, each readable as members by
/// serial, and its registrations by key.
pub(crate) trait PartSource {
    /// Number of groups.
    fn group_count(&self) -> usize;
    /// Group `g`'s name.
    fn name(&self, g: usize) -> &GroupName;
    /// Group `g`'s members by serial and their metadata (empty when the
    /// group has none).
    fn entries(&mut self, g: usize) -> (&[(u64, u32)], &[Option<Meta>]);
    /// The registrations, by key.
    fn registrations(&self) -> &[SyncReg];
}

/// The shape of group `g` of `source`.
pub(crate) fn shape(source: &mut impl PartSource, g: usize) -> Shape {
    let name_len = source.name(g).as_str().len();
    let (members, metas) = source.entries(g);
    Shape {
        name_len,
        len: members.len(),
        meta_lens: metas
            .iter()
            .map(|m| m.as_ref().map_or(0, |m| m.len()))
            .collect(),
    }
}

/// Builds piece `k` of the pieces that `marks` cut `source` into.
pub(crate) fn build_piece(source: &mut impl PartSource, marks: &[Mark], k: usize) -> SyncPiece {
    let groups = source.group_count();
    let (Some(&from), to) = (marks.get(k), marks.get(k + 1)) else {
        return SyncPiece::default();
    };
    let to = to.copied().unwrap_or(Mark {
        group: groups,
        entry: 0,
        reg: source.registrations().len(),
    });
    let mut piece = SyncPiece::default();
    for g in from.group..groups.min(to.group + 1) {
        let start = if g == from.group { from.entry } else { 0 };
        let name = source.name(g).clone();
        let (members, metas) = source.entries(g);
        let end = if g == to.group {
            to.entry
        } else {
            members.len()
        };
        if start >= end && !(members.is_empty() && g < to.group) {
            continue;
        }
        piece.groups.push(SyncGroup {
            group: name,
            // The marks come from this source's shapes, so the ranges are
            // in bounds; an empty range, never a panic, if not.
            members: members.get(start..end).unwrap_or_default().to_vec(),
            metas: metas.get(start..end).unwrap_or_default().to_vec(),
        });
    }
    let regs = source.registrations();
    let first = if from.group >= groups { from.reg } else { 0 };
    let last = if to.group >= groups { to.reg } else { 0 };
    piece.registrations = regs.get(first..last).unwrap_or_default().to_vec();
    piece
}

/// A part held whole, as a list of groups.
#[cfg(test)]
pub(crate) struct Listed {
    pub(crate) groups: Vec<SyncGroup>,
    pub(crate) registrations: Vec<SyncReg>,
}

#[cfg(test)]
impl PartSource for Listed {
    fn group_count(&self) -> usize {
        self.groups.len()
    }

    fn name(&self, g: usize) -> &GroupName {
        &self.groups[g].group
    }

    fn entries(&mut self, g: usize) -> (&[(u64, u32)], &[Option<Meta>]) {
        let group = &self.groups[g];
        (&group.members, &group.metas)
    }

    fn registrations(&self) -> &[SyncReg] {
        &self.registrations
    }
}
