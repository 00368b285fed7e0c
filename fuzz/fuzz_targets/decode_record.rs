//! Canonical record bytes: decoding never panics, and whatever decodes
//! re-encodes to exactly the same bytes.
#![no_main]

use keygate_policy::KeyRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = KeyRecord::decode(data) {
        assert_eq!(r.encode().as_deref(), Ok(data));
    }
});
