//! `keygate project ...`

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{CmdResult, Ctx, now, out, out_json, table, time};

/// Project commands.
#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Register a project in an organization; prints its id.
    #[command(after_help = "Example:\n  P=$(keygate project create --org acme billing)")]
    Create(CreateArgs),
    /// List the projects of an organization.
    #[command(after_help = "Example:\n  keygate project list --org acme")]
    List(ListArgs),
    /// Delete a project and its project-level keys (listed).
    #[command(
        after_help = "Examples:\n  keygate project delete prj_8MlaSOg1Skx\n  keygate project delete prj_8MlaSOg1Skx --yes    # in a script"
    )]
    Delete(DeleteArgs),
}

/// `project create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Organization slug (lowercase letters, digits, dashes).
    #[arg(long)]
    org: String,
    /// Project name.
    name: String,
}

/// `project list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Organization slug.
    #[arg(long)]
    org: String,
}

/// `project delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Project id (`prj_...`).
    project_id: String,
    /// Do not ask (needed when there is no terminal to ask on).
    #[arg(long)]
    yes: bool,
}

/// Run a project command.
pub fn run(ctx: &Ctx, cmd: ProjectCommand) -> CmdResult {
    let now = now()?;
    match cmd {
        ProjectCommand::Create(a) => {
            let p = ctx.api(true, |api| api.create_project(&a.org, &a.name, now))?;
            if ctx.json {
                out_json(&p.to_json())?;
            } else {
                out(&p.id)?;
                eprintln!(
                    "created project {} ({}) in organization {}",
                    p.id, p.name, p.organization
                );
            }
        }
        ProjectCommand::List(a) => {
            let list = ctx.api(false, |api| api.list_projects(&a.org))?;
            for id in &list.untrusted {
                eprintln!(
                    "warning: the stored registration of project `{id}` does not verify: it is not listed and every key is denied on it; investigate who could write to the data directory"
                );
            }
            let projects = list.projects;
            if ctx.json {
                out_json(&json!(
                    projects.iter().map(|p| p.to_json()).collect::<Vec<_>>()
                ))?;
            } else {
                let rows: Vec<Vec<String>> = projects
                    .iter()
                    .map(|p| vec![p.id.clone(), p.name.clone(), time(p.created_at)])
                    .collect();
                table(&["ID", "NAME", "CREATED"], &rows)?;
            }
        }
        ProjectCommand::Delete(a) => {
            let (shown, doomed) = ctx.api(false, |api| {
                let p = api.show_project(&a.project_id)?;
                let keys = api.list_keys(&p.organization, Some(&p.id), now)?;
                let own: Vec<String> = keys
                    .into_iter()
                    .filter(|k| k.project.as_deref() == Some(p.id.as_str()))
                    .map(|k| format!("{} ({})", k.id, super::safe(&k.name)))
                    .collect();
                Ok((p, own))
            })?;
            let keys_part = match doomed.len() {
                0 => String::new(),
                1 => format!(" and its project-level key {}", doomed[0]),
                n => format!(" and its {n} project-level keys {}", doomed.join(", ")),
            };
            super::confirm(
                &format!(
                    "delete project {} ({}) of organization {}{keys_part}",
                    shown.id,
                    super::safe(&shown.name),
                    shown.organization
                ),
                a.yes,
            )?;
            let (p, keys) = ctx.api(false, |api| api.delete_project(&a.project_id, now))?;
            if ctx.json {
                out_json(&json!({"deleted_project": p.to_json(), "deleted_keys": keys}))?;
            } else {
                out(&format!(
                    "deleted project {} ({}) of organization {}",
                    p.id, p.name, p.organization
                ))?;
                for k in &keys {
                    out(&format!("deleted project-level key {k}"))?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
