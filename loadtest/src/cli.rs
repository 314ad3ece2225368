//! The command line: `run`, `rehearse`, `audit`, `compare`, `report`, `blast`,
//! `serve-trivial`, `bureau`.
//!
//! # Layout
//! - [`Cli`]: open-loop surge generator and report writer for loan-gateway.
//! - [`Command`]: the subcommands.
//! - [`BureauArgs`]: `loadtest bureau` arguments.
//! - [`RunArgs`]: `loadtest run` arguments.
//! - [`RehearseArgs`]: `loadtest rehearse` arguments.
//! - [`AuditArgs`]: `loadtest audit` arguments.
//! - [`GateArgs`]: CI gates.
//! - [`dispatch`]: runs a parsed command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::Error;
use crate::blast::{BlastOptions, blast, serve_trivial};
use crate::bureau::{self, Bureau, BureauOptions, Jitter};
use crate::client::TargetAddr;
use crate::engine::{BureauHandle, RunOptions, run_with_ledger};
use crate::gate::{GATE_EXIT_CODE, Gates, all_passed};
use crate::report::{write_compare, write_report};
use crate::results::Results;
use crate::scenario::Scenario;
use crate::target::{
    EmbeddedOptions, dotted_lines, parse_setting, resolve_gateway_config, scenario_overrides,
    set_dotted, start_embedded,
};

/// Open-loop surge generator and report writer for loan-gateway.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario and write results.json, ledger.json, report.html and summary.md.
    Run(RunArgs),
    /// Rehearse a peak: the same scenario against the live policy and a candidate bundle
    /// (windows, limits, thresholds) on in-process gateways, and write rehearsal.html and
    /// rehearsal.md: good users refused, by cause, live against candidate.
    Rehearse(RehearseArgs),
    /// Reconcile what a run's clients were told (its ledger.json) with the store: lost
    /// acknowledged approvals, over-reservations, unknown outcomes (exit 3 when any > 0).
    Audit(AuditArgs),
    /// Write a side-by-side report of two results files.
    Compare {
        /// Results of run A (e.g. the naive configuration).
        a: PathBuf,
        /// Results of run B.
        b: PathBuf,
        /// Output folder (default: a timestamped folder under loadtest-results/).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Rewrite the report of a results file (and evaluate gates on it).
    Report {
        /// The results file.
        results: PathBuf,
        /// Output folder (default: the results file's folder).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Gates.
        #[command(flatten)]
        gates: GateArgs,
    },
    /// Raw open-loop GETs at a fixed rate, to measure the generator itself.
    Blast {
        /// Server URL, e.g. http://127.0.0.1:18080/.
        #[arg(long)]
        target: String,
        /// Requests per second over all connections (set it high to find the maximum).
        #[arg(long)]
        rate: f64,
        /// Seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Connections, one worker each.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Runtime threads (1 = a single-threaded runtime, for `taskset -c N`).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Write the report as JSON here too.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// A bare hyper server answering 200 to everything (the generator benchmark's peer).
    ServeTrivial {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:18080")]
        listen: String,
        /// Delay every answer by this many ms.
        #[arg(long)]
        delay_ms: Option<u64>,
        /// Runtime threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// The credit-bureau simulator: N service slots, a FIFO queue, deterministic scores.
    Bureau(BureauArgs),
    /// The in-process gateway of `run`, alone, on a free loopback port (printed as
    /// `listening on http://ADDR`) until the process is stopped: a gateway process for
    /// tests that kill instances (the gateway binary is not a dependency of this crate).
    ServeGateway {
        /// Configuration: a file, or `default` / `naive` (shipped).
        #[arg(long)]
        gateway_config: Option<PathBuf>,
        /// A setting, KEY=VALUE with a dotted key and a TOML value (repeatable).
        #[arg(long = "gateway-set", value_name = "KEY=VALUE")]
        gateway_set: Vec<String>,
        /// Caller API key.
        #[arg(
            long,
            env = "LOADTEST_API_KEY",
            default_value = "loadtest-api-key-0001"
        )]
        api_key: String,
        /// Admin token.
        #[arg(
            long,
            env = "LOADTEST_ADMIN_TOKEN",
            default_value = "loadtest-admin-token-0001"
        )]
        admin_token: String,
    },
}

/// `loadtest bureau` arguments.
#[derive(Debug, Args)]
pub struct BureauArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18090")]
    pub listen: String,
    /// Requests in service at once; the rest wait in FIFO order.
    #[arg(long, default_value_t = 8)]
    pub slots: usize,
    /// Base service time, ms (change it at run time with `PUT /admin/service`).
    #[arg(long, default_value_t = 20)]
    pub service_ms: u64,
    /// Added to each service time: none, exp:MEAN or uniform:LO-HI (milliseconds).
    #[arg(long, default_value = "none")]
    pub jitter: Jitter,
    /// Probability (0..=1) of answering 500 {"error":"injected"} after the service time.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Longest queue; beyond it 503 {"error":"overloaded"} at once (default: unbounded).
    #[arg(long)]
    pub max_queue: Option<usize>,
    /// Seed of the jitter and error draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Runtime threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// `loadtest run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A shipped scenario name (double11, spring-festival, step-overload, steady,
    /// steady-bureau, bureau-slowdown, cpu-step, cpu-steady, fleet-faults) or a TOML file.
    #[arg(long)]
    pub scenario: String,
    /// Gateway URL; without it the gateway is started in-process.
    #[arg(long)]
    pub target: Option<String>,
    /// The gateway's credentials.
    #[command(flatten)]
    pub credentials: Credentials,
    /// Configuration of the in-process gateway: a file, or `default` / `naive` (shipped).
    #[arg(long)]
    pub gateway_config: Option<PathBuf>,
    /// A setting of the in-process gateway, over its configuration and the scenario's
    /// `[gateway]` table: KEY=VALUE with a dotted key and a TOML value (repeatable), e.g.
    /// `--gateway-set bureau.guard=false`.
    #[arg(long = "gateway-set", value_name = "KEY=VALUE")]
    pub gateway_set: Vec<String>,
    /// Output folder (default: a timestamped folder under loadtest-results/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Stretch (>1) or shrink (<1) time.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Journeys per second the target sustains (from a `steady` run): every rate of the
    /// scenario is multiplied by it (`step-overload` is written in multiples of capacity)
    /// and the report states goodput as a share of it.
    #[arg(long)]
    pub capacity: Option<f64>,
    /// No progress line.
    #[arg(long)]
    pub no_progress: bool,
    /// A fault: AT_SECONDS=COMMAND, run with `sh -c` at that second of the run and drawn
    /// on the report's timeline (repeatable), e.g. `25=deploy/fleet.sh fault kill-primary`.
    #[arg(long = "fault", value_name = "AT=COMMAND")]
    pub faults: Vec<crate::faults::FaultSpec>,
    /// Gates.
    #[command(flatten)]
    pub gates: GateArgs,
}

/// The credentials a run uses.
#[derive(Debug, Clone, Args)]
pub struct Credentials {
    /// Caller API key.
    #[arg(
        long,
        env = "LOADTEST_API_KEY",
        default_value = "loadtest-api-key-0001"
    )]
    pub api_key: String,
    /// Admin token (seeding users, forcing peak windows).
    #[arg(
        long,
        env = "LOADTEST_ADMIN_TOKEN",
        default_value = "loadtest-admin-token-0001"
    )]
    pub admin_token: String,
}

/// `loadtest rehearse` arguments.
#[derive(Debug, Args)]
pub struct RehearseArgs {
    /// A shipped scenario name or a TOML file (as `run`).
    #[arg(long)]
    pub scenario: String,
    /// The candidate policy bundle: a TOML file of `[policy]` (windows, limits) and `[risk]`
    /// (`thresholds_file`) settings, merged over the live configuration.
    #[arg(long)]
    pub candidate: PathBuf,
    /// The live configuration: a file, or `default` / `naive` (shipped).
    #[arg(long)]
    pub gateway_config: Option<PathBuf>,
    /// The in-process gateways' credentials.
    #[command(flatten)]
    pub credentials: Credentials,
    /// Output folder (default: a timestamped folder under loadtest-results/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Stretch (>1) or shrink (<1) time.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// No progress line.
    #[arg(long)]
    pub no_progress: bool,
}

/// `loadtest audit` arguments.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The run's output folder (holding ledger.json); audit.json is written there.
    #[arg(long)]
    pub run: PathBuf,
    /// Gateway URL (the load balancer): decisions are read, and unknown outcomes asked
    /// again, through it.
    #[arg(long)]
    pub target: String,
    /// Caller API key (the run's).
    #[arg(
        long,
        env = "LOADTEST_API_KEY",
        default_value = "loadtest-api-key-0001"
    )]
    pub api_key: String,
    /// A Redis node of the store (`redis://host:port`; repeat for a cluster's nodes): the
    /// users' `used_fen` and the audit streams are read there.
    #[arg(long = "redis-node", required_unless_present = "sentinels")]
    pub redis_nodes: Vec<String>,
    /// Instead of `--redis-node`: a Sentinel of the store's primary (`redis://host:port`;
    /// repeat for each), with `--sentinel-master`.
    #[arg(
        long = "sentinel",
        conflicts_with = "redis_nodes",
        requires = "sentinel_master"
    )]
    pub sentinels: Vec<String>,
    /// The name the Sentinels monitor the primary under.
    #[arg(long, requires = "sentinels")]
    pub sentinel_master: Option<String>,
    /// The store's `redis.key_prefix`.
    #[arg(long, default_value = "lg")]
    pub key_prefix: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
}

/// CI gates.
#[derive(Debug, Clone, Copy, Args)]
pub struct GateArgs {
    /// Exit non-zero when the whole-run p99 (ms, CO-corrected) is above this.
    #[arg(long)]
    pub max_p99_ms: Option<f64>,
    /// Exit non-zero when the good-user refusal rate (0..1) is above this.
    #[arg(long)]
    pub max_good_refusal_rate: Option<f64>,
}

impl From<GateArgs> for Gates {
    fn from(g: GateArgs) -> Self {
        Gates {
            max_p99_ms: g.max_p99_ms,
            max_good_refusal_rate: g.max_good_refusal_rate,
        }
    }
}

impl Command {
    /// Runtime threads the command wants (1 = current-thread runtime).
    pub fn threads(&self) -> usize {
        match self {
            Command::Blast { threads, .. } | Command::ServeTrivial { threads, .. } => *threads,
            Command::Bureau(a) => a.threads,
            _ => 0,
        }
    }
}

fn stamp() -> String {
    jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string()
}

fn default_out(what: &str) -> PathBuf {
    Path::new("loadtest-results").join(format!("{what}-{}", stamp()))
}

fn gate_exit(gates: &[crate::results::GateOutcome]) -> ExitCode {
    for g in gates {
        eprintln!(
            "gate {}: {:.4} (limit {}) {}",
            g.name,
            g.value,
            g.limit,
            if g.passed { "pass" } else { "FAIL" }
        );
    }
    if all_passed(gates) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(GATE_EXIT_CODE)
    }
}

/// Runs a parsed command.
pub async fn dispatch(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Run(args) => cmd_run(args).await,
        Command::Rehearse(args) => cmd_rehearse(args).await,
        Command::Audit(args) => cmd_audit(args).await,
        Command::Compare { a, b, out } => {
            let (ra, rb) = (Results::read(&a)?, Results::read(&b)?);
            let out = out.unwrap_or_else(|| default_out("compare"));
            let w = write_compare(&ra, &rb, &out)?;
            println!("{}\n{}", w.html.display(), w.markdown.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            results,
            out,
            gates,
        } => {
            let mut r = Results::read(&results)?;
            let out = out.unwrap_or_else(|| {
                results
                    .parent()
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
            });
            r.gates = Gates::from(gates).evaluate(&r);
            let w = write_report(&r, &out)?;
            println!("{}\n{}", w.html.display(), w.markdown.display());
            Ok(gate_exit(&r.gates))
        }
        Command::Blast {
            target,
            rate,
            duration,
            connections,
            json,
            ..
        } => {
            let t = TargetAddr::resolve(&target).await?;
            let path = target
                .parse::<http::Uri>()
                .ok()
                .and_then(|u| u.path_and_query().map(|p| p.as_str().to_owned()))
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".into());
            if !(duration.is_finite() && duration > 0.0) {
                return Err(Error::Target("--duration must be > 0".into()));
            }
            let rep = blast(&BlastOptions {
                target: t,
                path,
                rate,
                duration: Duration::from_secs_f64(duration),
                connections,
                timeout: Duration::from_secs(10),
            })
            .await?;
            println!(
                "achieved {:.0} req/s over {duration} s with {connections} connections: {} completed, {} ok, {} errors, {} missed of {} scheduled\nlatency (from intended time) p50 {:.3} ms p99 {:.3} ms p99.9 {:.3} ms max {:.3} ms\nservice time p50 {:.3} ms p99 {:.3} ms",
                rep.achieved_rps,
                rep.completed,
                rep.ok,
                rep.errors,
                rep.missed,
                rep.scheduled,
                rep.latency_ms.percentiles.p50,
                rep.latency_ms.percentiles.p99,
                rep.latency_ms.percentiles.p999,
                rep.latency_ms.max,
                rep.service_time_ms.percentiles.p50,
                rep.service_time_ms.percentiles.p99,
            );
            if let Some(p) = json {
                let text =
                    serde_json::to_vec_pretty(&rep).map_err(|e| Error::Serialise(e.to_string()))?;
                std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::ServeTrivial {
            listen, delay_ms, ..
        } => {
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .map_err(|e| Error::io(&listen, e))?;
            let addr = listener.local_addr().map_err(|e| Error::io(&listen, e))?;
            eprintln!("serving 200 on http://{addr}/ (Ctrl-C to stop)");
            serve_trivial(listener, delay_ms.map(Duration::from_millis), async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| Error::io(&listen, e))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bureau(args) => cmd_bureau(args).await,
        Command::ServeGateway {
            gateway_config,
            gateway_set,
            api_key,
            admin_token,
        } => {
            let config_path = match &gateway_config {
                Some(p) => Some(resolve_gateway_config(p)?),
                None => None,
            };
            let mut overrides = toml::Table::new();
            for arg in &gateway_set {
                let (key, value) = parse_setting(arg)?;
                set_dotted(&mut overrides, &key, value)?;
            }
            let e = start_embedded(&EmbeddedOptions {
                config_path,
                api_key,
                admin_token,
                overrides,
            })
            .await?;
            println!("listening on http://{}", e.target.addr);
            let _ = tokio::signal::ctrl_c().await;
            e.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn cmd_bureau(args: BureauArgs) -> Result<ExitCode, Error> {
    let opts = BureauOptions {
        slots: args.slots,
        service_ms: args.service_ms,
        jitter: args.jitter,
        error_rate: args.error_rate,
        max_queue: args.max_queue,
        seed: args.seed,
    };
    let bureau = Bureau::new(&opts)?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| Error::io(&args.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io(&args.listen, e))?;
    eprintln!(
        "bureau simulator on http://{addr}/ ({} slots, {} ms + {}, error rate {}); \
         GET /v1/score/{{user_id}}, GET /stats, PUT /admin/service (Ctrl-C to stop)",
        opts.slots, opts.service_ms, opts.jitter, opts.error_rate
    );
    bureau::serve(listener, bureau, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| Error::io(&args.listen, e))?;
    Ok(ExitCode::SUCCESS)
}

async fn cmd_run(args: RunArgs) -> Result<ExitCode, Error> {
    let mut sc = Scenario::load(&args.scenario)?.scaled(args.scale)?;
    if let Some(c) = args.capacity {
        sc = sc.rates_times(c)?;
    }
    let started = jiff::Timestamp::now();
    if args.target.is_some()
        && (sc.bureau.is_some() || sc.gateway.is_some() || !args.gateway_set.is_empty())
    {
        return Err(Error::Target(format!(
            "scenario {} starts a bureau simulator or sets gateway settings: both need the \
             in-process gateway (leave out --target)",
            sc.name
        )));
    }
    let sim = match &sc.bureau {
        Some(b) => Some(bureau::start(&b.options(sc.seed)).await?),
        None => None,
    };
    let (target, label, embedded, overrides) = match &args.target {
        Some(url) => (TargetAddr::resolve(url).await?, url.clone(), None, None),
        None => {
            let config_path = match &args.gateway_config {
                Some(p) => Some(resolve_gateway_config(p)?),
                None => None,
            };
            // The scenario's settings, the simulator's address, then the command line's.
            let mut overrides =
                scenario_overrides(&sc, sim.as_ref().map(bureau::RunningBureau::base_url))?;
            let mut set = Vec::new();
            for arg in &args.gateway_set {
                let (key, value) = parse_setting(arg)?;
                set.push(format!("{key}={value}"));
                set_dotted(&mut overrides, &key, value)?;
            }
            let e = start_embedded(&EmbeddedOptions {
                config_path,
                api_key: args.credentials.api_key.clone(),
                admin_token: args.credentials.admin_token.clone(),
                overrides: overrides.clone(),
            })
            .await?;
            // The label names the gateway configuration, so a compare says which is which.
            let mut config = args
                .gateway_config
                .as_ref()
                .map_or_else(|| "default".to_owned(), |p| p.display().to_string());
            if !set.is_empty() {
                config = format!("{config}, {}", set.join(", "));
            }
            (
                e.target.clone(),
                format!("embedded ({config})"),
                Some(e),
                Some(overrides),
            )
        }
    };
    let opts = RunOptions {
        target,
        target_label: label,
        api_key: args.credentials.api_key.clone(),
        admin_token: args.credentials.admin_token.clone(),
        scale: args.scale,
        started_at: started.to_string(),
        run_nonce: u64::try_from(started.as_millisecond()).unwrap_or(0),
        progress: !args.no_progress,
        bureau: sim.as_ref().map(|s| BureauHandle {
            bureau: s.bureau.clone(),
            gateway_overrides: overrides
                .as_ref()
                .map(|o| dotted_lines(o).join("\n"))
                .unwrap_or_default(),
        }),
        faults: args.faults.clone(),
    };
    eprintln!(
        "running {} ({:.0} s) against {}",
        sc.name,
        sc.duration().as_secs_f64(),
        opts.target_label
    );
    let results = run_with_ledger(&sc, &opts).await;
    if let Some(e) = embedded {
        e.shutdown().await;
    }
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    let (mut results, ledger) = results?;
    results.gates = Gates::from(args.gates).evaluate(&results);
    let out = args.out.unwrap_or_else(|| default_out(&sc.name));
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let json = out.join("results.json");
    results.write(&json)?;
    ledger.write(&out)?;
    for f in &results.faults {
        eprintln!(
            "fault {} at {:.1} s (exit {:?}): goodput back to 95 % {}",
            f.label(),
            f.at_s,
            f.exit_code,
            f.recovery_s
                .map_or_else(|| "never".to_owned(), |r| format!("after {r:.1} s"))
        );
    }
    let w = write_report(&results, &out)?;
    println!(
        "good-user refusal rate {:.1} %, risky approval {:.1} %, p99 {:.1} ms, generator kept up: {}\n{}\n{}\n{}",
        results.totals.good_refusal_rate * 100.0,
        results.totals.risky_approval_rate * 100.0,
        results.latency_ms.percentiles.p99,
        results.generator.kept_up,
        json.display(),
        w.html.display(),
        w.markdown.display()
    );
    Ok(gate_exit(&results.gates))
}

/// `loadtest rehearse`.
async fn cmd_rehearse(args: RehearseArgs) -> Result<ExitCode, Error> {
    let scenario = Scenario::load(&args.scenario)?.scaled(args.scale)?;
    let gateway_config = match &args.gateway_config {
        Some(p) => Some(resolve_gateway_config(p)?),
        None => None,
    };
    let opts = crate::rehearse::RehearseOptions {
        candidate: crate::rehearse::Bundle::load(&args.candidate)?,
        scenario,
        scale: args.scale,
        gateway_config,
        api_key: args.credentials.api_key,
        admin_token: args.credentials.admin_token,
        progress: !args.no_progress,
    };
    let r = crate::rehearse::rehearse(&opts).await?;
    let out = args
        .out
        .unwrap_or_else(|| default_out(&format!("rehearse-{}", opts.scenario.name)));
    for (side, results) in [("live", &r.live), ("candidate", &r.candidate)] {
        let dir = out.join(side);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        results.write(&dir.join("results.json"))?;
        write_report(results, &dir)?;
    }
    let w = crate::report::write_rehearsal(&r, &out)?;
    let users = |r: &Results| r.totals.good_refused_users;
    println!(
        "good users refused: live {}, candidate {} (of {})
{}
{}",
        users(&r.live),
        users(&r.candidate),
        r.live.totals.good_users,
        w.html.display(),
        w.markdown.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `loadtest audit`.
async fn cmd_audit(args: AuditArgs) -> Result<ExitCode, Error> {
    let ledger = crate::ledger::Ledger::read(&args.run)?;
    let sentinel = !args.sentinels.is_empty();
    let mut nodes = args.redis_nodes.iter();
    // Behind Sentinels the URL gives only the database: they name the primary.
    let first = match nodes.next() {
        Some(first) => first.clone(),
        None if sentinel => "redis://sentinel-primary/0".to_owned(),
        None => return Err(Error::Target("--redis-node: at least one".into())),
    };
    let rest: Vec<String> = nodes.cloned().collect();
    let config = gateway::store::RedisConfig {
        url: first,
        cluster: !rest.is_empty(),
        cluster_nodes: rest,
        sentinels: args.sentinels.clone(),
        sentinel_master: args.sentinel_master.clone(),
        key_prefix: args.key_prefix.clone(),
        // The audit reads while a failover may still be settling: each read is retried.
        command_timeout: Duration::from_secs(2),
        pool_wait_timeout: Duration::from_secs(2),
        user_cache: 0,
        ..gateway::store::RedisConfig::default()
    };
    let store = gateway::store::RedisStore::new(config)
        .map_err(|e| Error::Target(format!("redis: {e}")))?;
    let opts = crate::audit::AuditOptions {
        target: TargetAddr::resolve(&args.target).await?,
        api_key: args.api_key.clone(),
        store,
        concurrency: args.concurrency,
    };
    let report = crate::audit::audit(&ledger, &opts).await?;
    let path = args.run.join("audit.json");
    let json = serde_json::to_vec_pretty(&report).map_err(|e| Error::Serialise(e.to_string()))?;
    std::fs::write(&path, json).map_err(|e| Error::io(&path, e))?;
    println!(
        "audit of {} drawdowns ({} acknowledged approvals, {} users):",
        report.drawdowns, report.acknowledged_approvals, report.users_checked
    );
    println!(
        "  unknown outcomes {}: {} stored before, {} none stored (decided now), {} unresolved",
        report.unknown_outcomes,
        report.unknown_resolved_stored,
        report.unknown_resolved_none,
        report.unknown_unresolved
    );
    for (name, n) in report.gates() {
        println!(
            "  gate {name}: {n} {}",
            if n == 0 { "pass" } else { "FAIL" }
        );
    }
    for e in &report.examples {
        println!("  - {e}");
    }
    println!("{}", path.display());
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(GATE_EXIT_CODE)
    })
}
