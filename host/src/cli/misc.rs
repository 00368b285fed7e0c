//! `keygate init`, `issuer show`, `module write`, `audit`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use keygate::Error;
use keygate::admin::{DEFAULT_PREFIX, Keygate};
use keygate::issuer::hex;
use keygate::runtime::{COMPONENT, component_sha256};
use serde_json::json;

use super::{CmdResult, Ctx, out, out_json, table, time, usage};

/// `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Deployment key prefix: 2 to 12 lowercase letters or digits, starting with a letter.
    #[arg(long, default_value = DEFAULT_PREFIX)]
    prefix: String,
}

/// `issuer ...`.
#[derive(Debug, Subcommand)]
pub enum IssuerCommand {
    /// Print the issuer key id and ed25519 public key (hex).
    #[command(
        after_help = "Examples:\n  keygate issuer show\n  keygate --json issuer show > issuer.json    # what validators pin"
    )]
    Show,
}

/// `module ...`.
#[derive(Debug, Subcommand)]
pub enum ModuleCommand {
    /// Write the exact component bytes this keygate runs to PATH, and print their SHA-256.
    #[command(after_help = "Example:\n  keygate module write keygate.wasm")]
    Write {
        /// Where to write the component (.wasm).
        path: PathBuf,
    },
}

/// `audit`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    verify: Option<AuditCommand>,
    /// Only events of this organization.
    #[arg(long)]
    org: Option<String>,
    /// Only events from this time on: RFC 3339, @SECONDS, or -DURATION (e.g. -7d).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true, value_parser = super::time_arg)]
    since: Option<String>,
    /// Only these actions: a name (key.delete) or a family (key.).
    #[arg(long)]
    action: Option<String>,
    /// Only the most recent N (still oldest first).
    #[arg(long)]
    limit: Option<usize>,
}

/// `audit verify`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's chain (HMAC links under a key derived from the
    /// issuer secret): finds an edited event, or one removed from the middle.
    #[command(after_help = "Example:\n  keygate audit verify")]
    Verify,
}

/// Run `audit verify`.
fn audit_verify(ctx: &Ctx) -> CmdResult {
    ctx.local_only("audit verify")?;
    let check = ctx.open()?.verify_audit()?;
    if ctx.json {
        out_json(&json!({"verified": true, "chained": check.chained, "older": check.older}))?;
    } else {
        out(&format!(
            "audit log verified: {} events chained{}",
            check.chained,
            match check.older {
                0 => String::new(),
                n => format!(" (the first {n}, written before the chain existed, are not)"),
            }
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `init`.
pub fn cmd_init(ctx: &Ctx, a: InitArgs) -> CmdResult {
    ctx.local_only("init")?;
    let loc = ctx.location()?;
    let dir = loc.dir.clone();
    let kg = Keygate::init(&loc, &a.prefix)?;
    if let Some(keygate::admin::NewIssuer::Existing(path)) = kg.new_issuer()
        && !path.starts_with(kg.dir())
    {
        eprintln!(
            "keygate: signing with the existing issuer key {}: every store that uses this key accepts the others' keys and projects; give each store its own key",
            super::safe(&path.display().to_string())
        );
    }
    if ctx.json {
        out_json(
            &json!({"data_dir": dir, "prefix": kg.prefix(), "issuer_key_id": kg.issuer().id()}),
        )?;
    } else {
        out(&format!(
            "initialised a keygate store at {} (key prefix `{}`, issuer key id {})",
            super::safe(&dir.display().to_string()),
            kg.prefix(),
            kg.issuer().id()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `issuer show`.
pub fn cmd_issuer(ctx: &Ctx, _: IssuerCommand) -> CmdResult {
    let issuer = ctx.api(false, |api| api.issuer_key())?;
    let id = issuer.id;
    let pk = hex(&issuer.public_key);
    if ctx.json {
        out_json(&json!({"issuer_key_id": id, "algorithm": "ed25519", "public_key": pk}))?;
    } else {
        out(&format!("issuer key id: {id}"))?;
        out(&format!("public key:    {pk} (ed25519, hex)"))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `module write`.
pub fn cmd_module(ctx: &Ctx, cmd: ModuleCommand) -> CmdResult {
    let ModuleCommand::Write { path } = cmd;
    if path.as_os_str() == "-" {
        return Err(usage(
            "`module write` needs a file path (the component is binary; it is not written to stdout)",
        ));
    }
    std::fs::write(&path, COMPONENT)
        .map_err(|e| Error::System(format!("cannot write `{}`: {e}", path.display())))?;
    let sha = component_sha256();
    if ctx.json {
        out_json(&json!({"path": path, "bytes": COMPONENT.len(), "sha256": sha}))?;
    } else {
        out(&format!("{sha}  {}", path.display()))?;
        eprintln!(
            "wrote {} bytes: the keygate:policy@0.2.0 component",
            COMPONENT.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `audit`.
pub fn cmd_audit(ctx: &Ctx, a: AuditArgs) -> CmdResult {
    if a.verify.is_some() {
        return audit_verify(ctx);
    }
    let since = match &a.since {
        Some(t) => Some(super::parse_time(t, super::now()?)?),
        None => None,
    };
    let mut events: Vec<_> = ctx
        .api(false, |api| api.audit(a.org.as_deref()))?
        .into_iter()
        .filter(|e| since.is_none_or(|s| e.at >= s))
        .filter(|e| match a.action.as_deref() {
            None => true,
            Some(f) if f.ends_with('.') => e.action.starts_with(f),
            Some(f) => e.action == f,
        })
        .collect();
    if let Some(n) = a.limit {
        let skip = events.len().saturating_sub(n);
        events.drain(..skip);
    }
    if ctx.json {
        let v: Vec<_> = events.iter().map(keygate::admin::audit_json).collect();
        out_json(&json!(v))?;
    } else {
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                vec![
                    e.sequence.to_string(),
                    time(e.at),
                    e.action.clone(),
                    e.organization.clone().unwrap_or_else(|| "-".into()),
                    e.subject.clone(),
                    e.detail.clone().unwrap_or_default(),
                    e.actor.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        table(
            &[
                "SEQ",
                "AT",
                "ACTION",
                "ORGANIZATION",
                "SUBJECT",
                "DETAIL",
                "ACTOR",
            ],
            &rows,
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Sign and commit. Without it, only show what would be signed.
    #[arg(long)]
    yes: bool,
}

/// Run `migrate`.
pub fn cmd_migrate(ctx: &Ctx, a: MigrateArgs) -> CmdResult {
    ctx.local_only("migrate")?;
    let loc = ctx.location()?;
    let m = Keygate::migrate(&loc, a.yes)?;
    let current = keygate::schema::SCHEMA_VERSION;
    if ctx.json {
        out_json(&json!({
            "data_dir": loc.dir, "from_schema": m.from, "schema": current,
            "applied": m.applied,
            "project_registrations": m.projects.iter().map(|p| p.to_json()).collect::<Vec<_>>(),
            "key_tombstones": m.tombstones, "organizations": m.organizations,
            "listed_keys": m.listed_keys,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let dir = super::safe(&loc.dir.display().to_string());
    if m.from == current {
        out(&format!(
            "the store at {dir} is already at schema {current}; nothing to do"
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = m
        .projects
        .iter()
        .map(|p| {
            let state = if p.deleted_at.is_some() {
                "deleted"
            } else {
                "live"
            };
            vec![
                p.organization.clone(),
                p.id.clone(),
                p.name.clone(),
                state.to_string(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        table(&["ORGANIZATION", "PROJECT", "NAME", "STATE"], &rows)?;
    }
    let orgs = if m.organizations.is_empty() {
        "-".to_string()
    } else {
        m.organizations.join(", ")
    };
    out(&format!(
        "organizations to register ({}, no key policy): {orgs}",
        m.organizations.len()
    ))?;
    let dead = if m.tombstones.is_empty() {
        "-".to_string()
    } else {
        m.tombstones.join(", ")
    };
    out(&format!("deleted keys ({}): {dead}", m.tombstones.len()))?;
    out(&format!(
        "keys to list under their organization: {}",
        m.listed_keys
    ))?;
    if m.applied {
        eprintln!(
            "keygate: migrated the store at {dir} from schema {} to {current}: signed the {} project registrations, {} key tombstones and {} organizations above, as they stood, and listed {} keys under their organizations",
            m.from,
            m.projects.len(),
            m.tombstones.len(),
            m.organizations.len(),
            m.listed_keys
        );
    } else if m.from == 3 {
        eprintln!(
            "keygate: the store at {dir} has schema 3: its organizations do not list their keys yet. Run `keygate migrate --yes` to list every key whose record verifies under its organization (nothing is signed)"
        );
    } else if m.from == 2 {
        eprintln!(
            "keygate: the store at {dir} has schema 2: its organizations are only names. Check that each organization above is one of yours (a writer of the data directory can make a current store look like an old one), then run `keygate migrate --yes` to register them, with no key policy (set one with `keygate org policy set`)"
        );
    } else {
        eprintln!(
            "keygate: the store at {dir} has schema {}: its project registry and deletions above are not signed. Check that each project belongs to the right organization (keygate cannot: a writer of the data directory can make a current store look like an old one to have a registry of their choosing signed), then run `keygate migrate --yes` to sign them",
            m.from
        );
    }
    Ok(ExitCode::SUCCESS)
}
