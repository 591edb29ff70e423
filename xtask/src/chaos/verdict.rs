//! What a chaos run checks: convergence after each heal (with a diagnosis
//! when it does not come), the message guarantees counted by the nodes'
//! trackers against the library's own counters, and a soak's growth
//! verdict.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::bail;

use super::{CONVERGE_BOUND, Chaos, GROUPS};
use crate::model::check;

/// What the nodes' trackers counted (see pg-node's `checks`): summed over
/// every node process of the run, each read before it was stopped.
#[derive(Default, Clone, Copy, Debug)]
pub(super) struct Checks {
    /// Broadcasts received.
    pub(super) received: u64,
    /// Direct messages received.
    pub(super) directs: u64,
    /// Broadcasts a process received twice.
    pub(super) duplicates: u64,
    /// Direct messages that arrived before one sent earlier by the same
    /// process to the same process.
    pub(super) disorder: u64,
    /// What the library says it put in a mailbox, and dropped (no such
    /// process, mailbox full, node unreachable): `Node::deliveries`.
    pub(super) delivered: u64,
    pub(super) failed: u64,
}

/// Messages a node's processes may have read that its library has not
/// counted as delivered yet, when both are read (see `collect_checks`).
const HANDOVER_MARGIN: u64 = 16;

impl Chaos {
    fn converged(&mut self) -> anyhow::Result<bool> {
        let live = self.live();
        let mut groups: BTreeSet<String> = (0..GROUPS).map(|g| format!("g{g}")).collect();
        groups.extend(self.expected.groups.keys().cloned());
        Ok(check::full_mesh(&mut self.nodes, &live)?
            && check::views_agree(&mut self.nodes, &live, &self.expected, &groups)?.0
            && check::registry_agrees(&mut self.nodes, &live)?)
    }

    pub(super) fn converge(&mut self, after: &str) -> anyhow::Result<Duration> {
        let start = Instant::now();
        while start.elapsed() < CONVERGE_BOUND {
            self.check_interrupted()?;
            if self.converged()? {
                return Ok(start.elapsed());
            }
            self.sample()?;
            std::thread::sleep(Duration::from_millis(25));
        }
        let state = self.diagnose();
        bail!("no convergence within {CONVERGE_BOUND:?} after {after}:\n{state}")
    }

    /// What each live node sees where it differs from what is expected:
    /// its peers, the groups whose view is off (the pids missing and
    /// extra) and its registrations.
    fn diagnose(&mut self) -> String {
        let mut lines = Vec::new();
        // A node that failed to answer once is asked nothing more: its
        // next answer could be the late one to the previous question.
        let mut live = self.live();
        let mut mute = Vec::new();
        for &i in &live {
            let answers = self.nodes[i]
                .ok("peer_names")
                .and_then(|peers| Ok((peers, self.nodes[i].ok("registrations")?)));
            match answers {
                Ok((peers, regs)) => {
                    lines.push(format!("  n{i}: peers [{peers}], registrations [{regs}]"));
                }
                Err(e) => {
                    lines.push(format!("  n{i}: {e:#}"));
                    mute.push(i);
                }
            }
        }
        live.retain(|i| !mute.contains(i));
        let mut groups: BTreeSet<String> = (0..GROUPS).map(|g| format!("g{g}")).collect();
        groups.extend(self.expected.groups.keys().cloned());
        for group in &groups {
            let want = self.expected.members(group);
            for &i in &live {
                if mute.contains(&i) {
                    continue;
                }
                let seen = match check::view(&mut self.nodes[i], group) {
                    Ok(seen) => seen,
                    Err(e) => {
                        lines.push(format!("  n{i} {group}: {e:#}"));
                        mute.push(i);
                        continue;
                    }
                };
                let (missing, extra) = multiset_difference(&want, &seen);
                if !missing.is_empty() || !extra.is_empty() {
                    lines.push(format!(
                        "  n{i} {group}: missing {missing:?}, extra {extra:?}"
                    ));
                }
            }
        }
        lines.join("\n")
    }

    /// Adds what node `i`'s trackers counted to the run's totals (before
    /// it stops, and at the end).
    pub(super) fn collect_checks(&mut self, i: usize) -> anyhow::Result<()> {
        let answer = self.nodes[i].ok("checks")?;
        let v: Vec<u64> = answer
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("n{i}: checks answered {answer:?}: {e}"))?;
        let [received, directs, duplicates, disorder, delivered, failed] = v[..] else {
            bail!("n{i}: checks answered {answer:?}, not six counts");
        };
        // Everything a process read was put in its mailbox by the library
        // (what was put there and not read yet is in flight), but for the
        // few being handed over at the instant the counters were read (a
        // delivery is counted just after the mailbox takes it: at most one
        // per thread delivering).
        if received + directs > delivered + HANDOVER_MARGIN {
            bail!(
                "n{i}: its processes read {} messages, the library delivered {delivered}",
                received + directs
            );
        }
        self.checks.delivered += delivered;
        self.checks.failed += failed;
        self.checks.received += received;
        self.checks.directs += directs;
        self.checks.duplicates += duplicates;
        self.checks.disorder += disorder;
        Ok(())
    }

    pub(super) fn final_checks(&mut self) -> anyhow::Result<()> {
        for i in self.live() {
            self.collect_checks(i)?;
        }
        let Checks {
            received,
            directs,
            duplicates,
            disorder,
            ..
        } = self.checks;
        if duplicates > 0 || disorder > 0 {
            bail!(
                "{duplicates} broadcasts received twice, {disorder} direct messages out of order"
            );
        }
        // Processes that exited took what was queued for them; a cut link
        // may drop what was in flight (the API says so): fewer may arrive
        // than were addressed or sent, never more.
        if received > self.addressed {
            bail!(
                "{received} broadcasts received of {} addressed",
                self.addressed
            );
        }
        if directs > self.sends {
            bail!("{directs} direct messages received of {} sent", self.sends);
        }
        Ok(())
    }

    /// A soak's plot and growth verdict (nothing for a chaos run).
    pub(super) fn judge_soak(&mut self) -> anyhow::Result<()> {
        let Some(sampler) = &self.sampler else {
            return Ok(());
        };
        // A plot that cannot be drawn (no font, say) loses a picture, not
        // the verdict.
        if let Err(e) = sampler.plot(&self.dir) {
            eprintln!("soak: warning: could not plot the samples: {e:#}");
        }
        let Some(judged) = sampler.verdict() else {
            bail!("soak: too short to judge growth (needs 90 s of samples or more)");
        };
        let grew: Vec<String> = judged
            .iter()
            .filter(|j| j.grew)
            .map(|j| {
                let quarters: Vec<String> = j.quarters.iter().map(|q| format!("{q:.1}")).collect();
                format!(
                    "n{} {}: halves {:.1} -> {:.1}, quarters {}",
                    j.node,
                    j.metric,
                    j.first,
                    j.second,
                    quarters.join(" -> ")
                )
            })
            .collect();
        if !grew.is_empty() {
            bail!("kept growing once steady: {}", grew.join("; "));
        }
        let unjudged: Vec<String> = judged
            .iter()
            .filter(|j| j.unjudged)
            .map(|j| format!("n{} {}", j.node, j.metric))
            .collect();
        if !unjudged.is_empty() {
            bail!(
                "soak: no samples in part of the steady window for {}",
                unjudged.join(", ")
            );
        }
        Ok(())
    }
}

/// What `want` has that `seen` lacks, and the other way round, counting
/// repeats.
fn multiset_difference(want: &[String], seen: &[String]) -> (Vec<String>, Vec<String>) {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for p in want {
        *count.entry(p).or_default() += 1;
    }
    for p in seen {
        *count.entry(p).or_default() -= 1;
    }
    let (mut missing, mut extra) = (Vec::new(), Vec::new());
    for (pid, n) in count {
        let side = if n > 0 { &mut missing } else { &mut extra };
        side.extend(std::iter::repeat_n(
            pid.to_owned(),
            n.unsigned_abs() as usize,
        ));
    }
    (missing, extra)
}
