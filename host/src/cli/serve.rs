//! `keygate serve`: run the validation and admin service on this store.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use keygate::serve::Config;

use super::{CmdResult, Ctx, out, usage};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on. Plain HTTP: put TLS in front (a
    /// reverse proxy or load balancer) when it listens beyond loopback.
    #[arg(long, default_value = "127.0.0.1:7700", env = "KEYGATE_LISTEN")]
    listen: SocketAddr,
    /// Validator instances answering verify requests (default: one per CPU).
    #[arg(long)]
    validators: Option<usize>,
    /// Open connections at most; more are closed at once.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
}

pub fn cmd_serve(ctx: &Ctx, a: ServeArgs) -> CmdResult {
    ctx.local_only("serve")?;
    let mut cfg = Config {
        listen: a.listen,
        max_connections: a.max_connections,
        ..Config::default()
    };
    if let Some(n) = a.validators {
        if n == 0 || n > 256 {
            return Err(usage("--validators must be 1 to 256"));
        }
        cfg.validators = n;
    }
    if a.max_connections == 0 {
        return Err(usage("--max-connections must be at least 1"));
    }
    cfg.shutdown_grace = Duration::from_secs(30);
    // Structured logs on stderr, one JSON object per line.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
    let kg = ctx.open()?;
    keygate::serve::run(kg, cfg, |addr| {
        let _ = out(&format!("listening on http://{addr}"));
    })?;
    Ok(ExitCode::SUCCESS)
}
