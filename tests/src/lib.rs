//! Multi-node and multi-process tests of tinychain live in this crate's `tests/`.
