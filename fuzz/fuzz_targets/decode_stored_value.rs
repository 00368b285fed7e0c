//! Signed values of the sled `keys`, `deleted_keys` and `projects` trees: decoding never panics, and whatever
//! decodes re-encodes to exactly the same bytes.
#![no_main]

use keygate::schema::{decode_signed, encode_signed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(s) = decode_signed(data) {
        assert_eq!(encode_signed(&s).as_deref(), Ok(data));
    }
});
