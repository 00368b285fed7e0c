//! Command-line wiring: argument parsing, opening the store, printing.
//! All logic lives in the library (`keygate::admin`).

mod key;
mod misc;
mod project;
mod verify;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use keygate::Error;
use keygate::admin::Keygate;

/// keygate: organization-level and project-level API keys, validated by one
/// WebAssembly component.
#[derive(Debug, Parser)]
#[command(
    name = "keygate",
    version,
    max_term_width = 100,
    after_help = "Exit status: 0 success (verify: allow), 1 verify: deny, 2 error.\n\
Example:\n  KEY=$(keygate key create --org acme --name crm-sync --all-projects --expires 30d)\n  \
P=$(keygate project create --org acme billing)\n  echo \"$KEY\" | keygate verify --project \"$P\""
)]
pub struct Cli {
    /// Data directory (default: the platform's user data directory + /keygate).
    #[arg(long, global = true, env = "KEYGATE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Initialise a new store (done automatically by the first write).
    Init(misc::InitArgs),
    /// Register, list and delete projects.
    #[command(subcommand)]
    Project(project::ProjectCommand),
    /// Create, list, show, disable, enable, rotate and delete keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Decide whether a key (from stdin or KEYGATE_KEY) may act on a project.
    Verify(verify::VerifyArgs),
    /// Show the issuer's public key.
    #[command(subcommand)]
    Issuer(misc::IssuerCommand),
    /// Write out the WebAssembly component this keygate runs.
    #[command(subcommand)]
    Module(misc::ModuleCommand),
    /// Show the audit log of admin actions.
    Audit(misc::AuditArgs),
}

/// Errors of the command line: a library error or a usage problem.
pub enum CliError {
    /// From the library.
    Keygate(Error),
    /// Writing output failed (other than a closed pipe).
    Output(std::io::Error),
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Keygate(e)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Output(e)
    }
}

/// What a command returns: its exit code.
pub type CmdResult = Result<ExitCode, CliError>;

/// Global settings handed to every command.
pub struct Ctx {
    data_dir: Option<PathBuf>,
    /// JSON output.
    pub json: bool,
}

impl Ctx {
    /// The data directory in use.
    pub fn dir(&self) -> Result<PathBuf, Error> {
        match &self.data_dir {
            Some(d) if !d.as_os_str().is_empty() => Ok(d.clone()),
            _ => keygate::admin::default_data_dir().ok_or_else(|| {
                Error::invalid("no data directory: pass --data-dir or set KEYGATE_DATA_DIR")
            }),
        }
    }

    /// Open the store (no creation).
    pub fn open(&self) -> Result<Keygate, Error> {
        Keygate::open(&self.dir()?, false)
    }

    /// Open the store, initialising an empty or missing data directory, then
    /// run `f`. If `f` fails on a store this call created, the store is
    /// removed again so that a failed command changes nothing.
    pub fn with_store<T>(
        &self,
        f: impl FnOnce(&mut Keygate) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut kg = Keygate::open(&self.dir()?, true)?;
        if kg.created() {
            match f(&mut kg) {
                Ok(v) => {
                    announce_init(&kg);
                    Ok(v)
                }
                Err(e) => {
                    kg.discard_if_created();
                    Err(e)
                }
            }
        } else {
            f(&mut kg)
        }
    }
}

fn announce_init(kg: &Keygate) {
    eprintln!(
        "keygate: initialised a new store at {} (key prefix `{}`, issuer key id {})",
        kg.dir().display(),
        kg.prefix(),
        kg.issuer().id()
    );
}

/// Run the command line.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind as K;
            return match e.kind() {
                K::DisplayHelp | K::DisplayVersion => {
                    let _ = e.print();
                    ExitCode::SUCCESS
                }
                K::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    ExitCode::from(2)
                }
                _ => {
                    eprintln!("{} (see --help)", one_line(&e.render().to_string()));
                    ExitCode::from(2)
                }
            };
        }
    };
    let ctx = Ctx {
        data_dir: cli.data_dir,
        json: cli.json,
    };
    let result = match cli.command {
        Command::Init(a) => misc::cmd_init(&ctx, a),
        Command::Project(c) => project::run(&ctx, c),
        Command::Key(c) => key::run(&ctx, c),
        Command::Verify(a) => verify::cmd_verify(&ctx, a),
        Command::Issuer(c) => misc::cmd_issuer(&ctx, c),
        Command::Module(c) => misc::cmd_module(&ctx, c),
        Command::Audit(a) => misc::cmd_audit(&ctx, a),
    };
    match result {
        Ok(code) => code,
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(CliError::Output(e)) => {
            eprintln!("error: cannot write output: {e}");
            ExitCode::from(2)
        }
        Err(CliError::Keygate(e)) => {
            if let Error::Tampered(id) = &e {
                eprintln!(
                    "warning: key `{id}` has a stored record whose signature does not verify; delete it and investigate who could write to the data directory"
                );
            }
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// A clap error folded into one line: everything before its usage section.
fn one_line(rendered: &str) -> String {
    rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Print a line on stdout.
pub fn out(line: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}

/// Print a value as JSON on stdout.
pub fn out_json(v: &serde_json::Value) -> Result<(), CliError> {
    out(&serde_json::to_string_pretty(v).unwrap_or_default())
}

/// RFC 3339 UTC time, to the second.
pub fn time(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Print rows as aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> Result<(), CliError> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    out(&line(header.iter().map(|h| h.to_string()).collect()))?;
    for row in rows {
        out(&line(row.clone()))?;
    }
    Ok(())
}

/// Parse a duration: a whole number and a unit `s`, `m`, `h` or `d` (`0` alone
/// is allowed). Returns seconds.
pub fn parse_duration(s: &str) -> Result<u64, Error> {
    let bad = || {
        Error::invalid(format!(
            "`{s}` is not a duration: use a number and a unit s, m, h or d (e.g. 24h, 7d)"
        ))
    };
    if s == "0" {
        return Ok(0);
    }
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) || num.len() > 12 {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// Parse a point in time: RFC 3339 (`2027-01-01T00:00:00Z`), `@SECONDS`
/// since the epoch, or `+DURATION`/`-DURATION` from now.
pub fn parse_time(s: &str, now: u64) -> Result<u64, Error> {
    if let Some(rel) = s.strip_prefix('+') {
        return now
            .checked_add(parse_duration(rel)?)
            .ok_or_else(|| Error::invalid(format!("`{s}` is too far ahead")));
    }
    if let Some(rel) = s.strip_prefix('-') {
        return now
            .checked_sub(parse_duration(rel)?)
            .ok_or_else(|| Error::invalid(format!("`{s}` is before 1970")));
    }
    if let Some(secs) = s.strip_prefix('@') {
        return secs.parse().map_err(|_| {
            Error::invalid(format!(
                "`{s}` is not a time: use @SECONDS with a whole number of seconds"
            ))
        });
    }
    humantime::parse_rfc3339_weak(s)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .ok_or_else(|| {
            Error::invalid(format!(
                "`{s}` is not a time: use RFC 3339 (2027-01-01T00:00:00Z), @SECONDS, or +DURATION/-DURATION from now"
            ))
        })
}
