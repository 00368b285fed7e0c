//! Command-line wiring: argument parsing, opening the store, printing.
//! All logic lives in the library (`keygate::admin`).

mod key;
mod misc;
mod org;
mod project;
mod serve;
mod shell;
mod snapshot;
mod token;
mod verify;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::UNIX_EPOCH;

use clap::{Parser, Subcommand};
use keygate::Error;
use keygate::admin::{AdminApi, Keygate, Location};
use keygate::cache::CacheOutcome;
use keygate::client::Client;

/// keygate: organization-level and project-level API keys, validated by one
/// WebAssembly component.
#[derive(Debug, Parser)]
#[command(
    name = "keygate",
    version,
    max_term_width = 100,
    after_help = "Exit status: 0 success (verify: allow), 1 verify: deny, 2 error.\n\
Example:\n  keygate org create acme\n  KEY=$(keygate key create --org acme --name crm-sync --all-projects --expires 30d)\n  \
P=$(keygate project create --org acme billing)\n  echo \"$KEY\" | keygate verify --project \"$P\""
)]
pub struct Cli {
    /// Data directory (default: the platform's user data directory + /keygate).
    #[arg(long, global = true, env = "KEYGATE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Issuer key file, to keep the signing secret outside the data directory
    /// (default: DIR/issuer.key). Created at init if missing.
    #[arg(long, global = true, env = "KEYGATE_ISSUER_KEY", value_name = "FILE")]
    issuer_key: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Run the command through a `keygate serve` at this URL instead of a
    /// local store (the admin token comes from KEYGATE_ADMIN_TOKEN, never
    /// from an argument).
    #[arg(long, global = true, env = "KEYGATE_SERVER", value_name = "URL")]
    server: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Initialise a new store (done automatically by the first write).
    #[command(
        after_help = "Examples:\n  keygate init\n  keygate init --prefix acme\n  keygate --issuer-key /etc/keygate/issuer.key init"
    )]
    Init(misc::InitArgs),
    /// Create, list, show and delete organizations; set their key policy.
    #[command(subcommand)]
    Org(org::OrgCommand),
    /// Register, list and delete projects.
    #[command(subcommand)]
    Project(project::ProjectCommand),
    /// Create, list, show, disable, enable, rotate and delete keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Decide whether a key (from stdin or KEYGATE_KEY) may act on a project.
    #[command(
        after_help = "Examples:\n  echo \"$KEY\" | keygate verify --project prj_8MlaSOg1Skx\n  KEYGATE_KEY=\"$KEY\" keygate verify --project prj_8MlaSOg1Skx --at +31d --json"
    )]
    Verify(verify::VerifyArgs),
    /// Show the issuer's public key.
    #[command(subcommand)]
    Issuer(misc::IssuerCommand),
    /// Write out the WebAssembly component this keygate runs.
    #[command(subcommand)]
    Module(misc::ModuleCommand),
    /// Show the audit log of admin actions.
    #[command(
        after_help = "Examples:\n  keygate audit --org acme --action key. --since -7d --limit 50\n  keygate audit verify"
    )]
    Audit(misc::AuditArgs),
    /// Write signed snapshots for validators elsewhere, and check them.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Upgrade a store written by an older keygate: show what it would sign
    /// (an unsigned project registry and deletions, organizations that were
    /// only names), and sign them as they stand with --yes.
    #[command(
        after_help = "Examples:\n  keygate migrate          # what it would sign\n  keygate migrate --yes    # sign it"
    )]
    Migrate(misc::MigrateArgs),
    /// Run the HTTP service: verification, the admin API, snapshots.
    #[command(
        after_help = "Examples:\n  keygate serve --listen 127.0.0.1:7700\n  KEYGATE_SERVER=http://127.0.0.1:7700 KEYGATE_ADMIN_TOKEN=kgadmin_… keygate key list --org acme"
    )]
    Serve(serve::ServeArgs),
    /// Print a shell completion script: `keygate completions bash > /etc/bash_completion.d/keygate`.
    #[command(
        after_help = "Examples:\n  keygate completions bash > /etc/bash_completion.d/keygate\n  keygate completions zsh > ~/.zfunc/_keygate"
    )]
    Completions(shell::CompletionsArgs),
    /// Print the man page (roff): `keygate man > keygate.1`.
    #[command(after_help = "Example:\n  keygate man > /usr/local/share/man/man1/keygate.1")]
    Man,
    /// Make, list and revoke the admin tokens of `keygate serve`.
    #[command(subcommand)]
    AdminToken(token::TokenCommand),
}

/// Errors of the command line: a library error or a usage problem.
pub enum CliError {
    /// From the library.
    Keygate(Error),
    /// The command line itself is wrong (a value that does not parse).
    Usage(String),
    /// Writing output failed (other than a closed pipe).
    Output(std::io::Error),
}

/// A usage error.
pub fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
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
    issuer_key: Option<PathBuf>,
    server: Option<String>,
    /// JSON output.
    pub json: bool,
}

impl Ctx {
    /// The data directory in use.
    pub fn dir(&self) -> Result<PathBuf, CliError> {
        match &self.data_dir {
            Some(d) if d.as_os_str().is_empty() => Err(usage(
                "the data directory is empty (--data-dir or KEYGATE_DATA_DIR): give a path, or unset it for the default",
            )),
            Some(d) => Ok(d.clone()),
            None => keygate::admin::default_data_dir()
                .ok_or_else(|| usage("no data directory: pass --data-dir or set KEYGATE_DATA_DIR")),
        }
    }

    /// The data directory and issuer key in use.
    pub fn location(&self) -> Result<Location, CliError> {
        let loc = Location::new(self.dir()?);
        match &self.issuer_key {
            Some(k) if k.as_os_str().is_empty() => Err(usage(
                "the issuer key path is empty (--issuer-key or KEYGATE_ISSUER_KEY): give a path, or unset it for DIR/issuer.key",
            )),
            Some(k) => Ok(loc.with_issuer_key(k)),
            None => Ok(loc),
        }
    }

    /// Run `f` on the admin API: through the service with `--server`, else
    /// on the local store (initialising it first when `create`).
    pub fn api<T>(
        &self,
        create: bool,
        f: impl FnOnce(&mut dyn AdminApi) -> Result<T, Error>,
    ) -> Result<T, CliError> {
        if let Some(url) = &self.server {
            let token = std::env::var("KEYGATE_ADMIN_TOKEN")
                .ok()
                .filter(|t| !t.is_empty());
            let mut client = Client::new(url, token)?;
            return Ok(f(&mut client)?);
        }
        if create {
            self.with_store(|kg| f(kg))
        } else {
            let mut kg = self.open()?;
            Ok(f(&mut kg)?)
        }
    }

    /// Refuse `--server` for a command that only works on a local store.
    pub fn local_only(&self, command: &str) -> Result<(), CliError> {
        match &self.server {
            Some(_) => Err(usage(format!(
                "`keygate {command}` works on a local store; it does not go through --server (KEYGATE_SERVER)"
            ))),
            None => Ok(()),
        }
    }

    /// Open the store (no creation).
    pub fn open(&self) -> Result<Keygate, CliError> {
        let mut kg = Keygate::open(&self.location()?, false)?;
        warn_cache(&kg);
        kg.set_actor(os_user());
        Ok(kg)
    }

    /// Open the store, initialising an empty or missing data directory (and
    /// saying so): for `serve`, whose store lives on after this call.
    pub fn open_or_init(&self) -> Result<Keygate, CliError> {
        let mut kg = Keygate::open(&self.location()?, true)?;
        warn_cache(&kg);
        kg.set_actor(os_user());
        if kg.created() {
            announce_init(&kg);
        }
        Ok(kg)
    }

    /// Open the store, initialising an empty or missing data directory, then
    /// run `f`. If `f` fails on a store this call created, the store is
    /// removed again so that a failed command changes nothing.
    pub fn with_store<T>(
        &self,
        f: impl FnOnce(&mut Keygate) -> Result<T, Error>,
    ) -> Result<T, CliError> {
        let mut kg = Keygate::open(&self.location()?, true)?;
        warn_cache(&kg);
        kg.set_actor(os_user());
        if kg.created() {
            match f(&mut kg) {
                Ok(v) => {
                    announce_init(&kg);
                    Ok(v)
                }
                Err(e) => {
                    kg.discard_if_created();
                    Err(e.into())
                }
            }
        } else {
            Ok(f(&mut kg)?)
        }
    }
}

/// Who runs this command, as the audit log names them: the OS user.
fn os_user() -> String {
    let name = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| "unknown".into());
    format!("os user {}", safe(&name))
}

/// Say so when a compile-cache file was refused: someone other than this
/// store's keygate wrote it.
fn warn_cache(kg: &Keygate) {
    if let CacheOutcome::Rejected { why, written } = kg.cache_outcome() {
        let then = if *written {
            "and replaced the file"
        } else {
            "(the cache could not be rewritten)"
        };
        eprintln!(
            "warning: the compiled-component cache in {} was not used because {why}; keygate compiled the component again {then}",
            safe(
                &kg.dir()
                    .join(keygate::datadir::CACHE_DIR)
                    .display()
                    .to_string()
            )
        );
    }
}

pub fn announce_init(kg: &Keygate) {
    eprintln!(
        "keygate: initialised a new store at {} (key prefix `{}`, issuer key id {})",
        safe(&kg.dir().display().to_string()),
        kg.prefix(),
        kg.issuer().id()
    );
    if let Some(keygate::admin::NewIssuer::Existing(path)) = kg.new_issuer()
        && !path.starts_with(kg.dir())
    {
        eprintln!(
            "keygate: signing with the existing issuer key {}: every store that uses this key accepts the others' keys and projects; give each store its own key",
            safe(&path.display().to_string())
        );
    }
}

/// Whether any argument looks like an API key. Checked before parsing, so
/// that no error message (clap's included) can echo a key. This is the
/// policy crate's own `looks_like_key`, called natively: at this point no
/// store, and so no authenticated compiled component, is open yet.
fn key_looking_argument() -> Option<String> {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let i = args
        .iter()
        .position(|a| keygate_policy::looks_like_key(a, None))?;
    // Name the argument without showing it.
    let option = match (args[i].split_once('='), i.checked_sub(1).map(|j| &args[j])) {
        (Some((opt, _)), _) if opt.starts_with("--") => Some(opt.to_string()),
        (_, Some(prev)) if prev.starts_with("--") && !prev.contains('=') => Some(prev.clone()),
        _ => None,
    };
    Some(match option {
        Some(opt) => format!("argument {} (the value of `{}`)", i + 1, safe(&opt)),
        None => format!("argument {}", i + 1),
    })
}

/// Run the command line.
pub fn main() -> ExitCode {
    if let Some(which) = key_looking_argument() {
        let e = Error::KeyLooking;
        eprintln!("error: {which}: {e}{}", hint(&e));
        return ExitCode::from(2);
    }
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
                K::InvalidSubcommand if weak_suggestion(&e) => {
                    let typed = match e.get(clap::error::ContextKind::InvalidSubcommand) {
                        Some(clap::error::ContextValue::String(s)) => s.clone(),
                        _ => String::new(),
                    };
                    eprintln!(
                        "error: unrecognized subcommand '{}' (see --help)",
                        safe(&typed)
                    );
                    ExitCode::from(2)
                }
                _ => {
                    eprintln!("{} (see --help)", safe(&one_line(&e.render().to_string())));
                    ExitCode::from(2)
                }
            };
        }
    };
    let ctx = Ctx {
        data_dir: cli.data_dir,
        issuer_key: cli.issuer_key,
        server: cli.server.filter(|s| !s.is_empty()),
        json: cli.json,
    };
    let result = match cli.command {
        Command::Init(a) => misc::cmd_init(&ctx, a),
        Command::Org(c) => org::run(&ctx, c),
        Command::Project(c) => project::run(&ctx, c),
        Command::Key(c) => key::run(&ctx, c),
        Command::Verify(a) => verify::cmd_verify(&ctx, a),
        Command::Issuer(c) => misc::cmd_issuer(&ctx, c),
        Command::Module(c) => misc::cmd_module(&ctx, c),
        Command::Audit(a) => misc::cmd_audit(&ctx, a),
        Command::Snapshot(c) => snapshot::run(&ctx, c),
        Command::Migrate(a) => misc::cmd_migrate(&ctx, a),
        Command::AdminToken(c) => token::run(&ctx, c),
        Command::Serve(a) => serve::cmd_serve(&ctx, a),
        Command::Completions(a) => shell::cmd_completions(&ctx, a),
        Command::Man => shell::cmd_man(&ctx),
    };
    // With --json, the error is one JSON object on stderr instead of a line.
    let fail = |code: &str, message: String| {
        if ctx.json {
            eprintln!(
                "{}",
                serde_json::json!({"error": {"code": code, "message": message}})
            );
        } else {
            eprintln!("error: {message}");
        }
        ExitCode::from(2)
    };
    match result {
        Ok(code) => code,
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(CliError::Output(e)) => fail("output", format!("cannot write output: {e}")),
        Err(CliError::Usage(msg)) => fail("usage", safe(&msg)),
        Err(CliError::Keygate(e)) => {
            if let Error::Tampered { kind, id } = &e {
                eprintln!(
                    "warning: the stored {kind} `{}` does not verify; investigate who could write to the data directory",
                    safe(id)
                );
            }
            fail(&e.code(), format!("{}{}", safe(&e.to_string()), hint(&e)))
        }
    }
}

/// The command line's own advice for some library errors.
fn hint(e: &Error) -> &'static str {
    match e {
        Error::NeedsOrganization => " (--org ORG)",
        Error::KeyLooking => {
            ": give a key id where an id is asked for; `verify` reads the key from stdin or KEYGATE_KEY"
        }
        Error::NoStore(_) => " (`keygate init`, or any command that creates something)",
        Error::Served { .. } => {
            ": run the command through it with --server URL (or KEYGATE_SERVER) and KEYGATE_ADMIN_TOKEN, or stop the service"
        }
        Error::OldSchema { .. } => " (review with `keygate migrate`, then `keygate migrate --yes`)",
        Error::Issuer(m) if m.contains("outside the data directory") => {
            " (--issuer-key FILE or KEYGATE_ISSUER_KEY)"
        }
        _ => "",
    }
}

/// A clap error folded into one line: everything before its usage section.
/// Whether clap's "a similar subcommand exists" tip is a poor match (clap
/// suggests `rotate` for `frobnicate`): kept only at a Jaro-Winkler
/// similarity of 0.8 or more, the bar organization slugs use.
fn weak_suggestion(e: &clap::Error) -> bool {
    use clap::error::{ContextKind, ContextValue};
    let typed = match e.get(ContextKind::InvalidSubcommand) {
        Some(ContextValue::String(s)) => s.as_str(),
        _ => return false,
    };
    match e.get(ContextKind::SuggestedSubcommand) {
        Some(ContextValue::Strings(s)) => s.iter().all(|s| strsim::jaro_winkler(typed, s) < 0.8),
        Some(ContextValue::String(s)) => strsim::jaro_winkler(typed, s) < 0.8,
        _ => false,
    }
}

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
    keygate::admin::rfc3339(secs)
}

/// Text from the store or the user, made safe for one terminal line:
/// control and invisible formatting characters (newlines, escape sequences,
/// bidirectional overrides) are shown escaped (the policy crate's
/// `is_hidden`, the rule names are checked against).
pub fn safe(text: &str) -> String {
    use keygate_policy::record::is_hidden;
    if !text.chars().any(is_hidden) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if is_hidden(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Print rows as aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> Result<(), CliError> {
    table_fit(header, rows, &Fit::default())
}

/// Colours a cell by its text: an ANSI SGR code, or none.
pub type Painter = fn(&str) -> Option<&'static str>;

/// How a table is fitted and painted.
#[derive(Default)]
pub struct Fit {
    /// The widest the table may be, in terminal columns (`None`: no limit).
    pub limit: Option<usize>,
    /// The columns that give up width first (truncated with `…`).
    pub flex: Vec<usize>,
    /// A column whose cells are coloured by their text (when colour is on).
    pub paint: Option<(usize, Painter)>,
}

/// The width a table for people may take: `COLUMNS` when set, else 80.
pub fn screen_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&c: &usize| c >= 40)
        .unwrap_or(80)
}

/// Colour only for a terminal, and never with `NO_COLOR` set.
fn colour_on() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `text` cut to `width` terminal columns, with `…` when cut.
fn cut(text: &str, width: usize) -> String {
    use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};
    if text.width() <= width {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// Print a table: columns padded by display width (unicode-width), text
/// made safe for one line, fitted to `fit.limit` by cutting flexible
/// columns, one column optionally coloured.
pub fn table_fit(header: &[&str], rows: &[Vec<String>], fit: &Fit) -> Result<(), CliError> {
    use unicode_width::UnicodeWidthStr;
    const GAP: usize = 2;
    const FLEX_MIN: usize = 8;
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| safe(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.width()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.width());
        }
    }
    if let Some(limit) = fit.limit {
        let total = |w: &[usize]| w.iter().sum::<usize>() + GAP * w.len().saturating_sub(1);
        while total(&widths) > limit {
            let widest = fit
                .flex
                .iter()
                .copied()
                .filter(|&i| widths.get(i).is_some_and(|&w| w > FLEX_MIN))
                .max_by_key(|&i| widths[i]);
            match widest {
                Some(i) => widths[i] -= 1,
                None => break,
            }
        }
    }
    let colour = fit.paint.filter(|_| colour_on());
    let line = |cells: &[String], painted: bool| {
        let mut s = String::new();
        for (i, (cell, &w)) in cells.iter().zip(&widths).enumerate() {
            let text = cut(cell, w);
            let pad = w.saturating_sub(text.width());
            match colour {
                Some((col, paint)) if painted && col == i => match paint(cell) {
                    Some(code) => s.push_str(&format!("\x1b[{code}m{text}\x1b[0m")),
                    None => s.push_str(&text),
                },
                _ => s.push_str(&text),
            }
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(pad + GAP));
            }
        }
        s.trim_end().to_string()
    };
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    out(&line(&head, false))?;
    for row in &rows {
        out(&line(row, true))?;
    }
    Ok(())
}

/// A time relative to now, for people: `in 29 days`, `3 hours ago`, `now`.
pub fn relative(t: u64, now: u64) -> String {
    let (d, future) = if t >= now {
        (t - now, true)
    } else {
        (now - t, false)
    };
    // Rounded to the nearest unit: a 30-day key made a second ago expires
    // "in 30 days".
    let (n, unit) = match d {
        0..60 => return "now".into(),
        60..3_600 => ((d + 30) / 60, "minute"),
        3_600..86_400 => ((d + 1_800) / 3_600, "hour"),
        _ => ((d + 43_200) / 86_400, "day"),
    };
    let unit = if n == 1 {
        unit.to_string()
    } else {
        format!("{unit}s")
    };
    if future {
        format!("in {n} {unit}")
    } else {
        format!("{n} {unit} ago")
    }
}

/// Ask before something that cannot be undone. With `yes`, go on; on a
/// terminal, ask for "yes"; without one (a script), refuse: a script must
/// say `--yes`.
pub fn confirm(what: &str, yes: bool) -> Result<(), CliError> {
    use std::io::{BufRead, IsTerminal};
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(usage(format!(
            "this would {what}, which cannot be undone: add --yes to confirm (there is no terminal to ask on)"
        )));
    }
    eprint!("This will {what}. It cannot be undone. Type yes to go on: ");
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::System(format!("cannot read the answer: {e}")))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(usage("not confirmed; nothing was deleted"))
    }
}

/// Parse a duration: a whole number and a unit `s`, `m`, `h` or `d` (`0` alone
/// is allowed). Returns seconds.
pub fn parse_duration(s: &str) -> Result<u64, CliError> {
    let bad = || {
        usage(format!(
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

/// The current time, or the clock error.
pub fn now() -> Result<u64, CliError> {
    Ok(keygate::admin::now()?)
}

/// A value for `--at`: anything but an option (`--json`), so that a missing
/// value is an error rather than the next option taken as the value.
pub fn time_arg(s: &str) -> Result<String, String> {
    if s.starts_with("--") {
        return Err("expects a time, not an option".into());
    }
    Ok(s.to_string())
}

/// Parse a point in time: RFC 3339 (`2027-01-01T00:00:00Z`), `@SECONDS`
/// since the epoch, or `+DURATION`/`-DURATION` from now.
pub fn parse_time(s: &str, now: u64) -> Result<u64, CliError> {
    if let Some(rel) = s.strip_prefix('+') {
        return now
            .checked_add(parse_duration(rel)?)
            .ok_or_else(|| usage(format!("`{s}` is too far ahead")));
    }
    if let Some(rel) = s.strip_prefix('-') {
        return now
            .checked_sub(parse_duration(rel)?)
            .ok_or_else(|| usage(format!("`{s}` is before 1970")));
    }
    if let Some(secs) = s.strip_prefix('@') {
        return secs.parse().map_err(|_| {
            usage(format!(
                "`{s}` is not a time: use @SECONDS with a whole number of seconds"
            ))
        });
    }
    humantime::parse_rfc3339_weak(s)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .ok_or_else(|| {
            usage(format!(
                "`{s}` is not a time: use RFC 3339 (2027-01-01T00:00:00Z), @SECONDS, or +DURATION/-DURATION from now"
            ))
        })
}
