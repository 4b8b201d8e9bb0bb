//! `tinychain-node`: the full node binary.
fn main() {}
