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
    /// Validator instances answering verify requests (default: one per four CPUs, at least one; each holds every key).
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
    // The first run of a fresh machine: the store is made, and a sign-in
    // link is printed once (below).
    let kg = ctx.open_or_init()?;
    cfg.first_run_token = true;
    keygate::serve::run(kg, cfg, |addr, first| {
        let _ = out(&format!("listening on http://{addr}"));
        if let Some(t) = first {
            // The page's address as a browser on this machine reaches it.
            let shown = keygate::serve::reachable_here(addr);
            // The token goes in the fragment: browsers never send it to a
            // server, so it reaches no log; the page signs in with it and
            // takes it out of the address bar.
            let _ = out(&format!(
                "sign in: http://{shown}/#token={}",
                t.expose_token()
            ));
            eprintln!(
                "keygate: this store had no admin token: made deployment token {} (\"first run (sign-in link)\"), shown once in the link above; revoke it with `keygate admin-token revoke {}` once you have others",
                t.info.id, t.info.id
            );
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
