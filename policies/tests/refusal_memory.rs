//! What a snapshot that will be refused costs in memory while it is read.
//! Nothing in a file is trusted before its signature verifies at the end,
//! so a validator must not keep more of a file than about its own size
//! (a WebAssembly guest never gives memory back), and must keep nothing of
//! a file that can no longer be accepted.
//!
//! Peak live heap is counted by a wrapper around the system allocator;
//! everything runs in one test so that no other test's allocations mix in.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use ed25519_dalek::{Signer, SigningKey};
use keygate_policy::{
    ExpiryPolicy, IssuerKey, KeyLevel, KeyRecord, KeyStatus, ProjectAccess, Scope, Snapshot,
    SnapshotError, Validator, issuer_key_id,
};

/// The system allocator, counting live bytes and their peak.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counters are plain atomics and never affect
// what is allocated or returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(live, Relaxed);
        // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: `ptr` came from `System.alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The largest number of bytes live at once above the level before `f`.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let out = f();
    (out, PEAK.load(Relaxed).saturating_sub(base))
}

const MIB: usize = 1 << 20;

fn issuer(seed: u8) -> (SigningKey, IssuerKey) {
    let sk = SigningKey::from_bytes(&[seed; 32]);
    let public_key = sk.verifying_key().to_bytes().to_vec();
    let id = issuer_key_id(&public_key).unwrap();
    (sk, IssuerKey { id, public_key })
}

/// Canonical bytes of a snapshot (or, with `base`, a delta) of `keys` keys
/// selecting `projects` projects each: many decoded bytes per file byte.
fn canonical(issuer: &str, keys: usize, projects: usize, base: Option<u64>) -> Vec<u8> {
    let ids: Vec<String> = (0..projects).map(|i| format!("prj_{i:04}")).collect();
    let keys = (0..keys)
        .map(|i| KeyRecord {
            id: format!("{i:011}"),
            organization: "acme".into(),
            name: "k".into(),
            level: KeyLevel::Organization,
            scopes: vec![Scope::TriggerWorkflows],
            access: if ids.is_empty() {
                ProjectAccess::AllProjects
            } else {
                ProjectAccess::Selected(ids.clone())
            },
            created_at: 1_700_000_000,
            expiry: ExpiryPolicy::Never,
            expires_at: None,
            status: KeyStatus::Active,
            key_hash: [7; 32],
            version: 1,
            rotated_from: None,
            rotated_to: None,
        })
        .collect();
    Snapshot {
        issuer_key_id: issuer.into(),
        sequence: base.map_or(100, |b| b + 1),
        base,
        made_at: 1_700_000_000,
        organizations: vec![],
        keys,
        projects: vec![],
        tombstones: vec![],
    }
    .encode()
    .unwrap()
}

fn in_pieces(v: &mut Validator, canonical: &[u8], signature: &[u8]) -> Result<(), SnapshotError> {
    let mut stream = v.begin_snapshot(signature);
    for piece in canonical.chunks(MIB) {
        stream.feed(piece)?;
    }
    v.finish_snapshot(stream).map(|_| ())
}

#[test]
fn a_refused_snapshot_costs_at_most_about_its_size_and_often_nothing() {
    let (sk, trusted) = issuer(9);
    let mut v = Validator::new(std::slice::from_ref(&trusted));
    v.load_snapshot(&{
        let c = canonical(&trusted.id, 0, 0, None);
        let mut f = c.clone();
        f.extend_from_slice(&sk.sign(&c).to_bytes());
        f
    })
    .unwrap();
    assert_eq!(v.sequence(), Some(100));

    // A delta of 2,000 keys selecting 200 projects each (about 4 MB),
    // under the trusted issuer's id, with a well-formed signature over
    // other bytes: nothing tells it apart before the end. Decoded, its
    // records would take several times the file; kept as bytes, about
    // the file.
    let delta = canonical(&trusted.id, 2_000, 200, Some(100));
    let forged = sk.sign(b"something else").to_bytes();
    let (out, peak) = peak_of(|| in_pieces(&mut v, &delta, &forged));
    assert_eq!(out, Err(SnapshotError::SignatureInvalid));
    assert!(
        peak < delta.len() * 3 / 2 + 2 * MIB,
        "a forged delta of {} bytes peaked at {peak}",
        delta.len()
    );

    // Named as signed by a key the validator does not trust: nothing is
    // kept past the header.
    let (other_sk, other) = issuer(10);
    let stranger = canonical(&other.id, 2_000, 200, Some(100));
    let signed = other_sk.sign(&stranger).to_bytes();
    let (out, peak) = peak_of(|| in_pieces(&mut v, &stranger, &signed));
    assert_eq!(out, Err(SnapshotError::SignatureInvalid));
    assert!(
        peak < 3 * MIB,
        "an untrusted issuer's delta peaked at {peak}"
    );

    // A genuine full snapshot that is not newer (a replay): nothing kept.
    let replay = canonical(&trusted.id, 20_000, 0, None);
    let signed = sk.sign(&replay).to_bytes();
    let (out, peak) = peak_of(|| in_pieces(&mut v, &replay, &signed));
    assert_eq!(
        out,
        Err(SnapshotError::NotNewer {
            held: 100,
            got: 100
        })
    );
    assert!(
        peak < 3 * MIB,
        "a replay of {} bytes peaked at {peak}",
        replay.len()
    );

    // A full snapshot announcing 16 million keys in its first bytes:
    // nothing is reserved for them before the signer is known (an
    // untrusted one: nothing at all), and a trusted id with a forged
    // signature reserves for at most a million names.
    for (who, bound) in [(&other.id, MIB), (&trusted.id, 24 * MIB)] {
        let mut head = canonical(who, 0, 0, None);
        let at = head.len() - 12; // the key count: after the organizations'
        head[at..at + 4].copy_from_slice(&(1u32 << 24).to_be_bytes());
        let key = canonical(&trusted.id, 1, 0, None);
        // (A validator holding nothing yet: one holding sequence 100
        // keeps nothing of a full snapshot at 100, a replay.)
        let mut fresh = Validator::new(std::slice::from_ref(&trusted));
        let (out, peak) = peak_of(|| {
            let mut stream = fresh.begin_snapshot(&forged);
            stream.feed(&head[..at + 4])?;
            // One key record (its length and bytes), as the file goes on.
            stream.feed(&key[at + 4..key.len() - 8])?;
            fresh.finish_snapshot(stream).map(|_| ())
        });
        assert_eq!(out, Err(SnapshotError::NotCanonical), "{who}");
        assert!(peak < bound, "{who}: a 16M-key header reserved {peak}");
    }

    // A fact longer than any fact can be: refused on its length, before
    // any of it is buffered.
    let head = canonical(&trusted.id, 0, 0, Some(100));
    let mut stream = v.begin_snapshot(&forged);
    stream.feed(&head[..head.len() - 12]).unwrap(); // up to the key count
    let (out, peak) = peak_of(|| stream.feed(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]));
    assert_eq!(out, Err(SnapshotError::NotCanonical));
    assert_eq!(
        stream.feed(&vec![0x41; MIB]),
        Err(SnapshotError::NotCanonical)
    );
    assert!(peak < MIB, "{peak}");
    assert_eq!(v.finish_snapshot(stream), Err(SnapshotError::NotCanonical));

    // And the validator holds what it held.
    assert_eq!((v.sequence(), v.len()), (Some(100), 0));
}
