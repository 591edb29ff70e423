//! Group names.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::CommandError;

/// Longest group name accepted, in bytes.
pub const MAX_GROUP_NAME_LEN: usize = 1024;

/// The name of a process group: non-empty UTF-8 of at most
/// [`MAX_GROUP_NAME_LEN`] bytes. Cloning is cheap (shared string).
///
/// On the wire it is a plain string. It is serialized from the shared
/// string and deserialized from the input's bytes where the format lends
/// them: a name crosses the wire in every delta op, and going through an
/// owned `String` each way (a copy out, a copy and a second allocation in)
/// was a tenth of a node's time receiving a stream of registrations.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupName(Arc<str>);

impl GroupName {
    /// Validates `name` as a group name.
    pub fn new(name: &str) -> Result<Self, CommandError> {
        if name.is_empty() {
            return Err(CommandError::EmptyGroupName);
        }
        if name.len() > MAX_GROUP_NAME_LEN {
            return Err(CommandError::GroupNameTooLong { len: name.len() });
        }
        Ok(Self(Arc::from(name)))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for GroupName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GroupName {
    type Error = CommandError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl TryFrom<&str> for GroupName {
    type Error = CommandError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<GroupName> for String {
    fn from(value: GroupName) -> Self {
        value.0.to_string()
    }
}

impl Serialize for GroupName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for GroupName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(NameVisitor)
    }
}

/// Validates a name read from any string the format offers (borrowed from
/// the input, transient or owned), allocating only the shared string.
struct NameVisitor;

impl serde::de::Visitor<'_> for NameVisitor {
    type Value = GroupName;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a non-empty name of at most {MAX_GROUP_NAME_LEN} bytes")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<GroupName, E> {
        GroupName::new(v).map_err(E::custom)
    }

    /// Formats that carry strings as bytes: UTF-8 only.
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<GroupName, E> {
        let text = std::str::from_utf8(v)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Bytes(v), &self))?;
        self.visit_str(text)
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert_eq!(
            GroupName::new("").unwrap_err(),
            CommandError::EmptyGroupName
        );
        assert!(matches!(
            GroupName::new(&"g".repeat(MAX_GROUP_NAME_LEN + 1)),
            Err(CommandError::GroupNameTooLong { len }) if len == MAX_GROUP_NAME_LEN + 1
        ));
        assert_eq!(GroupName::new("workers").unwrap().as_str(), "workers");
        let bytes = postcard::to_allocvec(&"").unwrap();
        assert!(postcard::from_bytes::<GroupName>(&bytes).is_err());
        let long = postcard::to_allocvec(&"g".repeat(MAX_GROUP_NAME_LEN + 1)).unwrap();
        assert!(postcard::from_bytes::<GroupName>(&long).is_err());
    }

    /// On the wire a name is exactly a string, both ways.
    #[test]
    fn a_name_is_a_plain_string_on_the_wire() {
        let name = GroupName::new("room/42").unwrap();
        let bytes = postcard::to_allocvec(&name).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&"room/42").unwrap());
        assert_eq!(postcard::from_bytes::<GroupName>(&bytes).unwrap(), name);
        // From an owned string too (a format that cannot lend its input).
        let owned: GroupName =
            serde::de::value::StringDeserializer::<serde::de::value::Error>::new(
                "room/42".to_owned(),
            )
            .deserialize_str(NameVisitor)
            .unwrap();
        assert_eq!(owned, name);
        // From bytes, if they are UTF-8.
        let bytes = serde::de::value::BytesDeserializer::<serde::de::value::Error>::new;
        assert_eq!(
            bytes(b"room/42").deserialize_str(NameVisitor).unwrap(),
            name
        );
        assert!(bytes(b"\xff").deserialize_str(NameVisitor).is_err());
    }
}
