//! Error types. Each variant says whether state changed (it never does:
//! every failing call leaves the scope exactly as it was).

use thiserror::Error;

use crate::group::GroupName;
use crate::id::{NodeId, Pid};

/// A node name, node id or pid that does not parse or validate.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    /// The node name is empty.
    #[error("node name is empty")]
    EmptyNodeName,
    /// The node name is longer than [`MAX_NODE_NAME_LEN`](crate::MAX_NODE_NAME_LEN).
    #[error(
        "node name is {len} bytes long, the limit is {}",
        crate::MAX_NODE_NAME_LEN
    )]
    NodeNameTooLong {
        /// Length of the rejected name in bytes.
        len: usize,
    },
    /// The node name holds whitespace, a control character, `<` or `>`.
    #[error("node name contains the forbidden character {c:?}")]
    BadNodeNameChar {
        /// The first forbidden character found.
        c: char,
    },
    /// A process serial above [`MAX_PID_SERIAL`](crate::MAX_PID_SERIAL).
    #[error("process serial {serial} exceeds the 48-bit limit")]
    SerialOutOfRange {
        /// The rejected serial.
        serial: u64,
    },
    /// Text that is not `<serial.incarnation@node>` (pid) or
    /// `node#incarnation` (node id).
    #[error("malformed id {text:?}")]
    Malformed {
        /// The text that failed to parse.
        text: String,
    },
}

/// Which configured limit a join would have exceeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// `max_groups`: distinct groups in the scope.
    MaxGroups {
        /// The configured limit.
        limit: usize,
    },
    /// `max_members_per_group`: members of one group, counting multi-joins.
    MaxMembersPerGroup {
        /// The group that would have grown past the limit.
        group: GroupName,
        /// The configured limit.
        limit: usize,
    },
    /// `max_registrations`: keys held by this node's processes.
    MaxRegistrations {
        /// The configured limit.
        limit: usize,
    },
    /// `max_join_count`: joins of one process to one group.
    MaxJoinCount {
        /// The group.
        group: GroupName,
        /// The configured limit.
        limit: u32,
    },
}

/// What a peer sent that it must not have: the frame is refused whole (not
/// applied, the part held of that peer unchanged), counted, and reported
/// through [`Scope::poll_violation`](crate::Scope::poll_violation) so the
/// runtime can log it and close the link.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Violation {
    /// A join count above `max_join_count`.
    #[error("{count} joins of process {serial} to group {group:?}, over max_join_count ({limit})")]
    JoinCount {
        /// The group.
        group: GroupName,
        /// The process serial.
        serial: u64,
        /// The count the peer's part would hold.
        count: u64,
        /// The configured limit.
        limit: u32,
    },
    /// A registration timestamp above [`MAX_STAMP`](crate::MAX_STAMP).
    #[error("registration of {key:?} with timestamp {stamp}, above the bound")]
    Stamp {
        /// The key.
        key: GroupName,
        /// The timestamp.
        stamp: u64,
    },
    /// A part with more registrations than `max_registrations`.
    #[error("a part of {registrations} registrations, over max_registrations ({limit})")]
    Registrations {
        /// Registrations the part would hold.
        registrations: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A part with more groups than `max_groups`.
    #[error("a part of {groups} groups, over max_groups ({limit})")]
    Groups {
        /// Groups in the part.
        groups: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Metadata larger than `max_meta_size`.
    #[error(
        "metadata of {len} bytes for process {serial} in group {group:?}, over max_meta_size ({limit})"
    )]
    MetaSize {
        /// The group.
        group: GroupName,
        /// The process serial.
        serial: u64,
        /// Length of the metadata in bytes.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A group of a part with more members than `max_members_per_group`.
    #[error(
        "{total} memberships of group {group:?} in one part, over max_members_per_group ({limit})"
    )]
    GroupMembers {
        /// The group.
        group: GroupName,
        /// Memberships (with counts) the part holds in it.
        total: u64,
        /// The configured limit.
        limit: usize,
    },
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::MaxGroups { limit } => write!(f, "max_groups ({limit})"),
            Limit::MaxMembersPerGroup { group, limit } => {
                write!(f, "max_members_per_group ({limit}) in group {group:?}")
            }
            Limit::MaxRegistrations { limit } => write!(f, "max_registrations ({limit})"),
            Limit::MaxJoinCount { group, limit } => {
                write!(f, "max_join_count ({limit}) in group {group:?}")
            }
        }
    }
}

/// Why a local command (join, leave, exit) was refused. State is unchanged
/// in every case: batches are checked as a whole before anything applies.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    /// An empty group name.
    #[error("group name is empty")]
    EmptyGroupName,
    /// A group name longer than [`MAX_GROUP_NAME_LEN`](crate::MAX_GROUP_NAME_LEN).
    #[error(
        "group name is {len} bytes long, the limit is {}",
        crate::MAX_GROUP_NAME_LEN
    )]
    GroupNameTooLong {
        /// Length of the rejected name in bytes.
        len: usize,
    },
    /// A batch with no group (or no pid) in it.
    #[error("empty batch: name at least one group and one process")]
    EmptyBatch,
    /// The pid belongs to another node, or to another run of this node.
    #[error("{pid} is not a process of this node ({local})")]
    NotLocal {
        /// The rejected pid.
        pid: Pid,
        /// This node.
        local: NodeId,
    },
    /// A leave where no named process was a member of any named group.
    #[error("not a member of any of the named groups")]
    NotMember,
    /// The join would exceed a configured limit.
    #[error("limit exceeded: {0}")]
    LimitExceeded(Limit),
    /// The key is held by another process.
    #[error("key {key:?} is registered by {by}")]
    Taken {
        /// The key.
        key: GroupName,
        /// The process holding it.
        by: Pid,
    },
    /// The registry resolver can only be set while no key is registered.
    #[error("the registry holds keys: set the resolver before registering")]
    RegistryInUse,
    /// A batch naming the same key twice.
    #[error("key {key:?} named twice in one batch")]
    DuplicateKey {
        /// The key.
        key: GroupName,
    },
    /// An unregister of a key the process does not hold.
    #[error("key {key:?} is not registered by this process")]
    NotRegistered {
        /// The key.
        key: GroupName,
    },
    /// Metadata larger than `max_meta_size`.
    #[error("metadata of {len} bytes, over max_meta_size ({limit})")]
    MetaTooLarge {
        /// Length of the rejected metadata in bytes.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The join would push one process's join count in one group past
    /// `u32::MAX`.
    #[error("{pid} joined group {group:?} too many times")]
    JoinCountOverflow {
        /// The process.
        pid: Pid,
        /// The group.
        group: GroupName,
    },
}

/// Bytes that are not a valid frame of this protocol version.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// No bytes at all.
    #[error("empty frame")]
    Empty,
    /// The frame was written by another protocol version.
    #[error("protocol version {got} is not supported (this node speaks {supported})")]
    UnsupportedVersion {
        /// Version byte found in the frame.
        got: u8,
        /// The version this build speaks.
        supported: u8,
    },
    /// The body is not the encoding of a frame.
    #[error("malformed frame")]
    Malformed(#[source] postcard::Error),
    /// A frame followed by bytes that belong to none.
    #[error("{count} bytes after the frame")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A well-encoded frame that breaks a frame invariant.
    #[error("invalid frame")]
    Invalid(#[from] FrameInvariant),
}

/// Which invariant of [`Frame`](crate::Frame) a frame breaks (see
/// [`Frame::validate`](crate::Frame::validate)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameInvariant {
    /// A delta whose `seq` is not above its `base`.
    #[error("delta does not advance the version")]
    DeltaNotAdvancing,
    /// A delta op with a zero count or a serial over 48 bits.
    #[error("delta op with a zero count or an out-of-range serial")]
    DeltaOp,
    /// A sync (or sync piece) member with a zero count or a serial over 48
    /// bits.
    #[error("sync member with a zero count or an out-of-range serial")]
    SyncMember,
    /// A sync group listed with no member.
    #[error("sync group with no member")]
    EmptyGroup,
    /// A sync group whose metadata list is neither empty nor one entry
    /// per member.
    #[error("sync group metadata does not match its members")]
    SyncMetas,
    /// Sync groups or members out of order, or repeated.
    #[error("sync groups or members out of order or repeated")]
    SyncOrder,
    /// A sync piece numbered outside `0..total`, or `total` out of range.
    #[error("sync piece numbering out of range")]
    PieceNumbering,
    /// A sync piece with more member entries than allowed.
    #[error("sync piece with too many entries")]
    PieceSize,
}
