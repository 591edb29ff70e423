//! The handshake's decisions, without IO: whether a peer's hello is
//! accepted, and which connection becomes the link to a node when another
//! one exists. The mesh's async driver opens connections and streams; what
//! it keeps or closes is decided here, by pure functions tested on their
//! own (every order of crossing dials between two nodes ends with both
//! keeping the same connection).

use pg_core::{NodeId, NodeName};

use crate::handshake::HelloError;
use crate::wire::Hello;

/// Checks `theirs`, a peer's hello, against `ours`: the same protocol
/// version and cluster, not our own name, not a blocked node, and the node
/// name its certificate was issued to (`certified`) is the one it claims
/// (a node cannot pose as another with its own valid certificate).
pub fn check_hello(
    ours: &Hello,
    theirs: &Hello,
    certified: Option<&str>,
    blocked: bool,
) -> Result<(), HelloError> {
    if theirs.version != ours.version {
        return Err(HelloError::Version {
            theirs: theirs.version,
            ours: ours.version,
        });
    }
    if theirs.cluster != ours.cluster {
        return Err(HelloError::Cluster {
            theirs: theirs.cluster.chars().take(64).collect(),
            ours: ours.cluster.clone(),
        });
    }
    if theirs.node.name == ours.node.name {
        return Err(HelloError::OwnName(theirs.node.name.clone()));
    }
    if blocked {
        return Err(HelloError::Blocked(theirs.node.name.clone()));
    }
    match certified {
        Some(name) if name == theirs.node.name.as_str() => Ok(()),
        Some(name) => Err(HelloError::NameMismatch {
            certified: name.to_owned(),
            claimed: theirs.node.name.as_str().to_owned(),
        }),
        None => Err(HelloError::NoCertifiedName),
    }
}

/// The link a node has now: which run of the peer, and which side dialed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// The peer's run.
    pub peer: NodeId,
    /// The name of the node that dialed the connection.
    pub initiator: NodeName,
}

/// What to do with a new handshaken connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum LinkDecision {
    /// It is the link to a node we had none with: report the peer up.
    New,
    /// It replaces the link to an older run of the peer (close that one,
    /// report the new run up).
    ReplacesOlderRun,
    /// Both sides dialed; this one (dialed by the smaller name) replaces
    /// the other, and the runtime resyncs over it (nothing else changes).
    ReplacesDuplicate,
    /// Both sides dialed; the other connection (dialed by the smaller name)
    /// stays: close this one.
    DuplicateLoses,
    /// A newer run of the peer is connected: close this one.
    StaleRun,
}

/// Decides what node `me` does with a new connection to `new` (dialed by
/// `initiator`) while `current` is its link to that node, if any. Both
/// sides of two crossing dials decide alike: the connection dialed by the
/// smaller name stays.
pub fn decide(me: &NodeName, current: Option<&LinkInfo>, new: &LinkInfo) -> LinkDecision {
    let Some(current) = current else {
        return LinkDecision::New;
    };
    if current.peer.incarnation > new.peer.incarnation {
        return LinkDecision::StaleRun;
    }
    if current.peer != new.peer {
        return LinkDecision::ReplacesOlderRun;
    }
    let preferred = std::cmp::min(me, &new.peer.name);
    if new.initiator == *preferred {
        LinkDecision::ReplacesDuplicate
    } else {
        LinkDecision::DuplicateLoses
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use proptest::prelude::*;

    use super::*;

    fn id(name: &str, run: u64) -> NodeId {
        NodeId::parse_name(name, run).unwrap()
    }

    fn hello(name: &str) -> Hello {
        Hello {
            version: 3,
            cluster: "c".into(),
            node: id(name, 1),
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 1))),
        }
    }

    #[test]
    fn hellos_are_checked_in_order() {
        let ours = hello("a");
        let b = hello("b");
        assert_eq!(check_hello(&ours, &b, Some("b"), false), Ok(()));
        let mut old = b.clone();
        old.version = 2;
        assert!(matches!(
            check_hello(&ours, &old, Some("b"), false),
            Err(HelloError::Version { theirs: 2, ours: 3 })
        ));
        let mut other = b.clone();
        other.cluster = "x".repeat(100);
        let Err(HelloError::Cluster { theirs, .. }) = check_hello(&ours, &other, Some("b"), false)
        else {
            panic!("another cluster");
        };
        assert_eq!(theirs.len(), 64, "a peer's words are bounded");
        assert!(matches!(
            check_hello(&ours, &hello("a"), Some("a"), false),
            Err(HelloError::OwnName(_))
        ));
        assert!(matches!(
            check_hello(&ours, &b, Some("b"), true),
            Err(HelloError::Blocked(_))
        ));
        assert!(matches!(
            check_hello(&ours, &b, Some("c"), false),
            Err(HelloError::NameMismatch { .. })
        ));
        assert_eq!(
            check_hello(&ours, &b, None, false),
            Err(HelloError::NoCertifiedName)
        );
    }

    #[test]
    fn runs_replace_older_runs_and_refuse_stale_ones() {
        let a: NodeName = NodeName::new("a").unwrap();
        let link = |run, initiator: &str| LinkInfo {
            peer: id("b", run),
            initiator: NodeName::new(initiator).unwrap(),
        };
        assert_eq!(decide(&a, None, &link(1, "b")), LinkDecision::New);
        assert_eq!(
            decide(&a, Some(&link(1, "a")), &link(2, "b")),
            LinkDecision::ReplacesOlderRun
        );
        assert_eq!(
            decide(&a, Some(&link(2, "a")), &link(1, "b")),
            LinkDecision::StaleRun
        );
    }

    proptest! {
        /// Two nodes dial each other; each side sees the two connections
        /// in either order. Both end with the same connection, the one
        /// dialed by the smaller name, and the runtime hears of exactly one
        /// new peer on each side.
        #[test]
        fn crossing_dials_keep_the_same_connection_on_both_sides(
            x in "[a-z]{1,6}",
            y in "[a-z]{1,6}",
            x_first in any::<bool>(),
            y_first in any::<bool>(),
        ) {
            prop_assume!(x != y);
            let (nx, ny) = (NodeName::new(&x).unwrap(), NodeName::new(&y).unwrap());
            // Connection 0 was dialed by x, connection 1 by y.
            let dialer = [nx.clone(), ny.clone()];
            let side = |me: &NodeName, peer: &NodeId, first_is_0: bool| {
                let order = if first_is_0 { [0usize, 1] } else { [1, 0] };
                let mut link: Option<(usize, LinkInfo)> = None;
                let mut ups = 0;
                for conn in order {
                    let info = LinkInfo { peer: peer.clone(), initiator: dialer[conn].clone() };
                    match decide(me, link.as_ref().map(|(_, l)| l), &info) {
                        LinkDecision::New => { ups += 1; link = Some((conn, info)); }
                        LinkDecision::ReplacesDuplicate => link = Some((conn, info)),
                        LinkDecision::DuplicateLoses => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
                (link.map(|(c, _)| c), ups)
            };
            let (kept_x, ups_x) = side(&nx, &NodeId::parse_name(&y, 1).unwrap(), x_first);
            let (kept_y, ups_y) = side(&ny, &NodeId::parse_name(&x, 1).unwrap(), y_first);
            let smaller_dialed = if nx < ny { 0 } else { 1 };
            prop_assert_eq!(kept_x, Some(smaller_dialed));
            prop_assert_eq!(kept_y, Some(smaller_dialed));
            prop_assert_eq!((ups_x, ups_y), (1, 1));
        }
    }
}
