//! Group names.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::CommandError;

/// Longest group name accepted, in bytes.
pub const MAX_GROUP_NAME_LEN: usize = 1024;

/// The name of a process group: non-empty UTF-8 of at most
/// [`MAX_GROUP_NAME_LEN`] bytes. Cloning is cheap (shared string).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
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
    }
}
