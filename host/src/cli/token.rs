//! `keygate admin-token`: the credentials of `keygate serve`'s admin API,
//! made and revoked locally (with the store, never over the API).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use keygate::admin::AdminToken;
use serde_json::json;

use super::{CliError, CmdResult, Ctx, now, out, out_json, safe, time, usage};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make an admin token and print it once on stdout.
    #[command(
        after_help = "Examples:\n  TOKEN=$(keygate admin-token create --name ops)\n  keygate admin-token create --name acme-ci --org acme --read-only"
    )]
    Create(CreateArgs),
    /// List admin tokens (never the tokens themselves).
    #[command(after_help = "Example:\n  keygate admin-token list")]
    List,
    /// Revoke an admin token for good.
    #[command(after_help = "Example:\n  keygate admin-token revoke 8MlaSOg1Skx")]
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A label for people (who or what holds the token).
    #[arg(long)]
    name: String,
    /// Reach only this organization (which must have a project or a key);
    /// without it the token reaches the whole deployment.
    #[arg(long, value_name = "ORG")]
    org: Option<String>,
    /// Only read: listings, audit, snapshots.
    #[arg(long)]
    read_only: bool,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The token id (the 11 characters after `kgadmin_`).
    id: String,
}

pub fn run(ctx: &Ctx, c: TokenCommand) -> CmdResult {
    // Tokens are the service's credentials: made and revoked with the store
    // itself, never through the service they unlock.
    ctx.local_only("admin-token")?;
    match c {
        TokenCommand::Create(a) => create(ctx, a),
        TokenCommand::List => list(ctx),
        TokenCommand::Revoke(a) => revoke(ctx, a),
    }
}

fn token_json(t: &AdminToken) -> serde_json::Value {
    json!({
        "id": t.id,
        "name": t.name,
        "organization": t.organization,
        "read_only": t.read_only,
        "status": if t.revoked_at.is_some() { "revoked" } else { "active" },
        "created_at": time(t.created_at),
        "revoked_at": t.revoked_at.map(time),
    })
}

fn reach(t: &AdminToken) -> String {
    let scope = match &t.organization {
        Some(org) => format!("organization {org}"),
        None => "the whole deployment".to_string(),
    };
    if t.read_only {
        format!("{scope}, read-only")
    } else {
        scope
    }
}

fn create(ctx: &Ctx, a: CreateArgs) -> CmdResult {
    super::key::stdout_is_open()?;
    let at = now()?;
    let issued =
        ctx.with_store(|kg| kg.create_admin_token(&a.name, a.org.as_deref(), a.read_only, at))?;
    let shown = if ctx.json {
        let mut j = token_json(&issued.info);
        j["token"] = json!(issued.expose_token());
        out_json(&j)
    } else {
        out(issued.expose_token())
    };
    if let Err(CliError::Output(e)) = &shown {
        return Err(usage(format!(
            "the new admin token {} could not be shown ({e}); it exists but was never displayed: revoke it with `keygate admin-token revoke {}` and create another",
            issued.info.id, issued.info.id
        )));
    }
    shown?;
    eprintln!(
        "created admin token {} ({}) reaching {}. This is the only time the token is shown: store it securely now.",
        issued.info.id,
        safe(&issued.info.name),
        reach(&issued.info)
    );
    Ok(ExitCode::SUCCESS)
}

fn list(ctx: &Ctx) -> CmdResult {
    let mut kg = ctx.open()?;
    let (tokens, untrusted) = kg.list_admin_tokens()?;
    for id in &untrusted {
        eprintln!(
            "warning: the stored admin token `{}` does not verify: it is not a token; investigate who could write to the data directory",
            safe(id)
        );
    }
    if ctx.json {
        out_json(&json!(tokens.iter().map(token_json).collect::<Vec<_>>()))?;
    } else if tokens.is_empty() {
        out("no admin tokens")?;
    } else {
        for t in &tokens {
            let status = match t.revoked_at {
                Some(at) => format!("revoked {}", time(at)),
                None => "active".into(),
            };
            out(&format!(
                "{}  {}  {}  {status}  created {}",
                t.id,
                safe(&t.name),
                reach(t),
                time(t.created_at)
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn revoke(ctx: &Ctx, a: RevokeArgs) -> CmdResult {
    let mut kg = ctx.open()?;
    let (t, changed) = kg.revoke_admin_token(&a.id, now()?)?;
    if ctx.json {
        let mut j = token_json(&t);
        j["changed"] = json!(changed);
        out_json(&j)?;
    } else if changed {
        out(&format!("revoked admin token {} ({})", t.id, safe(&t.name)))?;
    } else {
        out(&format!("admin token {} was already revoked", t.id))?;
    }
    Ok(ExitCode::SUCCESS)
}
