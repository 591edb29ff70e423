//! Structure-aware seeds: valid inputs of every shape a target takes, built
//! from a random generator, so mutations start from deep inside the
//! decoders rather than at their first check.

use bytes::Bytes;
use fastrand::Rng;
use pg_core::{Frame, GroupName, Meta, NodeId, NodeName, Op, PartVersion, Pid, SyncGroup, SyncReg};
use pg_net::wire::{self, Hello, NET_PROTOCOL_VERSION, NetMessage};

use crate::targets::Target;

/// A valid input for `target`, built from `rng`.
pub fn seed_input(target: Target, rng: &mut Rng) -> Vec<u8> {
    match target {
        Target::Frame => frame(rng).encode(),
        Target::Message => {
            let mut out = Vec::new();
            wire::encode_into(&message(rng), &mut out);
            out.split_off(4)
        }
        Target::Record => {
            let mut out = Vec::new();
            match rng.u8(0..3) {
                0 => {
                    wire::encode_data_into(rng.u64(..), &message(rng), &mut out);
                }
                1 => wire::encode_ack_into(rng.u8(0..3), rng.u64(..), &mut out),
                _ => wire::encode_probe_into(&mut out),
            }
            out.split_off(4)
        }
        Target::Config => config(rng).into_bytes(),
        Target::Scope => {
            let mut out = Vec::new();
            for _ in 0..rng.usize(1..8) {
                let bytes = frame(rng).encode();
                let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&bytes[..usize::from(len)]);
            }
            out
        }
    }
}

fn name(rng: &mut Rng) -> GroupName {
    let names = ["g", "room/1", "room/2", "user/42", "a", "ü", "x/y/z"];
    // Invariant: every candidate is a valid name.
    GroupName::new(names[rng.usize(..names.len())]).expect("a valid name")
}

fn meta(rng: &mut Rng) -> Option<Meta> {
    rng.bool().then(|| {
        Meta::from(
            (0..rng.usize(0..12))
                .map(|_| rng.u8(..))
                .collect::<Vec<u8>>(),
        )
    })
}

fn serial(rng: &mut Rng) -> u64 {
    rng.u64(0..16)
}

fn node(rng: &mut Rng) -> NodeId {
    let names = ["peer", "local", "n1", "node-b"];
    // Invariant: every candidate is a valid name.
    NodeId::parse_name(names[rng.usize(..names.len())], rng.u64(1..4)).expect("a valid name")
}

fn op(rng: &mut Rng) -> Op {
    match rng.u8(0..5) {
        0 => Op::Join {
            group: name(rng),
            serial: serial(rng),
            count: rng.u32(1..4),
            meta: meta(rng),
        },
        1 => Op::Leave {
            group: name(rng),
            serial: serial(rng),
            count: rng.u32(1..4),
        },
        2 => Op::Register {
            key: name(rng),
            serial: serial(rng),
            stamp: rng.u64(0..100),
            meta: meta(rng),
            tag: rng.bool().then(|| name(rng)),
        },
        3 => Op::Unregister {
            key: name(rng),
            serial: serial(rng),
        },
        _ => Op::Exit {
            serial: serial(rng),
        },
    }
}

fn groups(rng: &mut Rng) -> Vec<SyncGroup> {
    let mut out: Vec<SyncGroup> = (0..rng.usize(0..4))
        .map(|_| {
            let mut members: Vec<(u64, u32)> = (0..rng.usize(1..5))
                .map(|_| (serial(rng), rng.u32(1..3)))
                .collect();
            members.sort_unstable();
            members.dedup_by_key(|m| m.0);
            let metas = if rng.bool() {
                members.iter().map(|_| meta(rng)).collect()
            } else {
                Vec::new()
            };
            SyncGroup {
                group: name(rng),
                members,
                metas,
            }
        })
        .collect();
    out.sort_by(|a, b| a.group.cmp(&b.group));
    out.dedup_by(|a, b| a.group == b.group);
    out
}

fn registrations(rng: &mut Rng) -> Vec<SyncReg> {
    let mut out: Vec<SyncReg> = (0..rng.usize(0..4))
        .map(|_| SyncReg {
            key: name(rng),
            serial: serial(rng),
            stamp: rng.u64(0..100),
            meta: meta(rng),
            tag: rng.bool().then(|| name(rng)),
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out.dedup_by(|a, b| a.key == b.key);
    out
}

fn frame(rng: &mut Rng) -> Frame {
    match rng.u8(0..6) {
        0 => {
            let base = rng.u64(0..20);
            Frame::Delta {
                base,
                seq: base + rng.u64(1..4),
                ops: (0..rng.usize(1..6)).map(|_| op(rng)).collect(),
            }
        }
        1 => Frame::Sync {
            seq: rng.u64(0..30),
            known: rng.bool().then(|| rng.u64(0..30)),
            groups: groups(rng),
            registrations: registrations(rng),
        },
        2 => Frame::SyncRequest,
        3 => Frame::Discover,
        4 => Frame::Digest {
            reply: rng.bool(),
            parts: (0..rng.usize(0..4))
                .map(|_| PartVersion {
                    node: node(rng),
                    seq: rng.u64(0..30),
                })
                .collect(),
        },
        _ => {
            let total = rng.u32(2..5);
            Frame::SyncPart {
                seq: rng.u64(0..30),
                known: rng.bool().then(|| rng.u64(0..30)),
                index: rng.u32(0..total),
                total,
                groups: groups(rng),
                registrations: registrations(rng),
            }
        }
    }
}

fn hello(rng: &mut Rng) -> Hello {
    Hello {
        version: NET_PROTOCOL_VERSION,
        cluster: "pg".into(),
        node: node(rng),
        listen: rng
            .bool()
            .then(|| std::net::SocketAddr::from(([127, 0, 0, 1], rng.u16(1..)))),
    }
}

fn message(rng: &mut Rng) -> NetMessage {
    match rng.u8(0..7) {
        0 => NetMessage::Hello(hello(rng)),
        1 => NetMessage::Welcome(hello(rng)),
        2 => NetMessage::Reject {
            reason: "no".into(),
        },
        3 => NetMessage::Scope {
            scope: "app:pg".into(),
            frame: Bytes::from(frame(rng).encode()),
        },
        4 => {
            let from = node(rng);
            // Invariant: a small serial is a valid pid.
            let from: Pid = from.pid(serial(rng)).expect("a valid pid");
            NetMessage::Deliver {
                scope: rng.bool().then(|| "app:pg".into()),
                from,
                to: (0..rng.usize(0..4)).map(|_| serial(rng)).collect(),
                topic: "t".into(),
                payload: Bytes::from(vec![rng.u8(..); rng.usize(0..16)]),
            }
        }
        5 => NetMessage::Scopes {
            running: (0..rng.usize(0..4)).map(|i| format!("s{i}")).collect(),
        },
        _ => NetMessage::Peers {
            peers: (0..rng.usize(0..4))
                .map(|i| {
                    // Invariant: a valid name.
                    let name = NodeName::new(&format!("n{i}")).expect("a valid name");
                    (name, std::net::SocketAddr::from(([10, 0, 0, 1], 4000)))
                })
                .collect(),
        },
    }
}

fn config(rng: &mut Rng) -> String {
    let mut out = String::new();
    for i in 0..rng.usize(1..4) {
        out.push_str(&format!(
            "- name: app{i}:pg\n  kind: pg.scope\n  max_groups: {}\n  anti_entropy_interval: {}s\n",
            rng.u32(0..100_000),
            rng.u32(1..60)
        ));
    }
    if rng.bool() {
        out.push_str(&format!(
            "- name: node-{}\n  kind: pg.node\n  mailbox_capacity: {}\n",
            rng.u8(..),
            rng.u32(1..100_000),
        ));
    }
    if rng.bool() {
        out.push_str(
            "- name: rules\n  kind: pg.policy\n  default: deny\n  rules:\n    - { effect: allow, principal: \"*\", permission: \"pg.*\", resource: \"room/*\" }\n",
        );
    }
    if rng.bool() {
        out.push_str("- name: http\n  kind: app.http\n  listen: ${LISTEN:-127.0.0.1:8080}\n");
    }
    out
}
