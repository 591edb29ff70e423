//! The `pg.node` entry: the node's runtime options, its mesh and its TLS
//! files, checked field by field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pg_net::{NetConfig, TlsIdentity};
use pg_runtime::NodeOptions;
use serde::Deserialize;

use super::{FieldError, NodeConfig, at_least_one, positive};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeEntry {
    name: String,
    #[allow(dead_code)] // read in the first pass, which chose this type
    kind: String,
    cluster: Option<String>,
    listen: Option<SocketAddr>,
    advertise: Option<SocketAddr>,
    /// Addresses, or DNS names as `host:port`.
    #[serde(default)]
    seeds: Vec<String>,
    #[serde(default, with = "humantime_serde")]
    dns_refresh: Option<Duration>,
    #[serde(default)]
    dns_servers: Vec<SocketAddr>,
    tls: Option<TlsFiles>,
    /// How often the TLS files are read again (0s: never).
    #[serde(default, with = "humantime_serde")]
    tls_reload: Option<Duration>,
    mailbox_capacity: Option<usize>,
    max_payload_size: Option<usize>,
    max_frame_size: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    keep_alive: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

pub(super) fn node_config(e: NodeEntry, base: Option<&Path>) -> Result<NodeConfig, FieldError> {
    pg_core::NodeName::new(&e.name).map_err(|err| ("name", err.to_string()))?;
    let mut options = NodeOptions::default();
    if let Some(n) = at_least_one("mailbox_capacity", e.mailbox_capacity)? {
        options.mailbox_capacity = n;
    }
    if let Some(n) = at_least_one("max_payload_size", e.max_payload_size)? {
        options.max_payload_size = n;
    }
    let resolve = |p: &Path| match base {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.to_path_buf(),
    };
    let tls = match &e.tls {
        Some(files) => {
            for (field, path) in [
                ("tls.ca", &files.ca),
                ("tls.cert", &files.cert),
                ("tls.key", &files.key),
            ] {
                let path = resolve(path);
                std::fs::metadata(&path)
                    .map_err(|err| (field, format!("cannot read {}: {err}", path.display())))?;
            }
            let identity = TlsIdentity::from_pem_files(
                &resolve(&files.ca),
                &resolve(&files.cert),
                &resolve(&files.key),
            )
            .map_err(|err| ("tls", err.to_string()))?;
            Some(identity)
        }
        None => None,
    };
    let tls_files = e.tls.as_ref().map(|files| crate::TlsFiles {
        ca: resolve(&files.ca),
        cert: resolve(&files.cert),
        key: resolve(&files.key),
        reload_every: e.tls_reload.unwrap_or(Duration::from_secs(60)),
    });
    let net = match e.listen {
        Some(listen) => {
            if tls.is_none() {
                return Err((
                    "tls",
                    "a node that listens needs tls: { ca, cert, key }".into(),
                ));
            }
            let mut net = NetConfig::new(e.cluster.as_deref().unwrap_or("pg"), listen);
            net.advertise = e.advertise;
            for seed in &e.seeds {
                match seed.parse::<SocketAddr>() {
                    Ok(addr) => net.seeds.push(addr),
                    Err(_) => {
                        let port = seed
                            .rsplit_once(':')
                            .map(|(host, p)| (host, p.parse::<u16>()));
                        if !matches!(port, Some((host, Ok(_))) if !host.is_empty()) {
                            return Err((
                                "seeds",
                                format!("{seed:?} is neither an address nor host:port"),
                            ));
                        }
                        net.seed_names.push(seed.clone());
                    }
                }
            }
            if let Some(d) = positive("dns_refresh", e.dns_refresh)? {
                net.dns_refresh = d;
            }
            net.dns_servers = e.dns_servers.clone();
            if let Some(n) = e.max_frame_size {
                net.max_frame_size = n;
            }
            if let Some(d) = positive("idle_timeout", e.idle_timeout)? {
                net.idle_timeout = d;
            }
            if let Some(d) = positive("keep_alive", e.keep_alive)? {
                net.keep_alive = d;
            }
            if net.keep_alive >= net.idle_timeout {
                return Err(("keep_alive", "must be shorter than idle_timeout".into()));
            }
            if !(8192..=u32::MAX as usize).contains(&net.max_frame_size) {
                return Err((
                    "max_frame_size",
                    format!("must be between 8192 and {}", u32::MAX),
                ));
            }
            if net.advertise.is_none() && listen.ip().is_unspecified() {
                return Err((
                    "advertise",
                    format!("listening on {listen} needs an address peers can reach"),
                ));
            }
            if options.max_payload_size.saturating_add(4096) > net.max_frame_size {
                return Err((
                    "max_payload_size",
                    format!("must leave room in max_frame_size ({})", net.max_frame_size),
                ));
            }
            Some(net)
        }
        None => {
            let needs_listen = [
                ("seeds", !e.seeds.is_empty()),
                ("dns_refresh", e.dns_refresh.is_some()),
                ("dns_servers", !e.dns_servers.is_empty()),
                ("advertise", e.advertise.is_some()),
                ("cluster", e.cluster.is_some()),
                ("max_frame_size", e.max_frame_size.is_some()),
                ("idle_timeout", e.idle_timeout.is_some()),
                ("keep_alive", e.keep_alive.is_some()),
                ("tls_reload", e.tls_reload.is_some()),
            ];
            if let Some((field, _)) = needs_listen.iter().find(|(_, set)| *set) {
                return Err((field, "only applies to a node with a listen address".into()));
            }
            None
        }
    };
    Ok(NodeConfig {
        name: e.name,
        options,
        net,
        tls,
        tls_files,
    })
}
