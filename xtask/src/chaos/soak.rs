//! What `cargo xtask soak` adds to a chaos run: once a second it samples
//! every node's resident memory, open file descriptors and threads (from
//! `/proc`, so a paused node is sampled too), and its tokio task count,
//! runtime queue and the library's own queue gauges (the harness's
//! `gauges` command); at the end it plots them and fails if any of them
//! kept growing once the working set was steady.
//!
//! "Kept growing" is judged on the run after a warm-up (a fifth of it, at
//! least 30 s: allocator arenas, connection buffers and caches fill up
//! first), by two rules, each against a per-metric tolerance (relative
//! plus absolute):
//! - a step: the 90th percentile of the window's second half exceeds the
//!   first half's by more than the tolerance;
//! - a trend: the medians of the window's four quarters rise strictly,
//!   quarter after quarter, and the last exceeds the first by more than
//!   the tolerance. A steady leak, however slow, rises in every quarter
//!   and is caught once it has grown past the tolerance inside the
//!   window; a one-off step (a burst that the allocator keeps) rises in
//!   one quarter only, and the noise of faults and churn in none for
//!   long.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::nodes::NodeProc;
use crate::plot::{Line, Panel};

/// One node's reading at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    /// Seconds since the soak started.
    pub(crate) t: f64,
    pub(crate) node: usize,
    pub(crate) rss_mib: f64,
    pub(crate) fds: f64,
    pub(crate) threads: f64,
    /// Harness gauges (absent while the node is paused).
    pub(crate) gauges: BTreeMap<String, f64>,
}

/// A measured quantity, how to read it from a sample, and how much growth
/// is noise.
struct Metric {
    name: &'static str,
    title: &'static str,
    read: fn(&Sample) -> Option<f64>,
    /// Growth allowed: relative, plus absolute.
    tolerance: f64,
    slack: f64,
}

fn gauge(s: &Sample, name: &str) -> Option<f64> {
    s.gauges.get(name).copied()
}

const METRICS: [Metric; 5] = [
    Metric {
        name: "rss_mib",
        title: "resident memory (MiB)",
        read: |s| Some(s.rss_mib),
        tolerance: 0.1,
        slack: 6.0,
    },
    Metric {
        name: "open_fds",
        title: "open file descriptors",
        read: |s| Some(s.fds),
        tolerance: 0.25,
        slack: 8.0,
    },
    Metric {
        name: "threads",
        title: "threads",
        read: |s| Some(s.threads),
        tolerance: 0.5,
        slack: 8.0,
    },
    Metric {
        name: "tokio_tasks",
        title: "tokio tasks",
        read: |s| gauge(s, "tasks"),
        tolerance: 0.5,
        slack: 32.0,
    },
    Metric {
        name: "queue_depth",
        title: "queues (action queue + exit backlog + subscriber lag)",
        read: |s| {
            Some(
                gauge(s, "pg_action_queue_depth")?
                    + gauge(s, "pg_exit_backlog")?
                    + gauge(s, "pg_subscriber_lag")?,
            )
        },
        tolerance: 1.0,
        slack: 256.0,
    },
];

/// The samples of a soak.
pub(crate) struct Sampler {
    start: Instant,
    next: Instant,
    samples: Vec<Sample>,
}

impl Sampler {
    pub(crate) fn new() -> Sampler {
        let now = Instant::now();
        Sampler {
            start: now,
            next: now,
            samples: Vec::new(),
        }
    }

    /// Samples every node if a second has passed since the last time.
    pub(crate) fn tick(&mut self, nodes: &mut [NodeProc], usable: &[usize]) -> anyhow::Result<()> {
        let now = Instant::now();
        if now < self.next {
            return Ok(());
        }
        self.next = now + Duration::from_secs(1);
        let t = now.duration_since(self.start).as_secs_f64();
        for (i, node) in nodes.iter_mut().enumerate() {
            if !node.alive {
                continue;
            }
            let Some(mut sample) = read_proc(node.child.id()) else {
                continue;
            };
            sample.t = t;
            sample.node = i;
            if usable.contains(&i) {
                let answer = node.ok("gauges")?;
                sample.gauges = parse_gauges(&answer);
            }
            self.samples.push(sample);
        }
        Ok(())
    }

    /// Samples taken.
    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }

    /// Plots the samples to `soak.svg` and `soak.png` in `dir`.
    pub(crate) fn plot(&self, dir: &Path) -> anyhow::Result<()> {
        let nodes: Vec<usize> = self.nodes();
        let panels: Vec<Panel> = METRICS
            .iter()
            .map(|m| Panel {
                title: m.title,
                lines: nodes
                    .iter()
                    .map(|&n| Line {
                        label: format!("n{n}"),
                        points: self.series(n, m),
                    })
                    .collect(),
            })
            .collect();
        crate::plot::panels(&panels, &dir.join("soak.svg"), &dir.join("soak.png"))
    }

    fn nodes(&self) -> Vec<usize> {
        let mut nodes: Vec<usize> = self.samples.iter().map(|s| s.node).collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }

    /// (minutes, value) of metric `m` on node `n`.
    fn series(&self, n: usize, m: &Metric) -> Vec<(f64, f64)> {
        self.samples
            .iter()
            .filter(|s| s.node == n)
            .filter_map(|s| Some((s.t / 60.0, (m.read)(s)?)))
            .collect()
    }

    /// Per node and metric: how the window after the warm-up moved, and
    /// whether it grew past its tolerance (see the module docs). `None`
    /// when the run was too short to tell.
    pub(crate) fn verdict(&self) -> Option<Vec<Judged>> {
        let end = self.samples.last()?.t;
        let warmup = (end / 5.0).max(30.0);
        // At least half a minute on each side of the window.
        if end - warmup < 60.0 {
            return None;
        }
        let mut judged = Vec::new();
        for n in self.nodes() {
            for m in &METRICS {
                let series = self.series(n, m);
                let window: Vec<(f64, f64)> = series
                    .iter()
                    .map(|&(minutes, v)| (minutes * 60.0, v))
                    .filter(|&(t, _)| t >= warmup)
                    .collect();
                // A metric the node never reported (a paused node answers
                // no `gauges`) is reported as unjudged, not skipped.
                let Some(j) = judge(n, m, &window, warmup, end) else {
                    judged.push(Judged {
                        node: n,
                        metric: m.name,
                        unjudged: true,
                        ..Judged::default()
                    });
                    continue;
                };
                judged.push(j);
            }
        }
        Some(judged)
    }
}

/// Judges one metric of one node over `window` (seconds, value), the
/// samples between `from` and `to`.
fn judge(node: usize, m: &Metric, window: &[(f64, f64)], from: f64, to: f64) -> Option<Judged> {
    let span = |a: f64, b: f64| {
        window
            .iter()
            .filter(move |(t, _)| (a..b).contains(t))
            .map(|p| p.1)
    };
    let part = |k: f64, parts: f64| {
        let width = (to - from) / parts;
        let a = from + width * k;
        // The last part includes the last sample.
        let b = if k + 1.0 >= parts {
            to + 1.0
        } else {
            a + width
        };
        (a, b)
    };
    let (a, b) = part(0.0, 2.0);
    let first = p90(span(a, b))?;
    let (a, b) = part(1.0, 2.0);
    let second = p90(span(a, b))?;
    let quarters: Vec<f64> = (0..4)
        .map(|k| {
            let (a, b) = part(f64::from(k), 4.0);
            median(span(a, b))
        })
        .collect::<Option<_>>()?;
    let allowed = |base: f64| base * (1.0 + m.tolerance) + m.slack;
    let stepped = second > allowed(first);
    let rising = quarters.windows(2).all(|w| w[1] > w[0]) && quarters[3] > allowed(quarters[0]);
    Some(Judged {
        node,
        metric: m.name,
        first,
        second,
        quarters,
        grew: stepped || rising,
        unjudged: false,
    })
}

/// One metric of one node, judged.
#[derive(Debug, Clone, Default)]
pub(crate) struct Judged {
    pub(crate) node: usize,
    pub(crate) metric: &'static str,
    /// 90th percentiles of the window's first and second half.
    pub(crate) first: f64,
    pub(crate) second: f64,
    /// Medians of the window's four quarters.
    pub(crate) quarters: Vec<f64>,
    pub(crate) grew: bool,
    /// The node reported no value of this metric in some part of the
    /// window.
    pub(crate) unjudged: bool,
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[(v.len() - 1) / 2])
}

fn p90(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[(v.len() - 1) * 9 / 10])
}

/// Resident memory, threads and open descriptors of process `pid`.
fn read_proc(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some(Sample {
        rss_mib: field("VmRSS:")? / 1024.0,
        threads: field("Threads:")?,
        fds: fds as f64,
        ..Sample::default()
    })
}

/// `tasks=12 runtime_queue=0 pg_exit_backlog=0 ...` (after `ok`).
fn parse_gauges(answer: &str) -> BTreeMap<String, f64> {
    answer
        .split_whitespace()
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(minutes: usize, rss: impl Fn(f64) -> f64) -> Sampler {
        let mut s = Sampler::new();
        for sec in 0..minutes * 60 {
            let t = sec as f64;
            s.samples.push(Sample {
                t,
                node: 0,
                rss_mib: rss(t),
                fds: 20.0,
                threads: 6.0,
                gauges: parse_gauges("tasks=40 runtime_queue=0 pg_action_queue_depth=0 pg_exit_backlog=3 pg_subscriber_lag=0"),
            });
        }
        s
    }

    fn grew(s: &Sampler) -> Vec<&'static str> {
        s.verdict()
            .expect("long enough")
            .into_iter()
            .filter(|j| j.grew)
            .map(|j| j.metric)
            .collect()
    }

    #[test]
    fn a_steady_run_with_a_warm_up_and_noise_passes() {
        let s = run_of(10, |t| {
            if t < 60.0 {
                10.0 + t
            } else {
                70.0 + (t * 7.0).sin() * 3.0
            }
        });
        assert!(grew(&s).is_empty());
    }

    #[test]
    fn memory_that_keeps_growing_fails() {
        // 4 MiB a minute: 16 MiB between the halves' percentiles.
        let s = run_of(10, |t| 50.0 + t / 15.0);
        assert_eq!(grew(&s), ["rss_mib"]);
    }

    #[test]
    fn a_slow_steady_leak_fails_though_the_halves_stay_in_tolerance() {
        // 0.012 MiB/s (43 MiB an hour) over 30 minutes: the halves'
        // percentiles differ by less than the tolerance, but every quarter
        // is higher than the last and the last is past it.
        let s = run_of(30, |t| 40.0 + t * 0.012);
        let j = &s.verdict().expect("long enough")[0];
        assert!(j.second <= j.first * 1.1 + 6.0, "{j:?}");
        assert_eq!(grew(&s), ["rss_mib"]);
    }

    #[test]
    fn one_step_after_the_warm_up_within_tolerance_passes() {
        // A burst the allocator keeps: +5 MiB once, a third of the way in.
        let s = run_of(30, |t| {
            if t < 900.0 {
                60.0
            } else {
                65.0 + (t * 3.0).sin()
            }
        });
        assert!(grew(&s).is_empty());
    }

    #[test]
    fn a_leak_of_tasks_is_caught_on_any_node() {
        let mut s = run_of(30, |_| 50.0);
        for (i, sample) in s.samples.iter_mut().enumerate() {
            // A task leaked every four seconds: +450 over 30 minutes.
            sample.gauges.insert("tasks".into(), 40.0 + (i / 4) as f64);
        }
        assert_eq!(grew(&s), ["tokio_tasks"]);
    }

    #[test]
    fn a_queue_that_fills_linearly_from_empty_fails() {
        let mut s = run_of(10, |_| 50.0);
        for (i, sample) in s.samples.iter_mut().enumerate() {
            // 100 a second: the halves' percentiles stay within 2x + 256.
            sample
                .gauges
                .insert("pg_exit_backlog".into(), i as f64 * 100.0);
        }
        assert_eq!(grew(&s), ["queue_depth"]);
    }

    #[test]
    fn a_metric_never_reported_is_unjudged_not_passed() {
        let mut s = run_of(5, |_| 50.0);
        for sample in &mut s.samples {
            sample.gauges.clear();
        }
        let unjudged: Vec<_> = s
            .verdict()
            .expect("long enough")
            .into_iter()
            .filter(|j| j.unjudged)
            .map(|j| j.metric)
            .collect();
        assert_eq!(unjudged, ["tokio_tasks", "queue_depth"]);
    }

    #[test]
    fn a_short_run_is_not_judged() {
        assert!(run_of(1, |_| 10.0).verdict().is_none());
    }

    #[test]
    fn this_process_can_be_read() {
        let s = read_proc(std::process::id()).expect("/proc");
        assert!(s.rss_mib > 0.0 && s.threads >= 1.0 && s.fds >= 1.0);
    }
}
