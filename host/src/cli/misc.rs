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
    Show,
}

/// `module ...`.
#[derive(Debug, Subcommand)]
pub enum ModuleCommand {
    /// Write the exact component bytes this keygate runs to PATH, and print their SHA-256.
    Write {
        /// Where to write the component (.wasm).
        path: PathBuf,
    },
}

/// `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only events of this organization.
    #[arg(long)]
    org: Option<String>,
}

/// Run `init`.
pub fn cmd_init(ctx: &Ctx, a: InitArgs) -> CmdResult {
    let loc = ctx.location()?;
    let dir = loc.dir.clone();
    let kg = Keygate::init(&loc, &a.prefix)?;
    if let Some(keygate::admin::NewIssuer::Existing(path)) = kg.new_issuer()
        && !path.starts_with(kg.dir())
    {
        eprintln!(
            "keygate: signing with the existing issuer key {}: every store that uses this key accepts the others' keys and projects; give each store its own key",
            path.display()
        );
    }
    if ctx.json {
        out_json(
            &json!({"data_dir": dir, "prefix": kg.prefix(), "issuer_key_id": kg.issuer().id()}),
        )?;
    } else {
        out(&format!(
            "initialised a keygate store at {} (key prefix `{}`, issuer key id {})",
            dir.display(),
            kg.prefix(),
            kg.issuer().id()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `issuer show`.
pub fn cmd_issuer(ctx: &Ctx, _: IssuerCommand) -> CmdResult {
    let kg = ctx.open()?;
    let id = kg.issuer().id().to_string();
    let pk = hex(&kg.issuer().public_key());
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
    let events = ctx.open()?.audit(a.org.as_deref())?;
    if ctx.json {
        let v: Vec<_> = events
            .iter()
            .map(|e| {
                let mut j = json!(e);
                j["at"] = json!(time(e.at));
                j
            })
            .collect();
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
                ]
            })
            .collect();
        table(
            &["SEQ", "AT", "ACTION", "ORGANIZATION", "SUBJECT", "DETAIL"],
            &rows,
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `migrate`.
pub fn cmd_migrate(ctx: &Ctx) -> CmdResult {
    let loc = ctx.location()?;
    let m = Keygate::migrate(&loc)?;
    if ctx.json {
        out_json(&json!({
            "data_dir": loc.dir, "from_schema": m.from, "schema": keygate::schema::SCHEMA_VERSION,
            "project_registrations": m.projects, "deleted_projects": m.deleted_projects,
            "key_tombstones": m.tombstones,
        }))?;
    } else if m.from == keygate::schema::SCHEMA_VERSION {
        out(&format!(
            "the store at {} is already at schema {}; nothing to do",
            loc.dir.display(),
            m.from
        ))?;
    } else {
        out(&format!(
            "migrated the store at {} from schema {} to {}: signed {} project registrations ({} deleted) and {} key tombstones as they stood",
            loc.dir.display(),
            m.from,
            keygate::schema::SCHEMA_VERSION,
            m.projects,
            m.deleted_projects,
            m.tombstones
        ))?;
        eprintln!(
            "keygate: the registry was unsigned until now; if anyone else could write the data directory, review it (`keygate project list --org ORG`)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
