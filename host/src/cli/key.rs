//! `keygate key ...`

use std::process::ExitCode;

use clap::{Args, Subcommand};
use keygate::admin::{Access, AccessView, Created, KeySpec, KeyView};
use keygate::runtime::bindings::{ExpiryPolicy, KeyStatus};
use serde_json::json;

use super::{
    CliError, CmdResult, Ctx, Fit, now, out, out_json, parse_duration, relative, screen_width,
    table, table_fit, time, usage,
};

/// Key commands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key and print it, once, on stdout.
    #[command(
        after_help = "Examples:\n  keygate key create --org acme --name crm-sync --all-projects --expires 30d\n  keygate key create --org acme --name etl --projects prj_A,prj_B --expires never\n  keygate key create --project prj_8MlaSOg1Skx --name billing-ci --expires 7d"
    )]
    Create(CreateArgs),
    /// List every key of an organization (never the secret).
    #[command(
        after_help = "Examples:\n  keygate key list --org acme\n  keygate key list --org acme --status inactive --expiring-within 7d --sort expires\n  keygate key list --org acme --project prj_8MlaSOg1Skx --wide"
    )]
    List(ListArgs),
    /// Show one key's metadata.
    #[command(
        after_help = "Examples:\n  keygate key show 8MlaSOg1Skx\n  keygate key show kg_8MlaSOg1Skx\n  keygate key show crm-sync --org acme"
    )]
    Show(ShowArgs),
    /// Switch a key off; it stops validating at once.
    #[command(after_help = "Example:\n  keygate key disable 8MlaSOg1Skx")]
    Disable(IdArg),
    /// Switch a disabled key back on.
    #[command(after_help = "Example:\n  keygate key enable 8MlaSOg1Skx")]
    Enable(IdArg),
    /// Replace a key by a new one with the same settings; the old key keeps
    /// working for the grace period, then expires.
    #[command(after_help = "Example:\n  NEW=$(keygate key rotate 8MlaSOg1Skx --grace 24h)")]
    Rotate(RotateArgs),
    /// Delete a key; it stops validating at once.
    #[command(
        after_help = "Examples:\n  keygate key delete 8MlaSOg1Skx\n  keygate key delete 8MlaSOg1Skx --yes    # in a script"
    )]
    Delete(DeleteArgs),
}

/// `key create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Organization slug (org-level key; optional check for a project-level key).
    #[arg(long)]
    org: Option<String>,
    /// Create a project-level key owned by this project.
    #[arg(long, value_name = "PROJECT_ID", conflicts_with_all = ["all_projects", "projects"])]
    project: Option<String>,
    /// Label for the key (1 to 100 characters).
    #[arg(long)]
    name: String,
    /// Org-level key for every project of the organization, including future ones.
    #[arg(long, conflicts_with = "projects")]
    all_projects: bool,
    /// Org-level key for these projects only (comma-separated ids).
    #[arg(long, value_name = "ID,ID...")]
    projects: Option<String>,
    /// Expiry: 7d to 90d, or never. Required: a credential that never
    /// expires must be asked for by name.
    #[arg(long, required = true)]
    expires: String,
    /// Scope granted (repeatable). Known: trigger-workflows.
    #[arg(long = "scope", default_value = "trigger-workflows")]
    scopes: Vec<String>,
}

/// `key list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Organization slug.
    #[arg(long)]
    org: String,
    /// Only keys that can act on this project.
    #[arg(long, value_name = "PROJECT_ID")]
    project: Option<String>,
    /// Every column, never cut (the default fits the screen: $COLUMNS or 80).
    #[arg(long)]
    wide: bool,
    /// Only keys in this state: active, rotated, inactive, expired, disabled, not-yet-valid.
    #[arg(long, value_parser = ["active", "rotated", "inactive", "expired", "disabled", "not-yet-valid"])]
    status: Option<String>,
    /// Only organization-level or project-level keys.
    #[arg(long, value_parser = ["org", "project"])]
    level: Option<String>,
    /// Only keys that stop working within this time (e.g. 7d, 12h).
    #[arg(long, value_name = "DURATION")]
    expiring_within: Option<String>,
    /// Only keys that allowed no request for this long (e.g. 30d): never
    /// used and made that long ago, or last used before then.
    #[arg(long, value_name = "DURATION")]
    unused_for: Option<String>,
    /// Only keys whose name contains this text (any case), or with this id.
    #[arg(long)]
    name: Option<String>,
    /// Order: created (default), name, expires.
    #[arg(long, default_value = "created", value_parser = ["created", "name", "expires"])]
    sort: String,
    /// At most this many keys.
    #[arg(long)]
    limit: Option<usize>,
}

/// The keys a listing asked for, in the order asked.
fn select(views: Vec<KeyView>, a: &ListArgs, now: u64) -> Result<Vec<KeyView>, CliError> {
    let within = a
        .expiring_within
        .as_deref()
        .map(parse_duration)
        .transpose()?;
    let unused = a.unused_for.as_deref().map(parse_duration).transpose()?;
    let needle = a.name.as_deref().map(str::to_lowercase);
    let mut out: Vec<KeyView> = views
        .into_iter()
        .filter(|v| match a.status.as_deref() {
            None => true,
            Some("inactive") => v.inactive_reason.is_some(),
            Some("active") => v.inactive_reason.is_none() && v.rotated_to.is_none(),
            Some("rotated") => v.inactive_reason.is_none() && v.rotated_to.is_some(),
            Some(reason) => v.inactive_reason.as_deref() == Some(reason),
        })
        .filter(|v| match a.level.as_deref() {
            None => true,
            Some("project") => v.project.is_some(),
            Some(_) => v.project.is_none(),
        })
        .filter(|v| match within {
            None => true,
            Some(d) => v
                .expires_at
                .is_some_and(|t| t > now && t <= now.saturating_add(d)),
        })
        .filter(|v| match unused {
            None => true,
            Some(d) => v.last_used_at.unwrap_or(v.created_at) <= now.saturating_sub(d),
        })
        .filter(|v| match &needle {
            None => true,
            // An id is matched exactly (ids are case-sensitive), a name in
            // any case.
            Some(n) => {
                a.name.as_deref() == Some(v.id.as_str())
                    || v.name.to_lowercase().contains(n.as_str())
            }
        })
        .collect();
    match a.sort.as_str() {
        "name" => {
            out.sort_by(|x, y| (x.name.to_lowercase(), &x.id).cmp(&(y.name.to_lowercase(), &y.id)))
        }
        "expires" => out.sort_by_key(|v| (v.expires_at.unwrap_or(u64::MAX), v.id.clone())),
        _ => {}
    }
    if let Some(n) = a.limit {
        out.truncate(n);
    }
    Ok(out)
}

/// A key id argument.
#[derive(Debug, Args)]
pub struct IdArg {
    /// Key id (the 11 characters after the prefix).
    key_id: String,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Key id (the 11 characters after the prefix), or with --org a key
    /// name unique in that organization.
    key: String,
    /// Find the key by name in this organization.
    #[arg(long)]
    org: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Key id (the 11 characters after the prefix).
    key_id: String,
    /// Do not ask (needed when there is no terminal to ask on).
    #[arg(long)]
    yes: bool,
}

/// `key rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Key id.
    key_id: String,
    /// How long the old key keeps working (e.g. 30m, 24h, 7d; at most 7d).
    #[arg(long, default_value = "24h")]
    grace: String,
    /// The new key's expiry (7d to 90d, or never); default: the old key's
    /// expiry policy. Rotating with a shorter one brings a key back within
    /// its organization's key policy.
    #[arg(long)]
    expires: Option<String>,
}

fn parse_expiry(s: &str) -> Result<ExpiryPolicy, CliError> {
    if s == "never" {
        return Ok(ExpiryPolicy::Never);
    }
    let bad = || usage(format!("`{s}` is not an expiry: use 7d to 90d, or never"));
    let digits = s.strip_suffix('d').ok_or_else(bad)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match digits.parse::<u16>() {
        Ok(d) => Ok(ExpiryPolicy::Days(d)),
        Err(_) => Err(usage(format!(
            "expiry of {digits} days is outside the policy (7 to 90 days, or never)"
        ))),
    }
}

fn spec(a: CreateArgs) -> Result<KeySpec, CliError> {
    let access = match (a.project, a.all_projects, a.projects) {
        (Some(p), false, None) => Access::OwnProject(p),
        (None, true, None) => Access::AllProjects,
        (None, false, Some(list)) => {
            let ids: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
            if ids.iter().any(String::is_empty) {
                return Err(usage(
                    "--projects needs a comma-separated list of project ids, with no empty entry",
                ));
            }
            Access::Selected(ids)
        }
        (None, false, None) => {
            return Err(usage(
                "choose the key's projects: --all-projects or --projects ID,ID... (or --project ID for a project-level key)",
            ));
        }
        _ => {
            return Err(usage(
                "--all-projects, --projects and --project exclude each other",
            ));
        }
    };
    Ok(KeySpec {
        organization: a.org,
        name: a.name,
        access,
        expiry: parse_expiry(&a.expires)?,
        scopes: a.scopes,
    })
}

fn view_json(v: &KeyView) -> serde_json::Value {
    v.to_json()
}

/// The key of `org` with this id, or else with this name (which must be
/// unique among its live keys).
fn by_name(ctx: &Ctx, org: &str, key: &str, now: u64) -> Result<KeyView, CliError> {
    let views = ctx.api(false, |api| api.list_keys(org, None, now))?;
    // An id, with or without the deployment's prefix (`kg_…`).
    let is_id = |v: &&KeyView| {
        v.id == key
            || key
                .strip_suffix(v.id.as_str())
                .and_then(|p| p.strip_suffix('_'))
                .is_some_and(|p| !p.is_empty())
    };
    if let Some(v) = views.iter().find(is_id) {
        return Ok(v.clone());
    }
    let named: Vec<&KeyView> = views.iter().filter(|v| v.name == key).collect();
    match named.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(usage(format!(
            "organization {} has no key with the id or name `{}`",
            super::safe(org),
            super::safe(key)
        ))),
        many => Err(usage(format!(
            "{} keys of organization {} are named `{}` ({}): give the id",
            many.len(),
            super::safe(org),
            super::safe(key),
            many.iter()
                .map(|v| v.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A key's status in one word for people; a rotated-away key that still
/// works says so.
fn short_status(v: &KeyView) -> &'static str {
    match v.inactive_reason.as_deref() {
        None if v.rotated_to.is_some() => "rotated",
        None => "active",
        Some("expired") => "expired",
        Some("disabled") => "disabled",
        Some("not-yet-valid") => "not yet valid",
        Some("lifetime-exceeds-policy") => "outside policy",
        Some("signature-invalid") => "bad signature",
        Some(_) => "bad organization",
    }
}

/// Green for active, yellow for a rotated key still working, red otherwise.
fn paint_status(status: &str) -> Option<&'static str> {
    Some(match status {
        "active" => "32",
        "rotated" => "33",
        _ => "31",
    })
}

fn status(v: &KeyView) -> String {
    match &v.inactive_reason {
        Some(r) => format!("inactive ({r})"),
        None => v.status.to_string(),
    }
}

/// A new key is shown once, on stdout: refuse to make one when stdout goes
/// nowhere. A closed stdout (`>&-`) is reopened on `/dev/null` by Rust's
/// runtime at start, so both look the same: a key written there is lost.
pub(super) fn stdout_is_open() -> Result<(), CliError> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let lost = match std::io::stdout().as_fd().try_clone_to_owned() {
            Err(_) => true,
            Ok(fd) => {
                let out = std::fs::File::from(fd).metadata();
                let null = std::fs::metadata("/dev/null");
                match (out, null) {
                    (Ok(o), Ok(n)) => o.file_type().is_char_device() && o.rdev() == n.rdev(),
                    _ => false,
                }
            }
        };
        if lost {
            return Err(usage(
                "stdout is closed or /dev/null: a new key is shown once, on stdout, so none was made",
            ));
        }
    }
    Ok(())
}

fn show_created(ctx: &Ctx, c: &Created, verb: &str) -> CmdResult {
    let shown = if ctx.json {
        let mut j = view_json(&c.view);
        j["key"] = json!(c.issued.expose_key());
        out_json(&j)
    } else {
        out(c.issued.expose_key())
    };
    // The one-time display failed (stdout closed): the key exists but nobody
    // has it, which is an error, not a success.
    if let Err(CliError::Output(e)) = &shown {
        return Err(usage(format!(
            "the new key {} could not be shown ({e}); it exists but was never displayed: delete it with `keygate key delete {}` and create another",
            c.view.id, c.view.id
        )));
    }
    shown?;
    eprintln!(
        "{verb} key {} ({}) for organization {}. This is the only time the key is shown: store it securely now.",
        c.view.id, c.view.name, c.view.organization
    );
    Ok(ExitCode::SUCCESS)
}

fn warn_untrusted(views: &[KeyView]) {
    for v in views
        .iter()
        .filter(|v| v.inactive_reason.as_deref() == Some("signature-invalid"))
    {
        eprintln!(
            "warning: key `{}` has a stored record whose signature does not verify: it is denied; delete it and investigate who could write to the data directory",
            v.id
        );
    }
}

/// Run a key command.
pub fn run(ctx: &Ctx, cmd: KeyCommand) -> CmdResult {
    let now = now()?;
    match cmd {
        KeyCommand::Create(a) => {
            stdout_is_open()?;
            let spec = spec(a)?;
            let created = ctx.api(true, |a| a.create_key(spec, now))?;
            show_created(ctx, &created, "created")
        }
        KeyCommand::List(a) => {
            let views = ctx.api(false, |api| {
                api.list_keys(&a.org, a.project.as_deref(), now)
            })?;
            warn_untrusted(&views);
            let filtered = a.status.is_some()
                || a.unused_for.is_some()
                || a.level.is_some()
                || a.expiring_within.is_some()
                || a.name.is_some();
            let views = select(views, &a, now)?;
            if ctx.json {
                out_json(&json!(views.iter().map(view_json).collect::<Vec<_>>()))?;
            } else if a.wide {
                let rows: Vec<Vec<String>> = views
                    .iter()
                    .map(|v| {
                        vec![
                            v.id.clone(),
                            v.name.clone(),
                            v.level.to_string(),
                            v.scopes.join(","),
                            v.access.to_string(),
                            status(v),
                            v.expiry_policy.clone(),
                            v.expires_at.map_or_else(|| "-".into(), time),
                            time(v.created_at),
                            v.rotated_from.clone().unwrap_or_else(|| "-".into()),
                            v.rotated_to.clone().unwrap_or_else(|| "-".into()),
                            v.last_used_at.map_or_else(|| "-".into(), time),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "ID",
                        "NAME",
                        "LEVEL",
                        "SCOPE",
                        "PROJECTS",
                        "STATUS",
                        "EXPIRY",
                        "EXPIRES AT",
                        "CREATED AT",
                        "ROTATED FROM",
                        "ROTATED TO",
                        "LAST USED",
                    ],
                    &rows,
                )?;
            } else if views.is_empty() && filtered {
                out("no keys match")?;
            } else if views.is_empty() {
                out(&format!(
                    "no keys in organization {}{}",
                    super::safe(&a.org),
                    a.project
                        .as_deref()
                        .map(|p| format!(" that can act on project {}", super::safe(p)))
                        .unwrap_or_default()
                ))?;
            } else {
                // For people: what fits the screen, projects by name, times
                // relative to now.
                let names: std::collections::HashMap<String, String> = ctx
                    .api(false, |api| api.list_projects(&a.org))?
                    .projects
                    .into_iter()
                    .map(|p| (p.id, p.name))
                    .collect();
                let project = |id: &String| match names.get(id) {
                    Some(name) => name.clone(),
                    None => format!("{id} (deleted)"),
                };
                // Below 72 columns, LAST USED gives way (`--wide` has it).
                let with_last_used = screen_width() >= 72;
                let rows: Vec<Vec<String>> = views
                    .iter()
                    .map(|v| {
                        vec![
                            v.id.clone(),
                            v.name.clone(),
                            match &v.project {
                                Some(_) => "project".into(),
                                None => "org".into(),
                            },
                            match (&v.project, &v.access) {
                                (Some(p), _) => project(p),
                                (None, AccessView::All(_)) => "all".into(),
                                (None, AccessView::Selected(ids)) => {
                                    ids.iter().map(project).collect::<Vec<_>>().join(", ")
                                }
                            },
                            short_status(v).into(),
                            v.expires_at
                                .map_or_else(|| "never".into(), |t| relative(t, now)),
                            v.last_used_at
                                .map_or_else(|| "never".into(), |t| relative(t, now)),
                        ]
                        .into_iter()
                        .take(if with_last_used { 7 } else { 6 })
                        .collect()
                    })
                    .collect();
                let header = [
                    "ID",
                    "NAME",
                    "LEVEL",
                    "PROJECTS",
                    "STATUS",
                    "EXPIRES",
                    "LAST USED",
                ];
                table_fit(
                    &header[..if with_last_used { 7 } else { 6 }],
                    &rows,
                    &Fit {
                        limit: Some(screen_width()),
                        flex: vec![1, 3],
                        paint: Some((4, paint_status)),
                    },
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        KeyCommand::Show(a) => {
            let v = match &a.org {
                None => ctx.api(false, |api| api.show_key(&a.key, now))?,
                Some(org) => by_name(ctx, org, &a.key, now)?,
            };
            if ctx.json {
                out_json(&view_json(&v))?;
            } else {
                let level = match &v.project {
                    Some(p) => format!("project-level, owned by project {p}"),
                    None => "organization-level".into(),
                };
                out(&format!("id:            {}", v.id))?;
                out(&format!("name:          {}", v.name))?;
                out(&format!("organization:  {}", v.organization))?;
                out(&format!("level:         {level}"))?;
                out(&format!("scopes:        {}", v.scopes.join(", ")))?;
                out(&format!("projects:      {}", v.access))?;
                out(&format!("status:        {}", status(&v)))?;
                out(&format!("expiry policy: {}", v.expiry_policy))?;
                out(&format!(
                    "expires at:    {}",
                    v.expires_at.map_or_else(|| "never".into(), time)
                ))?;
                out(&format!("created at:    {}", time(v.created_at)))?;
                out(&format!(
                    "rotated from:  {}",
                    v.rotated_from.as_deref().unwrap_or("-")
                ))?;
                out(&format!(
                    "rotated to:    {}",
                    v.rotated_to.as_deref().unwrap_or("-")
                ))?;
                out(&format!("version:       {}", v.version))?;
                out(&format!(
                    "last used:     {}",
                    v.last_used_at.map_or_else(
                        || "never".into(),
                        |t| format!("{} ({})", time(t), relative(t, now))
                    )
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        KeyCommand::Disable(a) => set_status(ctx, &a.key_id, KeyStatus::Disabled, now),
        KeyCommand::Enable(a) => set_status(ctx, &a.key_id, KeyStatus::Active, now),
        KeyCommand::Rotate(a) => {
            stdout_is_open()?;
            let grace = parse_duration(&a.grace)?;
            let expiry = a.expires.as_deref().map(parse_expiry).transpose()?;
            let (created, old) =
                ctx.api(false, |api| api.rotate_key(&a.key_id, grace, expiry, now))?;
            let r = show_created(ctx, &created, "rotated in");
            match old.expires_at {
                Some(t) if t > now => eprintln!(
                    "the old key {} keeps working until {} ({})",
                    old.id,
                    time(t),
                    relative(t, now)
                ),
                Some(_) => eprintln!("the old key {} stopped working now", old.id),
                None => {}
            }
            r
        }
        KeyCommand::Delete(a) => {
            let what = match ctx.api(false, |api| api.show_key(&a.key_id, now)) {
                Ok(v) => format!(
                    "delete key {} ({}) of organization {}",
                    v.id,
                    super::safe(&v.name),
                    v.organization
                ),
                // A record that does not verify can still be deleted.
                Err(CliError::Keygate(keygate::Error::Tampered { .. })) => format!(
                    "delete key {} (its stored record does not verify)",
                    super::safe(&a.key_id)
                ),
                Err(e) => return Err(e),
            };
            super::confirm(&what, a.yes)?;
            let organization = ctx.api(false, |api| api.delete_key(&a.key_id, now))?;
            if ctx.json {
                out_json(&json!({
                    "id": a.key_id, "organization": organization, "deleted_at": time(now),
                }))?;
            } else {
                out(&format!("deleted key {}", a.key_id))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn set_status(ctx: &Ctx, id: &str, status: KeyStatus, now: u64) -> CmdResult {
    let (v, changed) = ctx.api(false, |api| api.set_status(id, status, now))?;
    let id = v.id.as_str();
    let word = match status {
        KeyStatus::Active => "enabled",
        KeyStatus::Disabled => "disabled",
    };
    if ctx.json {
        let mut j = view_json(&v);
        j["changed"] = json!(changed);
        out_json(&j)?;
    } else if changed {
        out(&format!("{word} key {id}"))?;
    } else {
        out(&format!("key {id} was already {word}; nothing changed"))?;
    }
    // Whether the key can work is not only its switch: say when it cannot.
    if !ctx.json {
        match v.expires_at {
            Some(t) if t <= now => eprintln!(
                "note: key {id} is expired (since {}): it does not validate whatever its switch says",
                time(t)
            ),
            _ if v.created_at > now => eprintln!("note: key {id} is not valid yet"),
            _ => match v.inactive_reason.as_deref() {
                Some("lifetime-exceeds-policy") => eprintln!(
                    "note: key {id} breaks its organization's key policy (lifetime-exceeds-policy): it does not validate whatever its switch says; rotate it with a shorter --expires"
                ),
                Some(
                    r @ ("unknown-organization"
                    | "organization-deleted"
                    | "organization-registration-invalid"),
                ) => {
                    eprintln!("note: key {id} does not validate: {r}")
                }
                _ => {}
            },
        }
    }
    Ok(ExitCode::SUCCESS)
}
