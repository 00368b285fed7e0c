//! `keygate snapshot write` and `keygate snapshot inspect`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use keygate::Error;
use keygate::issuer::hex;
use keygate::runtime::Runtime;
use keygate::runtime::bindings::{IssuerKey, SnapshotError, SnapshotInfo};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{CliError, CmdResult, Ctx, now, out, out_json, safe, time, usage};

/// Snapshot commands.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Write a signed snapshot of the store (every key record, project
    /// registration and tombstone, with the store's sequence) to FILE, or
    /// with --since SEQ a delta of what changed after SEQ.
    #[command(
        after_help = "Examples:\n  keygate snapshot write /srv/keygate/snapshot.kgs\n  keygate snapshot write delta.kgs --since 41"
    )]
    Write(WriteArgs),
    /// Check a snapshot file's signature and print its header.
    #[command(
        after_help = "Examples:\n  keygate snapshot inspect snapshot.kgs\n  keygate snapshot inspect snapshot.kgs --trust 3b6a27bc…    # no store needed"
    )]
    Inspect(InspectArgs),
}

/// `snapshot write`.
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// Where to write the snapshot (replaced atomically).
    file: PathBuf,
    /// Write a delta: what changed after this sequence, for a validator
    /// that holds exactly it.
    #[arg(long, value_name = "SEQ")]
    since: Option<u64>,
    /// Write it only if it verifies against this ed25519 public key (64 hex
    /// characters): with --server, do not take the service's word for its
    /// issuer.
    #[arg(long, value_name = "PUBLIC_KEY")]
    trust: Option<String>,
}

/// `snapshot inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The snapshot file.
    file: PathBuf,
    /// Trust this ed25519 public key (64 hex characters, from `keygate issuer
    /// show`) instead of the local store's issuer.
    #[arg(long, value_name = "PUBLIC_KEY")]
    trust: Option<String>,
}

/// Largest snapshot file read.
const MAX_FILE: u64 = 4 << 30;

/// Run a snapshot command.
pub fn run(ctx: &Ctx, cmd: SnapshotCommand) -> CmdResult {
    match cmd {
        SnapshotCommand::Write(a) => write(ctx, &a.file, a.since, a.trust.as_deref()),
        SnapshotCommand::Inspect(a) => inspect(ctx, &a),
    }
}

fn write(ctx: &Ctx, file: &Path, since: Option<u64>, trust: Option<&str>) -> CmdResult {
    if file.as_os_str() == "-" {
        return Err(usage(
            "`snapshot write` needs a file path (a snapshot is binary; it is not written to stdout)",
        ));
    }
    let at = now()?;
    let pin = trust.map(pinned).transpose()?;
    let (snap, issuer) = ctx.api(false, |api| {
        let snap = api.snapshot_file(at, since)?;
        Ok((snap, api.issuer_key()?.id))
    })?;
    if let Some((mut module, key)) = pin
        && let Err(e) = module
            .inspect_snapshot(&snap.bytes, &[key])
            .map_err(Error::from)?
    {
        return Err(usage(format!(
            "the snapshot was not written: {}",
            refusal(&e).replace("the trusted issuer key", "the --trust key")
        )));
    }
    write_atomically(file, &snap.bytes)?;
    report(ctx, file, &snap.bytes, &snap.info, &issuer)
}

/// Write to a new temporary file beside `path`, sync it, rename it over
/// `path`, and sync the directory: a reader never sees half a snapshot.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let cannot = |e: std::io::Error| {
        CliError::Keygate(Error::System(format!(
            "cannot write `{}`: {e}",
            path.display()
        )))
    };
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce)
        .map_err(|e| Error::System(format!("the OS random source failed: {e}")))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{:016x}", u64::from_le_bytes(nonce)));
    let mut f = keygate::fsutil::create_new(&tmp, 0o644).map_err(cannot)?;
    let written = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(cannot(e));
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    keygate::issuer::sync_dir(dir.unwrap_or(Path::new("."))).map_err(cannot)?;
    Ok(())
}

fn inspect(ctx: &Ctx, a: &InspectArgs) -> CmdResult {
    let bytes = keygate::fsutil::read_bounded(&a.file, MAX_FILE, true)
        .map_err(|e| Error::System(format!("cannot read `{}`: {e}", a.file.display())))?;
    let (mut module, trusted) = match &a.trust {
        Some(hex_key) => pinned(hex_key)?,
        None => {
            // The issuer of the local store, or of the service (--server).
            let trusted = ctx.api(false, |api| api.issuer_key())?;
            let module = Runtime::new()
                .map_err(Error::from)?
                .instantiate()
                .map_err(Error::from)?;
            (module, trusted)
        }
    };
    let issuer_id = trusted.id.clone();
    match module
        .inspect_snapshot(&bytes, &[trusted])
        .map_err(Error::from)?
    {
        Ok(info) => report(ctx, &a.file, &bytes, &info, &issuer_id),
        Err(e) => Err(usage(format!(
            "snapshot `{}` refused: {}",
            a.file.display(),
            refusal(&e)
        ))),
    }
}

/// A component instance and the issuer key `--trust` pins.
fn pinned(hex_key: &str) -> Result<(keygate::runtime::Module, IssuerKey), CliError> {
    let public = unhex(hex_key).ok_or_else(|| {
        usage("--trust needs an ed25519 public key: 64 hex characters (`keygate issuer show`)")
    })?;
    let mut module = Runtime::new()
        .map_err(Error::from)?
        .instantiate()
        .map_err(Error::from)?;
    let id = module
        .issuer_key_id(&public)
        .map_err(Error::from)?
        .map_err(|_| usage("--trust is not a valid ed25519 public key"))?;
    Ok((
        module,
        IssuerKey {
            id,
            public_key: public.to_vec(),
        },
    ))
}

fn refusal(e: &SnapshotError) -> String {
    match e {
        SnapshotError::NotCanonical => "it is not a canonical keygate snapshot".into(),
        SnapshotError::SignatureInvalid => {
            "its signature does not verify against the trusted issuer key".into()
        }
        SnapshotError::NotNewer(held) => format!("it is not newer than sequence {held}"),
        SnapshotError::BaseMismatch(held) => {
            format!("its base is not the held sequence {held:?}")
        }
    }
}

fn report(ctx: &Ctx, file: &Path, bytes: &[u8], info: &SnapshotInfo, issuer: &str) -> CmdResult {
    let sha = hex(&Sha256::digest(bytes));
    if ctx.json {
        out_json(&json!({
            "file": file, "sequence": info.sequence, "base": info.base,
            "made_at": time(info.made_at), "organizations": info.organizations,
            "keys": info.keys, "projects": info.projects,
            "tombstones": info.tombstones, "issuer_key_id": issuer,
            "bytes": bytes.len(), "sha256": sha,
        }))?;
    } else {
        let kind = match info.base {
            Some(b) => format!("delta from sequence {b} to {}", info.sequence),
            None => format!("snapshot at sequence {}", info.sequence),
        };
        out(&format!(
            "{}: {kind}, made {}, signed by issuer {issuer}: {} organizations, {} keys, {} projects, {} tombstones, {} bytes, sha256 {sha}",
            safe(&file.display().to_string()),
            time(info.made_at),
            info.organizations,
            info.keys,
            info.projects,
            info.tombstones,
            bytes.len()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
