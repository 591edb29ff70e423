//! The Kubernetes manifests in `deploy/k8s` agree with the service: the
//! configuration in the ConfigMap loads for every pod (with the variables
//! the pod's environment defines, and certificates where the pod mounts
//! them), every replica has a certificate with its pod name as common
//! name and the `pg-node` DNS name, mounted where the configuration looks,
//! and the probes hit `/healthz` on the HTTP port. (Schema validation of
//! the Kubernetes kinds is `kubernetes-validate`'s, run by `.ci/run`.)

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn manifests(file: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/k8s")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    text.split("\n---\n")
        .filter(|doc| doc.lines().any(|l| l.starts_with("kind:")))
        .map(|doc| serde_saphyr::from_str::<Value>(doc).unwrap())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// `${NAME}` and `${NAME:-...}` names used in `text`.
fn variables(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .map(|rest| {
            let end = rest.find('}').unwrap();
            let name = &rest[..end];
            name.split(":-").next().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn the_manifests_agree_with_the_service() {
    let app = manifests("ws-fanout.yaml");
    let certs = manifests("certificates.yaml");
    let set = find(&app, "StatefulSet", "ws-fanout");
    let pod = &set["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let replicas = set["spec"]["replicas"].as_u64().unwrap();
    let config = find(&app, "ConfigMap", "ws-fanout-config")["data"]["config.yaml"]
        .as_str()
        .unwrap()
        .to_owned();

    // Every variable the configuration uses is in the pod's environment.
    let env: BTreeSet<String> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    for var in variables(&config) {
        assert!(env.contains(&var), "${{{var}}} is not in the pod's env");
    }

    // The seed is the headless Service, which publishes pods before they
    // are ready (peers must meet to become ready).
    let peers = find(&app, "Service", "ws-fanout-peers");
    assert_eq!(set["spec"]["serviceName"], "ws-fanout-peers");
    assert_eq!(peers["spec"]["clusterIP"], "None");
    assert_eq!(peers["spec"]["publishNotReadyAddresses"], true);
    assert!(config.contains("ws-fanout-peers.${POD_NAMESPACE}.svc.cluster.local.:4700"));

    // Probes: /healthz on the HTTP port.
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "http", "{probe}");
    }

    // One certificate per replica, named for its pod, mounted under its
    // pod name.
    let mounted: BTreeSet<String> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| {
            v["projected"]["sources"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|s| s["secret"]["name"].as_str().unwrap().to_owned())
        .collect();
    let dir = std::env::temp_dir().join(format!("ws-fanout-deploy-{}", std::process::id()));
    let ca = pg_api::DevCa::generate("k8s").unwrap();
    for i in 0..replicas {
        let pod_name = format!("ws-fanout-{i}");
        let cert = find(&certs, "Certificate", &pod_name);
        assert_eq!(cert["spec"]["commonName"], pod_name.as_str());
        assert!(
            cert["spec"]["dnsNames"]
                .as_array()
                .unwrap()
                .contains(&"pg-node".into())
        );
        let usages = cert["spec"]["usages"].as_array().unwrap();
        for usage in ["server auth", "client auth"] {
            assert!(usages.contains(&usage.into()), "{pod_name}: {usage}");
        }
        let secret = cert["spec"]["secretName"].as_str().unwrap();
        assert!(mounted.contains(secret), "{secret} is not mounted");

        // The configuration loads for this pod, with its certificate where
        // the projected volume puts it.
        let tls = dir.join(&pod_name);
        std::fs::create_dir_all(&tls).unwrap();
        let (pem, key) = ca.issue_pem(&pod_name).unwrap();
        std::fs::write(tls.join("ca.crt"), ca.certificate_pem()).unwrap();
        std::fs::write(tls.join("tls.crt"), pem).unwrap();
        std::fs::write(tls.join("tls.key"), key).unwrap();
        let text = config.replace("/etc/ws-fanout/tls", dir.to_str().unwrap());
        let loaded = pg_api::Config::from_yaml_with_env(&text, |var| match var {
            "POD_NAME" => Some(pod_name.clone()),
            "POD_IP" => Some(format!("10.0.0.{}", i + 10)),
            "POD_NAMESPACE" => Some("prod".to_owned()),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("{pod_name}: {e}"));
        let node = loaded.node.clone().unwrap();
        assert_eq!(node.name, pod_name);
        let net = node.net.unwrap();
        assert_eq!(
            net.seed_names,
            vec!["ws-fanout-peers.prod.svc.cluster.local.:4700".to_owned()]
        );
        assert_eq!(
            net.advertise.unwrap().to_string(),
            format!("10.0.0.{}:4700", i + 10)
        );
        let http = loaded.app_entries("ws-fanout.http").next().unwrap();
        assert_eq!(http.fields["listen"], "0.0.0.0:8080");
    }
    let _ = std::fs::remove_dir_all(PathBuf::from(&dir));
}
