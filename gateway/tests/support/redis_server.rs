//! A `redis-server` of the test's own, on a free loopback port.
//!
//! Each test starts its own server (`--save "" --appendonly no` unless it asks for AOF), so
//! tests never share data and never touch a Redis on 6379. With `REDIS_URL` set, tests that
//! need no server of their own use it, each under a fresh key prefix. Without either the test
//! fails with how to install Redis, unless `LOAN_GATEWAY_SKIP_REDIS_TESTS=1`.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use gateway::store::{RedisConfig, RedisStore};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const INSTALL: &str = "these tests need Redis: install it with \
    `apt-get install -y redis-server` (or set REDIS_URL=redis://127.0.0.1:PORT to a Redis \
    they may write to); LOAN_GATEWAY_SKIP_REDIS_TESTS=1 skips them";

/// Whether Redis tests are skipped on this machine (never in CI).
pub fn skipped() -> bool {
    std::env::var("LOAN_GATEWAY_SKIP_REDIS_TESTS").is_ok_and(|v| v == "1")
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A unique name for this process and call (key prefixes, directories).
pub fn unique(what: &str) -> String {
    format!(
        "{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Options of a server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Append-only file with `appendfsync always`: every acknowledged write survives a kill.
    pub aof: bool,
    /// A Redis Cluster node (`--cluster-enabled yes`), for [`RedisCluster`].
    pub cluster: bool,
    /// TLS only (`--port 0 --tls-port PORT`), with a certificate for 127.0.0.1 issued by a
    /// CA made for this server ([`RedisServer::ca_file`]); clients need no certificate.
    pub tls: bool,
    /// `--cluster-node-timeout` in ms (0: Redis' default, 15 s).
    pub node_timeout_ms: u64,
    /// A replica of the server on this port (`--replicaof 127.0.0.1 PORT`), for
    /// [`RedisSentinels`].
    pub replica_of: Option<u16>,
}

/// A running server; killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    opts: Options,
}

fn free_port() -> u16 {
    // Bind port 0, read the port, release it: redis-server cannot take `--port 0`.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl RedisServer {
    /// Starts a server, or answers `None` when the tests are skipped; panics with
    /// [`INSTALL`] when `redis-server` is missing.
    pub async fn start(opts: Options) -> Option<RedisServer> {
        let dir = std::env::temp_dir().join(unique("loan-gateway-redis"));
        std::fs::create_dir_all(&dir).unwrap();
        if opts.tls {
            write_tls_files(&dir);
        }
        for _ in 0..10 {
            let port = free_port();
            match spawn(port, &dir, opts).await {
                Ok(child) => {
                    return Some(RedisServer {
                        child: Some(child),
                        port,
                        dir,
                        opts,
                    });
                }
                Err(Spawn::Missing) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    if skipped() {
                        return None;
                    }
                    panic!("redis-server not found: {INSTALL}");
                }
                // Someone took the port between our release and redis' bind: try another.
                Err(Spawn::Failed(why)) => eprintln!("redis-server on {port}: {why}; retrying"),
            }
        }
        panic!("redis-server did not start on any of 10 free ports");
    }

    /// `redis://127.0.0.1:PORT` (`rediss://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.opts.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// With TLS: the CA certificate (PEM) that issued the server's.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the server, which this test started.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().and_then(Child::id).expect("running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Kills the server (SIGKILL: no goodbye, as a crash) and waits for it to exit.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }

    /// Starts it again on the same port (and, with AOF, the same data).
    pub async fn restart(&mut self) {
        self.kill().await;
        let mut last = String::new();
        for _ in 0..50 {
            match spawn(self.port, &self.dir, self.opts).await {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(Spawn::Missing) => panic!("redis-server vanished: {INSTALL}"),
                // The old socket may linger a moment.
                Err(Spawn::Failed(why)) => {
                    last = why;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        panic!("redis-server did not restart on {}: {last}", self.port);
    }

    /// Starts it again on the same port as a replica of the server on `primary` (as a
    /// supervisor brings a failed-over primary back), with its data until it syncs.
    pub async fn restart_as_replica_of(&mut self, primary: u16) {
        self.opts.replica_of = Some(primary);
        self.restart().await;
    }

    /// A store on this server with test-friendly timeouts.
    pub fn store(&self) -> RedisStore {
        RedisStore::new(config(self.url())).unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The store settings tests use: short timeouts so an outage answers fast.
pub fn config(url: String) -> RedisConfig {
    RedisConfig {
        url,
        key_prefix: unique("t"),
        pool_wait_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_millis(500),
        command_timeout: Duration::from_secs(2),
        ..RedisConfig::default()
    }
}

/// Where a test that only needs *a* Redis gets one: `REDIS_URL` (the store gets a fresh
/// key prefix), else a server of its own. `None` when skipped.
pub struct AnyRedis {
    pub server: Option<RedisServer>,
    pub url: String,
}

impl AnyRedis {
    pub async fn get() -> Option<AnyRedis> {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return Some(AnyRedis { server: None, url });
        }
        let server = RedisServer::start(Options::default()).await?;
        Some(AnyRedis {
            url: server.url(),
            server: Some(server),
        })
    }

    pub fn store(&self) -> RedisStore {
        RedisStore::new(config(self.url.clone())).unwrap()
    }
}

enum Spawn {
    Missing,
    Failed(String),
}

/// A CA and a server certificate for 127.0.0.1 it issued, in `dir` (`ca.pem`,
/// `server.pem`, `server.key`).
fn write_tls_files(dir: &std::path::Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

async fn spawn(port: u16, dir: &std::path::Path, opts: Options) -> Result<Child, Spawn> {
    let mut cmd = Command::new("redis-server");
    if opts.tls {
        cmd.args(["--port", "0", "--tls-port"])
            .arg(port.to_string())
            .arg("--tls-cert-file")
            .arg(dir.join("server.pem"))
            .arg("--tls-key-file")
            .arg(dir.join("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(dir.join("ca.pem"))
            .args(["--tls-auth-clients", "no"]);
    } else {
        cmd.arg("--port").arg(port.to_string());
    }
    cmd.args(["--bind", "127.0.0.1", "--save", ""])
        .args(["--dir"])
        .arg(dir)
        .args(["--daemonize", "no", "--loglevel", "notice"]);
    if opts.cluster {
        cmd.args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(format!("nodes-{port}.conf"));
        if opts.node_timeout_ms > 0 {
            cmd.arg("--cluster-node-timeout")
                .arg(opts.node_timeout_ms.to_string());
        }
    }
    if let Some(primary) = opts.replica_of {
        cmd.args(["--replicaof", "127.0.0.1"])
            .arg(primary.to_string());
    }
    // A full sync starts at once, not after Redis' 5 s wait for more replicas to share it.
    cmd.args(["--repl-diskless-sync-delay", "0"]);
    if opts.aof {
        cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        cmd.args(["--appendonly", "no"]);
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Spawn::Missing),
        Err(e) => return Err(Spawn::Failed(e.to_string())),
    };
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    // redis-server says when it is ready (or why it is not); wait for that line.
    let ready = tokio::time::timeout(Duration::from_secs(20), async {
        let mut log = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("Ready to accept connections") {
                return Ok(());
            }
            log.push(line);
        }
        Err(log.join("\n"))
    })
    .await;
    match ready {
        Ok(Ok(())) => {
            // Keep draining its log so the pipe never fills and blocks the server.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            Ok(child)
        }
        Ok(Err(log)) => {
            let _ = child.kill().await;
            Err(Spawn::Failed(log))
        }
        Err(_) => {
            let _ = child.kill().await;
            Err(Spawn::Failed("not ready within 20 s".into()))
        }
    }
}

/// A 3-node Redis Cluster of the test's own (three primaries, no replicas, every slot
/// assigned by `redis-cli --cluster create`); the nodes are killed when dropped.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers on free ports, joins them and waits for
    /// `cluster_state:ok` on each; `None` when the tests are skipped. Panics with
    /// [`INSTALL`] when `redis-server` or `redis-cli` is missing.
    pub async fn start() -> Option<RedisCluster> {
        Self::start_with(Options::default()).await
    }

    /// [`Self::start`] with `opts` for every node (`cluster` is set).
    pub async fn start_with(opts: Options) -> Option<RedisCluster> {
        Self::start_replicas(opts, 0).await
    }

    /// Six nodes: three primaries with a replica each (`--cluster-replicas 1`), a primary's
    /// replica promoted `--cluster-node-timeout` 1000 ms after it fails; returns once every
    /// replica is in sync.
    pub async fn start_replicated() -> Option<RedisCluster> {
        let opts = Options {
            node_timeout_ms: 1000,
            ..Options::default()
        };
        Self::start_replicas(opts, 1).await
    }

    async fn start_replicas(opts: Options, replicas: usize) -> Option<RedisCluster> {
        let opts = Options {
            cluster: true,
            ..opts
        };
        let mut nodes = Vec::new();
        for _ in 0..3 * (1 + replicas) {
            nodes.push(RedisServer::start(opts).await?);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if skipped() {
                    return None;
                }
                panic!("redis-cli not found: {INSTALL}");
            }
            Err(e) => panic!("redis-cli --cluster create: {e}"),
        };
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ok().await;
        if replicas > 0 {
            cluster.wait_replicas_synced(3 * replicas).await;
        }
        Some(cluster)
    }

    /// Waits (up to 30 s) until `n` replicas have their link to their primary up.
    pub async fn wait_replicas_synced(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut synced = 0;
            for node in self.nodes.iter().filter(|n| n.child.is_some()) {
                let client = deadpool_redis::redis::Client::open(node.url()).unwrap();
                let info: Option<String> = async {
                    let mut c = client.get_multiplexed_async_connection().await.ok()?;
                    deadpool_redis::redis::cmd("INFO")
                        .arg("replication")
                        .query_async(&mut c)
                        .await
                        .ok()
                }
                .await;
                synced += usize::from(info.is_some_and(|i| i.contains("master_link_status:up")));
            }
            if synced >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{synced} of {n} replicas in sync after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to 30 s) until every node reports `cluster_state:ok` and sees every node,
    /// so a client's first topology read is complete.
    async fn wait_ok(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for node in &self.nodes {
            let client = deadpool_redis::redis::Client::open(node.url()).unwrap();
            loop {
                let info: Option<String> = async {
                    let mut c = client.get_multiplexed_async_connection().await.ok()?;
                    deadpool_redis::redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query_async(&mut c)
                        .await
                        .ok()
                }
                .await;
                let info = info.unwrap_or_default();
                let known = format!("cluster_known_nodes:{}", self.nodes.len());
                if info.contains("cluster_state:ok") && info.contains(&known) {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "node {} not ok within 30 s: {info}",
                    node.port
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// The store settings for this cluster: node 0 as `url`, the others as more seeds; no
    /// replica acknowledgements (this cluster has no replicas).
    pub fn config(&self) -> RedisConfig {
        RedisConfig {
            cluster: true,
            replica_acks: Some(0),
            cluster_nodes: self.nodes[1..].iter().map(RedisServer::url).collect(),
            ..config(self.nodes[0].url())
        }
    }

    /// A store on the cluster with test-friendly timeouts and a fresh key prefix.
    pub fn store(&self) -> RedisStore {
        RedisStore::new(self.config()).unwrap()
    }
}

/// The name the Sentinels of [`RedisSentinels`] monitor the primary under.
pub const SENTINEL_MASTER: &str = "lg-primary";

/// One primary, one replica (both AOF, `appendfsync always`) and three Sentinels (quorum 2)
/// of the test's own, on free ports; every process is killed when dropped.
pub struct RedisSentinels {
    pub primary: RedisServer,
    pub replica: RedisServer,
    sentinels: Vec<(Child, u16)>,
    dir: PathBuf,
}

impl RedisSentinels {
    /// Starts them and waits until the replica is in sync and every Sentinel knows the
    /// replica and the two other Sentinels (so a failover can start at once); a primary is
    /// judged down after `down_after_ms`. `None` when the tests are skipped.
    pub async fn start(down_after_ms: u64) -> Option<RedisSentinels> {
        let aof = Options {
            aof: true,
            ..Options::default()
        };
        let primary = RedisServer::start(aof).await?;
        let replica = RedisServer::start(Options {
            replica_of: Some(primary.port),
            ..aof
        })
        .await?;
        let dir = std::env::temp_dir().join(unique("loan-gateway-sentinels"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut set = RedisSentinels {
            primary,
            replica,
            sentinels: Vec::new(),
            dir,
        };
        set.wait_replica_synced().await;
        for _ in 0..3 {
            let s = set.spawn_sentinel(down_after_ms).await;
            set.sentinels.push(s);
        }
        set.wait_sentinels_know_everyone().await;
        Some(set)
    }

    async fn spawn_sentinel(&self, down_after_ms: u64) -> (Child, u16) {
        let mut last = String::new();
        for _ in 0..10 {
            let port = free_port();
            let conf = self.dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary} 2\n\
                     sentinel down-after-milliseconds {SENTINEL_MASTER} {down_after_ms}\n\
                     sentinel failover-timeout {SENTINEL_MASTER} 5000\n",
                    dir = self.dir.display(),
                    primary = self.primary.port,
                ),
            )
            .unwrap();
            let mut cmd = Command::new("redis-server");
            cmd.arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .stdin(Stdio::null())
                .kill_on_drop(true);
            let mut child = cmd.spawn().unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let ready = tokio::time::timeout(Duration::from_secs(20), async {
                let mut log = Vec::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains("+monitor master") {
                        return Ok(());
                    }
                    log.push(line);
                }
                Err(log.join("\n"))
            })
            .await;
            match ready {
                Ok(Ok(())) => {
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    return (child, port);
                }
                Ok(Err(log)) => last = log,
                Err(_) => last = "not ready within 20 s".into(),
            }
            let _ = child.kill().await;
        }
        panic!("redis-server --sentinel did not start: {last}");
    }

    /// `redis://127.0.0.1:PORT` of each Sentinel.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|(_, port)| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    async fn ask(
        port: u16,
        cmd: &deadpool_redis::redis::Cmd,
    ) -> Option<deadpool_redis::redis::Value> {
        let client =
            deadpool_redis::redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
        let mut c = tokio::time::timeout(
            Duration::from_secs(1),
            client.get_multiplexed_async_connection(),
        )
        .await
        .ok()?
        .ok()?;
        tokio::time::timeout(Duration::from_secs(1), cmd.query_async(&mut c))
            .await
            .ok()?
            .ok()
    }

    /// The port of the primary the first Sentinel that answers names.
    pub async fn primary_port(&self) -> Option<u16> {
        let mut cmd = deadpool_redis::redis::cmd("SENTINEL");
        cmd.arg("get-master-addr-by-name").arg(SENTINEL_MASTER);
        for (_, port) in &self.sentinels {
            if let Some(v) = Self::ask(*port, &cmd).await {
                let addr: Option<(String, u16)> = deadpool_redis::redis::from_redis_value(v).ok();
                if let Some((_, p)) = addr {
                    return Some(p);
                }
            }
        }
        None
    }

    /// Waits (up to 30 s) until the Sentinels name the primary on `port`.
    pub async fn wait_primary(&self, port: u16) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.primary_port().await != Some(port) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the Sentinels did not name {port} as the primary within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to 30 s) until a replica of the current primary has its link up.
    pub async fn wait_replica_synced(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut info = deadpool_redis::redis::cmd("INFO");
        info.arg("replication");
        loop {
            let mut up = false;
            for node in [&self.primary, &self.replica] {
                if node.child.is_none() {
                    continue;
                }
                if let Some(v) = Self::ask(node.port, &info).await {
                    let text: String =
                        deadpool_redis::redis::from_redis_value(v).unwrap_or_default();
                    up |= text.contains("master_link_status:up");
                }
            }
            if up {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no replica in sync after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_sentinels_know_everyone(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let count = |what: &str| {
            let mut cmd = deadpool_redis::redis::cmd("SENTINEL");
            cmd.arg(what).arg(SENTINEL_MASTER);
            cmd
        };
        let (replicas, peers) = (count("REPLICAS"), count("SENTINELS"));
        for (_, port) in &self.sentinels {
            loop {
                let n = |v: Option<deadpool_redis::redis::Value>| match v {
                    Some(deadpool_redis::redis::Value::Array(a)) => a.len(),
                    _ => 0,
                };
                let r = n(Self::ask(*port, &replicas).await);
                let p = n(Self::ask(*port, &peers).await);
                if r >= 1 && p >= 2 {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "Sentinel {port} knows {r} replicas and {p} Sentinels after 30 s"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl Drop for RedisSentinels {
    fn drop(&mut self) {
        for (c, _) in &mut self.sentinels {
            let _ = c.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
