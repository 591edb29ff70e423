//! Protocol frames between the scopes of two nodes, and their encoding.
//!
//! A frame is addressed to one peer and concerns one scope; the transport
//! carries the scope id and the authenticated sender beside it, so frames
//! never name their origin. Encoding: one version byte
//! ([`PROTOCOL_VERSION`]) followed by the postcard encoding of [`Frame`].
//! Decoding checks the version, requires every byte to be consumed and
//! validates the frame's invariants, so the state machine only ever sees
//! well-formed frames.

use serde::{Deserialize, Serialize};

use crate::error::{DecodeError, FrameInvariant};
use crate::group::GroupName;
use crate::id::{MAX_PID_SERIAL, NodeId};
use crate::meta::Meta;

/// Version of the wire format spoken by this build. Bumped on every
/// incompatible change to [`Frame`].
pub const PROTOCOL_VERSION: u8 = 4;

/// A message from one node's scope to the same scope on a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Changes of the sender's own part, in order. Applies to a receiver
    /// holding the sender's part at version `base`, which then holds `seq`.
    Delta {
        /// Version the changes start from.
        base: u64,
        /// Version after the changes (greater than `base`).
        seq: u64,
        /// The changes.
        ops: Vec<Op>,
    },
    /// The sender's whole own part at version `seq`; the receiver replaces
    /// what it holds of the sender differentially. Canonical: groups in
    /// strictly increasing name order, members in strictly increasing
    /// serial order (so no membership is listed twice).
    Sync {
        /// Version of the part.
        seq: u64,
        /// Version of the receiver's part the sender holds (`None`: none).
        /// A receiver whose part the sender lacks answers with its own
        /// `Sync`, unless it already sent it.
        known: Option<u64>,
        /// Members by group.
        groups: Vec<SyncGroup>,
        /// Registrations, strictly by key (a part holds a key once).
        registrations: Vec<SyncReg>,
    },
    /// "Send me your part": the sender saw a gap, an unknown incarnation or
    /// a stale digest entry.
    SyncRequest,
    /// Start-up discovery: "send me your part and your digest".
    Discover,
    /// Anti-entropy: the version of every part the sender holds, its own
    /// included. O(nodes) bytes, whatever the number of members.
    Digest {
        /// Whether this answers a digest (answers are not answered).
        reply: bool,
        /// One entry per part held.
        parts: Vec<PartVersion>,
    },
    /// One piece of a [`Frame::Sync`] too large for one frame (see
    /// `sync_parts.rs`): the receiver applies the sync once it holds all
    /// `total` pieces. Each piece is canonical on its own; a group may
    /// continue in the next piece.
    SyncPart {
        /// Version of the part.
        seq: u64,
        /// As in [`Frame::Sync`].
        known: Option<u64>,
        /// This piece's position, below `total`.
        index: u32,
        /// Pieces of this sync (2 to [`MAX_SYNC_PARTS`](crate::MAX_SYNC_PARTS)).
        total: u32,
        /// Members by group, at most
        /// [`MAX_SYNC_PART_ENTRIES`](crate::MAX_SYNC_PART_ENTRIES) in all
        /// with the registrations.
        groups: Vec<SyncGroup>,
        /// Registrations, strictly by key; they follow the groups.
        registrations: Vec<SyncReg>,
    },
}

/// One change in a [`Frame::Delta`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Process `serial` joined `group` `count` times.
    Join {
        /// The group.
        group: GroupName,
        /// The process serial on the sender.
        serial: u64,
        /// Join references added (at least 1).
        count: u32,
        /// New metadata, replacing the member's; `None` keeps what it has.
        meta: Option<Meta>,
    },
    /// Process `serial` left `group` `count` times.
    Leave {
        /// The group.
        group: GroupName,
        /// The process serial on the sender.
        serial: u64,
        /// Join references removed (at least 1).
        count: u32,
    },
    /// Process `serial` registered `key` (or updated its metadata there).
    Register {
        /// The key.
        key: GroupName,
        /// The process serial on the sender.
        serial: u64,
        /// Lamport timestamp of the registration.
        stamp: u64,
        /// Its metadata.
        meta: Option<Meta>,
        /// Its tag.
        tag: Option<GroupName>,
    },
    /// Process `serial` no longer holds `key`.
    Unregister {
        /// The key.
        key: GroupName,
        /// The process serial on the sender.
        serial: u64,
    },
    /// Process `serial` exited: it left every group it was in and lost
    /// every key it held.
    Exit {
        /// The process serial on the sender.
        serial: u64,
    },
}

/// One group's members in a [`Frame::Sync`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncGroup {
    /// The group.
    pub group: GroupName,
    /// `(process serial, join count)` pairs; counts are at least 1.
    pub members: Vec<(u64, u32)>,
    /// Metadata of each member, parallel to `members`; empty when no
    /// member of the group has any (the common case costs one byte).
    pub metas: Vec<Option<Meta>>,
}

/// One registration in a [`Frame::Sync`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReg {
    /// The key.
    pub key: GroupName,
    /// The process serial on the sender.
    pub serial: u64,
    /// Lamport timestamp of the registration.
    pub stamp: u64,
    /// Its metadata.
    pub meta: Option<Meta>,
    /// Its tag.
    pub tag: Option<GroupName>,
}

/// The version of one node's part, in a [`Frame::Digest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartVersion {
    /// The node run that owns the part.
    pub node: NodeId,
    /// The version held.
    pub seq: u64,
}

impl Frame {
    /// Encodes the frame: version byte, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoded frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(PROTOCOL_VERSION);
        // Pushed byte by byte (`Extend`), not written through `io::Write`,
        // which calls memmove for every 1-3 byte varint: that was most of
        // the time to encode a sync of 1M memberships.
        // Invariant: serializing plain enums, strings and integers into a
        // growable vector cannot fail.
        *out = postcard::to_extend(self, std::mem::take(out))
            .expect("postcard encoding into a Vec is infallible");
    }

    /// Decodes and validates one frame, rejecting trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
        let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                got: version,
                supported: PROTOCOL_VERSION,
            });
        }
        let (frame, rest): (Frame, _) =
            postcard::take_from_bytes(body).map_err(DecodeError::Malformed)?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes { count: rest.len() });
        }
        frame.validate()?;
        Ok(frame)
    }

    /// Checks the invariants decoding guarantees; frames built in memory
    /// (an in-process transport) are checked the same way on arrival.
    pub fn validate(&self) -> Result<(), DecodeError> {
        use FrameInvariant as Broken;
        let member_ok = |serial: u64, count: u32| serial <= MAX_PID_SERIAL && count > 0;
        // Groups strictly by name, members strictly by serial, all valid.
        let canonical = |groups: &[SyncGroup]| -> Result<(), Broken> {
            // A group with no member would cost memory and mean nothing.
            if groups.iter().any(|g| g.members.is_empty()) {
                return Err(Broken::EmptyGroup);
            }
            let members_ok = groups
                .iter()
                .all(|g| g.members.iter().all(|&(s, c)| member_ok(s, c)));
            if !members_ok {
                return Err(Broken::SyncMember);
            }
            let metas_ok = groups
                .iter()
                .all(|g| g.metas.is_empty() || g.metas.len() == g.members.len());
            if !metas_ok {
                return Err(Broken::SyncMetas);
            }
            let sorted = groups.windows(2).all(|w| w[0].group < w[1].group)
                && groups
                    .iter()
                    .all(|g| g.members.windows(2).all(|w| w[0].0 < w[1].0));
            if !sorted {
                return Err(Broken::SyncOrder);
            }
            Ok(())
        };
        // Registrations strictly by key, serials valid.
        let canonical_regs = |regs: &[SyncReg]| -> Result<(), Broken> {
            if regs.iter().any(|r| r.serial > MAX_PID_SERIAL) {
                return Err(Broken::SyncMember);
            }
            if !regs.windows(2).all(|w| w[0].key < w[1].key) {
                return Err(Broken::SyncOrder);
            }
            Ok(())
        };
        match self {
            Frame::Delta { base, seq, ops } => {
                if base >= seq {
                    return Err(Broken::DeltaNotAdvancing.into());
                }
                let ok = ops.iter().all(|op| match op {
                    Op::Join { serial, count, .. } | Op::Leave { serial, count, .. } => {
                        member_ok(*serial, *count)
                    }
                    Op::Register { serial, .. } | Op::Unregister { serial, .. } => {
                        *serial <= MAX_PID_SERIAL
                    }
                    Op::Exit { serial } => *serial <= MAX_PID_SERIAL,
                });
                if !ok {
                    return Err(Broken::DeltaOp.into());
                }
            }
            Frame::Sync {
                groups,
                registrations,
                ..
            } => {
                canonical(groups)?;
                canonical_regs(registrations)?;
            }
            Frame::SyncPart {
                index,
                total,
                groups,
                registrations,
                ..
            } => {
                if *total < 2 || *total > crate::sync_parts::MAX_SYNC_PARTS || index >= total {
                    return Err(Broken::PieceNumbering.into());
                }
                let entries: usize = groups.iter().map(|g| g.members.len()).sum();
                if entries + registrations.len() > crate::sync_parts::MAX_SYNC_PART_ENTRIES {
                    return Err(Broken::PieceSize.into());
                }
                canonical(groups)?;
                canonical_regs(registrations)?;
            }
            Frame::SyncRequest | Frame::Discover | Frame::Digest { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn g(name: &str) -> GroupName {
        GroupName::new(name).unwrap()
    }

    fn samples() -> Vec<Frame> {
        vec![
            Frame::Delta {
                base: 3,
                seq: 5,
                ops: vec![
                    Op::Join {
                        group: g("a"),
                        serial: 1,
                        count: 2,
                        meta: None,
                    },
                    Op::Leave {
                        group: g("a"),
                        serial: 1,
                        count: 1,
                    },
                    Op::Exit { serial: 9 },
                ],
            },
            Frame::Sync {
                seq: 7,
                known: Some(2),
                groups: vec![SyncGroup {
                    group: g("x"),
                    members: vec![(1, 1), (2, 3)],
                    metas: Vec::new(),
                }],
                registrations: Vec::new(),
            },
            Frame::SyncRequest,
            Frame::Discover,
            Frame::Digest {
                reply: true,
                parts: vec![PartVersion {
                    node: NodeId::parse_name("n", 4).unwrap(),
                    seq: 8,
                }],
            },
        ]
    }

    #[test]
    fn round_trip() {
        for frame in samples() {
            assert_eq!(Frame::decode(&frame.encode()).unwrap(), frame);
        }
    }

    #[test]
    fn rejects_bad_frames() {
        assert_eq!(Frame::decode(&[]), Err(DecodeError::Empty));
        let mut bytes = Frame::SyncRequest.encode();
        bytes[0] = PROTOCOL_VERSION + 1;
        assert!(matches!(
            Frame::decode(&bytes),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
        let mut bytes = Frame::SyncRequest.encode();
        bytes.push(0);
        assert_eq!(
            Frame::decode(&bytes),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
        let not_advancing = Frame::Delta {
            base: 5,
            seq: 5,
            ops: vec![],
        };
        assert!(Frame::decode(&not_advancing.encode()).is_err());
        let zero = Frame::Delta {
            base: 0,
            seq: 1,
            ops: vec![Op::Join {
                group: g("a"),
                serial: 1,
                count: 0,
                meta: None,
            }],
        };
        assert!(Frame::decode(&zero.encode()).is_err());
        let big = Frame::Sync {
            seq: 1,
            known: None,
            groups: vec![SyncGroup {
                group: g("a"),
                members: vec![(MAX_PID_SERIAL + 1, 1)],
                metas: Vec::new(),
            }],
            registrations: Vec::new(),
        };
        assert!(Frame::decode(&big.encode()).is_err());
        let repeated = Frame::Sync {
            seq: 1,
            known: None,
            groups: vec![SyncGroup {
                group: g("a"),
                members: vec![(1, 3), (1, 1)],
                metas: Vec::new(),
            }],
            registrations: Vec::new(),
        };
        assert!(Frame::decode(&repeated.encode()).is_err());
        let unsorted = Frame::Sync {
            seq: 1,
            known: None,
            groups: vec![
                SyncGroup {
                    group: g("b"),
                    members: vec![(1, 1)],
                    metas: Vec::new(),
                },
                SyncGroup {
                    group: g("a"),
                    members: vec![(1, 1)],
                    metas: Vec::new(),
                },
            ],
            registrations: Vec::new(),
        };
        assert!(Frame::decode(&unsorted.encode()).is_err());
        // An empty group name smuggled onto the wire.
        let mut bytes = vec![PROTOCOL_VERSION];
        bytes.extend(postcard::to_allocvec(&(0u8, 0u64, 1u64, 1u8, 0u8, "", 1u64, 1u32)).unwrap());
        assert!(Frame::decode(&bytes).is_err());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Frame::decode(&bytes);
        }

        #[test]
        fn decoding_mutated_frames_never_panics(idx in 0usize..5, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
            let mut bytes = samples()[idx].encode();
            for (at, byte) in flips {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            let cut = cut % (bytes.len() + 1);
            bytes.truncate(cut);
            if let Ok(frame) = Frame::decode(&bytes) {
                // Whatever decodes is a valid frame that round-trips.
                prop_assert_eq!(Frame::decode(&frame.encode()).unwrap(), frame);
            }
        }
    }
}
