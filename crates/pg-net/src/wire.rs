//! Messages between nodes and their framing: a 4-byte little-endian length,
//! then the postcard encoding of a [`NetMessage`]. Lengths above the
//! configured maximum are refused before anything is allocated.

use std::net::SocketAddr;

use bytes::Bytes;
use pg_core::{NodeId, NodeName, Pid};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Version of the node-to-node protocol (handshake and framing). The
/// scope protocol inside `Scope` messages has its own version byte, but
/// this one moves with it too, so that nodes whose scope frames cannot be
/// read by each other are refused at the hello instead of connecting and
/// failing on the first frame (2: `Frame::SyncPart`, pg-core protocol 2).
pub const NET_PROTOCOL_VERSION: u16 = 2;

/// Most `(node, address)` entries one peer-exchange message may carry;
/// a longer list is refused while decoding, before it is allocated.
pub const MAX_PEERS: usize = 1024;

/// Application protocol negotiated by TLS (ALPN).
pub const ALPN: &[u8] = b"pg-rs/1";

/// What a node says about itself when a connection opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`NET_PROTOCOL_VERSION`] of the sender.
    pub version: u16,
    /// The cluster the sender belongs to; nodes of other clusters are
    /// refused.
    pub cluster: String,
    /// The sender's node run.
    pub node: NodeId,
    /// Where the sender accepts connections, for peer exchange.
    pub listen: Option<SocketAddr>,
}

/// A message between two nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetMessage {
    /// First message of the dialing side.
    Hello(Hello),
    /// The accepting side's answer: it accepts, and says who it is.
    Welcome(Hello),
    /// The accepting side refuses, with a reason the dialer logs.
    Reject {
        /// Why.
        reason: String,
    },
    /// A scope protocol frame (encoded by pg-core).
    Scope {
        /// The scope id.
        scope: String,
        /// The encoded frame.
        frame: Bytes,
    },
    /// A payload for processes of the receiving node.
    Deliver {
        /// The scope of a broadcast, `None` for a direct send.
        scope: Option<String>,
        /// The sender.
        from: Pid,
        /// Serials of the receiving processes.
        to: Vec<u64>,
        /// The topic.
        topic: String,
        /// The payload.
        payload: Bytes,
    },
    /// Peer exchange: nodes the sender is connected to, and where they
    /// listen.
    Peers {
        /// `(node, listen address)` pairs, at most [`MAX_PEERS`].
        #[serde(deserialize_with = "bounded_peers")]
        peers: Vec<(NodeName, SocketAddr)>,
    },
}

/// Why bytes did not make a message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The length prefix exceeds the maximum frame size.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The body is not a valid message (including a peer list longer
    /// than [`MAX_PEERS`]).
    #[error("malformed message")]
    Malformed(#[source] postcard::Error),
    /// A valid message followed by bytes that belong to none.
    #[error("{count} bytes after the message")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
}

/// Deserializes a peer list, refusing one longer than [`MAX_PEERS`] from
/// its announced length, before allocating anything for it.
fn bounded_peers<'de, D>(deserializer: D) -> Result<Vec<(NodeName, SocketAddr)>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = Vec<(NodeName, SocketAddr)>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "at most {MAX_PEERS} peers")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let announced = seq.size_hint().unwrap_or(0);
            if announced > MAX_PEERS {
                return Err(serde::de::Error::invalid_length(announced, &self));
            }
            let mut out = Vec::with_capacity(announced);
            while let Some(entry) = seq.next_element()? {
                if out.len() == MAX_PEERS {
                    return Err(serde::de::Error::invalid_length(MAX_PEERS + 1, &self));
                }
                out.push(entry);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_seq(Bounded)
}

/// Appends `message`, length-prefixed, to `out`.
pub fn encode_into(message: &NetMessage, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    // Invariant: serializing into a growable vector cannot fail.
    postcard::to_io(message, &mut *out).expect("postcard encoding into a Vec is infallible");
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// The body length announced by a 4-byte prefix, checked against `max`.
pub fn body_len(prefix: [u8; 4], max: usize) -> Result<usize, WireError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    Ok(len)
}

/// Decodes one message body (without its prefix), rejecting trailing bytes.
pub fn decode(body: &[u8]) -> Result<NetMessage, WireError> {
    let (message, rest) =
        postcard::take_from_bytes::<NetMessage>(body).map_err(WireError::Malformed)?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes { count: rest.len() });
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<NetMessage> {
        let node = NodeId::parse_name("a", 3).unwrap();
        vec![
            NetMessage::Hello(Hello {
                version: NET_PROTOCOL_VERSION,
                cluster: "c".into(),
                node: node.clone(),
                listen: Some("127.0.0.1:4000".parse().unwrap()),
            }),
            NetMessage::Reject {
                reason: "no".into(),
            },
            NetMessage::Scope {
                scope: "s".into(),
                frame: Bytes::from_static(b"\x01\x02"),
            },
            NetMessage::Deliver {
                scope: None,
                from: node.pid(1).unwrap(),
                to: vec![1, 2],
                topic: "t".into(),
                payload: Bytes::from_static(b"hello"),
            },
            NetMessage::Peers {
                peers: vec![(node.name.clone(), "127.0.0.1:1".parse().unwrap())],
            },
        ]
    }

    #[test]
    fn round_trip_with_prefix() {
        let mut buf = Vec::new();
        for m in sample() {
            encode_into(&m, &mut buf);
        }
        let mut at = 0;
        for m in sample() {
            let len = body_len(buf[at..at + 4].try_into().unwrap(), 1 << 20).unwrap();
            assert_eq!(decode(&buf[at + 4..at + 4 + len]).unwrap(), m);
            at += 4 + len;
        }
        assert_eq!(at, buf.len());
    }

    #[test]
    fn oversized_and_trailing_are_errors() {
        assert!(matches!(
            body_len(1000u32.to_le_bytes(), 999),
            Err(WireError::TooLarge {
                len: 1000,
                max: 999
            })
        ));
        let mut buf = Vec::new();
        encode_into(&sample()[1], &mut buf);
        let mut body = buf[4..].to_vec();
        body.push(0);
        assert_eq!(decode(&body), Err(WireError::TrailingBytes { count: 1 }));
    }

    #[test]
    fn a_peer_list_over_the_bound_is_refused_while_decoding() {
        let peer = (NodeName::new("a").unwrap(), "127.0.0.1:1".parse().unwrap());
        for (n, ok) in [(MAX_PEERS, true), (MAX_PEERS + 1, false)] {
            let mut buf = Vec::new();
            encode_into(
                &NetMessage::Peers {
                    peers: vec![peer.clone(); n],
                },
                &mut buf,
            );
            assert_eq!(decode(&buf[4..]).is_ok(), ok, "{n} peers");
        }
        // A forged length of a billion entries followed by nothing: refused
        // from the length alone.
        let mut body = vec![5u8]; // variant index of Peers
        let mut len = 1_000_000_000u64;
        while len >= 0x80 {
            body.push((len as u8) | 0x80);
            len >>= 7;
        }
        body.push(len as u8);
        assert!(matches!(decode(&body), Err(WireError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }
    }
}
