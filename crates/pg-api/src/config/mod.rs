//! Configuration files: a YAML list of entries (docs/configuration.md).
//!
//! ```yaml
//! - name: pg                      # scope "app:pg" (namespace defaults to app)
//!   kind: pg.scope
//!   anti_entropy_interval: 30s
//!   max_members_per_group: 10000
//!   lifecycle:
//!     auto_start: true
//! - name: node-1                  # the node itself
//!   kind: pg.node
//!   cluster: prod
//!   listen: 127.0.0.1:4700
//!   seeds: [127.0.0.1:4701, "pg-peers.prod.svc:4700"]   # addresses or host:port
//!   tls: { ca: ca.pem, cert: node-1.pem, key: node-1.key }
//! - name: policy                  # optional permissions
//!   kind: pg.policy
//!   default: allow
//!   rules:
//!     - { effect: deny, principal: guest, permission: pg.join, resource: "admin*" }
//! ```
//!
//! Every field is optional but `name` and `kind`; defaults are those of
//! docs/configuration.md. Entries of kinds outside `pg.*` are kept for the
//! application ([`Config::app`]). `${VAR}` and `${VAR:-default}` are
//! replaced by environment variables first ([`expand_env`]).
//! Errors name the entry and the field: unknown fields, wrong types, a zero
//! where zero cannot work, a maximum below its warning level, an unreadable
//! certificate.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use pg_net::{NetConfig, TlsIdentity};
use pg_runtime::{NodeOptions, ScopeOptions};
use serde::Deserialize;

use crate::permission::{Effect, Permission, Rule, RulePolicy};

mod env;
mod node;

pub use env::expand_env;
use node::{NodeEntry, node_config};

/// A configuration error, naming the entry and field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {}{}{message}", .entry.as_ref().map(|e| format!("{e}: ")).unwrap_or_default(), .field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
pub struct ConfigError {
    /// The entry, as `entry N (name, kind)`.
    pub entry: Option<String>,
    /// The field.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn new(entry: Option<String>, field: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            entry,
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Header {
    name: Option<String>,
    kind: Option<String>,
}

#[derive(Debug)]
enum Entry {
    Scope(RawScopeEntry),
    Node(NodeEntry),
    Policy(PolicyEntry),
    App(serde_json::Map<String, serde_json::Value>),
}

/// Deserializes the list, each entry straight into the type its `kind`
/// (read in a first pass) names: no buffering, so a failing field keeps
/// its path.
struct Entries<'a> {
    kinds: &'a [Option<String>],
}

impl<'de> serde::de::DeserializeSeed<'de> for Entries<'_> {
    type Value = Vec<Entry>;
    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Entries<'_> {
    type Value = Vec<Entry>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of entries")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let kind = self.kinds.get(out.len()).cloned().flatten();
            match seq.next_element_seed(EntrySeed { kind })? {
                Some(entry) => out.push(entry),
                None => return Ok(out),
            }
        }
    }
}

struct EntrySeed {
    kind: Option<String>,
}

impl<'de> serde::de::DeserializeSeed<'de> for EntrySeed {
    type Value = Entry;
    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        use serde::de::Error;
        match self.kind.as_deref() {
            Some("pg.scope") => RawScopeEntry::deserialize(de).map(Entry::Scope),
            Some("pg.node") => NodeEntry::deserialize(de).map(Entry::Node),
            Some("pg.policy") => PolicyEntry::deserialize(de).map(Entry::Policy),
            Some(other) if other.starts_with("pg") => Err(D::Error::custom(format!(
                "unknown kind {other:?} (expected pg.scope, pg.node or pg.policy)"
            ))),
            Some(other) if !other.contains('.') => Err(D::Error::custom(format!(
                "kind {other:?} is not namespace.name (pg.scope, pg.node, pg.policy, or the application's own, like app.http)"
            ))),
            // Any other kind belongs to the application.
            Some(_) => serde_json::Map::deserialize(de).map(Entry::App),
            None => Err(D::Error::custom("missing field `kind`")),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScopeEntry {
    name: String,
    #[allow(dead_code)] // read in the first pass, which chose this type
    kind: String,
    namespace: Option<String>,
    #[serde(default, with = "humantime_serde")]
    protocol_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    broadcast_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    anti_entropy_interval: Option<Duration>,
    circuit_breaker_failures: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    circuit_breaker_reset_time: Option<Duration>,
    max_retries: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    retry_base_delay: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    retry_max_delay: Option<Duration>,
    action_queue_size: Option<usize>,
    action_queue_max_size: Option<usize>,
    monitor_buffer: Option<usize>,
    max_groups: Option<usize>,
    max_members_per_group: Option<usize>,
    max_join_count: Option<u32>,
    max_meta_size: Option<usize>,
    max_registrations: Option<usize>,
    lifecycle: Option<Lifecycle>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Lifecycle {
    auto_start: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyEntry {
    #[allow(dead_code)] // named for error messages and readers of the file
    name: String,
    #[allow(dead_code)] // read in the first pass, which chose this type
    kind: String,
    default: Option<Effect>,
    #[serde(default)]
    rules: Vec<RuleEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    effect: Effect,
    #[serde(default = "any")]
    principal: String,
    #[serde(default = "any")]
    permission: String,
    #[serde(default = "any")]
    resource: String,
}

fn any() -> String {
    "*".to_owned()
}

/// A scope from the file, with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeEntry {
    /// `namespace:name`.
    pub id: String,
    /// Its options (the documented fields, defaults filled in).
    pub options: ScopeOptions,
    /// Whether the node opens it at start (`lifecycle.auto_start`,
    /// default true).
    pub auto_start: bool,
    /// Its breaker and retry settings, for the node's mesh.
    pub mesh: MeshSettings,
}

/// The node entry of a file.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name.
    pub name: String,
    /// Runtime options.
    pub options: NodeOptions,
    /// The mesh, when the node listens on the network.
    pub net: Option<NetConfig>,
    /// TLS material, loaded and checked.
    pub tls: Option<TlsIdentity>,
    /// Where it was loaded from, read again every `tls_reload`.
    pub tls_files: Option<crate::TlsFiles>,
}

/// A whole configuration file, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The scopes, in file order.
    pub scopes: Vec<ScopeEntry>,
    /// The node entry, if any.
    pub node: Option<NodeConfig>,
    /// The permission policy, if any (default: allow everything).
    pub policy: Option<RulePolicy>,
    /// Entries of other kinds (not `pg.*`), in file order, left to the
    /// application.
    pub app: Vec<AppEntry>,
}

/// An entry of a kind pg-rs does not own (any kind outside `pg.*`), kept
/// for the application that shares the file.
#[derive(Debug, Clone, PartialEq)]
pub struct AppEntry {
    /// Its `name`.
    pub name: String,
    /// Its `kind`.
    pub kind: String,
    /// Its other fields.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl AppEntry {
    /// Reads the entry's other fields as a `T`.
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        serde_json::from_value(serde_json::Value::Object(self.fields.clone())).map_err(|e| {
            ConfigError::new(
                Some(format!("entry ({}, {})", self.name, self.kind)),
                None,
                e.to_string(),
            )
        })
    }
}

impl Config {
    /// The application entries of kind `kind`.
    pub fn app_entries<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a AppEntry> + 'a {
        self.app.iter().filter(move |e| e.kind == kind)
    }
}

impl Config {
    /// Reads and validates a configuration file; relative certificate
    /// paths are taken from the file's directory.
    /// `${VAR}` and `${VAR:-default}` are replaced by the environment's
    /// values first (see [`expand_env`]).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(None, None, format!("cannot read {}: {e}", path.display()))
        })?;
        let text = expand_env(&text, |name| std::env::var(name).ok())?;
        Self::parse(&text, path.parent())
    }

    /// Parses and validates configuration text (certificate paths relative
    /// to the current directory), after replacing `${VAR}` and
    /// `${VAR:-default}` with the environment's values.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        Self::parse(&expand_env(text, |name| std::env::var(name).ok())?, None)
    }

    /// As [`from_yaml`](Self::from_yaml), with variables looked up by
    /// `env` instead of the process environment.
    pub fn from_yaml_with_env(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Self::parse(&expand_env(text, env)?, None)
    }

    fn parse(text: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
        let headers: Vec<Header> = serde_saphyr::from_str(text)
            .map_err(|e| ConfigError::new(None, None, format!("not a list of entries: {e}")))?;
        let describe = |i: usize| {
            let h = &headers[i];
            format!(
                "entry {} ({}, {})",
                i + 1,
                h.name.as_deref().unwrap_or("unnamed"),
                h.kind.as_deref().unwrap_or("no kind")
            )
        };
        let kinds: Vec<Option<String>> = headers.iter().map(|h| h.kind.clone()).collect();
        let entries: Vec<Entry> = serde_saphyr::with_deserializer_from_str(text, |de| {
            let mut track = serde_path_to_error::Track::new();
            let seed = Entries { kinds: &kinds };
            serde::de::DeserializeSeed::deserialize(
                seed,
                serde_path_to_error::Deserializer::new(de, &mut track),
            )
            .map_err(|e| serde_path_to_error::Error::new(track.path(), e))
            .map_err(|e| {
                let path = e.path().to_string();
                <serde_saphyr::Error as serde::de::Error>::custom(format!(
                    "{PATH_MARK}{path}{PATH_END}{}",
                    e.inner()
                ))
            })
        })
        .map_err(|e| {
            let text = e.to_string();
            let (path, message) = text
                .split_once(PATH_MARK)
                .and_then(|(_, rest)| rest.split_once(PATH_END))
                .unwrap_or(("", &text));
            let index = path
                .trim_start_matches('[')
                .split(']')
                .next()
                .and_then(|i| i.parse::<usize>().ok())
                .filter(|i| *i < headers.len());
            let field = path.split_once('.').map(|(_, f)| f.to_owned());
            ConfigError {
                entry: index.map(describe),
                field,
                message: message.to_owned(),
            }
        })?;
        let mut config = Config {
            scopes: Vec::new(),
            node: None,
            policy: None,
            app: Vec::new(),
        };
        for (i, entry) in entries.into_iter().enumerate() {
            let at = || Some(describe(i));
            match entry {
                Entry::Scope(scope) => {
                    let scope =
                        scope_config(scope).map_err(|(f, m)| ConfigError::new(at(), Some(f), m))?;
                    if config.scopes.iter().any(|s| s.id == scope.id) {
                        return Err(ConfigError::new(
                            at(),
                            Some("name"),
                            format!("scope {} is defined twice", scope.id),
                        ));
                    }
                    config.scopes.push(scope);
                }
                Entry::Node(node) => {
                    if config.node.is_some() {
                        return Err(ConfigError::new(
                            at(),
                            None,
                            "only one pg.node entry is allowed",
                        ));
                    }
                    let node = node_config(node, base)
                        .map_err(|(f, m)| ConfigError::new(at(), Some(f), m))?;
                    config.node = Some(node);
                }
                Entry::Policy(policy) => {
                    if config.policy.is_some() {
                        return Err(ConfigError::new(
                            at(),
                            None,
                            "only one pg.policy entry is allowed",
                        ));
                    }
                    let policy = policy_config(policy)
                        .map_err(|(f, m)| ConfigError::new(at(), Some(f), m))?;
                    config.policy = Some(policy);
                }
                Entry::App(mut fields) => {
                    let text = |v: Option<serde_json::Value>| match v {
                        Some(serde_json::Value::String(s)) => s,
                        _ => String::new(),
                    };
                    let name = text(fields.remove("name"));
                    let kind = text(fields.remove("kind"));
                    if name.is_empty() {
                        return Err(ConfigError::new(
                            at(),
                            Some("name"),
                            "every entry needs a name",
                        ));
                    }
                    config.app.push(AppEntry { name, kind, fields });
                }
            }
        }
        // The file format puts breaker and retry settings on scopes; the mesh has
        // one set, taken from the first scope that gives them.
        if let Some(net) = config.node.as_mut().and_then(|n| n.net.as_mut()) {
            apply_mesh_settings(&config.scopes, net);
            if net.retry_max_delay < net.retry_base_delay {
                return Err(ConfigError::new(
                    None,
                    Some("retry_max_delay"),
                    "scopes' settings combine to a retry_max_delay below retry_base_delay",
                ));
            }
        }
        Ok(config)
    }
}

type FieldError = (&'static str, String);

/// Brackets the path of a failing field inside a deserializer error's text
/// (printable: the YAML library escapes control characters).
const PATH_MARK: &str = "<<path=";
const PATH_END: &str = ">> ";

fn positive(field: &'static str, d: Option<Duration>) -> Result<Option<Duration>, FieldError> {
    match d {
        Some(d) if d.is_zero() => Err((field, "must be greater than zero".into())),
        other => Ok(other),
    }
}

fn at_least_one(field: &'static str, n: Option<usize>) -> Result<Option<usize>, FieldError> {
    match n {
        Some(0) => Err((field, "must be at least 1".into())),
        other => Ok(other),
    }
}

fn scope_config(e: RawScopeEntry) -> Result<ScopeEntry, FieldError> {
    if e.name.is_empty() {
        return Err(("name", "must not be empty".into()));
    }
    let namespace = e.namespace.unwrap_or_else(|| "app".to_owned());
    let mut o = ScopeOptions::default();
    if let Some(d) = positive("protocol_timeout", e.protocol_timeout)? {
        o.core.protocol_timeout = d;
    }
    if let Some(d) = positive("broadcast_timeout", e.broadcast_timeout)? {
        o.broadcast_timeout = d;
    }
    if let Some(d) = e.anti_entropy_interval {
        o.core.anti_entropy_interval = d; // zero disables
    }
    if let Some(n) = at_least_one("action_queue_size", e.action_queue_size)? {
        o.action_queue_size = n;
    }
    if let Some(n) = at_least_one("action_queue_max_size", e.action_queue_max_size)? {
        o.action_queue_max_size = n;
    }
    if o.action_queue_max_size < o.action_queue_size {
        return Err((
            "action_queue_max_size",
            format!(
                "{} is below action_queue_size ({})",
                o.action_queue_max_size, o.action_queue_size
            ),
        ));
    }
    if let Some(n) = at_least_one("monitor_buffer", e.monitor_buffer)? {
        o.monitor_buffer = n;
        o.monitor_max_pending = o.monitor_max_pending.max(n);
    }
    if let Some(n) = e.max_groups {
        o.core.max_groups = n;
    }
    if let Some(n) = e.max_members_per_group {
        o.core.max_members_per_group = n;
    }
    if let Some(n) = e.max_join_count {
        o.core.max_join_count = n;
    }
    if let Some(n) = e.max_registrations {
        o.core.max_registrations = n;
    }
    if let Some(n) = e.max_meta_size {
        if n > pg_core::MAX_META_SIZE {
            return Err((
                "max_meta_size",
                format!("must be at most {} bytes", pg_core::MAX_META_SIZE),
            ));
        }
        o.core.max_meta_size = n;
    }
    // Mesh settings: validated here, applied to the node's mesh.
    let base = positive("retry_base_delay", e.retry_base_delay)?;
    let max = positive("retry_max_delay", e.retry_max_delay)?;
    let reset = positive("circuit_breaker_reset_time", e.circuit_breaker_reset_time)?;
    let defaults = NetConfig::new("", SocketAddr::from(([127, 0, 0, 1], 0)));
    if max.unwrap_or(defaults.retry_max_delay) < base.unwrap_or(defaults.retry_base_delay) {
        return Err(("retry_max_delay", "is below retry_base_delay".into()));
    }
    Ok(ScopeEntry {
        id: format!("{namespace}:{}", e.name),
        options: o,
        auto_start: e.lifecycle.and_then(|l| l.auto_start).unwrap_or(true),
        mesh: MeshSettings {
            circuit_breaker_failures: e.circuit_breaker_failures,
            circuit_breaker_reset_time: reset,
            max_retries: e.max_retries,
            retry_base_delay: base,
            retry_max_delay: max,
        },
    })
}

/// The breaker and retry fields of a scope entry; the node's mesh
/// takes each from the first scope that sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeshSettings {
    /// `circuit_breaker_failures`.
    pub circuit_breaker_failures: Option<u32>,
    /// `circuit_breaker_reset_time`.
    pub circuit_breaker_reset_time: Option<Duration>,
    /// `max_retries`.
    pub max_retries: Option<u32>,
    /// `retry_base_delay`.
    pub retry_base_delay: Option<Duration>,
    /// `retry_max_delay`.
    pub retry_max_delay: Option<Duration>,
}

fn apply_mesh_settings(scopes: &[ScopeEntry], net: &mut NetConfig) {
    let first = |f: fn(&MeshSettings) -> Option<Duration>| scopes.iter().find_map(|s| f(&s.mesh));
    if let Some(n) = scopes.iter().find_map(|s| s.mesh.circuit_breaker_failures) {
        net.circuit_breaker_failures = n;
    }
    if let Some(n) = scopes.iter().find_map(|s| s.mesh.max_retries) {
        net.max_retries = n;
    }
    if let Some(d) = first(|m| m.circuit_breaker_reset_time) {
        net.circuit_breaker_reset_time = d;
    }
    if let Some(d) = first(|m| m.retry_base_delay) {
        net.retry_base_delay = d;
    }
    if let Some(d) = first(|m| m.retry_max_delay) {
        net.retry_max_delay = d;
    }
}

fn policy_config(e: PolicyEntry) -> Result<RulePolicy, FieldError> {
    let mut rules = Vec::with_capacity(e.rules.len());
    for r in e.rules {
        if !r.permission.contains('*') {
            r.permission
                .parse::<Permission>()
                .map_err(|err| ("rules.permission", err))?;
        }
        rules.push(Rule {
            effect: r.effect,
            principal: r.principal,
            permission: r.permission,
            resource: r.resource,
        });
    }
    Ok(RulePolicy {
        rules,
        default: e.default.unwrap_or(Effect::Allow),
    })
}
