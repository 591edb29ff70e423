//! What a scenario on real nodes expects: every membership of the live
//! processes, with join counts (shared by the real cluster-sim and chaos).

use std::collections::BTreeMap;

/// What the scenario expects: per group, per pid, the join count.
#[derive(Default)]
pub(crate) struct Expected {
    pub(crate) groups: BTreeMap<String, BTreeMap<String, u32>>,
}

impl Expected {
    pub(crate) fn add(&mut self, group: &str, pid: &str) {
        *self
            .groups
            .entry(group.to_owned())
            .or_default()
            .entry(pid.to_owned())
            .or_default() += 1;
    }

    pub(crate) fn sub(&mut self, group: &str, pid: &str) {
        if let Some(members) = self.groups.get_mut(group) {
            if let Some(c) = members.get_mut(pid) {
                *c -= 1;
                if *c == 0 {
                    members.remove(pid);
                }
            }
            if members.is_empty() {
                self.groups.remove(group);
            }
        }
    }

    pub(crate) fn remove_pid(&mut self, pid: &str) {
        for members in self.groups.values_mut() {
            members.remove(pid);
        }
        self.groups.retain(|_, m| !m.is_empty());
    }

    pub(crate) fn remove_node(&mut self, node: &str) {
        let suffix = format!("@{node}>");
        for members in self.groups.values_mut() {
            members.retain(|pid, _| !pid.ends_with(&suffix));
        }
        self.groups.retain(|_, m| !m.is_empty());
    }

    /// The members of `group` as `pg-node members` lists them: sorted, each
    /// pid once per join.
    pub(crate) fn members(&self, group: &str) -> Vec<String> {
        self.groups
            .get(group)
            .map(|m| {
                m.iter()
                    .flat_map(|(pid, &count)| std::iter::repeat_n(pid.clone(), count as usize))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Distinct processes in `group` (what a broadcast addresses).
    pub(crate) fn distinct(&self, group: &str) -> usize {
        self.groups.get(group).map_or(0, BTreeMap::len)
    }
}

/// Checks of a real cluster against the model, over the harness protocol
/// (shared by the real cluster-sim and chaos).
pub(crate) mod check {
    use std::collections::BTreeSet;

    use crate::nodes::NodeProc;

    use super::Expected;

    /// A node's view of `group`, sorted, each pid once per join (the node
    /// gets a process to read through if it has none).
    pub(crate) fn view(node: &mut NodeProc, group: &str) -> anyhow::Result<Vec<String>> {
        if node.live_pids().next().is_none() {
            let pids = node.ok("spawn 1")?;
            node.pids
                .extend(pids.split_whitespace().map(|p| Some(p.to_owned())));
        }
        Ok(node
            .ok(&format!("members {group}"))?
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    }

    /// Whether each of `live` has every other as a peer.
    pub(crate) fn full_mesh(nodes: &mut [NodeProc], live: &[usize]) -> anyhow::Result<bool> {
        // By name: a stale dead peer and a missing live one would give
        // the right count.
        for &i in live {
            let mut want: Vec<String> = live
                .iter()
                .filter(|&&o| o != i)
                .map(|&o| nodes[o].name.clone())
                .collect();
            want.sort();
            let answer = nodes[i].ok("peer_names")?;
            let got: Vec<&str> = answer.split_whitespace().collect();
            if got != want {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether every node of `live` sees exactly `expected` in `groups`;
    /// also returns the members each saw (for plots).
    pub(crate) fn views_agree(
        nodes: &mut [NodeProc],
        live: &[usize],
        expected: &Expected,
        groups: &BTreeSet<String>,
    ) -> anyhow::Result<(bool, Vec<usize>)> {
        let mut all = true;
        let mut seen = Vec::with_capacity(live.len());
        for &node in live {
            let mut count = 0;
            for group in groups {
                let view = view(&mut nodes[node], group)?;
                count += view.len();
                all &= view == expected.members(group);
            }
            seen.push(count);
        }
        Ok((all, seen))
    }

    /// Whether every node of `live` lists the same holder for every
    /// registry key, each a live process of a live node (so at most one
    /// holder per key, and none that ended or died).
    pub(crate) fn registry_agrees(nodes: &mut [NodeProc], live: &[usize]) -> anyhow::Result<bool> {
        let live_pids: BTreeSet<String> = live
            .iter()
            .flat_map(|&n| {
                nodes[n]
                    .live_pids()
                    .map(|(_, p)| p.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut first: Option<String> = None;
        for &node in live {
            if nodes[node].live_pids().next().is_none() {
                let pids = nodes[node].ok("spawn 1")?;
                nodes[node]
                    .pids
                    .extend(pids.split_whitespace().map(|p| Some(p.to_owned())));
            }
            let listed = nodes[node].ok("registrations")?;
            let holders_live = listed
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .all(|(_, pid)| live_pids.contains(pid));
            if !holders_live || first.as_ref().is_some_and(|f| *f != listed) {
                return Ok(false);
            }
            first = Some(listed);
        }
        Ok(true)
    }
}
