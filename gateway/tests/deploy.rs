//! `docker-compose.yml` and what it mounts, checked without Docker: the services are there,
//! Redis keeps an append-only file, the gateway is built by a multi-stage Dockerfile and
//! configured for Redis (its configuration validates), Prometheus scrapes the gateway's
//! `/metrics`, Grafana provisions a dashboard whose every metric is one the gateway exports.
#![allow(clippy::unwrap_used)]

use gateway::config::{Config, Overrides};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn compose() -> Value {
    yaml(&root().join("docker-compose.yml"))
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().unwrap().to_owned())
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        other => panic!("not a list of strings: {other}"),
    }
}

/// The host side of each `./path:/container/path[:ro]` volume, checked to exist.
fn mounts(service: &Value) -> Vec<(PathBuf, String)> {
    strings(&service["volumes"])
        .into_iter()
        .filter(|v| v.starts_with("./"))
        .map(|v| {
            let mut parts = v.splitn(3, ':');
            let host = root().join(parts.next().unwrap());
            assert!(host.exists(), "{host:?} is mounted but missing");
            (host, parts.next().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn compose_has_redis_with_aof_and_the_gateway_on_redis() {
    let c = compose();
    let services = c["services"].as_object().unwrap();
    for s in ["redis", "gateway", "prometheus", "grafana"] {
        assert!(services.contains_key(s), "service {s}");
    }
    let redis = strings(&c["services"]["redis"]["command"]);
    let aof = redis.iter().position(|a| a == "--appendonly").unwrap();
    assert_eq!(redis[aof + 1], "yes");
    assert!(
        strings(&c["services"]["redis"]["volumes"])
            .iter()
            .any(|v| v.ends_with(":/data")),
        "the AOF lives on a volume"
    );

    let gw = &c["services"]["gateway"];
    let store = gw["environment"]["GATEWAY_STORE"].as_str().unwrap();
    assert!(store.starts_with("redis://redis:"), "{store}");
    assert_eq!(
        gw["depends_on"]["redis"]["condition"], "service_healthy",
        "the gateway starts once Redis answers"
    );
    assert!(strings(&gw["ports"]).iter().any(|p| p.ends_with(":8080")));

    // The configuration the image carries validates, with the compose environment applied.
    let config_in_image = gw["environment"]["GATEWAY_CONFIG"].as_str().unwrap();
    let dockerfile = root().join(gw["build"]["dockerfile"].as_str().unwrap());
    let docker = std::fs::read_to_string(&dockerfile).unwrap();
    let copied = docker
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("COPY gateway/config/")?;
            let (file, dest) = rest.split_once(' ')?;
            (dest == config_in_image).then(|| root().join("gateway/config").join(file))
        })
        .expect("the Dockerfile copies the configuration GATEWAY_CONFIG names");
    let mut config = Config::from_file(&copied).unwrap();
    config
        .apply(Overrides {
            store: Some(store.to_owned()),
            ..Overrides::default()
        })
        .unwrap();
    config.validate().unwrap();
    assert!(config.redis_config().is_some());
    assert_eq!(config.listen.port(), 8080);
    assert!(
        config.listen.ip().is_unspecified(),
        "reachable from other containers"
    );
}

#[test]
fn the_gateway_image_is_built_in_stages() {
    let c = compose();
    let build = &c["services"]["gateway"]["build"];
    assert_eq!(build["context"], ".", "the workspace is the build context");
    let docker =
        std::fs::read_to_string(root().join(build["dockerfile"].as_str().unwrap())).unwrap();
    let stages: Vec<&str> = docker.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(stages.len() >= 2, "{stages:?}");
    assert!(stages[0].contains(" AS builder"), "{stages:?}");
    assert!(docker.contains("cargo build --release --locked -p gateway"));
    assert!(docker.contains("COPY --from=builder"));
    assert!(docker.contains("EXPOSE 8080"));
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l == "target"),
        "no target/ in the context"
    );
}

#[test]
fn prometheus_scrapes_the_gateway() {
    let c = compose();
    let m = mounts(&c["services"]["prometheus"]);
    let (file, _) = m
        .iter()
        .find(|(_, dest)| dest == "/etc/prometheus/prometheus.yml")
        .unwrap();
    let p = yaml(file);
    let jobs = p["scrape_configs"].as_array().unwrap();
    let job = jobs
        .iter()
        .find(|j| j["job_name"] == "loan-gateway")
        .unwrap();
    assert_eq!(job["metrics_path"], "/metrics");
    assert_eq!(
        strings(&job["static_configs"][0]["targets"]),
        ["gateway:8080"]
    );
}

/// Every `gateway_*` series of the dashboard, from a real scrape of a gateway's `/metrics`.
async fn exported() -> BTreeSet<String> {
    // The optional parts on, so their series exist: a credit bureau (unreachable, so calls
    // fail and fallbacks are counted) and the connection-level overload actions.
    let mut config = gateway::config::Config::default();
    config.bureau.url = Some("http://127.0.0.1:9/".to_owned());
    config.server.overload.enabled = true;
    let gw = gateway::embedded::start(gateway::embedded::EmbeddedOptions {
        config: Some(config),
        ..Default::default()
    })
    .await
    .unwrap();
    // Labelled series appear once used: an unauthenticated call (a refusal), a drawdown (here
    // a review: the bureau is unreachable), a rejection with reasons, and a store outage (a
    // store error).
    let client = reqwest::Client::new();
    let base = gw.base_url();
    let drawdown = async |key: &str, user: &str| {
        client
            .post(format!("{base}/v1/drawdowns"))
            .bearer_auth(gateway::DEMO_API_KEY)
            .header("Idempotency-Key", key)
            .json(&serde_json::json!({"user_id": user, "amount_fen": 10_000, "channel": "app"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let anonymous = client
        .get(format!("{base}/v1/credit-lines/u-demo-a"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    assert_eq!(drawdown("d-1", "u-demo-a").await, 200);
    assert_eq!(drawdown("d-2", "u-demo-e").await, 200);
    let gateway::store::AnyStore::Memory(memory) = &gw.app.store else {
        panic!("the default gateway runs on the memory store")
    };
    memory.faults().set_unavailable(true);
    assert_eq!(drawdown("d-3", "u-demo-a").await, 503);
    let text = reqwest::get(format!("{}/metrics", gw.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    gw.shutdown().await;
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

#[tokio::test]
async fn grafana_provisions_a_dashboard_of_exported_metrics() {
    let c = compose();
    let m = mounts(&c["services"]["grafana"]);
    let provisioning = &m
        .iter()
        .find(|(_, d)| d == "/etc/grafana/provisioning")
        .unwrap()
        .0;
    let ds = yaml(&provisioning.join("datasources/prometheus.yml"));
    let ds = &ds["datasources"][0];
    assert_eq!(ds["type"], "prometheus");
    assert_eq!(ds["url"], "http://prometheus:9090");
    let uid = ds["uid"].as_str().unwrap();

    let providers = yaml(&provisioning.join("dashboards/loan-gateway.yml"));
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let (dashboards, _) = m.iter().find(|(_, d)| d == path).unwrap();
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(dashboards.join("loan-gateway.json")).unwrap(),
    )
    .unwrap();

    let panels = dash["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for want in [
        "Refusals by code",
        "Risk outcomes",
        "Risk reasons",
        "Admission queue and limit",
        "Latency percentiles",
        "Active policy",
    ] {
        assert!(titles.contains(&want), "panel {want:?} in {titles:?}");
    }

    let exported = exported().await;
    let mut used = BTreeSet::new();
    for p in panels {
        assert_eq!(p["datasource"]["uid"], uid, "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("gateway_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                assert!(
                    exported.contains(&name),
                    "{}: {name} is not exported ({exported:?})",
                    p["title"]
                );
                used.insert(name);
            }
        }
    }
    for must in [
        "gateway_refusals_total",
        "gateway_risk_reasons_total",
        "gateway_admission_limit",
        "gateway_admission_queued",
        "gateway_http_request_duration_seconds_bucket",
        "gateway_policy_active",
        "gateway_bureau_fallbacks_total",
        "gateway_bureau_breaker_state",
        "gateway_admission_no_load_latency_seconds",
        "gateway_overload_active",
        "gateway_global_limit_mode",
    ] {
        assert!(used.contains(must), "{must} on the dashboard");
    }
}

/// The services of `profile` in the compose file.
fn in_profile<'a>(services: &'a serde_json::Map<String, Value>, profile: &str) -> Vec<&'a str> {
    services
        .iter()
        .filter(|(_, s)| {
            !s["profiles"].is_null() && strings(&s["profiles"]).iter().any(|p| p == profile)
        })
        .map(|(name, _)| name.as_str())
        .collect()
}

/// The names of `names` that start with `prefix`.
fn starting<'a>(names: &[&'a str], prefix: &str) -> Vec<&'a str> {
    names
        .iter()
        .copied()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// The value after `flag` in a command line.
fn flag(cmd: &[String], flag: &str) -> String {
    let at = cmd
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} in {cmd:?}"));
    cmd[at + 1].clone()
}

/// The gateway configuration `path` names in the image (the Dockerfile copies it there),
/// validated.
fn image_config(path: &str) -> Config {
    let dockerfile = std::fs::read_to_string(root().join("gateway/Dockerfile")).unwrap();
    let file = dockerfile
        .lines()
        .find_map(|l| {
            let (file, dest) = l.strip_prefix("COPY gateway/config/")?.split_once(' ')?;
            (dest == path).then(|| root().join("gateway/config").join(file))
        })
        .unwrap_or_else(|| panic!("the Dockerfile copies {path}"));
    let config = Config::from_file(&file).unwrap();
    config.validate().unwrap();
    config
}

/// The HAProxy service mounts a configuration that health-checks `/readyz` on every one of
/// `hosts` (port 8080).
fn haproxy_checks(haproxy: &Value, hosts: &[&str]) {
    let m = mounts(haproxy);
    let (cfg, _) = m
        .iter()
        .find(|(_, dest)| dest.ends_with("haproxy.cfg"))
        .unwrap();
    let cfg = std::fs::read_to_string(cfg).unwrap();
    assert!(cfg.contains("option httpchk GET /readyz"), "{cfg}");
    for h in hosts {
        assert!(
            cfg.lines().any(|l| l.trim_start().starts_with("server ")
                && l.contains(&format!(" {h}:8080"))
                && l.contains(" check")),
            "{h} is health-checked"
        );
    }
}

#[test]
fn the_fleet_profile_is_a_replicated_cluster_three_gateways_and_haproxy() {
    let c = compose();
    let services = c["services"].as_object().unwrap();
    let fleet = in_profile(services, "fleet");
    let nodes: Vec<&str> = starting(&fleet, "redis-")
        .into_iter()
        .filter(|k| *k != "redis-cluster-init")
        .collect();
    assert_eq!(nodes.len(), 6, "three primaries and three replicas");
    for n in &nodes {
        let cmd = strings(&services[*n]["command"]);
        assert_eq!(flag(&cmd, "--cluster-enabled"), "yes", "{n}");
        let timeout: u64 = flag(&cmd, "--cluster-node-timeout").parse().unwrap();
        assert!(
            timeout <= 2000,
            "{n}: failover within seconds, not {timeout} ms"
        );
    }
    assert!(fleet.contains(&"redis-cluster-init"));
    let init = strings(&services["redis-cluster-init"]["command"]).join(" ");
    assert!(init.contains("--cluster-replicas 1"), "{init}");
    for n in &nodes {
        assert!(init.contains(n), "{n} joins the cluster: {init}");
    }

    let gateways = starting(&fleet, "gateway-");
    assert_eq!(gateways.len(), 3);
    for g in &gateways {
        let config = image_config(
            services[*g]["environment"]["GATEWAY_CONFIG"]
                .as_str()
                .unwrap(),
        );
        let redis = config.redis_config().unwrap();
        assert!(redis.cluster);
        assert_eq!(redis.seeds().len(), 6, "every node is a seed");
        for n in &nodes {
            assert!(
                redis.seeds().iter().any(|s| s.contains(&format!("//{n}:"))),
                "{n} is a seed"
            );
        }
        assert!(redis.shared_global_limit);
        assert_eq!(
            usize::try_from(redis.global_limit_instances).unwrap(),
            gateways.len()
        );
    }

    assert!(fleet.contains(&"haproxy"));
    haproxy_checks(&services["haproxy"], &gateways);
}

#[test]
fn the_fleet_sentinel_profile_is_a_primary_a_replica_three_sentinels_three_gateways_and_haproxy() {
    let c = compose();
    let services = c["services"].as_object().unwrap();
    let fleet = in_profile(services, "fleet-sentinel");
    let has = |name: &str| assert!(fleet.contains(&name), "{name} in {fleet:?}");
    has("redis-primary");
    has("redis-replica");
    // Every service of the profile is on its own network, so the names HAProxy's
    // configuration uses (gateway-N) are this profile's gateways, not the `fleet` one's.
    for s in &fleet {
        assert!(
            !services[*s]["networks"]["fleet-sentinel"].is_null()
                || strings(&services[*s]["networks"]).contains(&"fleet-sentinel".into()),
            "{s} is on the fleet-sentinel network"
        );
    }
    for n in ["redis-primary", "redis-replica"] {
        let cmd = strings(&services[n]["command"]);
        assert_eq!(flag(&cmd, "--appendonly"), "yes", "{n}");
        // Sentinels name the nodes by host name, so each announces its own.
        assert_eq!(flag(&cmd, "--replica-announce-ip"), n);
    }
    let replica = strings(&services["redis-replica"]["command"]);
    assert_eq!(flag(&replica, "--replicaof"), "redis-primary");

    let sentinels: Vec<&str> = starting(&fleet, "sentinel-")
        .into_iter()
        .filter(|k| k["sentinel-".len()..].parse::<u8>().is_ok())
        .collect();
    assert_eq!(sentinels.len(), 3, "{fleet:?}");
    let mut master = None;
    for s in &sentinels {
        let svc = &services[*s];
        assert!(
            strings(&svc["command"]).join(" ").contains("--sentinel"),
            "{s}"
        );
        let m = mounts(svc);
        let (conf, dest) = &m[0];
        assert!(
            strings(&svc["command"]).join(" ").contains(dest.as_str()),
            "{s} starts from {dest}"
        );
        let conf = std::fs::read_to_string(conf).unwrap();
        let line = |key: &str| -> Vec<String> {
            conf.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("{key} in {conf}"))
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(line("port "), ["26379"]);
        assert_eq!(line("sentinel resolve-hostnames "), ["yes"]);
        let monitor = line("sentinel monitor ");
        assert_eq!(
            monitor[1..],
            ["redis-primary", "6379", "2"],
            "a quorum of 2 of 3"
        );
        let down = line("sentinel down-after-milliseconds ");
        assert_eq!(down[0], monitor[0]);
        let down: u64 = down[1].parse().unwrap();
        assert!(down <= 2000, "failover within seconds, not {down} ms");
        master = Some(monitor[0].clone());
    }
    let master = master.unwrap();

    let gateways = starting(&fleet, "sentinel-gateway-");
    assert_eq!(gateways.len(), 3);
    let mut aliases = Vec::new();
    for g in &gateways {
        let gw = &services[*g];
        let config = image_config(gw["environment"]["GATEWAY_CONFIG"].as_str().unwrap());
        let redis = config.redis_config().unwrap();
        assert!(redis.is_sentinel() && !redis.cluster);
        assert_eq!(redis.sentinel_master.as_deref(), Some(master.as_str()));
        for s in &sentinels {
            assert!(
                redis
                    .sentinels
                    .iter()
                    .any(|u| u == &format!("redis://{s}:26379")),
                "{s} is one of {:?}",
                redis.sentinels
            );
        }
        assert!(redis.shared_global_limit);
        assert_eq!(
            usize::try_from(redis.global_limit_instances).unwrap(),
            gateways.len()
        );
        for dep in &sentinels {
            assert_eq!(
                gw["depends_on"][*dep]["condition"], "service_healthy",
                "{g}"
            );
        }
        aliases.extend(strings(&gw["networks"]["fleet-sentinel"]["aliases"]));
    }
    aliases.sort();
    assert_eq!(aliases, ["gateway-1", "gateway-2", "gateway-3"]);

    has("sentinel-haproxy");
    let names: Vec<&str> = aliases.iter().map(String::as_str).collect();
    haproxy_checks(&services["sentinel-haproxy"], &names);
}
