//! Canonical bytes of every signed kind (key record, project registration,
//! tombstone, snapshot): decoding never panics, and whatever decodes re-encodes to
//! exactly the same bytes.
#![no_main]

use keygate_policy::{Body, KeyRecord, Snapshot};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = KeyRecord::decode(data) {
        assert_eq!(r.encode().as_deref(), Ok(data));
    }
    if let Ok(b) = Body::decode(data) {
        assert_eq!(b.encode().as_deref(), Ok(data));
    }
    if let Ok(s) = Snapshot::decode(data) {
        assert_eq!(s.encode().as_deref(), Ok(data));
    }
});
