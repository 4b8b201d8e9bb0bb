//! Benchmarks of the consensus library (being written).
fn main() {}
