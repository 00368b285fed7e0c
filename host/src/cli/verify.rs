//! `keygate verify`: the decision, from the component, as an exit code.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use clap::Args;
use keygate::Error;
use keygate::runtime::bindings::{Decision, DenyClass, DenyReason};
use serde_json::json;

use super::{CliError, CmdResult, Ctx, now, out, out_json, parse_time, time, time_arg, usage};

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
        Some(t) => parse_time(t, now)?,
        None => now,
    };
    let mut kg = ctx.open()?;
    let key = presented_key()?;
    let v = kg.verify(&key, &a.project, &a.action, at)?;
    let code = decide(ctx, &a, &v, at)?;
    Ok(code)
}

/// Print the decision and return its exit code. A closed stdout never
/// changes the code: a deny stays 1 even if nobody reads the line.
fn decide(ctx: &Ctx, a: &VerifyArgs, v: &keygate::admin::Verdict, at: u64) -> CmdResult {
    let printed = print_decision(ctx, a, v, at);
    let code = match v.decision {
        Decision::Allow(_) => ExitCode::SUCCESS,
        Decision::Deny(_) => ExitCode::from(1),
    };
    match printed {
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(code),
        Err(e) => Err(e),
        Ok(()) => Ok(code),
    }
}

fn class_name(c: DenyClass) -> &'static str {
    match c {
        DenyClass::Unauthenticated => "unauthenticated",
        DenyClass::Forbidden => "forbidden",
    }
}

fn print_decision(
    ctx: &Ctx,
    a: &VerifyArgs,
    v: &keygate::admin::Verdict,
    at: u64,
) -> Result<(), CliError> {
    match &v.decision {
        Decision::Allow(ok) => {
            if ctx.json {
                out_json(&json!({
                    "decision": "allow", "key_id": ok.key_id, "name": ok.name,
                    "organization": ok.organization, "project": v.project,
                    "action": a.action, "at": time(at), "record_version": ok.record_version,
                    "expires_at": ok.expires_at.map(time),
                }))?;
            } else {
                out(&format!(
                    "allow: key {} ({}) may {} on project {} of {}",
                    ok.key_id, ok.name, a.action, v.project, ok.organization
                ))?;
            }
            Ok(())
        }
        Decision::Deny(reason) => {
            match reason {
                DenyReason::RecordSignatureInvalid => eprintln!(
                    "warning: the stored record or tombstone of key `{}` failed signature verification: it is denied; the store may have been tampered with",
                    v.key_id.as_deref().unwrap_or("?")
                ),
                DenyReason::ProjectRegistrationInvalid => eprintln!(
                    "warning: the stored registration of project `{}` failed verification: it is denied; the store may have been tampered with",
                    super::safe(&v.project)
                ),
                _ => {}
            }
            let (code, message) = v
                .reason
                .as_ref()
                .map(|t| (t.code.as_str(), t.message.as_str()))
                .unwrap_or_default();
            if ctx.json {
                out_json(&json!({
                    "decision": "deny", "reason": code, "class": v.class.map(class_name),
                    "key_id": v.key_id,
                    "project": v.project, "action": a.action, "at": time(at),
                }))?;
            } else {
                out(&format!("deny: {message}"))?;
            }
            Ok(())
        }
    }
}
