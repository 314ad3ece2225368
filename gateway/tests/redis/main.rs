//! The gateway on Redis, end to end: each test starts its own `redis-server` and a gateway
//! configured with `store = "redis://…"`, then stops and restarts Redis under it.
#![allow(clippy::unwrap_used)]

#[path = "../support/redis_server.rs"]
mod redis_server;

use gateway::clock::ManualClock;
use gateway::config::Config;
use gateway::embedded::{EmbeddedGateway, EmbeddedOptions, start};
use gateway::policy::LimitsPatch;
use gateway::store::{AnyStore, RedisStore};
use redis_server::{Options, RedisServer};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const KEY: &str = "test-caller-key-000001";
const ADMIN: &str = "test-admin-token-00001";

struct Gw {
    gw: EmbeddedGateway,
    client: Client,
    /// The gateway's clock (it stands at noon until moved).
    clock: ManualClock,
}

/// A gateway on `redis_url`, outside every peak window, with rate limits out of the way.
async fn gateway(redis_url: &str) -> Gw {
    gateway_with(redis_url, &redis_server::unique("gw"), 2_000).await
}

/// A gateway sharing `prefix` (another instance's data) with its thresholds poll period.
async fn gateway_with(redis_url: &str, prefix: &str, poll_ms: u64) -> Gw {
    gateway_tweaked(redis_url, prefix, poll_ms, |_| {}).await
}

/// [`gateway_with`], with `tweak` applied to the configuration last.
async fn gateway_tweaked(
    redis_url: &str,
    prefix: &str,
    poll_ms: u64,
    tweak: impl FnOnce(&mut Config),
) -> Gw {
    let mut c = Config {
        api_keys: vec![KEY.into()],
        admin_token: ADMIN.into(),
        store: redis_url.into(),
        seed_demo_users: Some(false),
        ..Config::default()
    };
    c.redis.key_prefix = prefix.into();
    c.redis.threshold_poll = std::time::Duration::from_millis(poll_ms);
    c.redis.command_timeout = std::time::Duration::from_millis(1_000);
    c.redis.pool_wait_timeout = std::time::Duration::from_millis(2_000);
    c.policy.normal = LimitsPatch::unlimited();
    // As the API tests' `relaxed`: no stale close of a late first turn in a debug build.
    c.server.overload.stale_delay = std::time::Duration::ZERO;
    tweak(&mut c);
    let noon = jiff::civil::date(2026, 6, 1)
        .at(12, 0, 0, 0)
        .in_tz("Asia/Shanghai")
        .unwrap()
        .timestamp();
    let clock = ManualClock::new(noon);
    let gw = start(EmbeddedOptions {
        config: Some(c),
        clock: Some(clock.shared()),
        ..EmbeddedOptions::default()
    })
    .await
    .unwrap();
    Gw {
        gw,
        client: Client::new(),
        clock,
    }
}

impl Gw {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gw.base_url())
    }

    fn store(&self) -> &RedisStore {
        match &self.gw.app.store {
            AnyStore::Redis(r) => r,
            other => panic!("expected the Redis store, got {other:?}"),
        }
    }

    async fn user(&self, user: &str, limit_fen: u64) {
        let r = self
            .client
            .put(self.url(&format!("/admin/credit-lines/{user}")))
            .bearer_auth(ADMIN)
            .json(
                &json!({"limit_fen": limit_fen, "used_fen": 0, "risk_grade": "A",
                          "account_age_days": 400}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    }

    async fn drawdown(&self, key: &str, user: &str, amount: u64) -> Response {
        self.client
            .post(self.url("/v1/drawdowns"))
            .bearer_auth(KEY)
            .header("Idempotency-Key", key)
            .json(&json!({"user_id": user, "amount_fen": amount, "channel": "app"}))
            .send()
            .await
            .unwrap()
    }

    async fn status(&self, path: &str) -> StatusCode {
        self.client
            .get(self.url(path))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn used(&self, user: &str) -> u64 {
        let r = self
            .client
            .get(self.url(&format!("/v1/credit-lines/{user}")))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()["used_fen"]
            .as_u64()
            .unwrap()
    }

    /// Waits (bounded) until `/readyz` answers 200.
    async fn ready(&self) {
        for _ in 0..200 {
            if self.status("/readyz").await == StatusCode::OK {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the gateway did not become ready");
    }
}

/// Redis stopped mid-run: drawdowns answer 503 DEPENDENCY_UNAVAILABLE with Retry-After,
/// readiness 503, nothing half-written; Redis restarted: the same gateway serves again,
/// replays included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_answers_503_and_recovers_without_a_gateway_restart() {
    let Some(mut redis) = RedisServer::start(Options {
        aof: true,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let t = gateway(&redis.url()).await;
    t.ready().await;
    t.user("u-outage", 1_000_000).await;
    let first = t.drawdown("k1", "u-outage", 1_000).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["outcome"], "approved");

    redis.kill().await;
    for key in ["k2", "k3"] {
        let r = t.drawdown(key, "u-outage", 2_000).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().contains_key("retry-after"), "{:?}", r.headers());
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "DEPENDENCY_UNAVAILABLE", "{body}");
    }
    let ready = t.client.get(t.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let reasons = ready.json::<Value>().await.unwrap()["reasons"].to_string();
    assert!(reasons.contains("store"), "{reasons}");
    assert_eq!(t.status("/healthz").await, StatusCode::OK);

    redis.restart().await;
    t.ready().await;
    // Nothing of the refused drawdowns was written.
    assert_eq!(t.used("u-outage").await, 1_000);
    let replay = t.drawdown("k1", "u-outage", 1_000).await;
    assert_eq!(replay.status(), StatusCode::OK);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["decision_id"], first["decision_id"]);
    let second = t.drawdown("k2", "u-outage", 2_000).await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(t.used("u-outage").await, 3_000);
    t.gw.shutdown().await;
}

/// Concurrent drawdowns with replays, Redis killed and restarted in the middle (AOF,
/// `appendfsync always`). Every client retries a 503 with the same key, as the API asks.
/// Afterwards, for every user: `used` = the sum of approved amounts in the audit streams,
/// and no idempotency key has two decisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariants_hold_across_a_restart() {
    let Some(mut redis) = RedisServer::start(Options {
        aof: true,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let t = Arc::new(gateway(&redis.url()).await);
    let outage = async {
        redis.kill().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        redis.restart().await;
    };
    invariants_across(t, outage, Loss::None).await;
}

/// The same on a 3-node Redis Cluster (AOF on every node): one node is killed and restarted
/// in the middle; it comes back with its slots and data, and the gateway reconnects by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariants_hold_across_a_cluster_node_restart() {
    let Some(mut cluster) = redis_server::RedisCluster::start_with(Options {
        aof: true,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let t = Arc::new(
        gateway_tweaked(
            &cluster.nodes[0].url(),
            &redis_server::unique("gw"),
            2_000,
            |c| {
                c.redis.cluster = true;
                c.redis.cluster_nodes = cluster.nodes[1..].iter().map(RedisServer::url).collect();
                // No replicas in this cluster: nothing to wait for.
                c.redis.replica_acks = Some(0);
            },
        )
        .await,
    );
    let outage = async {
        let node = &mut cluster.nodes[1];
        node.kill().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        node.restart().await;
    };
    invariants_across(t, outage, Loss::None).await;
}

/// What an outage may take with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loss {
    /// Nothing: every decision a client was answered is stored (Redis restarted on its
    /// append-only file).
    None,
    /// Decisions that reserve nothing: a failover promotes a replica that may lack a
    /// rejection answered just before the primary died (only approvals wait for a replica).
    Unreserved,
}

/// Runs the concurrent drawdowns on `t`, awaits `outage` once a third of them are answered,
/// then checks the invariants: no answered approval missing (no answered decision at all
/// with [`Loss::None`]), `used` = the approvals stored, within the limit.
async fn invariants_across(t: Arc<Gw>, outage: impl Future<Output = ()>, loss: Loss) {
    const USERS: usize = 8;
    const WORKERS: usize = 16;
    const PER_WORKER: usize = 30;
    t.ready().await;
    for u in 0..USERS {
        t.user(&format!("u-inv-{u}"), 60_000).await;
    }
    let answered = Arc::new(tokio::sync::Semaphore::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (t, answered) = (Arc::clone(&t), Arc::clone(&answered));
            tokio::spawn(async move {
                let mut decisions: Vec<(String, String, bool)> = Vec::new();
                let mut refused = 0u32;
                for i in 0..PER_WORKER {
                    // Every third request replays an earlier key of this worker.
                    let n = if i % 3 == 2 { i - 1 } else { i };
                    let key = format!("w{w}-r{n}");
                    let user = format!("u-inv-{}", (w + n) % USERS);
                    let amount = 500 + 250 * ((w * 7 + n) % 5) as u64;
                    let mut attempts = 0;
                    let body: Value = loop {
                        let r = t.drawdown(&key, &user, amount).await;
                        match r.status() {
                            StatusCode::OK => break r.json().await.unwrap(),
                            StatusCode::SERVICE_UNAVAILABLE => {
                                refused += 1;
                                attempts += 1;
                                assert!(attempts < 400, "no recovery for {key}");
                                tokio::time::sleep(Duration::from_millis(25)).await;
                            }
                            other => panic!("{key}: {other} {}", r.text().await.unwrap()),
                        }
                    };
                    decisions.push((
                        key,
                        body["decision_id"].as_str().unwrap().to_owned(),
                        body["outcome"] == "approved",
                    ));
                    answered.add_permits(1);
                }
                (decisions, refused)
            })
        })
        .collect();
    // Kill Redis once a third of the answers are in, then bring it back.
    let third = u32::try_from(WORKERS * PER_WORKER / 3).unwrap();
    answered.acquire_many(third).await.unwrap().forget();
    outage.await;

    let mut refused_total = 0;
    let mut answered_ids: HashMap<String, HashSet<String>> = HashMap::new();
    let mut must_survive: HashSet<String> = HashSet::new();
    for w in workers {
        let (decisions, refused) = w.await.unwrap();
        refused_total += refused;
        for (key, id, approved) in decisions {
            if approved || loss == Loss::None {
                must_survive.insert(id.clone());
            }
            answered_ids.entry(key).or_default().insert(id);
        }
    }
    assert!(refused_total > 0, "the outage was seen by the clients");
    // The same key always answered the same decision.
    for (key, ids) in &answered_ids {
        assert_eq!(ids.len(), 1, "{key}: {ids:?}");
    }

    let events = t.store().read_all_audit().await.unwrap();
    let mut approved: HashMap<String, u64> = HashMap::new();
    let mut by_key: HashMap<(String, String, String), HashSet<String>> = HashMap::new();
    for e in &events {
        let f = &e.fields;
        if f["outcome"] == "approved" {
            *approved.entry(f["user"].clone()).or_default() +=
                f["amount_fen"].parse::<u64>().unwrap();
        }
        by_key
            .entry((
                f["caller"].clone(),
                f["user"].clone(),
                f["idempotency_key"].clone(),
            ))
            .or_default()
            .insert(f["decision_id"].clone());
    }
    for ((_, user, key), ids) in &by_key {
        assert_eq!(ids.len(), 1, "{user} {key}: two decisions {ids:?}");
    }
    // Every decision a client was answered (every approval, after a failover) is in the
    // audit: no acknowledged approval lost.
    let audited: HashSet<&String> = events.iter().map(|e| &e.fields["decision_id"]).collect();
    for id in &must_survive {
        assert!(audited.contains(id), "{id} answered but not audited");
    }
    let mut total = 0;
    for u in 0..USERS {
        let user = format!("u-inv-{u}");
        let used = t.used(&user).await;
        assert_eq!(used, approved.get(&user).copied().unwrap_or(0), "{user}");
        assert!(used <= 60_000, "{user}: {used} fen used of a 60,000 line");
        total += used;
    }
    assert!(total > 0);
    eprintln!(
        "invariants: {} keys, {} audit events, {refused_total} 503s retried, {total} fen used",
        answered_ids.len(),
        events.len()
    );
    Arc::try_unwrap(t)
        .ok()
        .expect("the workers are done")
        .gw
        .shutdown()
        .await;
}

/// One primary, one replica, three Sentinels: the primary is killed (`kill -9`) in the
/// middle of concurrent drawdowns. The Sentinels promote the replica, the old primary is
/// started again on its append-only file and rejoins as the new primary's replica, and the
/// same gateway serves again through the Sentinels, with no acknowledged approval lost and
/// no credit reserved twice. Prints the time from the kill until an approval is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariants_hold_across_a_sentinel_failover() {
    let Some(mut set) = redis_server::RedisSentinels::start(1_000).await else {
        return;
    };
    // The store URL's host is not used behind Sentinels: only its database.
    let t = Arc::new(
        gateway_tweaked(
            &format!("redis://{}/0", redis_server::SENTINEL_MASTER),
            &redis_server::unique("gw"),
            2_000,
            |c| {
                c.redis.sentinels = set.sentinel_urls();
                c.redis.sentinel_master = Some(redis_server::SENTINEL_MASTER.into());
                c.redis.replica_ack_timeout = Duration::from_millis(200);
            },
        )
        .await,
    );
    assert_eq!(
        t.store().replica_acks(),
        1,
        "approvals wait for the replica"
    );
    let probe = Arc::clone(&t);
    // Borrowed: the servers outlive the outage, to the end of the checks.
    let set = &mut set;
    let outage = async move {
        probe.user("u-probe", 100_000_000).await;
        let killed = std::time::Instant::now();
        set.primary.kill().await;
        set.wait_primary(set.replica.port).await;
        let promoted = killed.elapsed();
        // The old primary back on its file as the new one's replica, as a supervisor
        // restarts it (started as a primary, the Sentinels would demote it themselves,
        // 8 to 10 s later: until then approvals wait for a replica in vain).
        set.primary.restart_as_replica_of(set.replica.port).await;
        set.wait_replica_synced().await;
        let mut n = 0;
        let served = loop {
            n += 1;
            let r = probe.drawdown(&format!("probe-{n}"), "u-probe", 100).await;
            if r.status() == StatusCode::OK {
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["outcome"], "approved", "{body}");
                break killed.elapsed();
            }
            assert!(
                killed.elapsed() < Duration::from_secs(30),
                "no approval within 30 s of the kill: {}",
                r.status()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        eprintln!(
            "sentinel failover: replica promoted {promoted:?} after the kill, \
             an approval answered {served:?} after it"
        );
        // A bound, not a speed target: down-after 1 s, the election, the rejoin.
        assert!(served < Duration::from_secs(20), "{served:?}");
    };
    invariants_across(t, outage, Loss::Unreserved).await;
}

/// Store round trips on the drawdown path, counted by Redis itself (`MONITOR` lists every
/// command a client sends; commands run inside a script are marked `lua`): a user this
/// instance has seen (here: stored through it) needs no load, so a drawdown is one `EVALSHA`,
/// the commit checked against the version of the state it was evaluated on. Prints the
/// figure for BENCHMARKS.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drawdown_is_one_round_trip() {
    const N: usize = 50;
    let Some(redis) = RedisServer::start(Options::default()).await else {
        return;
    };
    let t = gateway(&redis.url()).await;
    t.ready().await;
    t.user("u-trips", 100_000_000).await;
    // Warm up: scripts loaded, connections open.
    assert_eq!(
        t.drawdown("warm", "u-trips", 100).await.status(),
        StatusCode::OK
    );

    let mut monitor = tokio::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "monitor"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-cli comes with redis-server");
    let mut lines = BufReader::new(monitor.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("OK"));

    for i in 0..N {
        let r = t.drawdown(&format!("trip-{i}"), "u-trips", 100).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let marker = redis_server::unique("end-of-run");
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", redis.port))
        .await
        .unwrap();
    sock.write_all(format!("ECHO {marker}\r\n").as_bytes())
        .await
        .unwrap();

    let mut top_level: HashMap<String, usize> = HashMap::new();
    let mut in_scripts = 0;
    // Until the marker, and then until the last decision's inputs `XADD`: it is queued after
    // the commit's reply and never waited for, so it may reach Redis after the marker.
    let mut marked = false;
    while !marked || top_level.get("xadd").copied().unwrap_or(0) < N {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("the monitor sees the marker and every decision's inputs")
            .unwrap()
            .unwrap();
        if line.contains(&marker) {
            marked = true;
            continue;
        }
        // `1700000000.123456 [0 127.0.0.1:5555] "evalsha" …` or `[0 lua] "hset" …`
        let Some((_, rest)) = line.split_once("] \"") else {
            continue;
        };
        let cmd = rest.split('"').next().unwrap().to_lowercase();
        if line.contains("[0 lua]") {
            in_scripts += 1;
        } else {
            *top_level.entry(cmd).or_default() += 1;
        }
    }
    let total: usize = top_level.values().sum();
    eprintln!(
        "store round trips per drawdown: {:.2} ({top_level:?} over {N} drawdowns; \
         {:.1} commands inside scripts per drawdown)",
        total as f64 / N as f64,
        in_scripts as f64 / N as f64
    );
    assert_eq!(top_level.get("evalsha"), Some(&N), "{top_level:?}");
    // Besides: each decision's inputs for backtests (`XADD`, queued after the commit and never
    // waited for), and the health check's `PING` should its turn fall in the run.
    assert_eq!(top_level.get("xadd"), Some(&N), "{top_level:?}");
    let others = total - 2 * N - top_level.get("ping").copied().unwrap_or(0);
    assert_eq!(others, 0, "nothing but the commit script: {top_level:?}");
    t.gw.shutdown().await;
}

/// A drawdown decided on this instance's kept state commits only on that exact state: after
/// another instance changed the user, the commit answers the fresh state and the decision is
/// made again on it. A replay of a key is found by the commit alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_state_another_instance_changed_is_decided_again() {
    let Some(redis) = RedisServer::start(Options::default()).await else {
        return;
    };
    let prefix = redis_server::unique("cas");
    let a = gateway_with(&redis.url(), &prefix, 2_000).await;
    let b = gateway_with(&redis.url(), &prefix, 2_000).await;
    a.ready().await;
    b.ready().await;
    a.user("u-cas", 1_000_000).await;
    assert_eq!(
        a.drawdown("k1", "u-cas", 100).await.status(),
        StatusCode::OK
    );
    let replay = a.drawdown("k1", "u-cas", 100).await;
    assert_eq!(replay.status(), StatusCode::OK);
    assert_eq!(replay.headers().get("idempotent-replayed").unwrap(), "true");

    // B blocklists the user (the line is untouched: only the version tells A's kept state
    // is stale); A still keeps the state before.
    let r = b
        .client
        .put(b.url("/admin/credit-lines/u-cas"))
        .bearer_auth(ADMIN)
        .json(
            &json!({"limit_fen": 1_000_000, "used_fen": 100, "risk_grade": "A",
                      "account_age_days": 400, "blocklisted": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = a.drawdown("k2", "u-cas", 100).await;
    assert_eq!(r.status(), StatusCode::OK);
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["outcome"], "rejected", "{d}");
    assert_eq!(b.used("u-cas").await, 100, "nothing reserved");
    // A now keeps the fresh state: the next drawdown is refused on it at once.
    let d: Value = a.drawdown("k3", "u-cas", 100).await.json().await.unwrap();
    assert_eq!(d["outcome"], "rejected", "{d}");
    a.gw.shutdown().await;
    b.gw.shutdown().await;
}

impl Gw {
    async fn thresholds(&self) -> Value {
        let r = self
            .client
            .get(self.url("/admin/thresholds"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    async fn put_thresholds(&self, doc: &Value) -> Response {
        self.client
            .put(self.url("/admin/thresholds"))
            .bearer_auth(ADMIN)
            .json(doc)
            .send()
            .await
            .unwrap()
    }

    fn version(&self) -> u64 {
        self.gw.app.thresholds.version()
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} not in /metrics"))
            .parse()
            .unwrap()
    }

    /// Waits (bounded) until this instance holds `version`; answers how long it took.
    async fn applied(&self, version: u64) -> Duration {
        let start = tokio::time::Instant::now();
        while self.version() != version {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "version {version} never applied (holding {})",
                self.version()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        start.elapsed()
    }
}

fn with_version(doc: &Value, version: u64) -> Value {
    let mut doc = doc.clone();
    doc["version"] = json!(version);
    doc
}

/// A threshold update through one instance reaches another sharing the Redis, by the
/// pub/sub notice (the poll is set to a minute, so only the notice can be that fast). Prints
/// publish-to-applied figures for BENCHMARKS.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_update_reaches_every_instance() {
    const ROUNDS: u64 = 20;
    let Some(redis) = RedisServer::start(Options::default()).await else {
        return;
    };
    let prefix = redis_server::unique("shared");
    let a = gateway_with(&redis.url(), &prefix, 60_000).await;
    let b = gateway_with(&redis.url(), &prefix, 60_000).await;
    a.ready().await;
    b.ready().await;
    let doc = a.thresholds().await;
    let base = doc["version"].as_u64().unwrap();
    assert_eq!(
        b.version(),
        base,
        "both start from the bootstrapped version"
    );

    let mut figures = Vec::new();
    for i in 1..=ROUNDS {
        let v = base + i;
        let sent = tokio::time::Instant::now();
        let r = a.put_thresholds(&with_version(&doc, v)).await;
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        assert_eq!(a.version(), v, "the publishing instance applies at once");
        b.applied(v).await;
        figures.push(sent.elapsed());
    }
    assert_eq!(b.thresholds().await["version"], base + ROUNDS);
    // Older or equal versions are refused everywhere.
    let stale = a.put_thresholds(&with_version(&doc, base + 1)).await;
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    let stale = b.put_thresholds(&with_version(&doc, base + ROUNDS)).await;
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    assert_eq!((a.version(), b.version()), (base + ROUNDS, base + ROUNDS));

    figures.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    eprintln!(
        "threshold propagation (PUT on A sent -> applied on B), {ROUNDS} updates: \
         median {:.2} ms, max {:.2} ms",
        ms(figures[figures.len() / 2]),
        ms(figures[figures.len() - 1])
    );
    assert!(figures[figures.len() - 1] < Duration::from_secs(5));
    assert!(b.metric("gateway_threshold_updates_applied_total").await >= ROUNDS as f64);
    a.gw.shutdown().await;
    b.gw.shutdown().await;
}

/// A window forced through one instance is in force on every instance of the fleet: the
/// other follows within the thresholds poll (at once on the notice), decides under it, and
/// goes back to the calendar when the force is lifted through it; an instance started later
/// takes the force on its first refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_window_applies_on_every_instance() {
    const POLL_MS: u64 = 300;
    let Some(redis) = RedisServer::start(Options::default()).await else {
        return;
    };
    let prefix = redis_server::unique("forced");
    let a = gateway_with(&redis.url(), &prefix, POLL_MS).await;
    let b = gateway_with(&redis.url(), &prefix, POLL_MS).await;
    a.ready().await;
    b.ready().await;
    // Noon on 1 June: outside every window.
    assert_eq!(window(&b), ("normal".to_owned(), false));
    let force = |g: &Gw, body: Value| {
        g.client
            .put(g.url("/admin/policy/force"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    let within = Duration::from_millis(POLL_MS) + Duration::from_secs(2);

    let r = force(&a, json!({"window": "double11"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert_eq!(window(&a), ("double11".to_owned(), true));
    let took = follows(&b, ("double11", true), within).await;
    eprintln!("forced window: followed by the other instance in {took:?}");
    b.user("u-forced", 10_000_000).await;
    let d = b.drawdown("forced-1", "u-forced", 1_000).await;
    assert_eq!(d.status(), StatusCode::OK);
    let d: Value = d.json().await.unwrap();
    assert_eq!(d["policy"], "double11", "{d}");

    // An instance started after the force takes it on its first refresh.
    let c = gateway_with(&redis.url(), &prefix, POLL_MS).await;
    c.ready().await;
    follows(&c, ("double11", true), within).await;

    // A window that is not configured is refused, and nothing changes anywhere.
    let r = force(&b, json!({"window": "no-such-window"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        b.store().forced_window().await.unwrap().as_deref(),
        Some("double11")
    );

    // Lifted through the other instance: both back on the calendar.
    let r = force(&b, json!({"window": null})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    follows(&a, ("normal", false), within).await;
    follows(&c, ("normal", false), within).await;
    assert_eq!(b.store().forced_window().await.unwrap(), None);
    for g in [a, b, c] {
        g.gw.shutdown().await;
    }
}

/// The window in force on `g`, and whether it is forced.
fn window(g: &Gw) -> (String, bool) {
    let p = g.gw.app.policy.current();
    (p.window.clone(), p.forced)
}

/// Waits until `g` is on `want`, at most `within` (the poll, plus slack for a debug build):
/// how long it took.
async fn follows(g: &Gw, want: (&str, bool), within: Duration) -> Duration {
    let started = tokio::time::Instant::now();
    while window(g) != (want.0.to_owned(), want.1) {
        assert!(
            started.elapsed() < within,
            "{want:?} not followed within {within:?}: {:?}",
            window(g)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// The poll covers a lost notice; a document that does not validate, or an older version,
/// is never swapped in; while Redis is down the last good version keeps serving, staleness
/// grows and readiness says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresher_polls_validates_and_keeps_the_last_good_version() {
    let Some(mut redis) = RedisServer::start(Options::default()).await else {
        return;
    };
    let prefix = redis_server::unique("poll");
    let t = gateway_with(&redis.url(), &prefix, 50).await;
    t.ready().await;
    let doc = t.thresholds().await;
    let base = t.version();
    let client = deadpool_redis::redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut set = async |key: String, value: String| {
        let _: () = deadpool_redis::redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap();
    };
    let pointer = format!("{prefix}:{{th}}:current");
    let doc_key = |v: u64| format!("{prefix}:{{th}}:doc:{v}");

    // No notice: the poll finds it.
    set(doc_key(base + 1), with_version(&doc, base + 1).to_string()).await;
    set(pointer.clone(), (base + 1).to_string()).await;
    t.applied(base + 1).await;

    // A pointer to a document that says another version, then to one that is not valid:
    // counted as refresh errors, never applied.
    let errors = t.metric("gateway_threshold_refresh_errors_total").await;
    set(doc_key(base + 2), with_version(&doc, base + 3).to_string()).await;
    set(pointer.clone(), (base + 2).to_string()).await;
    let mut broken = with_version(&doc, base + 4);
    broken["base_profile"] = json!("no-such-profile");
    set(doc_key(base + 4), broken.to_string()).await;
    set(pointer.clone(), (base + 4).to_string()).await;
    let start = tokio::time::Instant::now();
    while t.metric("gateway_threshold_refresh_errors_total").await < errors + 2.0 {
        assert!(start.elapsed() < Duration::from_secs(10), "errors counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(t.version(), base + 1);
    // Back to an older version: a successful refresh (staleness back near zero) that keeps
    // the newer version.
    set(pointer.clone(), base.to_string()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = tokio::time::Instant::now();
    while t.metric("gateway_threshold_staleness_seconds").await > 0.2 {
        assert!(start.elapsed() < Duration::from_secs(10), "refreshed again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(t.version(), base + 1);

    // Redis down: the last good version serves; staleness grows; readiness says why.
    redis.kill().await;
    let start = tokio::time::Instant::now();
    while t.metric("gateway_threshold_staleness_seconds").await < 0.3 {
        assert!(start.elapsed() < Duration::from_secs(10), "staleness grows");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(t.version(), base + 1);
    assert_eq!(t.thresholds().await["version"], base + 1);
    let ready = t.client.get(t.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    t.gw.shutdown().await;
}

/// A gateway that starts while Redis is down has no thresholds: `/readyz` says so until
/// Redis answers and the first version is loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_a_first_threshold_version() {
    let Some(mut redis) = RedisServer::start(Options::default()).await else {
        return;
    };
    redis.kill().await;
    let t = gateway_with(&redis.url(), &redis_server::unique("cold"), 50).await;
    let r = t.client.get(t.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let reasons = r.json::<Value>().await.unwrap()["reasons"].to_string();
    assert!(reasons.contains("thresholds"), "{reasons}");
    assert_eq!(t.version(), 0);
    redis.restart().await;
    t.ready().await;
    assert!(t.version() >= 1);
    t.gw.shutdown().await;
}

/// Two gateways on a 3-node Redis Cluster: drawdowns, replays and credit lines work through
/// either (the global limit shared through the cluster too), and a threshold update through
/// one reaches the other by its notice (the poll is a minute) although the other subscribes
/// on a node that does not own the thresholds' slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_a_cluster() {
    let Some(cluster) = redis_server::RedisCluster::start().await else {
        return;
    };
    let prefix = redis_server::unique("cl");
    let on = |seed: usize| {
        let nodes: Vec<String> = cluster.nodes.iter().map(RedisServer::url).collect();
        let first = nodes[seed].clone();
        let others: Vec<String> = nodes
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != seed)
            .map(|(_, u)| u.clone())
            .collect();
        let prefix = prefix.clone();
        async move {
            gateway_tweaked(&first, &prefix, 60_000, move |c| {
                c.redis.cluster = true;
                c.redis.cluster_nodes = others;
                c.redis.replica_acks = Some(0);
                c.redis.shared_global_limit = true;
                c.redis.global_limit_timeout = std::time::Duration::from_millis(500);
            })
            .await
        }
    };
    let a = on(0).await;
    a.ready().await;
    // The node owning the thresholds' slot answers a plain GET; the others answer MOVED.
    let pointer = format!("{prefix}:{{th}}:current");
    let mut owner = None;
    for (i, node) in cluster.nodes.iter().enumerate() {
        let client = deadpool_redis::redis::Client::open(node.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let got: Result<Option<String>, _> = deadpool_redis::redis::cmd("GET")
            .arg(&pointer)
            .query_async(&mut conn)
            .await;
        if let Ok(Some(_)) = got {
            owner = Some(i);
        }
    }
    let owner = owner.expect("one node owns the thresholds pointer");
    let b = on((owner + 1) % 3).await;
    b.ready().await;

    for u in ["u-cl-1", "u-cl-2", "u-cl-3", "u-cl-4"] {
        a.user(u, 100_000).await;
        let r = b.drawdown(&format!("{u}-k"), u, 1_000).await;
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        let replay = a.drawdown(&format!("{u}-k"), u, 1_000).await;
        assert_eq!(replay.headers()["idempotent-replayed"], "true");
        assert_eq!(a.used(u).await, 1_000);
        assert_eq!(b.used(u).await, 1_000);
    }

    for gw in [&a, &b] {
        assert_eq!(gw.metric("gateway_global_limit_mode").await, 1.0);
        assert_eq!(gw.metric("gateway_global_limit_fallback_total").await, 0.0);
    }

    let doc = a.thresholds().await;
    let v = doc["version"].as_u64().unwrap() + 1;
    let r = a.put_thresholds(&with_version(&doc, v)).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let took = b.applied(v).await;
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(b.metric("gateway_threshold_updates_applied_total").await >= 1.0);
    a.gw.shutdown().await;
    b.gw.shutdown().await;
}

/// A gateway whose global credit-line limit is 10/s with a burst of 10, shared through Redis
/// (`shared`), with the local fallback sized for `instances` and Redis given `timeout_ms`.
async fn limited_gateway(
    redis_url: &str,
    prefix: &str,
    shared: bool,
    instances: u32,
    timeout_ms: u64,
) -> Gw {
    gateway_tweaked(redis_url, prefix, 2_000, |c| {
        c.policy.normal.global.credit_line = Some(gateway::policy::Rate {
            per_second: 10,
            burst: 10,
        });
        c.redis.shared_global_limit = shared;
        c.redis.global_limit_instances = instances;
        c.redis.global_limit_timeout = std::time::Duration::from_millis(timeout_ms);
        // Bursts of 20 to 40 at once are about the global limit: the adaptive admission
        // default would shed part of them when a loaded machine slows the answers.
        c.admission.mode = gateway::admission::AdmissionMode::Fixed;
    })
    .await
}

/// Sends `n` credit-line reads at once to each of `gws`; answers how many were not refused
/// by the global limit (passed on: a 200, or a 503 while Redis is down).
async fn admitted(gws: &[&Gw], n: usize) -> usize {
    let mut calls = Vec::new();
    for gw in gws {
        for _ in 0..n {
            calls.push(async move {
                let r = gw
                    .client
                    .get(gw.url("/v1/credit-lines/u-limited"))
                    .bearer_auth(KEY)
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let body: Value = r.json().await.unwrap();
                match status {
                    StatusCode::TOO_MANY_REQUESTS => {
                        assert_eq!(body["error"]["code"], "RATE_LIMITED_GLOBAL", "{body}");
                        false
                    }
                    StatusCode::OK => true,
                    StatusCode::SERVICE_UNAVAILABLE => {
                        assert_eq!(body["error"]["code"], "DEPENDENCY_UNAVAILABLE", "{body}");
                        true
                    }
                    other => panic!("{other}: {body}"),
                }
            });
        }
    }
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .filter(|&ok| ok)
        .count()
}

/// Two instances sharing one Redis and a global limit of 10/s (burst 10): a burst of 40
/// requests across both admits about 10 in all when the limit is shared, and 10 per
/// instance (20) when it is not (the default), measured side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_one_global_limit() {
    let Some(redis) = RedisServer::start(Options::default()).await else {
        return;
    };
    // Local only (the default): each instance admits its own burst.
    let prefix = redis_server::unique("local");
    let a = limited_gateway(&redis.url(), &prefix, false, 1, 5).await;
    let b = limited_gateway(&redis.url(), &prefix, false, 1, 5).await;
    a.ready().await;
    b.ready().await;
    a.user("u-limited", 100_000).await;
    let local = admitted(&[&a, &b], 20).await;
    assert!(local >= 20, "each instance admits its burst of 10: {local}");
    assert_eq!(a.metric("gateway_global_limit_mode").await, 0.0);
    a.gw.shutdown().await;
    b.gw.shutdown().await;

    // Shared: one bucket for both. A generous timeout here so that no request falls back on
    // a loaded test machine (the fallback has its own test).
    let prefix = redis_server::unique("shared");
    let a = limited_gateway(&redis.url(), &prefix, true, 2, 500).await;
    let b = limited_gateway(&redis.url(), &prefix, true, 2, 500).await;
    a.ready().await;
    b.ready().await;
    a.user("u-limited", 100_000).await;
    let started = tokio::time::Instant::now();
    let shared = admitted(&[&a, &b], 20).await;
    // 10 at once, plus one per 100 ms the burst took to send.
    let refill = usize::try_from(started.elapsed().as_millis() / 100).unwrap();
    assert!(
        (10..=10 + refill).contains(&shared),
        "shared: {shared} admitted, refill allowance {refill}"
    );
    for gw in [&a, &b] {
        assert_eq!(gw.metric("gateway_global_limit_fallback_total").await, 0.0);
        assert_eq!(gw.metric("gateway_global_limit_mode").await, 1.0);
    }
    eprintln!(
        "global limit 10/s burst 10, 40 requests over two instances: local {local}, shared {shared} admitted"
    );
    a.gw.shutdown().await;
    b.gw.shutdown().await;
}

/// With Redis stopped, the shared limit falls back to the local limiter scaled to this
/// instance's share (10/s burst 10 over 2 instances: burst 5), neither admitting everything
/// nor refusing everything, and counts each such decision; with Redis back it shares again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_limit_falls_back_to_the_local_share() {
    let Some(mut redis) = RedisServer::start(Options::default()).await else {
        return;
    };
    let prefix = redis_server::unique("fallback");
    let a = limited_gateway(&redis.url(), &prefix, true, 2, 20).await;
    a.ready().await;
    a.user("u-limited", 100_000).await;
    assert_eq!(admitted(&[&a], 1).await, 1);
    assert_eq!(a.metric("gateway_global_limit_mode").await, 1.0);
    let before = a.metric("gateway_global_limit_fallback_total").await;

    redis.kill().await;
    let started = tokio::time::Instant::now();
    let during = admitted(&[&a], 20).await;
    let refill = usize::try_from(started.elapsed().as_millis() / 200).unwrap();
    assert!(
        (5..=5 + refill).contains(&during),
        "fallback: {during} admitted of 20, refill allowance {refill}"
    );
    assert_eq!(
        a.metric("gateway_global_limit_fallback_total").await - before,
        20.0
    );
    assert_eq!(a.metric("gateway_global_limit_mode").await, 2.0);

    redis.restart().await;
    a.ready().await;
    // Without persistence the user is gone.
    a.user("u-limited", 100_000).await;
    // Redis is asked again once the pause after the last failure is over.
    let mut shared_again = false;
    for _ in 0..100 {
        tokio::time::sleep(gateway::ratelimit::RETRY_REDIS_AFTER).await;
        admitted(&[&a], 1).await;
        if a.metric("gateway_global_limit_mode").await == 1.0 {
            shared_again = true;
            break;
        }
    }
    assert!(shared_again, "the shared limit resumes after Redis is back");
    a.gw.shutdown().await;
}

/// Redis killed and restarted under a full pool, with no traffic meanwhile: one
/// health-check interval after Redis is back, the first `/readyz` answers 200 and no
/// request of a burst is refused for a connection that died with the old server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_is_back_in_the_pool_within_one_health_check() {
    const INTERVAL: Duration = Duration::from_millis(500);
    let Some(mut redis) = RedisServer::start(Options::default()).await else {
        return;
    };
    let t = gateway_tweaked(&redis.url(), &redis_server::unique("gw"), 2_000, |c| {
        c.redis.pool_size = 8;
        c.redis.health_check_interval = std::time::Duration::from_millis(500);
        // The bursts below are about the pool, not admission: the adaptive default would
        // shed part of 32 queries at once (half its initial limit is kept for drawdowns).
        c.admission.mode = gateway::admission::AdmissionMode::Fixed;
    })
    .await;
    t.ready().await;
    t.user("u-pool", 1_000_000).await;
    // Fill the pool: more reads in flight at once than it has connections.
    let reads: Vec<_> = (0..32).map(|_| t.used("u-pool")).collect();
    futures_util::future::join_all(reads).await;

    redis.kill().await;
    redis.restart().await;
    // One interval (and a little for the check's own round trip), then no retries.
    tokio::time::sleep(INTERVAL + Duration::from_millis(200)).await;
    assert_eq!(t.status("/readyz").await, StatusCode::OK);
    // The data did not survive (no AOF): 404 USER_NOT_FOUND is the store answering.
    let burst: Vec<_> = (0..40)
        .map(|_| t.status("/v1/credit-lines/u-pool"))
        .collect();
    let statuses = futures_util::future::join_all(burst).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::NOT_FOUND),
        "{statuses:?}"
    );
    t.gw.shutdown().await;
}

/// A thresholds version past 2^53 - 1 (Lua compares versions as doubles) is refused at the
/// edge, and later versions still publish on Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thresholds_version_past_2_pow_53_is_refused_on_redis() {
    let Some(redis) = RedisServer::start(Options::default()).await else {
        return;
    };
    let gw = gateway(&redis.url()).await;
    gw.ready().await;
    let t = &gw;
    let get = || async move {
        t.client
            .get(t.url("/admin/thresholds"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let put = |doc: Value| async move {
        t.client
            .put(t.url("/admin/thresholds"))
            .bearer_auth(ADMIN)
            .json(&doc)
            .send()
            .await
            .unwrap()
    };
    let th = get().await;
    let mut bad = th.clone();
    bad["version"] = json!(u64::MAX);
    let r = put(bad).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["details"][0]["field"], "version", "{body}");
    let mut next = th.clone();
    next["version"] = json!(th["version"].as_u64().unwrap() + 1);
    assert_eq!(put(next.clone()).await.status(), StatusCode::OK);
    assert_eq!(get().await["version"], next["version"]);
    gw.gw.shutdown().await;
}

#[path = "../support/admin_audit.rs"]
mod admin_audit;

/// Every admin write appears in `GET /admin/audit` with its operator and difference, the
/// log in the Redis stream `P:{admin}:audit` (never trimmed: `XLEN` counts every entry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_write_is_audited_on_redis() {
    let Some(redis) = RedisServer::start(Options::default()).await else {
        return;
    };
    let prefix = redis_server::unique("audit");
    let t = gateway_tweaked(&redis.url(), &prefix, 2_000, |c| {
        c.admin.tokens = admin_audit::named_tokens();
    })
    .await;
    t.ready().await;
    admin_audit::every_admin_write_is_audited(
        &t.gw.base_url(),
        ADMIN,
        KEY,
        "2026-06-01T12:00:00+08:00",
    )
    .await;
    let client = deadpool_redis::redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let len: u64 = deadpool_redis::redis::cmd("XLEN")
        .arg(t.store().operator_audit_key())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 7);
    t.gw.shutdown().await;
}

/// The same on a 3-node Redis Cluster: the stream lives on the node owning `{admin}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_write_is_audited_on_a_cluster() {
    let Some(cluster) = redis_server::RedisCluster::start().await else {
        return;
    };
    let nodes: Vec<String> = cluster.nodes.iter().map(RedisServer::url).collect();
    let t = gateway_tweaked(&nodes[0], &redis_server::unique("audit"), 60_000, |c| {
        c.redis.cluster = true;
        c.redis.cluster_nodes = nodes[1..].to_vec();
        c.admin.tokens = admin_audit::named_tokens();
    })
    .await;
    t.ready().await;
    admin_audit::every_admin_write_is_audited(
        &t.gw.base_url(),
        ADMIN,
        KEY,
        "2026-06-01T12:00:00+08:00",
    )
    .await;
    t.gw.shutdown().await;
}

/// A shadow candidate on the Redis store: drawdowns (each one round trip, as without a
/// candidate) are also evaluated against it and counted; promotion publishes it through
/// Redis, so a second instance on the same data applies it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_candidate_is_counted_and_promoted_through_redis() {
    let Some(redis) = RedisServer::start(Options::default()).await else {
        return;
    };
    let prefix = redis_server::unique("shadow");
    let a = gateway_with(&redis.url(), &prefix, 200).await;
    let b = gateway_with(&redis.url(), &prefix, 200).await;
    a.ready().await;
    b.ready().await;
    for (u, logins) in [("u-sh-f1", 120), ("u-sh-f2", 120), ("u-sh-q1", 5)] {
        let r = a
            .client
            .put(a.url(&format!("/admin/credit-lines/{u}")))
            .bearer_auth(ADMIN)
            .json(
                &json!({"limit_fen": 1_000_000, "used_fen": 0, "risk_grade": "A",
                          "account_age_days": 400, "logins_30d": logins}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let live = a.thresholds().await;
    let mut candidate = live.clone();
    candidate["profiles"]["normal"]["login_pattern"]["mode"] = json!("reject_alone");
    let r = a
        .client
        .put(a.url("/admin/shadow"))
        .bearer_auth(ADMIN)
        .json(&candidate)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    for n in 0..3 {
        for u in ["u-sh-f1", "u-sh-f2", "u-sh-q1"] {
            let r = a.drawdown(&format!("{u}-{n}"), u, 1_000).await;
            let d: Value = r.json().await.unwrap();
            assert_eq!(d["outcome"], "approved", "live decides: {d}");
        }
    }
    let report: Value = a
        .client
        .get(a.url("/admin/shadow"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["drawdowns_evaluated"], 9);
    assert_eq!(
        report["changes"],
        json!([{"transition": "approved_to_rejected", "key": "approved_to_rejected",
                "requests": 6, "users": 2}])
    );
    let r = a
        .client
        .post(a.url("/admin/shadow/promote"))
        .bearer_auth(ADMIN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let next = live["version"].as_u64().unwrap() + 1;
    assert_eq!(a.version(), next);
    b.applied(next).await;
    let d: Value = b
        .drawdown("after", "u-sh-f1", 1_000)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        d["outcome"], "rejected",
        "the other instance decides on it: {d}"
    );
    let entries: Value = a
        .client
        .get(a.url("/admin/audit"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "credit_line.upsert",
            "credit_line.upsert",
            "credit_line.upsert",
            "shadow.stage",
            "shadow.promote"
        ]
    );
    a.gw.shutdown().await;
    b.gw.shutdown().await;
}

/// The global limit shared through Redis, report-only: every request is served, and what the
/// shared bucket would have refused is counted (one user here, so one distinct user).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_only_shared_global_limit_counts_and_serves() {
    let Some(redis) = RedisServer::start(Options::default()).await else {
        return;
    };
    let prefix = redis_server::unique("ro");
    let a = limited_gateway(&redis.url(), &prefix, true, 1, 500).await;
    a.ready().await;
    a.user("u-limited", 100_000).await;
    let r = a
        .client
        .put(a.url("/admin/limit-modes"))
        .bearer_auth(ADMIN)
        .json(&json!({"user": "enforce", "global": "report_only"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let started = tokio::time::Instant::now();
    let served = admitted(&[&a], 30).await;
    assert_eq!(served, 30, "nothing refused");
    let modes: Value = a
        .client
        .get(a.url("/admin/limit-modes"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let would = modes["would_refuse"]["global"]["requests"]
        .as_u64()
        .unwrap();
    // A burst of 10 and 10/s: 20 of 30 would have been refused, less one per 100 ms taken.
    let refill = u64::try_from(started.elapsed().as_millis() / 100).unwrap();
    assert!(
        (20u64.saturating_sub(refill)..=20).contains(&would),
        "{modes}"
    );
    assert_eq!(modes["would_refuse"]["global"]["users"], 1);
    assert_eq!(
        a.metric("gateway_global_limit_mode").await,
        1.0,
        "decided by Redis"
    );
    a.gw.shutdown().await;
}

/// A backtest on Redis: the inputs kept in the store's capped stream are replayed against the
/// staged candidate; decisions whose inputs the cap pushed out are skipped, and said to be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtest_replays_the_inputs_kept_on_redis() {
    let Some(redis) = RedisServer::start(Options::default()).await else {
        return;
    };
    let prefix = redis_server::unique("backtest");
    // Six kept (and 1/64 more: seven), whichever slots they are on.
    let a = gateway_tweaked(&redis.url(), &prefix, 200, |c| {
        c.risk.decision_inputs_kept = 6;
    })
    .await;
    a.ready().await;
    let users = [("u-bt-f1", 120), ("u-bt-f2", 120), ("u-bt-q1", 5)];
    for (u, logins) in users {
        let r = a
            .client
            .put(a.url(&format!("/admin/credit-lines/{u}")))
            .bearer_auth(ADMIN)
            .json(
                &json!({"limit_fen": 1_000_000, "used_fen": 0, "risk_grade": "A",
                          "account_age_days": 400, "logins_30d": logins}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let slots: HashSet<u16> = users
        .iter()
        .map(|(u, _)| gateway::store::user_slot(&risk_core::UserId::parse(u).unwrap()).get())
        .collect();
    assert_eq!(slots.len(), 3, "the test's users are on three slots");
    for n in 0..3 {
        for (u, _) in users {
            let d: Value = a
                .drawdown(&format!("{u}-{n}"), u, 1_000)
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(d["outcome"], "approved", "{d}");
            // A millisecond apart: the decision ids (ULIDs) then order as they were made.
            a.clock.advance(Duration::from_millis(1));
        }
    }
    let mut candidate = a.thresholds().await;
    candidate["profiles"]["normal"]["login_pattern"]["mode"] = json!("reject_alone");
    let r = a
        .client
        .put(a.url("/admin/shadow"))
        .bearer_auth(ADMIN)
        .json(&candidate)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let backtest = |body: Value| {
        let a = &a;
        async move {
            let r = a
                .client
                .post(a.url("/admin/shadow/backtest"))
                .bearer_auth(ADMIN)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body = r.json::<Value>().await.unwrap();
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    // The inputs leave with the next batch, unawaited: wait (bounded) for the last ones
    // (until then the newest count as not recorded, and the oldest may not be pushed out yet).
    let mut report = Value::Null;
    for _ in 0..100 {
        report = backtest(json!({"last": 100})).await;
        if report["replayed"] == 7 && report["skipped_by_cause"]["not_recorded"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nine decisions on three slots; the store keeps the inputs of the last seven, the two
    // oldest were pushed out.
    assert_eq!(
        (&report["selected"], &report["replayed"], &report["skipped"]),
        (&json!(9), &json!(7), &json!(2)),
        "{report}"
    );
    assert_eq!(
        report["skipped_by_cause"],
        json!({"pushed_out": 2, "not_recorded": 0, "unreadable": 0})
    );
    // The last six (N = decision_inputs_kept): every one replayed.
    let six = backtest(json!({"last": 6})).await;
    assert_eq!(
        (&six["selected"], &six["replayed"], &six["skipped"]),
        (&json!(6), &json!(6), &json!(0)),
        "{six}"
    );
    // Decisions 1 and 2 (of u-bt-f1, u-bt-f2, round 0) were pushed out: the frequent users'
    // four others change.
    assert_eq!(
        report["changes"],
        json!([{"transition": "approved_to_rejected", "key": "approved_to_rejected",
                "requests": 4, "users": 2}])
    );
    let sample = &report["samples"][0];
    assert_eq!(
        sample["candidate"]["reasons"][0]["code"],
        "LOGIN_PATTERN_ANOMALY"
    );
    assert_eq!(sample["live"]["outcome"], "approved");
    // The stream holds its bound.
    let mut conn = deadpool_redis::redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = a.store().inputs_key();
    let len: usize = deadpool_redis::redis::cmd("XLEN")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 7, "{key}");
    // A time range: the decisions were made from noon on, a millisecond apart; a range
    // ending before noon is empty.
    let noon = jiff::civil::date(2026, 6, 1)
        .at(12, 0, 0, 0)
        .in_tz("Asia/Shanghai")
        .unwrap()
        .timestamp();
    let hour = jiff::SignedDuration::from_hours(1);
    let around =
        backtest(json!({"from": (noon - hour).to_string(), "to": (noon + hour).to_string()})).await;
    assert_eq!(
        (&around["selected"], &around["replayed"]),
        (&json!(9), &json!(7))
    );
    let before = backtest(
        json!({"from": (noon - hour).to_string(), "to": (noon - jiff::SignedDuration::from_secs(1)).to_string()}),
    )
    .await;
    assert_eq!(
        (&before["selected"], &before["skipped"]),
        (&json!(0), &json!(0))
    );
    // The last two: from the end of the slots' streams.
    let last = backtest(json!({"last": 2})).await;
    assert_eq!(last["selected"], 2, "{last}");
}

/// Two gateways on one Redis, one candidate staged for both: each counts its own requests,
/// and the distinct users of an outcome change are counted once over both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_users_are_shared_across_instances() {
    let Some(redis) = RedisServer::start(Options::default()).await else {
        return;
    };
    let prefix = redis_server::unique("shared-users");
    let a = gateway_with(&redis.url(), &prefix, 200).await;
    let b = gateway_with(&redis.url(), &prefix, 200).await;
    a.ready().await;
    b.ready().await;
    for u in ["u-su-f1", "u-su-f2", "u-su-f3"] {
        let r = a
            .client
            .put(a.url(&format!("/admin/credit-lines/{u}")))
            .bearer_auth(ADMIN)
            .json(
                &json!({"limit_fen": 1_000_000, "used_fen": 0, "risk_grade": "A",
                          "account_age_days": 400, "logins_30d": 120}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let mut candidate = a.thresholds().await;
    candidate["profiles"]["normal"]["login_pattern"]["mode"] = json!("reject_alone");
    // Staged on A, it is the fleet's: B takes it (here when asked for its report).
    let (s, r) = a
        .admin(reqwest::Method::PUT, "/admin/shadow", Some(candidate))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, r) = b.admin(reqwest::Method::GET, "/admin/shadow", None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    // A sees f1 and f2, B sees f2 and f3: three users over both.
    for (gw, users, tag) in [
        (&a, ["u-su-f1", "u-su-f2"], "a"),
        (&b, ["u-su-f2", "u-su-f3"], "b"),
    ] {
        for u in users {
            let d: Value = gw
                .drawdown(&format!("{tag}-{u}"), u, 1_000)
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(d["outcome"], "approved", "{d}");
        }
    }
    let report = |gw: &Gw| {
        let req = gw.client.get(gw.url("/admin/shadow")).bearer_auth(ADMIN);
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }
    };
    // The additions leave with the next batch, unawaited: wait (bounded) for them.
    let want = json!([{"transition": "approved_to_rejected", "users": 3}]);
    let mut got = (Value::Null, Value::Null);
    for _ in 0..100 {
        got = (report(&a).await, report(&b).await);
        if got.0["shared_users"] == want && got.1["shared_users"] == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (r, name) in [(&got.0, "a"), (&got.1, "b")] {
        assert_eq!(r["shared_users"], want, "{name}: {r}");
        // Each instance's own counts: its two requests and two users.
        assert_eq!(
            r["changes"],
            json!([{"transition": "approved_to_rejected", "key": "approved_to_rejected",
                    "requests": 2, "users": 2}]),
            "{name}: {r}"
        );
    }
}

/// The staged candidate is the fleet's and outlives a restart: staged on A, B evaluates its
/// traffic against it (its refresher takes it) and reports it; a restarted A still has it; B
/// discards it for both; staged again on A, B promotes it for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_staged_candidate_is_the_fleets_and_survives_a_restart() {
    use reqwest::Method;
    let Some(redis) = RedisServer::start(Options::default()).await else {
        return;
    };
    let prefix = redis_server::unique("fleet-shadow");
    let [a, b] = [
        gateway_with(&redis.url(), &prefix, 100).await,
        gateway_with(&redis.url(), &prefix, 100).await,
    ];
    a.ready().await;
    b.ready().await;
    let user = json!({"limit_fen": 1_000_000, "used_fen": 0, "risk_grade": "A",
                      "account_age_days": 400, "logins_30d": 120});
    let (s, _) = a
        .admin(Method::PUT, "/admin/credit-lines/u-fs-f1", Some(user))
        .await;
    assert_eq!(s, StatusCode::OK);
    let live = a.thresholds().await;
    let mut candidate = live.clone();
    candidate["profiles"]["normal"]["login_pattern"]["mode"] = json!("reject_alone");
    let (s, staged) = a
        .admin(Method::PUT, "/admin/shadow", Some(candidate.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{staged}");
    // B's refresher takes it (on the notice, or within a poll): its drawdowns are evaluated
    // against it without any admin call on B.
    let mut evaluated = false;
    for n in 0..100 {
        let d: Value = b
            .drawdown(&format!("fs-{n}"), "u-fs-f1", 1_000)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(d["outcome"], "approved", "live approves: {d}");
        if b.gw
            .app
            .shadow
            .current()
            .is_some_and(|c| c.report().drawdowns_evaluated > 0)
        {
            evaluated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(evaluated, "B never evaluated against the fleet's candidate");
    let (s, report) = b.admin(Method::GET, "/admin/shadow", None).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    for field in ["staged_by", "staged_at", "candidate_version"] {
        assert_eq!(report[field], staged[field], "{field}: {report}");
    }
    assert_eq!(
        report["changes"][0]["transition"], "approved_to_rejected",
        "{report}"
    );
    // A restart of A keeps it (the store holds it, not the process).
    a.gw.shutdown().await;
    let a = gateway_with(&redis.url(), &prefix, 100).await;
    a.ready().await;
    let (s, r) = a.admin(Method::GET, "/admin/shadow", None).await;
    assert_eq!(
        (s, &r["staged_at"]),
        (StatusCode::OK, &staged["staged_at"]),
        "{r}"
    );
    // B discards it: gone for A too.
    let (s, r) = b.admin(Method::DELETE, "/admin/shadow", None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    for method in [Method::GET, Method::DELETE] {
        let (s, r) = a.admin(method, "/admin/shadow", None).await;
        assert_eq!(
            (s, &r["error"]["code"]),
            (StatusCode::NOT_FOUND, &json!("NO_SHADOW_CANDIDATE"))
        );
    }
    // Staged again on A, promoted by B: the next version for both, unstaged for both.
    let (s, r) = a.admin(Method::PUT, "/admin/shadow", Some(candidate)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, r) = b
        .admin(Method::POST, "/admin/shadow/promote", Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let version = live["version"].as_u64().unwrap() + 1;
    assert_eq!(r["thresholds"]["version"], version, "{r}");
    let (s, r) = a.admin(Method::GET, "/admin/shadow", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{r}");
    a.applied(version).await;
    let on_a = a.thresholds().await;
    assert_eq!(
        on_a["profiles"]["normal"]["login_pattern"]["mode"],
        "reject_alone"
    );
    a.gw.shutdown().await;
    b.gw.shutdown().await;
}

impl Gw {
    /// An admin call: its status and JSON body.
    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(ADMIN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        (r.status(), r.json().await.unwrap())
    }
}
