//! `keygate project ...`

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{CmdResult, Ctx, now, out, out_json, table, time};

/// Project commands.
#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Register a project in an organization; prints its id.
    Create(CreateArgs),
    /// List the projects of an organization.
    List(ListArgs),
    /// Delete a project and its project-level keys (listed).
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
}

/// Run a project command.
pub fn run(ctx: &Ctx, cmd: ProjectCommand) -> CmdResult {
    let now = now()?;
    match cmd {
        ProjectCommand::Create(a) => {
            let p = ctx.api(true, |api| api.create_project(&a.org, &a.name, now))?;
            if ctx.json {
                out_json(&json!(p))?;
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
                out_json(&json!(projects))?;
            } else {
                let rows: Vec<Vec<String>> = projects
                    .iter()
                    .map(|p| vec![p.id.clone(), p.name.clone(), time(p.created_at)])
                    .collect();
                table(&["ID", "NAME", "CREATED"], &rows)?;
            }
        }
        ProjectCommand::Delete(a) => {
            let (p, keys) = ctx.api(false, |api| api.delete_project(&a.project_id, now))?;
            if ctx.json {
                out_json(&json!({"deleted_project": p, "deleted_keys": keys}))?;
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
