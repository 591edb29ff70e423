//! Member metadata: a small, opaque byte string attached to a membership.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest metadata any build accepts, in bytes: the wire refuses more
/// whatever the configuration (`ScopeConfig::max_meta_size` sets the
/// usual, lower bound).
pub const MAX_META_SIZE: usize = 64 * 1024;

/// Metadata of one membership (a process in a group): opaque bytes the
/// application chooses (a user name and role, a connection's address, a
/// serialized struct). Replicated with the membership; replaced in place
/// when the process joins the group again with new metadata. Cloning is
/// cheap (shared bytes).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Meta(Arc<[u8]>);

impl Meta {
    /// Metadata holding `bytes`.
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Self {
        Self(bytes.into())
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the metadata is empty (empty metadata is still metadata:
    /// it replaces what was there).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Meta {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes.into())
    }
}

impl From<&[u8]> for Meta {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.into())
    }
}

impl From<&str> for Meta {
    fn from(text: &str) -> Self {
        Self(text.as_bytes().into())
    }
}

impl AsRef<[u8]> for Meta {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(text) => write!(f, "Meta({text:?})"),
            Err(_) => write!(f, "Meta({} bytes)", self.0.len()),
        }
    }
}

impl Serialize for Meta {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Meta {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Meta;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "at most {MAX_META_SIZE} bytes of metadata")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Meta, E> {
                // Checked before the copy: a peer cannot make us allocate
                // more than the bound for one entry.
                if bytes.len() > MAX_META_SIZE {
                    return Err(E::invalid_length(bytes.len(), &self));
                }
                Ok(Meta::from(bytes))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Meta, E> {
                self.visit_bytes(&bytes)
            }
        }
        deserializer.deserialize_bytes(Visitor)
    }
}

/// Why members left a group, on a [`Left`](crate::EventKind::Left) event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaveReason {
    /// The process left the group (a `leave`).
    Left,
    /// The process exited, leaving every group it was in.
    Exit,
    /// The process's node went down, or was disconnected from the scope.
    NodeDown,
    /// Learned from the owner's full state after a gap (a partition or a
    /// lost message): the process left or exited while this node was not
    /// listening, and the state does not say which.
    Resync,
}

impl LeaveReason {
    /// The reason's name: `left`, `exit`, `node_down`, `resync`.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Exit => "exit",
            LeaveReason::NodeDown => "node_down",
            LeaveReason::Resync => "resync",
        }
    }
}

impl fmt::Display for LeaveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn round_trips_and_bounds_on_the_wire() {
        let meta = Meta::from("role=admin");
        let bytes = postcard::to_allocvec(&meta).unwrap();
        assert_eq!(postcard::from_bytes::<Meta>(&bytes).unwrap(), meta);
        let too_big = postcard::to_allocvec(&serde_bytes_like(MAX_META_SIZE + 1)).unwrap();
        assert!(postcard::from_bytes::<Meta>(&too_big).is_err());
        let largest = postcard::to_allocvec(&serde_bytes_like(MAX_META_SIZE)).unwrap();
        assert_eq!(
            postcard::from_bytes::<Meta>(&largest).unwrap().len(),
            MAX_META_SIZE
        );
    }

    fn serde_bytes_like(len: usize) -> Meta {
        Meta::from(vec![7u8; len])
    }
}
