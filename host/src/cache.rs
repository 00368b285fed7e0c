//! A file cache of compiled components (used by the host and by
//! `keygate-wasm-runner`), safe against stale and corrupt files.
//!
//! File layout: the 8 bytes `KGCWASM1`, the SHA-256 of the component bytes
//! it was compiled from, the SHA-256 of the payload, then the payload
//! (wasmtime's serialized component). A file whose source hash or payload hash
//! does not match is ignored and rewritten; wasmtime itself refuses payloads
//! from another wasmtime version or configuration, which are also rewritten.

use std::path::Path;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"KGCWASM1";
const HEADER: usize = 8 + 32 + 32;

/// Load the compiled form of `wasm` from `path`, or compile it and store it
/// there. A cache that cannot be written only costs the next run a compile.
pub fn load_or_compile(engine: &Engine, wasm: &[u8], path: &Path) -> wasmtime::Result<Component> {
    load_or_compile_hashed(engine, wasm, &Sha256::digest(wasm).into(), path)
}

/// [`load_or_compile`] for a caller that already knows `source`, the
/// SHA-256 of `wasm`.
pub fn load_or_compile_hashed(
    engine: &Engine,
    wasm: &[u8],
    source: &[u8; 32],
    path: &Path,
) -> wasmtime::Result<Component> {
    if let Some(c) = load(engine, source, path) {
        return Ok(c);
    }
    let component = Component::new(engine, wasm)?;
    let payload = component.serialize()?;
    let mut file = Vec::with_capacity(HEADER + payload.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(source);
    file.extend_from_slice(&Sha256::digest(&payload));
    file.extend_from_slice(&payload);
    // Write then rename, so a reader never sees half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, &file)
        .and_then(|()| std::fs::rename(&tmp, path))
        .is_err()
    {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(component)
}

fn load(engine: &Engine, source: &[u8; 32], path: &Path) -> Option<Component> {
    let file = std::fs::read(path).ok()?;
    if file.len() < HEADER || &file[..8] != MAGIC || &file[8..40] != source {
        return None;
    }
    let payload = &file[HEADER..];
    if Sha256::digest(payload).as_slice() != &file[40..72] {
        return None;
    }
    deserialize(engine, payload)
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, payload: &[u8]) -> Option<Component> {
    // SAFETY: `Component::deserialize` requires bytes produced by
    // `Component::serialize`. These are: the payload's SHA-256, written beside
    // it by `load_or_compile`, matched, so it is byte-for-byte what this code
    // serialized; wasmtime checks the version and configuration it was built
    // for and errors (not UB) on a mismatch.
    unsafe { Component::deserialize(engine, payload) }.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::COMPONENT;

    #[test]
    fn a_damaged_or_foreign_cache_file_is_recompiled_and_rewritten() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.cwasm");
        load_or_compile(&engine, COMPONENT, &path).unwrap();
        let good = std::fs::read(&path).unwrap();
        assert_eq!(&good[..8], MAGIC);
        let source: [u8; 32] = Sha256::digest(COMPONENT).into();
        assert!(load(&engine, &source, &path).is_some());

        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        let damaged: [Vec<u8>; 4] = [
            flipped,
            good[..good.len() / 2].to_vec(),
            b"garbage".to_vec(),
            [&good[..8], &[0u8; 32][..], &good[40..]].concat(), // compiled from other bytes
        ];
        for bad in damaged {
            std::fs::write(&path, &bad).unwrap();
            assert!(load(&engine, &source, &path).is_none());
            load_or_compile(&engine, COMPONENT, &path).unwrap();
            assert_eq!(
                std::fs::read(&path).unwrap(),
                good,
                "the cache file was not rewritten"
            );
        }
        // A payload whose hashes match but that wasmtime refuses (compiled
        // for another engine configuration) is recompiled, not trusted.
        let mut cfg = wasmtime::Config::new();
        cfg.memory_reservation(1 << 24).memory_guard_size(1 << 16);
        let other = Engine::new(&cfg).unwrap();
        assert!(load(&other, &source, &path).is_none());
        load_or_compile(&other, COMPONENT, &path).unwrap();
        assert!(load(&other, &source, &path).is_some());
    }
}
