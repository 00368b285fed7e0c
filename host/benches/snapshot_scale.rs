//! Snapshot size and load time at scale: N keys across N/10 organizations
//! (one project each), made natively from fixed seeds, signed, then loaded
//! into the component's validator and into the native one.
//!
//! Run: `KEYGATE_SCALE_KEYS=100000 cargo bench -p keygate --bench snapshot_scale`
//! (default 100,000). Prints one line per figure; the README quotes them.
//! With `KEYGATE_SCALE_WRITE=FILE` it also writes the snapshot there and
//! prints the issuer key to pin, for the Python and Node.js load benchmarks.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ed25519_dalek::{Signer, SigningKey};
use keygate::Runtime;
use keygate::runtime::bindings as b;
use keygate_policy as p;

const NOW: u64 = 1_800_000_000;

/// The system allocator, counting the bytes live on the host's heap, so
/// that what the native validator keeps can be told apart from the rest.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's own arguments,
// so `System`'s guarantees carry over unchanged; the counter is a relaxed
// atomic that no allocation depends on.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract for `layout`.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` (through `alloc`/`realloc`) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live_mib() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
}

/// Peak resident memory of this process so far, in MiB (Linux).
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    // `cargo bench` passes --bench; nothing else is read from the arguments.
    let n: usize = std::env::var("KEYGATE_SCALE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let sk = SigningKey::from_bytes(&[42; 32]);
    let pk = sk.verifying_key().to_bytes();
    let issuer_id = p::issuer_key_id(&pk).unwrap();
    let orgs = (n / 10).max(1);

    let t = Instant::now();
    let mut keys = Vec::with_capacity(n);
    let mut presented = Vec::new();
    for i in 0..n {
        let mut random = [0u8; 40];
        random[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        random[8..16].copy_from_slice(&(i as u64 * 7919).to_be_bytes());
        let k = p::make_key("kg", &random).unwrap();
        if i % (n / 100).max(1) == 0 {
            presented.push((k.key.clone(), format!("prj_{:011}", i % orgs)));
        }
        keys.push(
            p::check_create(p::CreateRequest {
                id: k.id,
                organization: format!("org{}", i % orgs),
                name: format!("key {i}"),
                level: p::KeyLevel::Organization,
                scopes: vec![p::Scope::TriggerWorkflows],
                access: p::ProjectAccess::AllProjects,
                expiry: p::ExpiryPolicy::Never,
                now: NOW,
                key_hash: k.key_hash.to_vec(),
                rotated_from: None,
            })
            .unwrap(),
        );
    }
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    let mut projects: Vec<p::ProjectRegistration> = (0..orgs)
        .map(|o| {
            p::register_project(&format!("prj_{o:011}"), &format!("org{o}"), "p", NOW - 1).unwrap()
        })
        .collect();
    projects.sort_by(|a, b| a.id.cmp(&b.id));
    let mut organizations: Vec<p::Organization> = (0..orgs)
        .map(|o| p::register_organization(&format!("org{o}"), "o", NOW - 2).unwrap())
        .collect();
    organizations.sort_by(|a, b| a.slug.cmp(&b.slug));
    let made = t.elapsed();

    let t = Instant::now();
    let snap = p::Snapshot {
        issuer_key_id: issuer_id.clone(),
        sequence: n as u64,
        base: None,
        made_at: NOW,
        organizations,
        keys,
        projects,
        tombstones: Vec::new(),
    };
    let mut file = snap.encode().unwrap();
    let sig = sk.sign(&file).to_bytes();
    file.extend_from_slice(&sig);
    let encoded = t.elapsed();
    drop(snap);
    // For other runtimes' load benchmarks: the file and the key to pin.
    if let Some(path) = std::env::var_os("KEYGATE_SCALE_WRITE") {
        std::fs::write(&path, &file).unwrap();
        let hex: String = pk.iter().map(|b| format!("{b:02x}")).collect();
        println!(
            "wrote {} (issuer {issuer_id}, public key {hex})",
            std::path::Path::new(&path).display()
        );
    }
    let before_load = peak_mib();

    let trusted = p::IssuerKey {
        id: issuer_id.clone(),
        public_key: pk.to_vec(),
    };
    let live_before = live_mib();
    let t = Instant::now();
    let mut native = p::Validator::new(std::slice::from_ref(&trusted));
    native.load_snapshot(&file).unwrap();
    let native_load = t.elapsed();
    let after_native = peak_mib();
    let native_heap = live_mib() - live_before;
    drop(native);

    let rt = Runtime::new().unwrap();
    let mut m = rt.instantiate().unwrap();
    let v = m
        .validator(&[b::IssuerKey {
            id: issuer_id,
            public_key: pk.to_vec(),
        }])
        .unwrap();
    let t = Instant::now();
    // In pieces of a megabyte, as `keygate serve` and the packages load it.
    let info = m
        .validator_load_snapshot_in_pieces(v, &file, 1 << 20)
        .unwrap()
        .unwrap();
    let component_load = t.elapsed();
    assert_eq!(info.keys as usize, n);
    let after_component = peak_mib();
    let component_memory = m.linear_memory_bytes() as f64 / (1024.0 * 1024.0);

    let t = Instant::now();
    let rounds = 2_000;
    for i in 0..rounds {
        let (key, project) = &presented[i % presented.len()];
        let got = m
            .validator_authorize(v, key, project, b::Scope::TriggerWorkflows, NOW + 1)
            .unwrap();
        assert!(matches!(got, b::Authorization::Allow(_)), "{got:?}");
    }
    let authorize = t.elapsed() / rounds as u32;

    println!("keys: {n} across {orgs} organizations");
    println!(
        "snapshot file: {} bytes ({:.1} bytes/key)",
        file.len(),
        file.len() as f64 / n as f64
    );
    println!("made records natively: {made:?}; encoded and signed: {encoded:?}");
    println!("load, native validator: {native_load:?}");
    println!(
        "load, component validator (1 MiB pieces copied in, signature, decode, table): {component_load:?}"
    );
    println!("authorize through the component after load: {authorize:?} per call");
    println!(
        "validator memory: native {native_heap:.1} MiB of heap kept after the load; component {component_memory:.1} MiB of linear memory (the held keys, one piece, the allocator's free space)"
    );
    println!(
        "peak RSS: {before_load:.0} MiB before loading, {after_native:.0} MiB after the native load, {after_component:.0} MiB after the component load"
    );
}
