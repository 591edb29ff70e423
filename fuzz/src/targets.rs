//! The fuzz targets: what each feeds its input to, and what it checks.

use std::alloc::System;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};
use pg_core::{Frame, NodeId, Scope, ScopeConfig};
use pg_net::wire::{self, Record};

#[global_allocator]
static HEAP: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

#[cfg(test)]
mod tests {
    use super::*;

    /// The heap measurement is live: a run that allocates is seen.
    #[test]
    fn the_heap_peak_is_measured() {
        HEAP.reset_peak_memory();
        let block = vec![1u8; 3 << 20];
        std::hint::black_box(&block);
        assert!(HEAP.get_peak_memory() >= 3 << 20);
        drop(block);
        HEAP.reset_peak_memory();
        assert!(HEAP.get_peak_memory() < 1 << 20);
    }
}

/// Longest a single input may take before it counts as a hang.
const SLOW: Duration = Duration::from_secs(2);

/// What an input is fed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// `pg_core::Frame::decode` (scope frames from a peer), then a
    /// re-encoding round trip.
    Frame,
    /// `pg_net::wire::decode` (handshake and channel messages), round trip.
    Message,
    /// `pg_net::wire::decode_record` (numbered channel records, acks,
    /// probes), round trip.
    Record,
    /// `pg_api::Config::from_yaml` (a node's configuration file).
    Config,
    /// A sequence of frames (each prefixed by its length, two bytes) fed
    /// to a scope state machine as from one peer: decoding, bounds and
    /// protocol handling together.
    Scope,
}

impl Target {
    /// Every target, in a fixed order.
    pub const ALL: [Target; 5] = [
        Target::Frame,
        Target::Message,
        Target::Record,
        Target::Config,
        Target::Scope,
    ];

    /// The target's name (its corpus directory).
    pub fn name(self) -> &'static str {
        match self {
            Target::Frame => "frame",
            Target::Message => "message",
            Target::Record => "record",
            Target::Config => "config",
            Target::Scope => "scope",
        }
    }

    /// The target called `name`.
    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// A broken promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The target panicked.
    Panic(String),
    /// The heap grew past the input's bound while it ran.
    Memory {
        /// Bytes at the peak.
        peak: usize,
        /// What the input was allowed.
        bound: usize,
    },
    /// One input took longer than two seconds.
    Slow(Duration),
    /// What decoded did not decode to itself after encoding.
    RoundTrip(String),
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Panic(message) => write!(f, "panic: {message}"),
            Finding::Memory { peak, bound } => {
                write!(f, "heap peak {peak} B over the bound of {bound} B")
            }
            Finding::Slow(took) => write!(f, "one input took {took:?}"),
            Finding::RoundTrip(what) => write!(f, "round trip: {what}"),
        }
    }
}

/// The heap an input of `len` bytes may use while it is decoded: a fixed
/// allowance (decoders preallocate up to about a megabyte on a length
/// prefix) plus a multiple of its size. The scope target keeps state, so
/// it is allowed more.
pub fn memory_bound(target: Target, len: usize) -> usize {
    match target {
        Target::Scope => (32 << 20) + 512 * len,
        _ => (8 << 20) + 64 * len,
    }
}

/// Runs `target` on `data`: `Ok` with a short description of the outcome
/// (the fuzzer keeps inputs that reach new ones), or the broken promise.
pub fn run(target: Target, data: &[u8]) -> Result<String, Finding> {
    HEAP.reset_peak_memory();
    let start = Instant::now();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| match target {
        Target::Frame => frame(data),
        Target::Message => message(data),
        Target::Record => record(data),
        Target::Config => config(data),
        Target::Scope => scope(data),
    }));
    let took = start.elapsed();
    let peak = HEAP.get_peak_memory();
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            return Err(Finding::Panic(message));
        }
    }?;
    let bound = memory_bound(target, data.len());
    if peak > bound {
        return Err(Finding::Memory { peak, bound });
    }
    if took > SLOW {
        return Err(Finding::Slow(took));
    }
    Ok(outcome)
}

/// An error's kind and its causes', without the values they name (so
/// outcomes stay few).
fn kind(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        let head: String = text
            .split(|c: char| c.is_ascii_digit() || c == '"' || c == '`')
            .next()
            .unwrap_or("")
            .chars()
            .take(48)
            .collect();
        out.push_str(&head);
        out.push('|');
        next = e.source();
    }
    out
}

fn frame(data: &[u8]) -> Result<String, Finding> {
    let frame = match Frame::decode(data) {
        Ok(frame) => frame,
        Err(e) => return Ok(format!("err {}", kind(&e))),
    };
    let again = Frame::decode(&frame.encode())
        .map_err(|e| Finding::RoundTrip(format!("{frame:?} re-encoded does not decode: {e}")))?;
    if again != frame {
        return Err(Finding::RoundTrip(format!("{frame:?} became {again:?}")));
    }
    let detail = match &frame {
        Frame::Delta { ops, .. } => {
            let mut kinds: Vec<&str> = ops.iter().map(op_name).collect();
            kinds.sort_unstable();
            kinds.dedup();
            kinds.join(",")
        }
        Frame::Sync {
            groups,
            registrations,
            ..
        }
        | Frame::SyncPart {
            groups,
            registrations,
            ..
        } => {
            format!("{} {}", groups.len().min(3), registrations.len().min(3))
        }
        _ => String::new(),
    };
    Ok(format!("ok {} {detail}", variant(&frame)))
}

fn op_name(op: &pg_core::Op) -> &'static str {
    match op {
        pg_core::Op::Join { .. } => "join",
        pg_core::Op::Leave { .. } => "leave",
        pg_core::Op::Register { .. } => "register",
        pg_core::Op::Unregister { .. } => "unregister",
        pg_core::Op::Exit { .. } => "exit",
    }
}

fn variant(frame: &Frame) -> &'static str {
    match frame {
        Frame::Delta { .. } => "delta",
        Frame::Sync { .. } => "sync",
        Frame::SyncRequest => "sync_request",
        Frame::Discover => "discover",
        Frame::Digest { .. } => "digest",
        Frame::SyncPart { .. } => "sync_part",
    }
}

fn message(data: &[u8]) -> Result<String, Finding> {
    let message = match wire::decode(data) {
        Ok(message) => message,
        Err(e) => return Ok(format!("err {}", kind(&e))),
    };
    let mut out = Vec::new();
    wire::encode_into(&message, &mut out);
    let again = wire::decode(&out[4..])
        .map_err(|e| Finding::RoundTrip(format!("{message:?} re-encoded: {e}")))?;
    if again != message {
        return Err(Finding::RoundTrip(format!("{message:?} became {again:?}")));
    }
    let name = format!("{message:?}");
    Ok(format!(
        "ok {}",
        name.split([' ', '(', '{']).next().unwrap_or("")
    ))
}

fn record(data: &[u8]) -> Result<String, Finding> {
    let record = match wire::decode_record(data) {
        Ok(record) => record,
        Err(e) => return Ok(format!("err {}", kind(&e))),
    };
    let mut out = Vec::new();
    let name = match &record {
        Record::Data { seq, message } => {
            wire::encode_data_into(*seq, message, &mut out);
            "data"
        }
        Record::Ack { channel, next } => {
            wire::encode_ack_into(*channel, *next, &mut out);
            "ack"
        }
        Record::Probe => {
            wire::encode_probe_into(&mut out);
            "probe"
        }
    };
    let again = wire::decode_record(&out[4..])
        .map_err(|e| Finding::RoundTrip(format!("{record:?} re-encoded: {e}")))?;
    if again != record {
        return Err(Finding::RoundTrip(format!("{record:?} became {again:?}")));
    }
    Ok(format!("ok {name}"))
}

fn config(data: &[u8]) -> Result<String, Finding> {
    let text = String::from_utf8_lossy(data);
    Ok(match pg_api::Config::from_yaml(&text) {
        Ok(config) => format!(
            "ok {} scopes, node {}, policy {}, app {}",
            config.scopes.len().min(4),
            config.node.is_some(),
            config.policy.is_some(),
            config.app.len().min(2)
        ),
        Err(e) => format!("err {}", kind(&e)),
    })
}

/// Bounds small enough that a short input can reach them.
fn small_bounds() -> ScopeConfig {
    ScopeConfig {
        max_groups: 64,
        max_members_per_group: 64,
        max_meta_size: 64,
        max_registrations: 64,
        ..ScopeConfig::default()
    }
}

fn scope(data: &[u8]) -> Result<String, Finding> {
    // Invariant: fixed, valid names.
    let local = NodeId::parse_name("local", 1).expect("a valid name");
    let peer = NodeId::parse_name("peer", 7).expect("a valid name");
    let now = Instant::now();
    let mut scope = Scope::new(local, small_bounds(), now);
    scope.handle_node_up(peer.clone());
    let (mut applied, mut refused) = (0, 0);
    let mut violations = std::collections::BTreeSet::new();
    let mut rest = data;
    let mut tick = 0u64;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (chunk, tail) = rest[2..].split_at(len);
        rest = tail;
        tick += 1;
        let at = now + Duration::from_millis(tick * 50);
        match Frame::decode(chunk) {
            Ok(frame) => {
                applied += 1;
                scope.handle_frame(&peer, frame, at);
            }
            Err(_) => refused += 1,
        }
        scope.handle_timeout(at);
        while scope.poll_transmit().is_some() {}
        while scope.poll_event().is_some() {}
        while scope.poll_registry_event().is_some() {}
        while scope.poll_conflict().is_some() {}
        while let Some((_, violation)) = scope.poll_violation() {
            violations.insert(kind(&violation));
        }
    }
    Ok(format!(
        "ok applied {} refused {} violations {violations:?}",
        applied.min(3),
        refused.min(3)
    ))
}
