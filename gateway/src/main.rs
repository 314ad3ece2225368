//! The gateway binary: `gateway [--config FILE] [--listen ADDR] [--check-config]`.

use clap::Parser;
use gateway::clock::SystemClock;
use gateway::config::{Config, LogFormat, Overrides, RuntimeFlavor};
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

fn load(args: &Args) -> Result<Config, gateway::config::ConfigError> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    config.apply(Overrides {
        listen: args.listen.clone(),
        api_keys: args.api_keys.clone(),
        admin_token: args.admin_token.clone(),
        store: args.store.clone(),
        bureau_url: args.bureau_url.clone(),
    })?;
    config.validate()?;
    Ok(config)
}

fn init_tracing(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
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
    let mut runtime = match config.server.runtime {
        RuntimeFlavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
        RuntimeFlavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
    };
    match runtime.enable_all().build() {
        Ok(rt) => rt.block_on(run(args, config)),
        Err(e) => {
            eprintln!("gateway: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, config: Config) -> ExitCode {
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
    init_tracing(&config);
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
    print_banner(&gateway, listen);
    gateway.serve(listener, shutdown_signal()).await;
    ExitCode::SUCCESS
}

fn print_banner(gateway: &gateway::Gateway, listen: std::net::SocketAddr) {
    println!("loan-gateway listening on http://{listen}");
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
