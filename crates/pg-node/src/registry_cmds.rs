//! The harness's registry commands (see `harness.rs` for the table), and
//! the registry measurements of `cargo xtask bench` (R1, R2), timed inside
//! the node.

use std::time::{Duration, Instant};

use pg_api::{Instance, RegisterOutcome};

type Answer = Result<String, Box<dyn std::error::Error>>;

/// `register <i> <key>`: `ok`, `taken <pid>`, or `err ...`.
pub(crate) fn register(instance: &Instance, key: &str) -> Answer {
    Ok(match instance.register(key)? {
        RegisterOutcome::Registered => "ok".to_owned(),
        RegisterOutcome::Taken { by } => format!("taken {by}"),
    })
}

/// `lookup <key>`: `ok <pid>` or `ok none`.
pub(crate) fn lookup(instance: &Instance, key: &str) -> Answer {
    Ok(match instance.lookup(key)? {
        Some((pid, _)) => format!("ok {pid}"),
        None => "ok none".to_owned(),
    })
}

/// `await_lookup <key> <timeout ms>`: looks `key` up in a loop until it is
/// found, and answers the wall-clock µs of the first lookup that found it
/// (`ok` alone if `timeout` ran out). R3's observer: the time a caller on
/// this node polling for the name would first see it, as Erlang's anchor
/// polls `global:whereis_name`. Each miss yields the CPU, so on a small
/// machine the poller does not starve the node's own threads that are
/// bringing the registration in.
pub(crate) fn await_lookup(instance: &Instance, key: &str, timeout: Duration) -> Answer {
    let deadline = Instant::now() + timeout;
    loop {
        if instance.lookup(key)?.is_some() {
            return Ok(format!("ok {}", crate::harness::wall_micros()));
        }
        if Instant::now() >= deadline {
            return Ok("ok".to_owned());
        }
        std::thread::yield_now();
    }
}

/// `registrations`: `ok <key>=<pid> ...`, in key order.
pub(crate) fn registrations(instance: &Instance) -> Answer {
    let all: Vec<String> = instance
        .dump()?
        .into_iter()
        .map(|r| format!("{}={}", r.key, r.pid))
        .collect();
    Ok(format!("ok {}", all.join(" ")))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `r1 <i> <pairs> <keys>`: register + unregister pairs over `keys`
/// distinct keys; `ok <ops/s> <p50 µs> <p99 µs>` (a pair is one op).
pub(crate) fn r1(instance: &Instance, pairs: usize, keys: usize) -> Answer {
    let names: Vec<String> = (0..keys.max(1)).map(|k| format!("r1/{k}")).collect();
    let mut lat = Vec::with_capacity(pairs);
    let start = Instant::now();
    for i in 0..pairs {
        let key = &names[i % names.len()];
        let t = Instant::now();
        if instance.register(key)? != RegisterOutcome::Registered {
            return Err(format!("{key} taken").into());
        }
        instance.unregister(key)?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok(format!(
        "ok {:.0} {:.3} {:.3}",
        pairs as f64 / secs,
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    ))
}

/// `r2 <i> <key> <n>`: `n` lookups of `key` (registered by process `i`
/// first); `ok <ns per lookup>`.
pub(crate) fn r2(instance: &Instance, key: &str, n: usize) -> Answer {
    instance.register(key)?;
    let start = Instant::now();
    let mut found = 0usize;
    for _ in 0..n {
        found += usize::from(std::hint::black_box(instance.lookup(key)?).is_some());
    }
    let ns = start.elapsed().as_secs_f64() * 1e9 / n.max(1) as f64;
    if found != n {
        return Err("a lookup missed".into());
    }
    Ok(format!("ok {ns:.1}"))
}
