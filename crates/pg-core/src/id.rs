//! Identities: node names, node ids (name + incarnation) and process ids.
//!
//! A [`Pid`] names one process anywhere in the cluster. Its text form,
//! `<serial.incarnation@node>`, is stable: [`Display`](std::fmt::Display)
//! and [`FromStr`] round-trip, so pids can be logged, stored and typed back.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::IdError;

/// Longest node name accepted, in bytes.
pub const MAX_NODE_NAME_LEN: usize = 255;

/// Largest process serial a pid may carry (48 bits).
///
/// The membership table packs a node slot and a serial into one word; a node
/// allocating a million processes per second takes nine years to reach it.
pub const MAX_PID_SERIAL: u64 = (1 << 48) - 1;

/// The name of a node, unique in its cluster (for example `app-1@10.0.0.7`).
///
/// Non-empty, at most [`MAX_NODE_NAME_LEN`] bytes, without whitespace,
/// control characters, `<` or `>`. Cloning is cheap: a shared string, or
/// for a name made with [`from_static`](Self::from_static) a plain copy.
/// Names compare, hash and order by their text, whatever their storage.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(NameText);

/// Where a name's text lives.
#[derive(Clone)]
enum NameText {
    /// Shared with every clone (names from the wire and from callers).
    Shared(Arc<str>),
    /// Lives as long as the process: a clone touches no reference count,
    /// which matters for a node's own name, copied into every pid a read
    /// returns (a registry lookup clones one).
    Static(&'static str),
}

impl NodeName {
    /// Validates `name` as a node name.
    pub fn new(name: &str) -> Result<Self, IdError> {
        Self::validate(name)?;
        Ok(Self(NameText::Shared(Arc::from(name))))
    }

    /// Validates `name` as a node name kept for the life of the process
    /// (the runtime interns its own node's name this way).
    pub fn from_static(name: &'static str) -> Result<Self, IdError> {
        Self::validate(name)?;
        Ok(Self(NameText::Static(name)))
    }

    fn validate(name: &str) -> Result<(), IdError> {
        if name.is_empty() {
            return Err(IdError::EmptyNodeName);
        }
        if name.len() > MAX_NODE_NAME_LEN {
            return Err(IdError::NodeNameTooLong { len: name.len() });
        }
        if let Some(c) = name
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == '<' || *c == '>')
        {
            return Err(IdError::BadNodeNameChar { c });
        }
        Ok(())
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            NameText::Shared(text) => text,
            NameText::Static(text) => text,
        }
    }
}

impl PartialEq for NodeName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for NodeName {}

impl std::hash::Hash for NodeName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for NodeName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for NodeName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl TryFrom<String> for NodeName {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<NodeName> for String {
    fn from(value: NodeName) -> Self {
        value.as_str().to_owned()
    }
}

impl FromStr for NodeName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// One run of a node: its name plus an incarnation that grows on every
/// restart, so members of a previous run are never mistaken for live ones.
///
/// Text form: `name#incarnation`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId {
    /// The node's name, stable across restarts.
    pub name: NodeName,
    /// Grows with every restart of the node (the runtime derives it from the
    /// wall clock at start-up; the simulator counts).
    pub incarnation: u64,
}

impl NodeId {
    /// A node id from a validated name and an incarnation.
    pub fn new(name: NodeName, incarnation: u64) -> Self {
        Self { name, incarnation }
    }

    /// Parses and validates `name`, then builds the id.
    pub fn parse_name(name: &str, incarnation: u64) -> Result<Self, IdError> {
        Ok(Self::new(NodeName::new(name)?, incarnation))
    }

    /// The pid of process `serial` on this node.
    pub fn pid(&self, serial: u64) -> Result<Pid, IdError> {
        Pid::new(self.clone(), serial)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.name, self.incarnation)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for NodeId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, incarnation) = s
            .rsplit_once('#')
            .ok_or_else(|| IdError::Malformed { text: s.to_owned() })?;
        let incarnation = parse_u64(incarnation, s)?;
        Self::parse_name(name, incarnation)
    }
}

/// A process id: the node it lives on plus a serial unique on that node run.
///
/// Text form: `<serial.incarnation@node>`, for example `<42.7@app-1>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "PidParts", into = "PidParts")]
pub struct Pid {
    node: NodeId,
    serial: u64,
}

/// Serialized shape of a [`Pid`], validated on the way in.
#[derive(Serialize, Deserialize)]
struct PidParts {
    node: NodeId,
    serial: u64,
}

impl TryFrom<PidParts> for Pid {
    type Error = IdError;
    fn try_from(parts: PidParts) -> Result<Self, Self::Error> {
        Pid::new(parts.node, parts.serial)
    }
}

impl From<Pid> for PidParts {
    fn from(pid: Pid) -> Self {
        PidParts {
            node: pid.node,
            serial: pid.serial,
        }
    }
}

impl Pid {
    /// A pid for process `serial` of `node`; `serial` must not exceed
    /// [`MAX_PID_SERIAL`].
    pub fn new(node: NodeId, serial: u64) -> Result<Self, IdError> {
        if serial > MAX_PID_SERIAL {
            return Err(IdError::SerialOutOfRange { serial });
        }
        Ok(Self { node, serial })
    }

    /// A pid whose serial the caller already knows to be in range.
    pub(crate) fn new_unchecked(node: NodeId, serial: u64) -> Self {
        debug_assert!(serial <= MAX_PID_SERIAL);
        Self { node, serial }
    }

    /// The node run this process lives on.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The process serial, unique within its node run.
    pub fn serial(&self) -> u64 {
        self.serial
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<{}.{}@{}>",
            self.serial, self.node.incarnation, self.node.name
        )
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Pid {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || IdError::Malformed { text: s.to_owned() };
        let inner = s
            .strip_prefix('<')
            .and_then(|rest| rest.strip_suffix('>'))
            .ok_or_else(malformed)?;
        let (numbers, name) = inner.split_once('@').ok_or_else(malformed)?;
        let (serial, incarnation) = numbers.split_once('.').ok_or_else(malformed)?;
        let node = NodeId::parse_name(name, parse_u64(incarnation, s)?)?;
        Pid::new(node, parse_u64(serial, s)?)
    }
}

fn parse_u64(digits: &str, whole: &str) -> Result<u64, IdError> {
    // `u64::from_str` accepts a leading '+', which would break the round trip.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdError::Malformed {
            text: whole.to_owned(),
        });
    }
    digits.parse().map_err(|_| IdError::Malformed {
        text: whole.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A static name and a shared one of the same text are the same
        /// name to every comparison, hash and encoding; different texts
        /// order as their text does.
        #[test]
        fn static_and_shared_names_agree(a in "[a-z0-9@.-]{1,12}", b in "[a-z0-9@.-]{1,12}") {
            use std::hash::BuildHasher;
            let hasher = std::collections::hash_map::RandomState::new();
            let shared = NodeName::new(&a).unwrap();
            let fixed = NodeName::from_static(Box::leak(a.clone().into_boxed_str())).unwrap();
            prop_assert_eq!(&shared, &fixed);
            prop_assert_eq!(hasher.hash_one(&shared), hasher.hash_one(&fixed));
            prop_assert_eq!(
                postcard::to_allocvec(&shared).unwrap(),
                postcard::to_allocvec(&fixed).unwrap()
            );
            let other = NodeName::new(&b).unwrap();
            prop_assert_eq!(fixed.cmp(&other), a.as_str().cmp(b.as_str()));
            prop_assert_eq!(other.cmp(&fixed), b.as_str().cmp(a.as_str()));
        }
    }

    #[test]
    fn static_names_are_validated() {
        assert!(NodeName::from_static("").is_err());
        assert!(NodeName::from_static("a b").is_err());
    }

    #[test]
    fn pid_text_form() {
        let node = NodeId::parse_name("app-1@host", 7).unwrap();
        let pid = node.pid(42).unwrap();
        assert_eq!(pid.to_string(), "<42.7@app-1@host>");
        assert_eq!("<42.7@app-1@host>".parse::<Pid>().unwrap(), pid);
        assert_eq!(node.to_string(), "app-1@host#7");
        assert_eq!("app-1@host#7".parse::<NodeId>().unwrap(), node);
    }

    #[test]
    fn bad_names_and_pids_are_errors() {
        assert_eq!(NodeName::new(""), Err(IdError::EmptyNodeName));
        assert!(matches!(
            NodeName::new("a b"),
            Err(IdError::BadNodeNameChar { c: ' ' })
        ));
        assert!(matches!(
            NodeName::new(&"x".repeat(MAX_NODE_NAME_LEN + 1)),
            Err(IdError::NodeNameTooLong { .. })
        ));
        for bad in [
            "",
            "<>",
            "<1.2>",
            "<1@a>",
            "1.2@a",
            "<+1.2@a>",
            "<1.2@>",
            "<1.x@a>",
            "<1.2@a",
            "<99999999999999999999.1@a>",
        ] {
            assert!(bad.parse::<Pid>().is_err(), "{bad:?} parsed");
        }
        assert!(matches!(
            NodeId::parse_name("a", 1).unwrap().pid(MAX_PID_SERIAL + 1),
            Err(IdError::SerialOutOfRange { .. })
        ));
        assert!("a#".parse::<NodeId>().is_err());
        assert!("a".parse::<NodeId>().is_err());
    }

    #[test]
    fn serde_validates() {
        let pid = NodeId::parse_name("n", 3).unwrap().pid(9).unwrap();
        let bytes = postcard::to_allocvec(&pid).unwrap();
        assert_eq!(postcard::from_bytes::<Pid>(&bytes).unwrap(), pid);
        let bad = postcard::to_allocvec(&("", 3u64, 9u64)).unwrap();
        assert!(postcard::from_bytes::<Pid>(&bad).is_err());
    }

    proptest! {
        #[test]
        fn pid_round_trips(name in "[a-z0-9@.#:_-]{1,40}", inc: u64, serial in 0..=MAX_PID_SERIAL) {
            let pid = NodeId::parse_name(&name, inc).unwrap().pid(serial).unwrap();
            prop_assert_eq!(pid.to_string().parse::<Pid>().unwrap(), pid.clone());
            let node = pid.node().clone();
            prop_assert_eq!(node.to_string().parse::<NodeId>().unwrap(), node);
        }

        #[test]
        fn parsing_never_panics(text in "\\PC{0,60}") {
            let _ = text.parse::<Pid>();
            let _ = text.parse::<NodeId>();
        }
    }
}
