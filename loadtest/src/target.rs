//! The gateway under test: a remote one (`--target URL`) or one started in-process, and the
//! admin calls made outside the measured traffic (seeding users, forcing a peak window).
//!
//! # Layout
//! - [`EmbeddedOptions`]: options for the in-process gateway.
//! - [`Embedded`]: a gateway started in this process.
//! - [`resolve_gateway_config`]: resolves `--gateway-config`.
//! - [`merge_toml`]: merges `over` into `base`.
//! - [`set_dotted`]: sets a dotted key (`bureau.url`) in a TOML table.
//! - [`dotted_lines`]: the leaves of `table` as dotted TOML lines (`bureau.guard = false`), in …
//! - [`parse_setting`]: parses `KEY=VALUE` (`--gateway-set`).
//! - [`gateway_config`]: the gateway configuration with `overrides` merged over it.
//! - [`start_embedded`]: starts the gateway in-process on `127.0.0.1:0` with the memory store.
//! - [`seed_users`]: seeds every user through `PUT /admin/credit-lines/{user_id}`, over …

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;

use crate::Error;
use crate::client::{Conn, TargetAddr};
use crate::population::User;
use crate::scenario::WindowAction;

/// Options for the in-process gateway.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// A gateway configuration file (default: the gateway's default configuration).
    pub config_path: Option<PathBuf>,
    /// The caller API key it accepts.
    pub api_key: String,
    /// The admin token it accepts.
    pub admin_token: String,
    /// Settings merged over the configuration (file or default) before it is read, as TOML
    /// tables: `{bureau = {url = "http://..", guard = false}}`. Empty: none.
    pub overrides: toml::Table,
}

/// A gateway started in this process.
#[derive(Debug)]
pub struct Embedded {
    /// Where it listens.
    pub target: TargetAddr,
    inner: gateway::embedded::EmbeddedGateway,
}

impl Embedded {
    /// Stops it gracefully.
    pub async fn shutdown(self) {
        self.inner.shutdown().await;
    }
}

/// Resolves `--gateway-config`: a file path as given, or a shipped configuration by name
/// (`default`, `naive`: `gateway/config/NAME.toml` of this workspace).
pub fn resolve_gateway_config(arg: &std::path::Path) -> Result<PathBuf, Error> {
    if arg.is_file() {
        return Ok(arg.to_path_buf());
    }
    let shipped = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../gateway/config"))
        .join(arg)
        .with_extension("toml");
    if shipped.is_file() {
        Ok(shipped)
    } else {
        Err(Error::Embedded(format!(
            "gateway config {}: no such file, and no shipped configuration of that name",
            arg.display()
        )))
    }
}

/// The settings a scenario merges over an in-process gateway's configuration: its
/// `[gateway]` table, then the address of the bureau simulator it runs (`bureau_url`).
pub fn scenario_overrides(
    sc: &crate::scenario::Scenario,
    bureau_url: Option<String>,
) -> Result<toml::Table, Error> {
    let mut overrides = sc.gateway.clone().unwrap_or_default();
    if let Some(url) = bureau_url {
        set_dotted(&mut overrides, "bureau.url", url.into())?;
    }
    Ok(overrides)
}

/// Merges `over` into `base`: tables merge key by key (recursively), anything else replaces.
pub fn merge_toml(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_toml(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Sets `key` (dotted, e.g. `bureau.guard`) to `value` in `table`, making the tables on the
/// way. Fails when a part of the path is already something other than a table.
pub fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), Error> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.trim().is_empty()) {
        return Err(Error::Embedded(format!("setting {key:?}: empty key part")));
    }
    let (last, path) = parts.split_last().unwrap_or((&"", &[]));
    let mut t = table;
    for p in path {
        let entry = t
            .entry((*p).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = match entry {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(Error::Embedded(format!(
                    "setting {key:?}: {p} is not a table"
                )));
            }
        };
    }
    t.insert((*last).to_owned(), value);
    Ok(())
}

/// The leaves of `table` as dotted TOML lines (`bureau.guard = false`), in key order: the same
/// settings, one a line, readable in a report.
pub fn dotted_lines(table: &toml::Table) -> Vec<String> {
    fn walk(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(inner) => walk(&key, inner, out),
                other => out.push(format!("{key} = {other}")),
            }
        }
    }
    let mut out = Vec::new();
    walk("", table, &mut out);
    out
}

/// Parses `KEY=VALUE` (`--gateway-set`): VALUE is a TOML value (`false`, `150`, `"x"`,
/// `["D","E"]`); anything that does not parse as one is taken as a string.
pub fn parse_setting(arg: &str) -> Result<(String, toml::Value), Error> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| Error::Embedded(format!("setting {arg:?}: write KEY=VALUE")))?;
    let key = key.trim().to_owned();
    let value = value.trim();
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    Ok((key, parsed))
}

/// The gateway configuration with `overrides` merged over it: the file (or the defaults) as a
/// TOML table, the overrides on top, then read as a `Config` (unknown keys and bad values
/// are refused with their key).
pub fn gateway_config(
    path: Option<&std::path::Path>,
    overrides: &toml::Table,
) -> Result<gateway::config::Config, Error> {
    let base = match path {
        Some(p) => gateway::config::Config::from_file(p),
        None => Ok(gateway::config::Config::default()),
    }
    .map_err(|e| Error::Embedded(e.to_string()))?;
    let mut table = toml::Table::try_from(&base)
        .map_err(|e| Error::Embedded(format!("gateway config as TOML: {e}")))?;
    merge_toml(&mut table, overrides);
    let text = toml::to_string(&table)
        .map_err(|e| Error::Embedded(format!("gateway config as TOML: {e}")))?;
    let config = gateway::config::Config::from_toml(&text)
        .map_err(|e| Error::Embedded(format!("gateway config with overrides: {e}")))?;
    config
        .validate()
        .map_err(|e| Error::Embedded(format!("gateway config with overrides: {e}")))?;
    Ok(config)
}

/// Starts the gateway in-process on `127.0.0.1:0` with the memory store. The only place that
/// knows about the gateway crate.
pub async fn start_embedded(opts: &EmbeddedOptions) -> Result<Embedded, Error> {
    let config = if opts.overrides.is_empty() {
        None
    } else {
        Some(gateway_config(
            opts.config_path.as_deref(),
            &opts.overrides,
        )?)
    };
    let inner = gateway::embedded::start(gateway::embedded::EmbeddedOptions {
        config,
        config_path: opts.config_path.clone(),
        api_key: opts.api_key.clone(),
        admin_token: opts.admin_token.clone(),
        ..Default::default()
    })
    .await
    .map_err(|e| Error::Embedded(e.to_string()))?;
    Ok(Embedded {
        target: TargetAddr::from_addr(inner.addr),
        inner,
    })
}

const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

async fn admin_put(
    conn: &mut Conn,
    target: &TargetAddr,
    token: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(), String> {
    let req = Request::builder()
        .method(Method::PUT)
        .uri(path)
        .header(http::header::HOST, &target.authority)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = conn
        .send(req, ADMIN_TIMEOUT)
        .await
        .map_err(|e| format!("{e:?}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        let body = String::from_utf8_lossy(resp.body());
        Err(format!(
            "HTTP {}: {}",
            resp.status(),
            body.chars().take(300).collect::<String>()
        ))
    }
}

/// Seeds every user through `PUT /admin/credit-lines/{user_id}`, over `connections`
/// connections in parallel.
pub async fn seed_users(
    target: &TargetAddr,
    admin_token: &str,
    users: &[User],
    connections: usize,
) -> Result<(), Error> {
    let (tx, rx) = async_channel::unbounded::<User>();
    for u in users {
        // The channel is unbounded and its receiver is alive: sending cannot fail.
        let _ = tx.try_send(u.clone());
    }
    tx.close();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections.clamp(1, 32) {
        let rx = rx.clone();
        let target = target.clone();
        let token = admin_token.to_owned();
        tasks.spawn(async move {
            let mut conn = Conn::new(target.addr);
            while let Ok(u) = rx.recv().await {
                let body = serde_json::to_vec(&u.seed).map_err(|e| Error::Admin {
                    what: format!("seed {}", u.id),
                    problem: e.to_string(),
                })?;
                let path = format!("/admin/credit-lines/{}", u.id);
                admin_put(&mut conn, &target, &token, &path, body)
                    .await
                    .map_err(|problem| Error::Admin {
                        what: format!("PUT {path}"),
                        problem,
                    })?;
            }
            Ok::<_, Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| Error::Admin {
            what: "seed".into(),
            problem: e.to_string(),
        })??;
    }
    Ok(())
}

/// `PUT /admin/policy/force`.
pub async fn window_action(
    target: &TargetAddr,
    admin_token: &str,
    action: &WindowAction,
) -> Result<(), Error> {
    let body = match action {
        WindowAction::Force(name) => serde_json::json!({ "window": name }),
        WindowAction::Release => serde_json::json!({ "window": null }),
    };
    let mut conn = Conn::new(target.addr);
    admin_put(
        &mut conn,
        target,
        admin_token,
        "/admin/policy/force",
        body.to_string().into_bytes(),
    )
    .await
    .map_err(|problem| Error::Admin {
        what: format!("PUT /admin/policy/force {body}"),
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn gateway_config_is_a_file_or_a_shipped_name() {
        let manifest = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        assert_eq!(resolve_gateway_config(manifest).unwrap(), manifest);
        let err = resolve_gateway_config(Path::new("no-such-config")).unwrap_err();
        assert!(err.to_string().contains("no-such-config"), "{err}");
    }

    #[test]
    fn overrides_merge_over_the_gateway_config_and_bad_keys_are_named() {
        // Without overrides the round trip through TOML changes nothing.
        for name in ["default", "naive"] {
            let path = resolve_gateway_config(Path::new(name)).unwrap();
            let direct = gateway::config::Config::from_file(&path).unwrap();
            let merged = gateway_config(Some(&path), &toml::Table::new()).unwrap();
            assert_eq!(merged, direct, "{name}");
        }
        let mut over = toml::Table::new();
        let (k, v) = parse_setting("server.default_deadline_ms=900").unwrap();
        set_dotted(&mut over, &k, v).unwrap();
        let (k, v) = parse_setting("store=memory").unwrap();
        set_dotted(&mut over, &k, v).unwrap();
        let c = gateway_config(None, &over).unwrap();
        assert_eq!(
            c.server.default_deadline,
            std::time::Duration::from_millis(900)
        );
        // Keys beside the overridden one keep their values.
        assert_eq!(
            c.server.max_deadline,
            gateway::config::Config::default().server.max_deadline
        );

        let (k, v) = parse_setting("server.no_such_key=1").unwrap();
        set_dotted(&mut over, &k, v).unwrap();
        let err = gateway_config(None, &over).unwrap_err().to_string();
        assert!(err.contains("no_such_key"), "{err}");
        let mut over = toml::Table::new();
        set_dotted(
            &mut over,
            "server.default_deadline_ms",
            toml::Value::Integer(0),
        )
        .unwrap();
        let err = gateway_config(None, &over).unwrap_err().to_string();
        assert!(err.contains("default_deadline_ms"), "{err}");
        assert!(set_dotted(&mut over, "server.default_deadline_ms.x", 1.into()).is_err());
        assert!(parse_setting("no-equals").is_err());
        let mut t = toml::Table::new();
        set_dotted(&mut t, "bureau.breaker.open_ms", 500.into()).unwrap();
        set_dotted(&mut t, "bureau.guard", false.into()).unwrap();
        set_dotted(&mut t, "store", "memory".into()).unwrap();
        let lines = dotted_lines(&t);
        assert_eq!(
            lines,
            [
                "bureau.breaker.open_ms = 500",
                "bureau.guard = false",
                "store = \"memory\""
            ]
        );
        // Dotted lines are TOML for the same table.
        assert_eq!(lines.join("\n").parse::<toml::Table>().unwrap(), t);
        assert_eq!(
            parse_setting("a.b=[1, 2]").unwrap().1,
            toml::Value::Array(vec![1.into(), 2.into()])
        );
        assert_eq!(
            parse_setting("url=http://127.0.0.1:1").unwrap().1,
            toml::Value::String("http://127.0.0.1:1".into())
        );
    }

    const KEY: &str = "test-api-key-000001";
    const ADMIN: &str = "test-admin-token-000001";

    #[tokio::test]
    async fn the_embedded_gateway_starts_takes_seeds_and_stops() {
        let opts = EmbeddedOptions {
            config_path: None,
            api_key: KEY.into(),
            admin_token: ADMIN.into(),
            overrides: toml::Table::new(),
        };
        let g = start_embedded(&opts).await.unwrap();
        let sc = crate::scenario::Scenario::load("steady").unwrap();
        let users: Vec<User> = crate::population::build_users(&sc.population)
            .into_iter()
            .flatten()
            .take(20)
            .collect();
        seed_users(&g.target, ADMIN, &users, 4).await.unwrap();
        // The admin token is checked: a wrong one is refused.
        let err = seed_users(&g.target, "wrong", &users[..1], 1)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
        window_action(&g.target, ADMIN, &WindowAction::Force("double11".into()))
            .await
            .unwrap();
        window_action(&g.target, ADMIN, &WindowAction::Release)
            .await
            .unwrap();
        g.shutdown().await;
    }
}
