//! `tinychain-wallet`: the wallet command-line client.
fn main() {}
