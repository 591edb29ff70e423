//! Permissions: the checks of docs/semantics.md's table, a trait to implement them,
//! and a rule-based policy configurable in the YAML file.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// A permission, checked on every call (docs/semantics.md#permissions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// `pg.open` on the scope id.
    Open,
    /// `pg.join` on each group name.
    Join,
    /// `pg.leave` on each group name.
    Leave,
    /// `pg.get_members` on the group name.
    GetMembers,
    /// `pg.get_local_members` on the group name.
    GetLocalMembers,
    /// `pg.which_groups` on the scope id.
    WhichGroups,
    /// `pg.which_local_groups` on the scope id.
    WhichLocalGroups,
    /// `pg.broadcast` on the group name.
    Broadcast,
    /// `pg.broadcast_local` on the group name.
    BroadcastLocal,
    /// `pg.monitor` on the group name.
    Monitor,
    /// `pg.events` on the scope id.
    Events,
    /// `pg.count` on the group name.
    Count,
    /// `pg.local_count` on the group name.
    LocalCount,
    /// `pg.get_members_prefix` on the prefix.
    GetMembersPrefix,
    /// `pg.get_local_members_prefix` on the prefix.
    GetLocalMembersPrefix,
    /// `pg.which_groups_prefix` on the prefix.
    WhichGroupsPrefix,
    /// `pg.count_prefix` on the prefix.
    CountPrefix,
    /// `pg.local_count_prefix` on the prefix.
    LocalCountPrefix,
    /// `pg.monitor_prefix` on the prefix.
    MonitorPrefix,
    /// `pg.local_entries` on the scope id.
    LocalEntries,
    /// `pg.connect` on the scope id.
    Connect,
    /// `pg.disconnect` on each scope id.
    Disconnect,
    /// `pg.nodes` on the scope id.
    Nodes,
    /// `pg.register` on each key.
    Register,
    /// `pg.unregister` on each key.
    Unregister,
    /// `pg.lookup` on each key.
    Lookup,
    /// `pg.registrations` on the scope id (counts, local keys, the whole
    /// registry) or on the prefix (keys under it).
    Registrations,
    /// `pg.monitor_registry` on the key, the prefix, or the scope id (all).
    MonitorRegistry,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 28] = [
        Permission::Open,
        Permission::Join,
        Permission::Leave,
        Permission::GetMembers,
        Permission::GetLocalMembers,
        Permission::WhichGroups,
        Permission::WhichLocalGroups,
        Permission::Broadcast,
        Permission::BroadcastLocal,
        Permission::Monitor,
        Permission::Events,
        Permission::Count,
        Permission::LocalCount,
        Permission::GetMembersPrefix,
        Permission::GetLocalMembersPrefix,
        Permission::WhichGroupsPrefix,
        Permission::CountPrefix,
        Permission::LocalCountPrefix,
        Permission::MonitorPrefix,
        Permission::LocalEntries,
        Permission::Connect,
        Permission::Disconnect,
        Permission::Nodes,
        Permission::Register,
        Permission::Unregister,
        Permission::Lookup,
        Permission::Registrations,
        Permission::MonitorRegistry,
    ];

    /// The permission's name: `pg.open`, `pg.join`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Open => "pg.open",
            Permission::Join => "pg.join",
            Permission::Leave => "pg.leave",
            Permission::GetMembers => "pg.get_members",
            Permission::GetLocalMembers => "pg.get_local_members",
            Permission::WhichGroups => "pg.which_groups",
            Permission::WhichLocalGroups => "pg.which_local_groups",
            Permission::Broadcast => "pg.broadcast",
            Permission::BroadcastLocal => "pg.broadcast_local",
            Permission::Monitor => "pg.monitor",
            Permission::Events => "pg.events",
            Permission::Count => "pg.count",
            Permission::LocalCount => "pg.local_count",
            Permission::GetMembersPrefix => "pg.get_members_prefix",
            Permission::GetLocalMembersPrefix => "pg.get_local_members_prefix",
            Permission::WhichGroupsPrefix => "pg.which_groups_prefix",
            Permission::CountPrefix => "pg.count_prefix",
            Permission::LocalCountPrefix => "pg.local_count_prefix",
            Permission::MonitorPrefix => "pg.monitor_prefix",
            Permission::LocalEntries => "pg.local_entries",
            Permission::Connect => "pg.connect",
            Permission::Disconnect => "pg.disconnect",
            Permission::Nodes => "pg.nodes",
            Permission::Register => "pg.register",
            Permission::Unregister => "pg.unregister",
            Permission::Lookup => "pg.lookup",
            Permission::Registrations => "pg.registrations",
            Permission::MonitorRegistry => "pg.monitor_registry",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown permission {s:?}"))
    }
}

/// Decides whether `principal` may use `permission` on `resource` (a scope
/// id, a group name or a prefix, as docs/semantics.md's table says). Implement it to plug in
/// your own authorization.
pub trait Policy: Send + Sync + 'static {
    /// Whether the call is allowed.
    fn allows(&self, principal: &str, permission: Permission, resource: &str) -> bool;
}

/// The default policy: everything is allowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Policy for AllowAll {
    fn allows(&self, _: &str, _: Permission, _: &str) -> bool {
        true
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// The call goes ahead.
    Allow,
    /// The call fails with `PermissionDenied`.
    Deny,
}

/// One rule: an effect for calls whose principal, permission and resource
/// match the patterns (`*` matches any run of characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Allow or deny.
    pub effect: Effect,
    /// Principal pattern.
    pub principal: String,
    /// Permission pattern (`pg.join`, `pg.*`, `*`).
    pub permission: String,
    /// Resource pattern (scope id or group name).
    pub resource: String,
}

/// Rules checked in order: the first that matches decides; if none does,
/// `default` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePolicy {
    /// The rules, in order.
    pub rules: Vec<Rule>,
    /// The effect when no rule matches.
    pub default: Effect,
}

impl Policy for RulePolicy {
    fn allows(&self, principal: &str, permission: Permission, resource: &str) -> bool {
        let effect = self
            .rules
            .iter()
            .find(|r| {
                glob(&r.principal, principal)
                    && glob(&r.permission, permission.as_str())
                    && glob(&r.resource, resource)
            })
            .map_or(self.default, |r| r.effect);
        effect == Effect::Allow
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of
/// characters (including none) and everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches() {
        assert!(glob("*", ""));
        assert!(glob("*", "anything"));
        assert!(glob("pg.*", "pg.join"));
        assert!(!glob("pg.*", "xpg.join"));
        assert!(glob("room:*:admin", "room:42:admin"));
        assert!(!glob("room:*:admin", "room:42:user"));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("a*b*c", "aXcYb"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
        assert!(!glob("ab*ba", "aba"), "prefix and suffix must not overlap");
    }

    #[test]
    fn permission_names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>().unwrap(), p);
        }
        assert!("pg.nope".parse::<Permission>().is_err());
    }

    #[test]
    fn first_matching_rule_wins_then_default() {
        let policy = RulePolicy {
            rules: vec![
                Rule {
                    effect: Effect::Deny,
                    principal: "guest".into(),
                    permission: "pg.join".into(),
                    resource: "admin*".into(),
                },
                Rule {
                    effect: Effect::Allow,
                    principal: "*".into(),
                    permission: "pg.*".into(),
                    resource: "*".into(),
                },
            ],
            default: Effect::Deny,
        };
        assert!(!policy.allows("guest", Permission::Join, "admins"));
        assert!(policy.allows("guest", Permission::Join, "users"));
        assert!(policy.allows("root", Permission::Join, "admins"));
        let deny_all = RulePolicy {
            rules: vec![],
            default: Effect::Deny,
        };
        assert!(!deny_all.allows("x", Permission::Open, "app:pg"));
    }
}
