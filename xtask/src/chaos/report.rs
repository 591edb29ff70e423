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
            "direct_messages_sent": self.sends,
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
        println!(
            "  broadcasts addressed {}, direct messages sent {}, delays made with {}",
            self.addressed,
            self.sends,
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
                    "grew": j.grew,
                })
            })
            .collect();
        serde_json::json!({
            "samples": sampler.len(),
            "judged": judged,
            "plots": ["soak.svg", "soak.png"],
        })
    }

    /// Per metric, the worst node: the halves' 90th percentiles.
    fn print_soak(&self) {
        let Some(sampler) = &self.sampler else {
            return;
        };
        let Some(judged) = sampler.verdict() else {
            return;
        };
        println!(
            "  {:<14} {:>5} {:>16} {:>16}  (90th percentiles of the steady window's halves)",
            "gauge", "node", "first half", "second half"
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
                .max_by(|a, b| (a.second - a.first).total_cmp(&(b.second - b.first)));
            if let Some(j) = worst {
                println!(
                    "  {m:<14} {:>5} {:>16.1} {:>16.1}{}",
                    format!("n{}", j.node),
                    j.first,
                    j.second,
                    if j.grew { "  GREW" } else { "" }
                );
            }
        }
        println!("  plots: {}/soak.svg, soak.png", self.dir.display());
    }
}
