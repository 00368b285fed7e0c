//! Any presented key: parse and decide without panicking; a key that parses
//! re-renders to the same id.
#![no_main]

use keygate_policy::{Request, Scope, Validator, looks_like_key, parse_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Ok(id) = parse_key(&s) {
        assert_eq!(id.len(), 11);
        assert!(s.contains(id));
        assert!(looks_like_key(&s, None));
    }
    let v = Validator::new(&[]);
    let d = v.check(&Request {
        presented_key: s.into_owned(),
        project: "p".into(),
        action: Scope::TriggerWorkflows,
        now: 0,
    });
    assert!(d.deny_reason().is_some());
});
