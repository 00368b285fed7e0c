//! Nothing here: the crate is its benchmark, `benches/cedar.rs`.
