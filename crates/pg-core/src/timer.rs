//! The scope's timers: a fixed table of optional deadlines.

use std::time::Instant;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Start-up discovery of a capped random subset of peers.
    Discovery,
    /// Next anti-entropy digest.
    AntiEntropy,
    /// Next bounded step of removing the parts of nodes gone down.
    PartRemoval,
    /// Next pieces of this node's part being sent to peers.
    SyncStream,
    /// Building the process index a first sync left for later.
    PartIndex,
}

impl Timer {
    const ALL: [Timer; 5] = [
        Timer::Discovery,
        Timer::AntiEntropy,
        Timer::PartRemoval,
        Timer::SyncStream,
        Timer::PartIndex,
    ];
}

/// One optional deadline per [`Timer`]; the next wake-up is the minimum.
#[derive(Debug, Default, Clone)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer as usize] = Some(at);
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Clears and returns the timers due at `now`, in table order.
    pub(crate) fn expire(&mut self, now: Instant) -> impl Iterator<Item = Timer> + use<> {
        let mut due = Vec::new();
        for timer in Timer::ALL {
            let slot = &mut self.deadlines[timer as usize];
            if slot.is_some_and(|at| at <= now) {
                *slot = None;
                due.push(timer);
            }
        }
        due.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn next_is_min_and_expiry_clears() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        assert_eq!(table.next(), None);
        table.set(Timer::AntiEntropy, t0 + Duration::from_secs(2));
        table.set(Timer::Discovery, t0 + Duration::from_secs(1));
        assert_eq!(table.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(table.expire(t0).count(), 0);
        let due: Vec<_> = table.expire(t0 + Duration::from_secs(1)).collect();
        assert_eq!(due, vec![Timer::Discovery]);
        assert_eq!(table.next(), Some(t0 + Duration::from_secs(2)));
    }
}
