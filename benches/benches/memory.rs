//! Memory per membership in pg-core, in the M1 shape of BENCHMARKS.md:
//! 100k processes, each in 10 of 10k groups (1M memberships, 100 members
//! per group), joined as 10k batch calls of 100 pids. Prints bytes per
//! membership as counted by a counting global allocator (live heap bytes,
//! without allocator overhead).

// A counting allocator is the one place the benches need `unsafe`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use pg_benches::{drain_events, group, node, pid, scope};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const PROCESSES: u64 = 100_000;
const GROUPS: u64 = 10_000;
const PER_PROCESS: u64 = 10;

fn main() {
    let n = node("a");
    let (mut s, _) = scope(&n);
    let groups: Vec<_> = (0..GROUPS).map(|g| group(&format!("{g}"))).collect();
    let pids: Vec<_> = (0..PROCESSES).map(|i| pid(&n, i + 1)).collect();
    // Members of each group, as M1 builds them: process i is in groups
    // (i*10 + k) mod 10k.
    let mut members: Vec<Vec<_>> = vec![Vec::new(); GROUPS as usize];
    for i in 0..PROCESSES {
        for k in 0..PER_PROCESS {
            members[((i * PER_PROCESS + k) % GROUPS) as usize].push(pids[i as usize].clone());
        }
    }
    let before = LIVE.load(Ordering::Relaxed);
    for (g, batch) in groups.iter().zip(&members) {
        if let Err(e) = s.join_pids(g, batch) {
            eprintln!("join failed: {e}");
            std::process::exit(1);
        }
        drain_events(&mut s);
    }
    let after = LIVE.load(Ordering::Relaxed);
    let memberships = PROCESSES * PER_PROCESS;
    // The group names are counted: they live in the scope once joined.
    let per = (after - before) as f64 / memberships as f64;
    println!(
        "{{\"system\":\"pg-rs\",\"workload\":\"M1_memory_core\",\"memberships\":{memberships},\"bytes_per_membership\":{per:.1}}}"
    );
    assert_eq!(s.group_count(), GROUPS as usize);
    assert_eq!(s.members("0").len(), 100);
}
