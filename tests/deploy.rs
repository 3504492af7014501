//! The deployment files work as shipped: `deploy/kubernetes.yaml` and `deploy/compose.yaml` are
//! parsed (YAML through Python's PyYAML, which .ci/run installs), their structure checked
//! (replicas, catalog, admin port, HTTP probes, the token from a Secret), and the configuration
//! they give each viewgate replica — the ConfigMap's file plus the container's environment, with
//! Secret references resolved — is loaded by viewgate's own `Config::load`, so an unknown or
//! malformed key fails here rather than in a rollout.

use std::process::Command;

use serde_json::Value;
use viewgate::config::{Config, Overrides};

/// The documents of a YAML file, as JSON.
fn yaml(path: &str) -> Vec<Value> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
            path,
        ])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{path} does not parse: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn port_of(address: &str) -> u64 {
    address.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn the_kubernetes_manifest_gives_each_replica_a_catalog_an_admin_port_and_probes() {
    let documents = yaml("deploy/kubernetes.yaml");
    let kind = |kind: &str| {
        documents
            .iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let deployment = kind("Deployment");
    let secret = kind("Secret");
    let config_map = kind("ConfigMap");
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];

    // The environment, with Secret references resolved from the Secret in the file.
    let mut env = Vec::new();
    for variable in container["env"].as_array().unwrap() {
        let name = variable["name"].as_str().unwrap().to_owned();
        let value = match variable["valueFrom"]["secretKeyRef"].as_object() {
            Some(reference) => {
                assert_eq!(reference["name"], secret["metadata"]["name"], "{name}");
                let key = reference["key"].as_str().unwrap();
                secret["stringData"][key]
                    .as_str()
                    .unwrap_or_else(|| panic!("the Secret has no {key}"))
                    .to_owned()
            }
            None => variable["value"].as_str().unwrap().to_owned(),
        };
        env.push((name, value));
    }
    assert!(
        env.iter().any(|(name, _)| name == "VIEWGATE_ADMIN_TOKEN")
            && container["env"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["name"] == "VIEWGATE_ADMIN_TOKEN"
                    && v["valueFrom"]["secretKeyRef"].is_object()),
        "the token comes from a Secret"
    );

    // The config file as mounted, loaded with that environment.
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let config_path = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    let file_name = config_path.strip_prefix(&format!("{mount}/")).unwrap();
    let toml = config_map["data"][file_name].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(file_name);
    std::fs::write(&file, toml).unwrap();
    let config = Config::load(Some(&file), env, &Overrides::default()).unwrap();
    assert!(config.catalog.is_some(), "a catalog");
    assert!(config.admin_token.is_some(), "a token");
    let admin = config.admin_listen.as_deref().expect("an admin address");
    assert!(
        !admin.starts_with("127."),
        "probes reach the admin port from outside the pod"
    );

    // Ports and probes.
    let port_named = |name: &str| {
        container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name} port"))["containerPort"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(port_named("admin"), port_of(admin));
    assert_eq!(port_named("postgres"), port_of(&config.listen));
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], "admin", "{probe}");
    }
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > config.shutdown_timeout.as_secs(),
        "SIGTERM can drain"
    );
    let service = kind("Service");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "postgres");
}

#[test]
fn the_compose_file_runs_postgres_the_demo_spec_and_two_replicas() {
    let documents = yaml("deploy/compose.yaml");
    let services = documents[0]["services"].as_object().unwrap();
    assert!(services.contains_key("postgres"));
    let replicas: Vec<(&String, &Value)> = services
        .iter()
        .filter(|(_, s)| s["command"][0] == "serve")
        .collect();
    assert_eq!(replicas.len(), 2, "two viewgate replicas");
    let mut host_ports = Vec::new();
    for (name, service) in &replicas {
        let env: Vec<(String, String)> = service["environment"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                // Compose's `${NAME:-default}` as compose resolves it without NAME set.
                let value = v.as_str().unwrap();
                let value = match value.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                    Some(inner) => inner.split_once(":-").map_or("", |(_, d)| d).to_owned(),
                    None => value.to_owned(),
                };
                (k.clone(), value)
            })
            .collect();
        let config = Config::load(None, env, &Overrides::default())
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert!(config.catalog.is_some(), "{name}: a catalog");
        assert!(config.admin_token.is_some(), "{name}: a token");
        let admin = config.admin_listen.as_deref().expect("an admin address");
        for port in service["ports"].as_array().unwrap() {
            let (host, container) = port.as_str().unwrap().split_once(':').unwrap();
            assert!(
                [port_of(admin), port_of(&config.listen)].contains(&container.parse().unwrap()),
                "{name}: {port}"
            );
            host_ports.push(host.to_owned());
        }
        let ready = &service["depends_on"]["default-version"]["condition"];
        assert_eq!(ready, "service_completed_successfully", "{name}");
    }
    let mut unique = host_ports.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), host_ports.len(), "no host port twice");

    // The demo spec is applied from the repository's example, mounted where the command reads it.
    let views = &services["views"];
    let command: Vec<&str> = views["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(&command[..2], ["views", "apply"]);
    let spec = command[command.iter().position(|a| *a == "--spec").unwrap() + 1];
    let (source, target) = views["volumes"][0]
        .as_str()
        .unwrap()
        .trim_end_matches(":ro")
        .split_once(':')
        .unwrap();
    let local = std::path::Path::new("deploy")
        .join(source)
        .join(spec.strip_prefix(&format!("{target}/")).unwrap());
    assert!(local.exists(), "{} exists", local.display());
    let schema = &services["schema"]["command"];
    assert!(schema.to_string().contains("schema.sql"), "{schema}");
}
