//! Integration tests of the consensus library, in one test binary.

mod encoding;
mod mainnet_headers;
