//! What a simulated cluster must hold, checked by the checkers of
//! `check.rs` against the cluster's own record of what happened.

use crate::NodeId;

use super::Cluster;
use super::check::{self, View, Violation};

impl Cluster {
    pub(super) fn fail(&mut self, v: Violation) {
        self.violation.get_or_insert(v);
    }

    /// The first invariant broken while running, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    /// The union of every live node's own part.
    pub fn expected_view(&self) -> View {
        let mut out = View::new();
        for node in &self.nodes {
            if let Some(scope) = &node.scope {
                out.extend(check::own_part(scope));
            }
        }
        out
    }

    /// A cheap convergence test on versions alone: every live scope holds
    /// every other live scope's part at its current version (empty parts
    /// included), and no other part.
    /// [`check_converged`](Self::check_converged) then compares the views.
    pub fn versions_converged(&self) -> bool {
        let mut live: Vec<(NodeId, u64)> = self
            .nodes
            .iter()
            .filter_map(|n| n.scope.as_ref())
            .map(|s| {
                let v = s.version();
                (v.node, v.seq)
            })
            .collect();
        live.sort();
        self.nodes.iter().filter_map(|n| n.scope.as_ref()).all(|s| {
            let mut held: Vec<(NodeId, u64)> = s.parts().map(|p| (p.node, p.seq)).collect();
            held.sort();
            held == live
        })
    }

    /// Checks that each live node's event replay equals its whole state.
    pub fn check_replays(&self) -> Result<(), Violation> {
        for node in &self.nodes {
            if let Some(scope) = &node.scope {
                node.replay.check(scope).map_err(|v| {
                    Violation::new(v.invariant, format!("{}: {}", node.name, v.detail))
                })?;
            }
        }
        Ok(())
    }

    /// Checks every invariant: nothing broke while running, every live
    /// node's view equals the union of live parts, no member of a dead node
    /// remains, and each node's event replay equals its state.
    pub fn check_converged(&self) -> Result<(), Violation> {
        if let Some(v) = &self.violation {
            return Err(v.clone());
        }
        let expected = self.expected_view();
        let live = self.live_nodes();
        for node in &self.nodes {
            let Some(scope) = &node.scope else { continue };
            let view = check::view(scope);
            check::check_no_dead_members(&view, &live)
                .map_err(|v| Violation::new(v.invariant, format!("{}: {}", node.name, v.detail)))?;
            check::compare("view equals union of live parts", &view, &expected)
                .map_err(|v| Violation::new(v.invariant, format!("{}: {}", node.name, v.detail)))?;
            node.replay
                .check(scope)
                .map_err(|v| Violation::new(v.invariant, format!("{}: {}", node.name, v.detail)))?;
        }
        self.check_registry()
    }
}
