//! `keygate org ...`

use std::process::ExitCode;

use clap::{ArgGroup, Args, Subcommand};
use keygate::admin::{KeyPolicyView, OrgView};
use serde_json::json;

use super::{CliError, CmdResult, Ctx, now, out, out_json, safe, table, time, usage};

/// Organization commands.
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Register an organization; keys and projects exist only in one.
    #[command(
        after_help = "Examples:\n  keygate org create acme --name \"Acme Corp\"\n  keygate org create globex"
    )]
    Create(CreateArgs),
    /// List the organizations.
    #[command(after_help = "Example:\n  keygate org list")]
    List,
    /// Show an organization: its key policy, projects and keys, and the
    /// keys its policy denies.
    #[command(after_help = "Example:\n  keygate org show acme")]
    Show(ShowArgs),
    /// Delete an organization (refused while it has projects or keys,
    /// unless --cascade). Its slug is never used again.
    #[command(
        after_help = "Examples:\n  keygate org delete globex\n  keygate org delete acme --cascade --yes"
    )]
    Delete(DeleteArgs),
    /// Set an organization's key policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

/// `org policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Set the expiry rule every key of the organization obeys, at creation
    /// and at use: a key that breaks it is denied (`lifetime-exceeds-policy`)
    /// until the policy allows it again.
    #[command(
        group(ArgGroup::new("rule").multiple(true).args(["max_expiry", "require_expiry", "expiry_optional"])),
        after_help = "Examples:\n  keygate org policy set acme --max-expiry 30d     # keys expire within 30 days\n  \
keygate org policy set acme --require-expiry     # keys must expire (7 to 90 days)\n  \
keygate org policy set acme --expiry-optional    # lift the rule\n  \
keygate org policy set acme --name \"Acme Corp\"  # rename, the policy as it is"
    )]
    Set(PolicySetArgs),
}

/// `org create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Slug: 1 to 63 lowercase letters, digits and dashes.
    slug: String,
    /// Display name (default: the slug).
    #[arg(long)]
    name: Option<String>,
}

/// `org show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Slug.
    slug: String,
}

/// `org delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Slug.
    slug: String,
    /// Also delete every project and key of the organization.
    #[arg(long)]
    cascade: bool,
    /// Do not ask (needed when there is no terminal to ask on).
    #[arg(long)]
    yes: bool,
}

/// `org policy set`.
#[derive(Debug, Args)]
pub struct PolicySetArgs {
    /// Slug.
    slug: String,
    /// Keys must expire within this many days of their creation (7d to 90d).
    #[arg(long, value_name = "DAYS")]
    max_expiry: Option<String>,
    /// Keys must expire (any allowed expiry, 7 to 90 days).
    #[arg(long)]
    require_expiry: bool,
    /// Keys may never expire (no rule).
    #[arg(long, conflicts_with_all = ["max_expiry", "require_expiry"])]
    expiry_optional: bool,
    /// Also rename the organization.
    #[arg(long)]
    name: Option<String>,
}

fn parse_days(s: &str) -> Result<u16, CliError> {
    let bad = || usage(format!("`{s}` is not a maximum expiry: use 7d to 90d"));
    let digits = s.strip_suffix('d').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits.parse::<u16>().map_err(|_| bad())
}

fn counted(n: u64, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

fn show_lines(o: &OrgView, at: u64) -> Result<(), CliError> {
    out(&format!("organization: {}", o.slug))?;
    out(&format!("name:         {}", safe(&o.name)))?;
    out(&format!("key policy:   {}", o.policy_text()))?;
    out(&format!(
        "created:      {} ({})",
        time(o.created_at),
        super::relative(o.created_at, at)
    ))?;
    if let Some(d) = o.deleted_at {
        out(&format!("deleted:      {}", time(d)))?;
    }
    if let (Some(p), Some(k)) = (o.projects, o.keys) {
        out(&format!("projects:     {p}"))?;
        out(&format!("keys:         {k}"))?;
    }
    if let Some(outside) = &o.keys_outside_policy {
        let list = if outside.is_empty() {
            "none".to_string()
        } else {
            outside.join(", ")
        };
        out(&format!("denied by the key policy: {list}"))?;
    }
    Ok(())
}

/// Run an organization command.
pub fn run(ctx: &Ctx, cmd: OrgCommand) -> CmdResult {
    let now = now()?;
    match cmd {
        OrgCommand::Create(a) => {
            // The time is read once the store is open: opening an empty
            // data directory initialises it, and its first audit event must
            // not be later than the organization (creation refuses a clock
            // that reads before the store's last write).
            let o = ctx.api(true, |api| {
                api.create_organization(&a.slug, a.name.as_deref(), keygate::admin::now()?)
            })?;
            if ctx.json {
                out_json(&o.to_json())?;
            } else {
                out(&o.slug)?;
                eprintln!("created organization {} ({})", o.slug, safe(&o.name));
            }
        }
        OrgCommand::List => {
            let (orgs, untrusted) = ctx.api(false, |api| api.list_organizations())?;
            for slug in &untrusted {
                eprintln!(
                    "warning: the stored registration of organization `{}` does not verify: it is not listed and every key of it is denied; investigate who could write to the data directory",
                    safe(slug)
                );
            }
            if ctx.json {
                out_json(&json!(
                    orgs.iter().map(OrgView::to_json).collect::<Vec<_>>()
                ))?;
            } else {
                let rows: Vec<Vec<String>> = orgs
                    .iter()
                    .map(|o| {
                        vec![
                            o.slug.clone(),
                            safe(&o.name),
                            o.policy_text(),
                            time(o.created_at),
                        ]
                    })
                    .collect();
                table(&["SLUG", "NAME", "KEY POLICY", "CREATED"], &rows)?;
            }
        }
        OrgCommand::Show(a) => {
            let o = ctx.api(false, |api| api.show_organization(&a.slug, now))?;
            if ctx.json {
                out_json(&o.to_json())?;
            } else {
                show_lines(&o, now)?;
            }
        }
        OrgCommand::Delete(a) => {
            let shown = ctx.api(false, |api| api.show_organization(&a.slug, now))?;
            let (projects, keys) = (shown.projects.unwrap_or(0), shown.keys.unwrap_or(0));
            if a.cascade {
                super::confirm(
                    &format!(
                        "delete organization {} ({}) with its {} and {}",
                        shown.slug,
                        safe(&shown.name),
                        counted(projects, "project"),
                        counted(keys, "key")
                    ),
                    a.yes,
                )?;
            } else if projects > 0 || keys > 0 {
                return Err(usage(format!(
                    "organization `{}` still has {} and {}: delete them first, or add --cascade to delete them with it",
                    shown.slug,
                    counted(projects, "project"),
                    counted(keys, "key")
                )));
            } else {
                super::confirm(
                    &format!(
                        "delete organization {} ({}); its slug is never used again",
                        shown.slug,
                        safe(&shown.name)
                    ),
                    a.yes,
                )?;
            }
            let d = ctx.api(false, |api| {
                api.delete_organization(&a.slug, a.cascade, now)
            })?;
            if ctx.json {
                out_json(&json!({
                    "deleted_organization": d.organization.to_json(),
                    "deleted_projects": d.projects,
                    "deleted_keys": d.keys,
                }))?;
            } else {
                out(&format!(
                    "deleted organization {} ({}) with {} and {}",
                    d.organization.slug,
                    safe(&d.organization.name),
                    counted(d.projects.len() as u64, "project"),
                    counted(d.keys.len() as u64, "key")
                ))?;
            }
        }
        OrgCommand::Policy(PolicyCommand::Set(a)) => {
            let rule_given = a.max_expiry.is_some() || a.require_expiry || a.expiry_optional;
            if !rule_given && a.name.is_none() {
                return Err(usage(
                    "say what to set: --max-expiry DAYS, --require-expiry or --expiry-optional (and/or --name)",
                ));
            }
            let asked = KeyPolicyView {
                require_expiry: a.require_expiry || a.max_expiry.is_some(),
                max_expiry_days: a.max_expiry.as_deref().map(parse_days).transpose()?,
            };
            let set = ctx.api(false, |api| {
                // A rename alone keeps the policy as it is.
                let policy = if rule_given {
                    asked
                } else {
                    api.show_organization(&a.slug, now)?.key_policy
                };
                api.set_key_policy(&a.slug, policy, a.name.as_deref(), now)
            })?;
            let o = &set.organization;
            if ctx.json {
                out_json(&json!({"organization": o.to_json(), "changed": set.changed}))?;
                return Ok(ExitCode::SUCCESS);
            }
            let verb = if set.changed { "is now" } else { "was already" };
            out(&format!(
                "organization {}: key policy {verb} {}",
                o.slug,
                o.policy_text()
            ))?;
            match o.keys_outside_policy.as_deref() {
                Some([]) | None => {}
                Some(ids) => eprintln!(
                    "warning: {} of {} {} this policy and {} denied{} (lifetime-exceeds-policy): {}",
                    counted(ids.len() as u64, "key"),
                    o.slug,
                    if ids.len() == 1 { "breaks" } else { "break" },
                    if ids.len() == 1 { "is" } else { "are" },
                    if set.changed { " from now on" } else { "" },
                    ids.join(", ")
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
