//! Messages between nodes and their framing: a 4-byte little-endian length,
//! then a postcard body. Lengths above the configured maximum are refused
//! before anything is allocated.
//!
//! The handshake stream carries bare [`NetMessage`]s (hello, welcome or
//! reject). The channel streams that follow carry [`Record`]s: a numbered
//! message of the channel, or an acknowledgement of the peer's channel
//! (see [`link`](crate::link)).

use std::marker::PhantomData;
use std::net::SocketAddr;

use bytes::Bytes;
use pg_core::{NodeId, NodeName, Pid};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Version of the node-to-node protocol (handshake and framing). The
/// scope protocol inside `Scope` messages has its own version byte, but
/// this one moves with it too, so that nodes whose scope frames cannot be
/// read by each other are refused at the hello instead of connecting and
/// failing on the first frame (2: `Frame::SyncPart`, pg-core protocol 2;
/// 3: numbered channel records and acknowledgements; 4: member metadata,
/// pg-core protocol 3, and scope announcements; 5: registration tags,
/// pg-core protocol 4).
pub const NET_PROTOCOL_VERSION: u16 = 5;

/// Most `(node, address)` entries one peer-exchange message may carry;
/// a longer list is refused while decoding, before it is allocated.
pub const MAX_PEERS: usize = 1024;

/// Most scope ids one scope announcement may carry; a longer list is
/// refused while decoding, before it is allocated.
pub const MAX_SCOPES: usize = 1024;

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
    /// The scopes the sender runs, whole (sent when a link comes up or is
    /// reset, and whenever the sender connects to or disconnects from a
    /// scope); on the membership channel, ordered with scope frames.
    Scopes {
        /// Scope ids, at most [`MAX_SCOPES`].
        #[serde(deserialize_with = "bounded_scopes")]
        running: Vec<String>,
    },
    /// Peer exchange: nodes the sender is connected to, and where they
    /// listen.
    Peers {
        /// `(node, listen address)` pairs, at most [`MAX_PEERS`].
        #[serde(deserialize_with = "bounded_peers")]
        peers: Vec<(NodeName, SocketAddr)>,
    },
}

/// What a channel stream carries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub enum Record {
    /// Message `seq` of the stream's channel.
    Data {
        /// Its number on the channel (from 0 in each link run).
        seq: u64,
        /// The message.
        message: NetMessage,
    },
    /// The sender of this record has delivered every message below `next`
    /// of the receiver's channel `channel` (cumulative).
    Ack {
        /// The channel acknowledged (the stream tag of its streams).
        channel: u8,
        /// Everything below was delivered.
        next: u64,
    },
    /// The sender heard no acknowledgement of this stream's channel for a
    /// while: acknowledge at once.
    Probe,
}

/// [`Record`] by reference, for encoding without a copy of the message.
#[derive(Serialize)]
enum RecordRef<'a> {
    Data { seq: u64, message: &'a NetMessage },
    Ack { channel: u8, next: u64 },
    Probe,
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
    deserializer.deserialize_seq(Bounded::<(NodeName, SocketAddr), MAX_PEERS>(PhantomData))
}

/// Deserializes a scope list, refusing one longer than [`MAX_SCOPES`].
fn bounded_scopes<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    deserializer.deserialize_seq(Bounded::<String, MAX_SCOPES>(PhantomData))
}

/// A sequence of at most `MAX` elements, refused from its announced
/// length (and again while reading, for formats that announce none).
struct Bounded<T, const MAX: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const MAX: usize> serde::de::Visitor<'de> for Bounded<T, MAX> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at most {MAX} entries")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let announced = seq.size_hint().unwrap_or(0);
        if announced > MAX {
            return Err(serde::de::Error::invalid_length(announced, &self));
        }
        let mut out = Vec::with_capacity(announced);
        while let Some(entry) = seq.next_element()? {
            if out.len() == MAX {
                return Err(serde::de::Error::invalid_length(MAX + 1, &self));
            }
            out.push(entry);
        }
        Ok(out)
    }
}

/// Appends `message`, length-prefixed, to `out` (handshake messages).
pub fn encode_into(message: &NetMessage, out: &mut Vec<u8>) {
    encode_prefixed(message, out);
}

/// Appends message `seq` of a channel, as a length-prefixed
/// [`Record::Data`], to `out`; returns the bytes appended.
pub fn encode_data_into(seq: u64, message: &NetMessage, out: &mut Vec<u8>) -> usize {
    encode_prefixed(&RecordRef::Data { seq, message }, out)
}

/// Appends a length-prefixed [`Record::Ack`] to `out`.
pub fn encode_ack_into(channel: u8, next: u64, out: &mut Vec<u8>) {
    encode_prefixed(&RecordRef::Ack { channel, next }, out);
}

/// Appends a length-prefixed [`Record::Probe`] to `out`.
pub fn encode_probe_into(out: &mut Vec<u8>) {
    encode_prefixed(&RecordRef::Probe, out);
}

fn encode_prefixed<T: Serialize>(value: &T, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    // Invariant: serializing into a growable vector cannot fail.
    postcard::to_io(value, &mut *out).expect("postcard encoding into a Vec is infallible");
    let len = out.len() - start - 4;
    // A body over 4 GiB cannot be announced; the writers refuse messages
    // over max_frame_size (at most u32::MAX) before this matters.
    let prefix = u32::try_from(len).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&prefix.to_le_bytes());
    out.len() - start
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
    decode_whole(body)
}

/// Decodes one channel record body (without its prefix).
pub fn decode_record(body: &[u8]) -> Result<Record, WireError> {
    decode_whole(body)
}

fn decode_whole<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, WireError> {
    let (value, rest) = postcard::take_from_bytes::<T>(body).map_err(WireError::Malformed)?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes { count: rest.len() });
    }
    Ok(value)
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

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        let mut lens = Vec::new();
        for (seq, m) in sample().into_iter().enumerate() {
            lens.push(encode_data_into(seq as u64, &m, &mut buf));
        }
        encode_ack_into(1, 42, &mut buf);
        let ack_at = buf.len();
        encode_probe_into(&mut buf);
        let mut at = 0;
        for (seq, m) in sample().into_iter().enumerate() {
            let len = body_len(buf[at..at + 4].try_into().unwrap(), 1 << 20).unwrap();
            assert_eq!(lens[seq], 4 + len);
            let record = decode_record(&buf[at + 4..at + 4 + len]).unwrap();
            assert_eq!(
                record,
                Record::Data {
                    seq: seq as u64,
                    message: m
                }
            );
            at += 4 + len;
        }
        assert_eq!(
            decode_record(&buf[at + 4..ack_at]).unwrap(),
            Record::Ack {
                channel: 1,
                next: 42
            }
        );
        assert_eq!(decode_record(&buf[ack_at + 4..]).unwrap(), Record::Probe);
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_records_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_record(&bytes);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }
    }
}
