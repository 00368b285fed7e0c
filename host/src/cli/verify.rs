//! `keygate verify`: the decision, from the component, as an exit code.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use clap::Args;
use keygate::Error;
use serde_json::Value;

use super::{CliError, CmdResult, Ctx, now, out, out_json, parse_time, safe, time_arg, usage};

/// Longest input read from stdin; anything longer is denied as malformed.
const MAX_INPUT: u64 = 64 * 1024;

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The project the caller wants to act on (its organization comes from its registration).
    #[arg(long, value_name = "PROJECT_ID")]
    project: String,
    /// The action asked for.
    #[arg(long, default_value = "trigger-workflows")]
    action: String,
    /// Decide as of this time: RFC 3339, @SECONDS, or +DURATION/-DURATION from now.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true, value_parser = time_arg)]
    at: Option<String>,
}

/// The presented key: `KEYGATE_KEY`, else stdin (never an argument: those
/// leak into process lists and shell history).
fn presented_key() -> Result<String, CliError> {
    if let Some(k) = std::env::var_os("KEYGATE_KEY") {
        return Ok(k.to_string_lossy().trim().to_string());
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(usage(
            "no key to verify: pipe it on stdin or set KEYGATE_KEY",
        ));
    }
    let mut buf = Vec::new();
    stdin
        .lock()
        .take(MAX_INPUT + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::System(format!("cannot read the key from stdin: {e}")))?;
    Ok(String::from_utf8_lossy(&buf).trim().to_string())
}

/// Run `verify`: exit 0 allow, 1 deny, 2 error.
pub fn cmd_verify(ctx: &Ctx, a: VerifyArgs) -> CmdResult {
    let now = now()?;
    let at = match &a.at {
        Some(t) => Some(parse_time(t, now)?),
        None => None,
    };
    let key = presented_key()?;
    let v = ctx.api(false, |api| {
        api.verify_json(&key, &a.project, &a.action, at)
    })?;
    decide(ctx, &v)
}

/// Print the decision and return its exit code. A closed stdout never
/// changes the code: a deny stays 1 even if nobody reads the line.
fn decide(ctx: &Ctx, v: &Value) -> CmdResult {
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
    let code = match text("decision") {
        "allow" => ExitCode::SUCCESS,
        "deny" => ExitCode::from(1),
        _ => {
            return Err(CliError::Keygate(Error::System(
                "the decision could not be read".into(),
            )));
        }
    };
    match print_decision(ctx, v) {
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(code),
        Err(e) => Err(e),
        Ok(()) => Ok(code),
    }
}

fn print_decision(ctx: &Ctx, v: &Value) -> Result<(), CliError> {
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
    match text("reason") {
        "record-signature-invalid" => eprintln!(
            "warning: the stored record or tombstone of key `{}` failed signature verification: it is denied; the store may have been tampered with",
            safe(v.get("key_id").and_then(Value::as_str).unwrap_or("?"))
        ),
        "project-registration-invalid" => eprintln!(
            "warning: the stored registration of project `{}` failed verification: it is denied; the store may have been tampered with",
            safe(text("project"))
        ),
        _ => {}
    }
    if ctx.json {
        return out_json(v);
    }
    if text("decision") == "allow" {
        out(&format!(
            "allow: key {} ({}) may {} on project {} of {}",
            text("key_id"),
            safe(text("name")),
            safe(text("action")),
            safe(text("project")),
            text("organization")
        ))
    } else {
        out(&format!("deny: {}", text("message")))
    }
}
