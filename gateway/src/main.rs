//! The gateway binary: `gateway [--config FILE] [--listen ADDR] [--check-config]`.
//!
//! `SIGHUP` reads the configuration file again and applies what can change live
//! (`gateway::api::reload`); `SIGINT` and `SIGTERM` shut down gracefully.

use clap::Parser;
use gateway::api::reload::ConfigSource;
use gateway::clock::SystemClock;
use gateway::config::{Config, Overrides, RuntimeFlavor};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc, not the system allocator: a request makes tens of short-lived allocations, and
/// glibc's malloc and free weigh on the request path (`BENCHMARKS.md`, "gateway request
/// path"). Built with `no_thp` (workspace `Cargo.toml`): asked for
/// transparent huge pages, mimalloc had the kernel zero a fresh 2 MiB page inside whichever
/// request first touched it. On a host whose THP setting is `always` rather than `madvise`,
/// also set `MIMALLOC_ALLOW_THP=0`.
#[global_allocator]
static ALLOCATOR: alloc_mimalloc::MiMalloc = alloc_mimalloc::MiMalloc;

/// loan-gateway: the drawdown entry point.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file.
    #[arg(long, env = "GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (e.g. 127.0.0.1:8080).
    #[arg(long, env = "GATEWAY_LISTEN")]
    listen: Option<String>,
    /// Caller API keys, comma-separated.
    #[arg(long, env = "GATEWAY_API_KEYS", hide_env_values = true)]
    api_keys: Option<String>,
    /// The admin token.
    #[arg(long, env = "GATEWAY_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// `memory` or a redis:// URL.
    #[arg(long, env = "GATEWAY_STORE")]
    store: Option<String>,
    /// The credit bureau's base URL (turns the bureau on; see `[bureau]`).
    #[arg(long, env = "GATEWAY_BUREAU_URL")]
    bureau_url: Option<String>,
    /// Validate the configuration, print the effective one, and exit.
    #[arg(long)]
    check_config: bool,
}

/// The environment and flags, which win over the file (at start and on every reload).
fn overrides(args: &Args) -> Overrides {
    Overrides {
        listen: args.listen.clone(),
        api_keys: args.api_keys.clone(),
        admin_token: args.admin_token.clone(),
        store: args.store.clone(),
        bureau_url: args.bureau_url.clone(),
    }
}

fn load(args: &Args) -> Result<Config, gateway::config::ConfigError> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    config.apply(overrides(args))?;
    config.validate()?;
    Ok(config)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gateway: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    // `server.runtime`: the flavour is chosen before the runtime exists.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The configuration keeps what was asked (`auto`), so that a reload compares like with
    // like; the banner names the flavour chosen.
    let flavour = config
        .server
        .runtime
        .resolve(cores, config.store == "memory");
    let mut runtime = match flavour {
        RuntimeFlavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        RuntimeFlavor::MultiThread | RuntimeFlavor::Auto => {
            tokio::runtime::Builder::new_multi_thread()
        }
    };
    match runtime.enable_all().build() {
        Ok(rt) => rt.block_on(run(args, config, flavour)),
        Err(e) => {
            eprintln!("gateway: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, config: Config, runtime: RuntimeFlavor) -> ExitCode {
    if args.check_config {
        match toml::to_string_pretty(&config) {
            Ok(text) => {
                println!("# effective configuration (secrets omitted)\n{text}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("gateway: cannot print the configuration: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // Kept to the end of `run`: dropping it flushes the queued log lines.
    let mut logging = gateway::logging::init(&config.log);
    let log_filter = logging.filter_hook.take();
    let listen = config.listen;
    let backlog = config.server.listen_backlog;
    let gateway = match gateway::Gateway::build(config, SystemClock::shared()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match gateway::server::bind(listen, backlog) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gateway: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let reload = &gateway.app().reload;
    if let Some(path) = args.config.clone() {
        reload.set_source(ConfigSource {
            path,
            overrides: overrides(&args),
        });
    }
    if let Some(hook) = log_filter {
        reload.set_log_filter(hook);
    }
    #[cfg(unix)]
    let reloads = tokio::spawn(reload_on_hangup(gateway.app().clone()));
    print_banner(&gateway, listen, runtime);
    gateway.serve(listener, shutdown_signal()).await;
    #[cfg(unix)]
    reloads.abort();
    ExitCode::SUCCESS
}

fn print_banner(gateway: &gateway::Gateway, listen: std::net::SocketAddr, runtime: RuntimeFlavor) {
    let runtime = match runtime {
        RuntimeFlavor::CurrentThread => "one thread",
        RuntimeFlavor::MultiThread | RuntimeFlavor::Auto => "worker threads",
    };
    println!("loan-gateway listening on http://{listen} (runtime: {runtime})");
    if gateway.uses_demo_credentials() {
        println!(
            "  DEMO credentials (set GATEWAY_API_KEYS and GATEWAY_ADMIN_TOKEN in production):"
        );
        println!("    caller key:  {}", gateway::DEMO_API_KEY);
        println!("    admin token: {}", gateway::DEMO_ADMIN_TOKEN);
    }
    if !gateway.demo_users().is_empty() {
        println!("  demo users (memory store):");
        for u in gateway.demo_users() {
            println!("    {:<24} {}", u.id.as_str(), u.note);
        }
    }
}

/// Every `SIGHUP` reloads the configuration file (the outcome is logged by the reload).
#[cfg(unix)]
async fn reload_on_hangup(app: gateway::api::App) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(cause = %e, "cannot listen for SIGHUP: reload with POST /admin/reload");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the configuration");
        let _ = app.reload_config();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(cause = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(cause = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}
