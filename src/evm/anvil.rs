//! A local anvil node (npm's `@foundry-rs/anvil`), on 127.0.0.1 with a free port, stopped when
//! dropped.

use alloy::node_bindings::{Anvil, AnvilInstance};

use super::toolchain::resolve_anvil;
use crate::error::EvmError;
use crate::error::Result;

/// Starts anvil on 127.0.0.1, letting the system pick the port. The node stops when the returned
/// instance is dropped.
pub fn spawn_anvil() -> Result<AnvilInstance> {
    spawn_anvil_with(&[])
}

/// As [`spawn_anvil`], with more of anvil's arguments (e.g. `--chain-id 5`, `--no-mining`).
pub fn spawn_anvil_with(args: &[&str]) -> Result<AnvilInstance> {
    let path = resolve_anvil()?;
    Anvil::at(&path)
        .host("127.0.0.1")
        .port(0u16)
        .args(args.iter().copied())
        .try_spawn()
        .map_err(|e| EvmError::Execution(format!("cannot start anvil ({}): {e}", path.display())).into())
}
