//! docker-compose cannot run on the development machines (no Docker engine), so this
//! checks what can be checked without it: the file parses, names every service, gives
//! the three reftrack services healthchecks and start order, only sets environment
//! variables that the services actually read, requires the secrets, keeps the ops
//! endpoints off the published ports, keeps state on volumes (with the Dockerfile giving
//! the spill folder to the service user), and runs current images.

use std::collections::BTreeSet;

use clap::CommandFactory;
use yaml_rust2::{Yaml, YamlLoader};

fn compose() -> Yaml {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml");
    let text = std::fs::read_to_string(path).expect("docker-compose.yml is readable");
    YamlLoader::load_from_str(&text)
        .expect("docker-compose.yml parses")
        .remove(0)
}

/// Resolves YAML merge keys (`<<: *anchor`), which YAML 1.2 parsers leave as plain keys.
fn merged(node: &Yaml) -> Vec<(String, Yaml)> {
    let mut out = Vec::new();
    if let Yaml::Hash(hash) = node {
        match hash.get(&Yaml::String("<<".into())) {
            Some(Yaml::Array(bases)) => bases.iter().for_each(|b| out.extend(merged(b))),
            Some(base) => out.extend(merged(base)),
            None => {}
        }
        for (k, v) in hash {
            if let Yaml::String(k) = k
                && k != "<<"
            {
                out.retain(|(key, _)| key != k);
                out.push((k.clone(), v.clone()));
            }
        }
    }
    out
}

fn field(node: &Yaml, name: &str) -> Yaml {
    merged(node)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or(Yaml::BadValue)
}

fn declared_env(command: &clap::Command) -> BTreeSet<String> {
    command
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn compose_names_every_service_with_healthchecks_and_start_order() {
    let doc = compose();
    let services = &doc["services"];
    let names: BTreeSet<String> = services
        .as_hash()
        .expect("services is a map")
        .keys()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    let expected: BTreeSet<String> = [
        "alertmanager",
        "postgres",
        "redis",
        "clickhouse",
        "kafka",
        "prometheus",
        "grafana",
        "ingest",
        "aggregator",
        "api",
    ]
    .map(String::from)
    .into();
    assert_eq!(names, expected);

    for name in &names {
        let service = &services[name.as_str()];
        assert!(
            !field(service, "healthcheck").is_badvalue(),
            "{name} has a healthcheck"
        );
    }
    let stores_used = [
        ("ingest", &["postgres", "kafka"][..]),
        ("aggregator", &["postgres", "clickhouse", "kafka"][..]),
        ("api", &["postgres", "redis", "clickhouse"][..]),
    ];
    for (name, stores) in stores_used {
        let service = &services[name];
        assert_eq!(
            field(service, "command")[0].as_str(),
            Some(name),
            "{name} runs its own binary"
        );
        assert!(
            field(service, "build").as_str().is_some(),
            "{name} is built from the Dockerfile"
        );
        let depends = field(service, "depends_on");
        for store in stores {
            assert_eq!(
                depends[*store]["condition"].as_str(),
                Some("service_healthy"),
                "{name} waits for {store}"
            );
        }
    }
}

#[test]
fn compose_sets_only_variables_the_services_read() {
    let doc = compose();
    let services = &doc["services"];
    let declared = [
        ("ingest", declared_env(&ingest::Config::command())),
        ("aggregator", declared_env(&aggregator::Config::command())),
        ("api", declared_env(&api::Config::command())),
    ];
    for (name, vars) in declared {
        let env = field(&services[name], "environment");
        let set: Vec<String> = merged(&env).into_iter().map(|(k, _)| k).collect();
        assert!(!set.is_empty(), "{name} has an environment");
        for var in set {
            assert!(
                vars.contains(&var),
                "{name} does not read {var}; it reads {vars:?}"
            );
        }
    }
}

#[test]
fn every_service_configuration_is_well_formed() {
    // clap's own consistency checks (unique argument ids across flattened groups, ...).
    ingest::Config::command().debug_assert();
    aggregator::Config::command().debug_assert();
    api::Config::command().debug_assert();
}

fn env_value(service: &Yaml, var: &str) -> Option<String> {
    merged(&field(service, "environment"))
        .into_iter()
        .find(|(k, _)| k == var)
        .and_then(|(_, v)| match v {
            Yaml::String(s) => Some(s),
            Yaml::Integer(i) => Some(i.to_string()),
            _ => None,
        })
}

fn strings(node: &Yaml) -> Vec<String> {
    node.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn secrets_are_required_and_never_defaulted() {
    let doc = compose();
    for (service, var) in [
        ("api", "JWT_SIGNING_KEY"),
        ("ingest", "VISITOR_HASH_SECRET"),
    ] {
        let value = env_value(&doc["services"][service], var).unwrap_or_default();
        assert!(
            value.starts_with(&format!("${{{var}:?")),
            "{service}'s {var} must be required (${{{var}:?message}}), not defaulted: {value}"
        );
    }
}

#[test]
fn ops_endpoints_are_on_their_own_unpublished_port() {
    let doc = compose();
    let services = &doc["services"];
    let prometheus = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus/prometheus.compose.yml"
    ))
    .unwrap();
    for name in ["ingest", "aggregator", "api"] {
        let service = &services[name];
        let ops = env_value(service, "OPS_ADDR").expect("OPS_ADDR is set");
        let port = ops.rsplit(':').next().unwrap();
        let check = strings(&field(service, "healthcheck")["test"]).join(" ");
        assert!(
            check.contains(&format!(":{port}/readyz")),
            "{name}'s healthcheck asks the ops port: {check}"
        );
        assert!(
            prometheus.contains(&format!("\"{name}:{port}\"")),
            "Prometheus scrapes {name}'s ops port"
        );
        for published in strings(&field(service, "ports")) {
            assert!(
                !published.ends_with(&format!(":{port}")),
                "{name} publishes its ops port"
            );
        }
    }
}

#[test]
fn state_lives_on_volumes_with_the_right_owner() {
    let doc = compose();
    let services = &doc["services"];
    let kafka = &services["kafka"];
    let log_dirs = env_value(kafka, "KAFKA_LOG_DIRS").expect("KAFKA_LOG_DIRS is set");
    let mounts = strings(&field(kafka, "volumes"));
    assert!(
        mounts.iter().any(|m| m
            .split(':')
            .nth(1)
            .is_some_and(|target| log_dirs.starts_with(target))),
        "Kafka's log ({log_dirs}) is on its volume: {mounts:?}"
    );
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Dockerfile")).unwrap();
    let spill = strings(&field(&services["ingest"], "volumes"))
        .iter()
        .find(|m| m.starts_with("spill:"))
        .map(|m| m.split(':').nth(1).unwrap().to_string())
        .expect("ingest's spill folder is a volume");
    assert!(
        dockerfile.contains(&format!("-o reftrack -g reftrack -m 0750 {spill}")),
        "the image makes {spill} the service user's, so the volume is writable"
    );
    assert!(
        dockerfile.contains(&format!("SPILL_DIR={spill}")),
        "ingest spills where the volume is"
    );
}

#[test]
fn start_order_and_defaults_fit_a_real_deployment() {
    let doc = compose();
    let services = &doc["services"];
    let depends: Vec<String> = merged(&field(&services["ingest"], "depends_on"))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(
        !depends.contains(&"api".to_string()),
        "ingest redirects without the api: {depends:?}"
    );
    let landing = env_value(&services["ingest"], "LANDING_URL").unwrap_or_default();
    let grafana_port = strings(&field(&services["grafana"], "ports"))[0]
        .split(':')
        .next()
        .unwrap()
        .to_string();
    assert!(
        !landing.contains(&format!(":{grafana_port}/")),
        "links must not land on Grafana: {landing}"
    );
    let default_landing = ingest::Config::command()
        .get_arguments()
        .find(|a| a.get_id() == "landing_url")
        .and_then(|a| {
            a.get_default_values()
                .first()
                .map(|v| v.to_string_lossy().into_owned())
        })
        .unwrap();
    assert!(
        !default_landing.contains(":3000/"),
        "the built-in landing URL is not Grafana's port"
    );
}

#[test]
fn images_are_pinned_to_current_releases() {
    let doc = compose();
    // The oldest release each image may name: the current major lines at the time of writing.
    let minimum = [
        ("postgres", vec![17]),
        ("redis", vec![8]),
        ("clickhouse", vec![25]),
        ("kafka", vec![4]),
        ("prometheus", vec![3]),
        ("alertmanager", vec![0, 28]),
        ("grafana", vec![12]),
    ];
    for (name, least) in minimum {
        let image = field(&doc["services"][name], "image")
            .as_str()
            .unwrap()
            .to_string();
        let tag = image.rsplit(':').next().unwrap().trim_start_matches('v');
        let version: Vec<u32> = tag.split('.').map(|p| p.parse().unwrap_or(0)).collect();
        assert!(version.len() >= 2, "{name} pins a minor release: {image}");
        assert!(version >= least, "{name} runs a current release: {image}");
    }
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Dockerfile")).unwrap();
    assert!(
        !dockerfile.contains("bookworm"),
        "the image builds on the current Debian"
    );
}
