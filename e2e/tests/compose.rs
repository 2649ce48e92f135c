//! docker-compose cannot run on the development machines (no Docker engine), so this
//! checks what can be checked without it: the file parses, names every service, gives
//! the three reftrack services healthchecks and start order, and only sets environment
//! variables that the services actually read.

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
