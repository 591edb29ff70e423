//! Starting a node: from a builder or a configuration file.

use std::net::SocketAddr;
use std::sync::Arc;

use pg_core::NodeId;
use pg_core::ScopeStats;
use pg_net::{NetConfig, QuicTransport, TlsIdentity};
use pg_runtime::{
    DeliveryCounters, Health, MemoryNetwork, NodeOptions, ScopeCounters, ScopeOptions,
};

use crate::config::{Config, ScopeEntry};
use crate::error::{ErrorKind, PgError};
use crate::instance::Instance;
use crate::permission::{AllowAll, Permission, Policy};
use crate::process::Process;
use crate::tls_reload::{self, TlsFiles};

/// Builds a [`Node`]. Without a listen address the node runs alone, in
/// memory; with one, it joins the mesh over QUIC with mutual TLS. The API
/// is the same either way.
pub struct NodeBuilder {
    name: String,
    incarnation: Option<u64>,
    options: NodeOptions,
    net: Option<NetConfig>,
    tls: Option<TlsIdentity>,
    tls_files: Option<TlsFiles>,
    scopes: Vec<(String, ScopeOptions)>,
    /// Every configured scope's options, `auto_start` or not, for
    /// connecting later.
    configured: Vec<(String, ScopeOptions)>,
    policy: Arc<dyn Policy>,
}

impl NodeBuilder {
    fn new() -> Self {
        Self {
            name: "node".to_owned(),
            incarnation: None,
            options: NodeOptions::default(),
            net: None,
            tls: None,
            tls_files: None,
            scopes: Vec::new(),
            configured: Vec::new(),
            policy: Arc::new(AllowAll),
        }
    }

    /// The node's name, unique in the cluster.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// A fixed incarnation (tests, simulators); by default it comes from
    /// the wall clock, so a restart is a newer run.
    pub fn incarnation(mut self, incarnation: u64) -> Self {
        self.incarnation = Some(incarnation);
        self
    }

    /// Listen on the network with these settings (cluster, address, seeds,
    /// timeouts); needs [`tls`](Self::tls).
    pub fn network(mut self, net: NetConfig) -> Self {
        self.net = Some(net);
        self
    }

    /// Listen on `addr` (creating default network settings for `cluster`
    /// if none were given); needs [`tls`](Self::tls).
    pub fn listen(mut self, cluster: &str, addr: SocketAddr) -> Self {
        let mut net = self
            .net
            .take()
            .unwrap_or_else(|| NetConfig::new(cluster, addr));
        net.cluster = cluster.to_owned();
        net.listen = addr;
        self.net = Some(net);
        self
    }

    /// Seed peers to contact (with [`listen`](Self::listen) or
    /// [`network`](Self::network)).
    pub fn seeds(mut self, seeds: &[SocketAddr]) -> Self {
        if let Some(net) = self.net.as_mut() {
            net.seeds = seeds.to_vec();
        }
        self
    }

    /// The node's TLS identity (cluster CA, certificate, key).
    pub fn tls(mut self, identity: TlsIdentity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// Runtime options (mailboxes, payload limit).
    pub fn options(mut self, options: NodeOptions) -> Self {
        self.options = options;
        self
    }

    /// A scope to open at start, by id (`namespace:name`).
    pub fn scope(mut self, id: &str, options: ScopeOptions) -> Self {
        self.scopes.push((id.to_owned(), options));
        self
    }

    /// The permission policy (default: allow everything).
    pub fn policy(mut self, policy: impl Policy) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// Takes everything from a configuration file: the node entry, the
    /// scopes with `auto_start`, the policy.
    pub fn config(mut self, config: &Config) -> Self {
        if let Some(node) = &config.node {
            self.name = node.name.clone();
            self.options = node.options.clone();
            self.net = node.net.clone();
            self.tls = node.tls.clone();
            self.tls_files = node.tls_files.clone();
        }
        for ScopeEntry {
            id,
            options,
            auto_start,
            ..
        } in &config.scopes
        {
            if *auto_start {
                self.scopes.push((id.clone(), options.clone()));
            }
            self.configured.push((id.clone(), options.clone()));
        }
        if let Some(policy) = &config.policy {
            self.policy = Arc::new(policy.clone());
        }
        self
    }

    /// Reads the TLS material from these files, and again every
    /// `files.reload_every` (rotation without a restart; see [`TlsFiles`]).
    pub fn tls_files(mut self, files: TlsFiles) -> Result<Self, PgError> {
        let identity = TlsIdentity::from_pem_files(&files.ca, &files.cert, &files.key)
            .map_err(|e| PgError::invalid(e.to_string()))?;
        self.tls = Some(identity);
        self.tls_files = Some(files);
        Ok(self)
    }

    /// Starts the node (inside a tokio runtime) and opens its scopes.
    pub fn start(self) -> Result<Node, PgError> {
        let incarnation = self.incarnation.unwrap_or_else(wall_clock_micros);
        let id = NodeId::parse_name(&self.name, incarnation)
            .map_err(|e| PgError::invalid(format!("node name: {e}")))?;
        let (transport, quic): (Arc<dyn pg_runtime::Transport>, _) = match self.net {
            Some(net) => {
                // A membership's metadata travels in one frame.
                for (scope, options) in self.scopes.iter().chain(&self.configured) {
                    let needs = options.core.max_meta_size + 4096;
                    if needs > net.max_frame_size {
                        return Err(PgError::invalid(format!(
                            "scope {scope}: max_meta_size ({}) does not fit max_frame_size ({}) with 4096 bytes to spare",
                            options.core.max_meta_size, net.max_frame_size
                        )));
                    }
                }
                let tls = self.tls.as_ref().ok_or_else(|| {
                    PgError::invalid("a node that listens needs TLS material (NodeBuilder::tls)")
                })?;
                let quic = QuicTransport::bind(id.clone(), net, tls)
                    .map_err(|e| PgError::new(ErrorKind::Internal, e.to_string()))?;
                if let Some(files) = self.tls_files {
                    tls_reload::watch(files, &quic);
                }
                (Arc::clone(&quic) as _, Some(quic))
            }
            None => (MemoryNetwork::new().transport(&id), None),
        };
        let runtime = pg_runtime::Node::start_as(id, transport, self.options)?;
        let mut configured: Vec<(String, ScopeOptions)> = self.configured;
        for (scope, options) in self.scopes {
            runtime.open_scope(&scope, options.clone())?;
            configured.push((scope, options));
        }
        Ok(Node {
            runtime,
            quic,
            policy: self.policy,
            configured: Arc::new(configured.into_iter().collect()),
        })
    }
}

fn wall_clock_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
}

/// A running node: spawn processes, open scopes.
#[derive(Clone)]
pub struct Node {
    runtime: pg_runtime::Node,
    quic: Option<Arc<QuicTransport>>,
    policy: Arc<dyn Policy>,
    /// The options of every scope named in the configuration or the
    /// builder, for connecting to it later by id.
    configured: Arc<std::collections::HashMap<String, ScopeOptions>>,
}

impl Node {
    /// A builder.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::new()
    }

    /// Starts a node from a configuration file.
    pub fn from_config(config: &Config) -> Result<Node, PgError> {
        NodeBuilder::new().config(config).start()
    }

    /// This node run.
    pub fn id(&self) -> &NodeId {
        self.runtime.id()
    }

    /// Where peers reach this node (networked nodes only).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.quic.as_ref().map(|q| q.local_addr())
    }

    /// The peers currently connected.
    pub fn peers(&self) -> Vec<NodeId> {
        self.runtime.peers()
    }

    /// A new process acting as `principal` (the identity permission checks
    /// see).
    pub fn spawn(&self, principal: &str) -> Process {
        Process::new(self.runtime.spawn(), principal, self.clone())
    }

    /// Starts a scope that is not in the configuration (or whose
    /// `auto_start` was false). Administrative: not checked against the
    /// policy, like [`runtime`](Self::runtime).
    pub fn open_scope(&self, id: &str, options: ScopeOptions) -> Result<(), PgError> {
        self.runtime
            .open_scope(id, options)
            .map(drop)
            .map_err(Into::into)
    }

    /// The options scope `id` was configured with (YAML entry or builder),
    /// or the defaults for a scope named nowhere.
    pub fn configured_options(&self, id: &str) -> ScopeOptions {
        self.configured.get(id).cloned().unwrap_or_default()
    }

    /// Whether this node is connected to scope `id`. Administrative: not
    /// checked (processes use [`Process::is_connected`]).
    pub fn is_connected(&self, id: &str) -> bool {
        self.runtime.is_connected(id)
    }

    /// The nodes running scope `id` that this node is connected to, this
    /// node first if it runs it. Administrative: not checked (processes
    /// use [`Process::nodes`]).
    pub fn scope_nodes(&self, id: &str) -> Vec<NodeId> {
        self.runtime.scope_nodes(id)
    }

    /// Sets the rule that picks the winner of registry conflicts in scope
    /// `id` (default: the earliest registration wins). Every node of the
    /// scope must use the same rule, set before any key is registered here
    /// (`Invalid` afterwards); it is called inside the scope's step and
    /// must return quickly, deciding from the candidates alone, and be a
    /// consistent preference (see [`Resolver`](pg_core::Resolver)).
    /// Administrative: not checked.
    pub fn set_registry_resolver(
        &self,
        id: &str,
        resolver: Arc<dyn pg_core::Resolver>,
    ) -> Result<(), PgError> {
        self.runtime
            .scope(id)?
            .set_resolver(resolver)
            .map_err(Into::into)
    }

    /// Disconnects this node from scope `id` (see
    /// [`Process::disconnect`]); returns whether it was connected.
    /// Administrative: not checked.
    pub fn disconnect_scope(&self, id: &str) -> bool {
        self.runtime.disconnect_scope(id)
    }

    /// `pg.open(id)` for `process`: an instance of scope `id`
    /// bound to it (`pg.open` permission on the scope id).
    pub fn open(&self, process: &Process, id: &str) -> Result<Instance, PgError> {
        if id.is_empty() {
            return Err(PgError::invalid("scope id is empty"));
        }
        if process.pid().node() != self.id() {
            return Err(PgError::invalid(format!(
                "{} is a process of another node",
                process.pid()
            )));
        }
        self.check(process.principal(), Permission::Open, id)?;
        let scope = self.runtime.scope(id)?;
        Ok(Instance::new(scope, process, self.clone()))
    }

    /// Waits until this node has cleaned up after every process that ended
    /// before the call. A process's end is applied shortly after it, in
    /// batches, so that dropping many processes never blocks the caller;
    /// code that must observe the cleanup (a test) awaits this.
    pub async fn flush_exits(&self) {
        self.runtime.flush_exits().await;
    }

    /// Stops the node gracefully: peers drop its members at once.
    pub fn shutdown(&self) {
        self.runtime.shutdown();
    }

    /// The mesh's counters (networked nodes only).
    pub fn net_stats(&self) -> Option<pg_net::NetStats> {
        self.quic.as_ref().map(|q| q.stats())
    }

    /// Adds `addr` as a seed at run time: dialed now, and again with
    /// backoff until a node answers there (networked nodes only; returns
    /// false for an in-memory node).
    pub fn add_seed(&self, addr: SocketAddr) -> bool {
        match &self.quic {
            Some(q) => {
                q.dial(addr);
                true
            }
            None => false,
        }
    }

    /// Scope `id`'s health check (`pg.broadcast_recent.<scope>`): healthy
    /// while broadcast traffic is seen within `broadcast_health_window`,
    /// with the scope's loop lag. Administrative: not checked against the
    /// policy. `NotFound` for a scope that does not run here.
    pub fn health(&self, id: &str) -> Result<Health, PgError> {
        Ok(self.runtime.scope(id)?.health())
    }

    /// Scope `id`'s counters: events delivered to subscribers, subscribers
    /// that lagged, frames that could not be sent, writer time spent
    /// cleaning up after ended processes.
    pub fn scope_counters(&self, id: &str) -> Result<ScopeCounters, PgError> {
        Ok(self.runtime.scope(id)?.counters())
    }

    /// Scope `id`'s protocol statistics: frames in and out by kind,
    /// frames refused, syncs, protocol violations of peers.
    pub fn protocol_stats(&self, id: &str) -> Result<ScopeStats, PgError> {
        Ok(self.runtime.scope(id)?.protocol_stats())
    }

    /// Messages put in a local mailbox, and messages dropped (recipient
    /// gone, mailbox full past the timeout, node unreachable), since the
    /// node started.
    pub fn deliveries(&self) -> DeliveryCounters {
        self.runtime.deliveries()
    }

    /// Fault injection: cuts and refuses the link to node `name` until
    /// [`unblock`](Self::unblock) (networked nodes only; for simulators).
    pub fn block(&self, name: &pg_core::NodeName) {
        if let Some(q) = &self.quic {
            q.block(name);
        }
    }

    /// Ends fault injection for node `name`.
    pub fn unblock(&self, name: &pg_core::NodeName) {
        if let Some(q) = &self.quic {
            q.unblock(name);
        }
    }

    /// The runtime underneath, for what the facade does not cover. Calls
    /// made through it are not checked against the permission policy.
    pub fn runtime(&self) -> &pg_runtime::Node {
        &self.runtime
    }

    /// Whether the policy allows it (no error built).
    pub(crate) fn allows(&self, principal: &str, permission: Permission, resource: &str) -> bool {
        self.policy.allows(principal, permission, resource)
    }

    pub(crate) fn check(
        &self,
        principal: &str,
        permission: Permission,
        resource: &str,
    ) -> Result<(), PgError> {
        if self.policy.allows(principal, permission, resource) {
            Ok(())
        } else {
            Err(PgError::new(
                ErrorKind::PermissionDenied,
                format!("{principal:?} may not {permission} on {resource:?}"),
            ))
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", self.id()).finish()
    }
}
