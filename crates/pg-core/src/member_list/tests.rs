//! Tests of the member list: a counting model, the position index, and
//! a list filled at once against one pushed member by member.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// Serial -> (count, metadata byte).
type Model = BTreeMap<u64, (u32, Option<u8>)>;

fn contents(list: &ListSnapshot) -> Model {
    let metas: Vec<Option<Meta>> = match list.metas() {
        Some(metas) => metas.collect(),
        None => vec![None; list.distinct()],
    };
    assert_eq!(metas.len(), list.distinct());
    list.iter()
        .zip(metas)
        .map(|((k, c), m)| (k.0, (c, m.map(|m| m.as_bytes()[0]))))
        .collect()
}

fn check_positions(list: &MemberList) -> Result<(), TestCaseError> {
    let len = list.list.keys.len();
    if list.indexed {
        prop_assert_eq!(list.index.len(), len);
        prop_assert!(len > UNINDEX_AT);
    } else {
        prop_assert_eq!(list.index.capacity(), 0);
        prop_assert!(len <= INDEX_ABOVE);
    }
    for (pos, key) in list.list.keys.iter().enumerate() {
        prop_assert_eq!(list.position(key), Some(pos as u32));
        let counted = pos < list.list.counts.len();
        prop_assert_eq!(list.count(key) > 1, counted);
    }
    let metas = list.list.metas.len();
    prop_assert!(metas == 0 || metas == list.list.keys.len());
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Join,
    Leave,
    SetMeta(Option<u8>),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => Just(Change::Join),
        3 => Just(Change::Leave),
        2 => proptest::option::weighted(0.8, 0u8..4).prop_map(Change::SetMeta),
    ]
}

/// Growing past one leaf builds the index, shrinking to half a leaf
/// drops it, and positions stay right at every step either way, with
/// counted members and metadata on board.
#[test]
fn the_index_comes_and_goes_with_the_size() {
    let key = |s: u64| MemberKey::new(2, s);
    let mut list = MemberList::default();
    let check = |list: &MemberList| {
        check_positions(list).unwrap();
    };
    for round in 0..2u64 {
        for s in 0..300 {
            list.add(key(s), 1 + u32::from(s % 7 == 0));
            if s % 11 == 0 {
                list.set_meta(key(s), Some(Meta::from(vec![s as u8])));
            }
            assert_eq!(
                list.indexed,
                s as usize + 1 > INDEX_ABOVE,
                "round {round}, {s}"
            );
            check(&list);
        }
        // Leave in a scattered order; each member leaves whole.
        let mut left: u64 = 0;
        for s in (0..300).map(|i| (i * 37) % 300) {
            let (removed, gone) = list.sub(key(s), u32::MAX);
            assert!(gone && removed >= 1);
            left += 1;
            let len = 300 - left as usize;
            assert_eq!(list.distinct(), len);
            assert!(
                list.indexed == (len > UNINDEX_AT),
                "{len}: {}",
                list.indexed
            );
            check(&list);
            for t in [s, (s + 1) % 300] {
                let present = list.position(key(t)).is_some();
                let gone_already = (0..left).any(|i| (i * 37) % 300 == t);
                assert_eq!(present, !gone_already);
            }
        }
        assert_eq!(list.total(), 0);
    }
}

proptest! {
    /// Any mix of joins, leaves and metadata changes leaves the list
    /// equal to a counting model, with positions consistent, metadata
    /// following its member through every swap, and earlier snapshots
    /// intact; the prefill spreads members over several leaves and
    /// levels, so swaps cross them.
    #[test]
    fn matches_a_counting_model(
        prefill in prop_oneof![Just(0u64), 1u64..300, 2000u64..2500],
        ops in proptest::collection::vec((change(), 0u64..2600, 1u32..4), 0..300),
    ) {
        let mut list = MemberList::default();
        let mut model = Model::new();
        for serial in 0..prefill {
            let key = MemberKey::new(1, serial);
            list.add(key, 1 + (serial % 3 == 0) as u32);
            model.insert(key.0, (1 + (serial % 3 == 0) as u32, None));
        }
        let mut snapshots = Vec::new();
        for (i, (change, serial, n)) in ops.into_iter().enumerate() {
            // Mostly members that exist, so leaves and re-joins hit.
            let serial = if prefill > 0 && serial % 2 == 0 { serial % prefill } else { serial };
            let key = MemberKey::new(1, serial);
            let (have, had_meta) = model.get(&key.0).copied().unwrap_or((0, None));
            match change {
                Change::Join => {
                    let new = list.add(key, n);
                    prop_assert_eq!(new, have == 0);
                    model.insert(key.0, (have + n, had_meta));
                }
                Change::Leave => {
                    let (removed, gone) = list.sub(key, n);
                    prop_assert_eq!(removed, n.min(have));
                    prop_assert_eq!(gone, have > 0 && n >= have);
                    if have > 0 {
                        if n >= have {
                            model.remove(&key.0);
                        } else {
                            model.insert(key.0, (have - n, had_meta));
                        }
                    }
                }
                Change::SetMeta(byte) => {
                    let previous = list.set_meta(key, byte.map(|b| Meta::from(vec![b])));
                    prop_assert_eq!(previous.map(|m| m.as_bytes()[0]), had_meta);
                    if have > 0 {
                        model.insert(key.0, (have, byte));
                    }
                }
            }
            let (count, meta) = model.get(&key.0).copied().unwrap_or((0, None));
            prop_assert_eq!(list.count(key), count);
            prop_assert_eq!(list.meta(key).map(|m| m.as_bytes()[0]), meta);
            prop_assert_eq!(list.total(), model.values().map(|&(c, _)| u64::from(c)).sum::<u64>());
            if i % 50 == 0 {
                prop_assert_eq!(contents(&list.list), model.clone());
                check_positions(&list)?;
                snapshots.push((list.snapshot(), model.clone()));
            }
        }
        prop_assert_eq!(contents(&list.list), model.clone());
        check_positions(&list)?;
        for (snapshot, want) in snapshots {
            prop_assert_eq!(contents(&snapshot), want);
        }
    }

    /// A list filled at once is the list pushed member by member: the
    /// same members in the same order, counts, metadata, index and
    /// total; and it stays equal to it through later changes.
    #[test]
    fn filled_at_once_is_pushed_one_by_one(
        members in proptest::collection::vec(
            (1u32..4, proptest::option::weighted(0.2, 0u8..4)),
            0..2300,
        ),
        ops in proptest::collection::vec((change(), 0u64..2400, 1u32..4), 0..100),
    ) {
        let entries = || {
            members.iter().enumerate().map(|(serial, &(n, meta))| {
                let meta = meta.map(|b| Meta::from(vec![b]));
                (MemberKey::new(3, serial as u64), n, meta)
            })
        };
        let mut pushed = MemberList::default();
        for (key, n, meta) in entries() {
            pushed.push_new(key, n, meta);
        }
        let mut filled = MemberList::default();
        filled.fill_new(entries());
        let same = |a: &MemberList, b: &MemberList| -> Result<(), TestCaseError> {
            prop_assert_eq!(a.list.keys.iter().collect::<Vec<_>>(), b.list.keys.iter().collect::<Vec<_>>());
            prop_assert_eq!(a.list.counts.iter().collect::<Vec<_>>(), b.list.counts.iter().collect::<Vec<_>>());
            prop_assert_eq!(a.list.metas.iter().collect::<Vec<_>>(), b.list.metas.iter().collect::<Vec<_>>());
            prop_assert_eq!(a.total(), b.total());
            prop_assert_eq!(a.indexed, b.indexed);
            check_positions(a)?;
            check_positions(b)
        };
        same(&filled, &pushed)?;
        for (change, serial, n) in ops {
            let key = MemberKey::new(3, serial);
            for list in [&mut filled, &mut pushed] {
                match change {
                    Change::Join => {
                        list.add(key, n);
                    }
                    Change::Leave => {
                        list.sub(key, n);
                    }
                    Change::SetMeta(byte) => {
                        list.set_meta(key, byte.map(|b| Meta::from(vec![b])));
                    }
                }
            }
            same(&filled, &pushed)?;
        }
    }
}
