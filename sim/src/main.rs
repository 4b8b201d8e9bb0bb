//! `tinychain-sim`: runs the simulator's experiments and prints their results.

use anyhow::Result;

fn main() -> Result<()> {
    Ok(())
}
