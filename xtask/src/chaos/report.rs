//! The report of a chaos run or a soak: `report.json` in its directory
//! and a table on stdout.

use super::{Chaos, KINDS, SOAK_KINDS};

impl Chaos {
    pub(super) fn report(&self, error: Option<&anyhow::Error>) -> anyhow::Result<()> {
        let faults: Vec<serde_json::Value> = KINDS
            .iter()
            .map(|k| {
                let s = self.stats.get(k).copied().unwrap_or_default();
                serde_json::json!({"fault": k, "injected": s.injected, "worst_convergence_ms": s.worst_ms})
            })
            .collect();
        let report = serde_json::json!({
            "nodes": self.args.nodes,
            "seed": self.args.seed,
            "minutes": self.args.minutes,
            "passed": error.is_none(),
            "error": error.map(ToString::to_string),
            "faults": faults,
            "broadcasts_addressed": self.addressed,
            "broadcasts_received": self.checks.received,
            "broadcasts_received_twice": self.checks.duplicates,
            "direct_messages_sent": self.sends,
            "direct_messages_received": self.checks.directs,
            "direct_messages_out_of_order": self.checks.disorder,
            "library_delivered": self.checks.delivered,
            "library_failed": self.checks.failed,
            "not_injected": self.not_injected(),
            "delays_made_with": self.lab.delay_method(),
            "soak": self.soak_json(),
        });
        let path = self.dir.join("report.json");
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        println!(
            "{}: {} nodes in network namespaces, seed {}, {} min",
            if self.args.soak { "soak" } else { "chaos" },
            self.args.nodes,
            self.args.seed,
            self.args.minutes
        );
        println!(
            "  {:<20} {:>8} {:>22}",
            "fault", "injected", "worst convergence (ms)"
        );
        for k in KINDS {
            let s = self.stats.get(k).copied().unwrap_or_default();
            println!("  {k:<20} {:>8} {:>22}", s.injected, s.worst_ms);
        }
        // What did not arrive went to processes that exited with it
        // queued, or was in flight on a link that was cut: the API allows
        // both (at most once), and says so in its counters.
        println!(
            "  broadcasts: {} addressed, {} received, {} twice; direct messages: {} sent, {} received, {} out of order",
            self.addressed,
            self.checks.received,
            self.checks.duplicates,
            self.sends,
            self.checks.directs,
            self.checks.disorder
        );
        println!(
            "  the library delivered {} and dropped {} (counted: no such process, mailbox full, unreachable); delays made with {}",
            self.checks.delivered,
            self.checks.failed,
            self.lab.delay_method()
        );
        self.print_soak();
        println!(
            "  result: {}",
            match error {
                None => "PASS".to_owned(),
                Some(e) => format!("FAIL: {e:#}"),
            }
        );
        println!("  report: {}", path.display());
        Ok(())
    }

    fn not_injected(&self) -> Vec<&'static str> {
        if self.args.soak {
            KINDS
                .iter()
                .copied()
                .filter(|k| !SOAK_KINDS.contains(k))
                .collect()
        } else {
            Vec::new()
        }
    }

    fn soak_json(&self) -> serde_json::Value {
        let Some(sampler) = &self.sampler else {
            return serde_json::Value::Null;
        };
        let judged: Vec<serde_json::Value> = sampler
            .verdict()
            .unwrap_or_default()
            .iter()
            .map(|j| {
                serde_json::json!({
                    "node": format!("n{}", j.node),
                    "metric": j.metric,
                    "first_half_p90": j.first,
                    "second_half_p90": j.second,
                    "quarter_medians": j.quarters,
                    "grew": j.grew,
                    "unjudged": j.unjudged,
                })
            })
            .collect();
        serde_json::json!({
            "samples": sampler.len(),
            "judged": judged,
            "plots": ["soak.svg", "soak.png"],
        })
    }

    /// Per metric, the worst node: the halves' 90th percentiles and the
    /// quarters' medians.
    fn print_soak(&self) {
        let Some(sampler) = &self.sampler else {
            return;
        };
        let Some(judged) = sampler.verdict() else {
            return;
        };
        println!(
            "  {:<14} {:>5} {:>11} {:>11}  {:<31}  (steady window: halves' 90th percentiles, quarters' medians)",
            "gauge", "node", "first half", "second half", "quarters"
        );
        let mut metrics: Vec<&str> = Vec::new();
        for j in &judged {
            if !metrics.contains(&j.metric) {
                metrics.push(j.metric);
            }
        }
        for m in metrics {
            let worst = judged
                .iter()
                .filter(|j| j.metric == m)
                // A node that grew (by either rule) first, then the one
                // that grew most between the halves.
                .max_by(|a, b| {
                    (a.grew, a.unjudged)
                        .cmp(&(b.grew, b.unjudged))
                        .then((a.second - a.first).total_cmp(&(b.second - b.first)))
                });
            if let Some(j) = worst {
                let quarters: Vec<String> = j.quarters.iter().map(|q| format!("{q:.1}")).collect();
                println!(
                    "  {m:<14} {:>5} {:>11.1} {:>11.1}  {:<31}{}",
                    format!("n{}", j.node),
                    j.first,
                    j.second,
                    quarters.join(" "),
                    if j.grew {
                        "  GREW"
                    } else if j.unjudged {
                        "  UNJUDGED"
                    } else {
                        ""
                    }
                );
            }
        }
        println!("  plots: {}/soak.svg, soak.png", self.dir.display());
    }
}
