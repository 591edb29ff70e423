//! Configuration files: the documented examples, every field, and every
//! kind of bad configuration, with errors that name entry and field.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::time::Duration;

use pg_api::{Config, DevCa, Node};

#[test]
fn seed_examples_load_with_defaults() {
    let minimal = "- name: pg\n  kind: pg.scope\n  lifecycle:\n    auto_start: true\n";
    let config = Config::from_yaml(minimal).unwrap();
    assert_eq!(config.scopes.len(), 1);
    let scope = &config.scopes[0];
    assert_eq!(scope.id, "app:pg");
    assert!(scope.auto_start);
    let o = &scope.options;
    assert_eq!(o.core.protocol_timeout, Duration::from_secs(5));
    assert_eq!(o.broadcast_timeout, Duration::from_secs(5));
    assert_eq!(o.core.anti_entropy_interval, Duration::from_secs(30));
    assert_eq!(
        (
            o.action_queue_size,
            o.action_queue_max_size,
            o.monitor_buffer
        ),
        (256, 1024, 64)
    );
    assert_eq!((o.core.max_groups, o.core.max_members_per_group), (0, 0));

    let tuned = r#"
- name: pg
  kind: pg.scope
  anti_entropy_interval: 30s
  circuit_breaker_failures: 3
  max_members_per_group: 10000
  lifecycle:
    auto_start: true
"#;
    let config = Config::from_yaml(tuned).unwrap();
    assert_eq!(config.scopes[0].options.core.max_members_per_group, 10000);
    assert_eq!(config.scopes[0].mesh.circuit_breaker_failures, Some(3));
}

#[test]
fn every_field() {
    let yaml = r#"
- name: chat
  kind: pg.scope
  namespace: svc
  protocol_timeout: 2s
  broadcast_timeout: 250ms
  anti_entropy_interval: 0s
  circuit_breaker_failures: 5
  circuit_breaker_reset_time: 20s
  max_retries: 0
  retry_base_delay: 50ms
  retry_max_delay: 2s
  action_queue_size: 10
  action_queue_max_size: 20
  monitor_buffer: 8
  max_groups: 100
  max_members_per_group: 1000
  lifecycle: { auto_start: false }
"#;
    let config = Config::from_yaml(yaml).unwrap();
    let s = &config.scopes[0];
    assert_eq!(s.id, "svc:chat");
    assert!(!s.auto_start);
    assert_eq!(s.options.core.protocol_timeout, Duration::from_secs(2));
    assert_eq!(s.options.broadcast_timeout, Duration::from_millis(250));
    assert_eq!(
        s.options.core.anti_entropy_interval,
        Duration::ZERO,
        "0 disables"
    );
    assert_eq!(
        (s.options.action_queue_size, s.options.action_queue_max_size),
        (10, 20)
    );
    assert_eq!(s.options.monitor_buffer, 8);
    assert_eq!(
        (
            s.options.core.max_groups,
            s.options.core.max_members_per_group
        ),
        (100, 1000)
    );
    assert_eq!(s.mesh.max_retries, Some(0));
    assert_eq!(s.mesh.retry_max_delay, Some(Duration::from_secs(2)));
    // A scope with auto_start false is not opened at start.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let node = Node::from_config(&config).unwrap();
        let p = node.spawn("p");
        assert!(p.open("svc:chat").is_err());
    });
}

fn error(yaml: &str) -> pg_api::ConfigError {
    Config::from_yaml(yaml).unwrap_err()
}

#[test]
fn bad_configurations_name_entry_and_field() {
    let e = error(
        "- name: pg\n  kind: pg.scope\n- name: other\n  kind: pg.scope\n  monitor_bufer: 3\n",
    );
    assert_eq!(e.entry.as_deref(), Some("entry 2 (other, pg.scope)"), "{e}");
    assert!(
        e.message.contains("monitor_bufer"),
        "unknown field named: {e}"
    );

    let e = error("- name: pg\n  kind: pg.scope\n  max_groups: lots\n");
    assert!(e.entry.as_deref().unwrap().contains("entry 1 (pg"), "{e}");
    assert!(
        e.to_string().contains("max_groups"),
        "wrong type names the field: {e}"
    );

    let e = error("- name: pg\n  kind: pg.scope\n  broadcast_timeout: soon\n");
    assert!(e.to_string().contains("broadcast_timeout"), "{e}");

    let e = error("- name: pg\n  kind: pg.scope\n  monitor_buffer: 0\n");
    assert_eq!(e.field.as_deref(), Some("monitor_buffer"));
    assert!(e.message.contains("at least 1"));

    let e = error("- name: pg\n  kind: pg.scope\n  protocol_timeout: 0s\n");
    assert_eq!(e.field.as_deref(), Some("protocol_timeout"));

    let e = error(
        "- name: pg\n  kind: pg.scope\n  action_queue_size: 100\n  action_queue_max_size: 50\n",
    );
    assert_eq!(e.field.as_deref(), Some("action_queue_max_size"));
    assert!(e.message.contains("below action_queue_size"), "{e}");

    let e = error("- name: pg\n  kind: pg.scope\n  retry_base_delay: 2s\n  retry_max_delay: 1s\n");
    assert_eq!(e.field.as_deref(), Some("retry_max_delay"));

    let e = error("- name: pg\n  kind: pg.widget\n");
    assert!(e.message.contains("pg.widget"), "unknown kind: {e}");

    let e = error("- name: pg\n  kind: pg.scope\n- name: pg\n  kind: pg.scope\n");
    assert!(e.message.contains("twice"), "{e}");

    let e = error(
        "- name: p\n  kind: pg.policy\n  rules:\n    - { effect: allow, permission: pg.jion }\n",
    );
    assert!(e.message.contains("pg.jion"), "{e}");

    let e = error("not: a list\n");
    assert!(e.message.contains("list of entries"), "{e}");
}

#[test]
fn node_entries() {
    let dir = std::env::temp_dir().join(format!("pg-api-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = DevCa::generate("test").unwrap();
    let (cert, key) = ca.issue_pem("node-1").unwrap();
    std::fs::write(dir.join("ca.pem"), ca.certificate_pem()).unwrap();
    std::fs::write(dir.join("node-1.pem"), cert).unwrap();
    std::fs::write(dir.join("node-1.key"), key).unwrap();
    let good = r#"
- name: pg
  kind: pg.scope
  circuit_breaker_failures: 7
- name: node-1
  kind: pg.node
  cluster: prod
  listen: 127.0.0.1:0
  seeds: [127.0.0.1:4701]
  tls: { ca: ca.pem, cert: node-1.pem, key: node-1.key }
"#;
    let path = dir.join("pg.yaml");
    std::fs::write(&path, good).unwrap();
    let config = Config::from_file(&path).unwrap();
    let node = config.node.as_ref().unwrap();
    let net = node.net.as_ref().unwrap();
    assert_eq!(net.cluster, "prod");
    assert_eq!(
        net.circuit_breaker_failures, 7,
        "taken from the scope entry"
    );
    assert!(node.tls.is_some());

    // An unreadable certificate names the field.
    std::fs::write(&path, good.replace("node-1.key", "missing.key")).unwrap();
    let e = Config::from_file(&path).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("tls.key"), "{e}");
    assert!(e.entry.as_deref().unwrap().contains("node-1"), "{e}");
    // A certificate file that is not one.
    std::fs::write(dir.join("junk.pem"), "not a certificate").unwrap();
    std::fs::write(&path, good.replace("node-1.pem", "junk.pem")).unwrap();
    assert!(Config::from_file(&path).is_err());
    // Listening needs TLS; seeds need listening; one node entry only.
    let e = error("- name: nx\n  kind: pg.node\n  listen: 127.0.0.1:0\n");
    assert_eq!(e.field.as_deref(), Some("tls"));
    let e = error("- name: nx\n  kind: pg.node\n  seeds: [127.0.0.1:1]\n");
    assert_eq!(e.field.as_deref(), Some("seeds"));
    let e = error("- name: nx\n  kind: pg.node\n- name: mx\n  kind: pg.node\n");
    assert!(e.message.contains("only one"));
    let e = error("- name: bad name\n  kind: pg.node\n");
    assert_eq!(e.field.as_deref(), Some("name"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn more_bad_configurations() {
    for (yaml, field) in [
        ("- name: nx\n  kind: pg.node\n  colour: red\n", "colour"),
        (
            "- name: pg\n  kind: pg.scope\n  lifecycle: { autostart: true }\n",
            "autostart",
        ),
        (
            "- name: p\n  kind: pg.policy\n  rules:\n    - { effect: allow, resorce: x }\n",
            "resorce",
        ),
        (
            "- name: nx\n  kind: pg.node\n  tls: { ca: a, cert: b, key: c, pass: d }\n",
            "pass",
        ),
    ] {
        let e = error(yaml);
        assert!(e.to_string().contains(field), "unknown {field}: {e}");
        assert!(e.entry.is_some(), "{e}");
    }
    for (yaml, field) in [
        (
            "- name: pg\n  kind: pg.scope\n  broadcast_timeout: 0s\n",
            "broadcast_timeout",
        ),
        (
            "- name: pg\n  kind: pg.scope\n  retry_base_delay: 0ms\n",
            "retry_base_delay",
        ),
        (
            "- name: pg\n  kind: pg.scope\n  circuit_breaker_reset_time: 0s\n",
            "circuit_breaker_reset_time",
        ),
        (
            "- name: pg\n  kind: pg.scope\n  action_queue_max_size: 0\n",
            "action_queue_max_size",
        ),
        (
            "- name: nx\n  kind: pg.node\n  mailbox_capacity: 0\n",
            "mailbox_capacity",
        ),
        (
            "- name: nx\n  kind: pg.node\n  max_payload_size: 0\n",
            "max_payload_size",
        ),
        (
            "- name: nx\n  kind: pg.node\n  idle_timeout: 1s\n",
            "idle_timeout",
        ),
        ("- name: nx\n  kind: pg.node\n  cluster: prod\n", "cluster"),
    ] {
        let e = error(yaml);
        assert_eq!(e.field.as_deref(), Some(field), "{e}");
    }
    let e = error("- name: pg\n  kind: pg.scope\n  max_groups: lots\n");
    assert_eq!(
        e.field.as_deref(),
        Some("max_groups"),
        "wrong type names the field: {e}"
    );
}

#[test]
fn network_fields_are_checked_at_load() {
    let dir = std::env::temp_dir().join(format!("pg-api-net-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = DevCa::generate("test").unwrap();
    let (cert, key) = ca.issue_pem("nx").unwrap();
    std::fs::write(dir.join("ca.pem"), ca.certificate_pem()).unwrap();
    std::fs::write(dir.join("nx.pem"), cert).unwrap();
    std::fs::write(dir.join("nx.key"), key).unwrap();
    let node = |extra: &str| {
        format!(
            "- name: nx\n  kind: pg.node\n  listen: 127.0.0.1:0\n  tls: {{ ca: ca.pem, cert: nx.pem, key: nx.key }}\n{extra}"
        )
    };
    let check = |extra: &str, field: &str| {
        let path = dir.join("pg.yaml");
        std::fs::write(&path, node(extra)).unwrap();
        let e = Config::from_file(&path).unwrap_err();
        assert_eq!(e.field.as_deref(), Some(field), "{e}");
    };
    check("  keep_alive: 1s\n  idle_timeout: 500ms\n", "keep_alive");
    check("  max_frame_size: 100000\n", "max_payload_size");
    check("  max_frame_size: 10\n", "max_frame_size");
    check(
        "  max_payload_size: 18446744073709551615\n",
        "max_payload_size",
    );
    let path = dir.join("pg.yaml");
    std::fs::write(&path, node("").replace("127.0.0.1:0", "0.0.0.0:0")).unwrap();
    assert_eq!(
        Config::from_file(&path).unwrap_err().field.as_deref(),
        Some("advertise")
    );
    // Scopes whose retry settings combine badly.
    let two = format!(
        "{}- name: a\n  kind: pg.scope\n  retry_base_delay: 2s\n  retry_max_delay: 3s\n- name: b\n  kind: pg.scope\n  retry_max_delay: 1s\n",
        node("")
    );
    std::fs::write(&path, two.replace("  retry_max_delay: 3s\n", "")).unwrap();
    let e = Config::from_file(&path).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("retry_max_delay"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Entries of other kinds share the file with pg-rs's: they are kept, in
/// order, for the application to read into its own types.
#[test]
fn application_entries_are_kept_for_the_application() {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Http {
        listen: String,
        workers: u32,
    }
    let config = Config::from_yaml(
        "- name: pg\n  kind: pg.scope\n\
         - name: web\n  kind: app.http\n  listen: 0.0.0.0:8080\n  workers: 4\n\
         - name: other\n  kind: app.http\n  listen: x\n  workers: 1\n\
         - name: jobs\n  kind: app.queue\n  depth: 10\n",
    )
    .unwrap();
    assert_eq!(config.scopes.len(), 1);
    assert_eq!(config.app.len(), 3);
    let http: Vec<_> = config.app_entries("app.http").collect();
    assert_eq!(http.len(), 2);
    assert_eq!(http[0].name, "web");
    assert_eq!(
        http[0].deserialize::<Http>().unwrap(),
        Http {
            listen: "0.0.0.0:8080".into(),
            workers: 4
        }
    );
    // The application's own errors name its entry.
    let e = config
        .app_entries("app.queue")
        .next()
        .unwrap()
        .deserialize::<Http>();
    assert!(e.unwrap_err().to_string().contains("jobs"));
    // A kind in pg-rs's own namespace must be one of ours, and every kind is
    // namespace.name: typos of ours are caught, not kept for the app.
    for kind in ["pg.scopes", "pg-node", "pg_scope", "node"] {
        let e = Config::from_yaml(&format!("- name: x\n  kind: {kind}\n")).unwrap_err();
        assert!(e.to_string().contains(kind), "{kind}: {e}");
    }
    assert!(
        Config::from_yaml("- kind: app.http\n  listen: x\n").is_err(),
        "a name is needed"
    );
}

/// `${VAR}`, `${VAR:-default}` and `$$` in a file; an unset variable
/// without a default is an error naming it, and whole comment lines are
/// left alone.
#[test]
fn environment_variables_are_expanded() {
    let env = |name: &str| match name {
        "POD_IP" => Some("10.1.2.3".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    let text = r#"# listen on ${NOT_SET} is only a comment
- name: web
  kind: app.http
  cluster: "c$$1"
  listen: ${POD_IP}:${PORT:-4700}
- name: pg
  kind: pg.scope
  namespace: ${EMPTY:-app}
"#;
    let config = Config::from_yaml_with_env(text, env).unwrap();
    let web = &config.app[0].fields;
    assert_eq!(web["listen"], "10.1.2.3:4700");
    assert_eq!(web["cluster"], "c$1");
    assert_eq!(config.scopes[0].id, "app:pg");

    let e = Config::from_yaml_with_env("- name: ${MISSING}\n  kind: pg.scope\n", env).unwrap_err();
    assert!(e.to_string().contains("MISSING"), "{e}");
    assert!(e.to_string().contains("line 1"), "{e}");
    let e = Config::from_yaml_with_env("- name: ${OPEN\n", env).unwrap_err();
    assert!(e.to_string().contains("unterminated"), "{e}");
    assert_eq!(
        pg_api::expand_env("cost: $5 and ${EMPTY}.", env).unwrap(),
        "cost: $5 and ."
    );
}

/// Seeds are addresses or `host:port` names (resolved by the mesh);
/// anything else names the field.
#[test]
fn seeds_may_be_names() {
    let dir = std::env::temp_dir().join(format!("pg-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = pg_api::DevCa::generate("t").unwrap();
    let (cert, key) = ca.issue_pem("n").unwrap();
    std::fs::write(dir.join("ca.pem"), ca.certificate_pem()).unwrap();
    std::fs::write(dir.join("n.pem"), cert).unwrap();
    std::fs::write(dir.join("n.key"), key).unwrap();
    let node = |seeds: &str| {
        format!(
            "- name: n\n  kind: pg.node\n  listen: 127.0.0.1:0\n  seeds: {seeds}\n  dns_refresh: 5s\n  dns_servers: [127.0.0.1:53]\n  \
             tls: {{ ca: ca.pem, cert: n.pem, key: n.key }}\n"
        )
    };
    let path = dir.join("pg.yaml");
    std::fs::write(&path, node("[10.0.0.1:4700, \"pg-peers.prod.svc:4700\"]")).unwrap();
    let net = Config::from_file(&path).unwrap().node.unwrap().net.unwrap();
    assert_eq!(net.seeds, vec!["10.0.0.1:4700".parse().unwrap()]);
    assert_eq!(net.seed_names, vec!["pg-peers.prod.svc:4700".to_owned()]);
    assert_eq!(net.dns_refresh, std::time::Duration::from_secs(5));
    assert_eq!(net.dns_servers, vec!["127.0.0.1:53".parse().unwrap()]);
    for bad in ["[pg-peers]", "[\":4700\"]", "[\"host:port\"]"] {
        std::fs::write(&path, node(bad)).unwrap();
        let e = Config::from_file(&path).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("seeds"), "{bad}: {e}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
