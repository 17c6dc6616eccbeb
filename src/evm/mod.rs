//! The EVM side: Solidity generation and compilation, the in-process EVM, and real chains.

pub mod anvil;
pub mod chain;
pub mod deployment;
pub mod estimate;
pub mod program;
pub mod registry;
pub mod reusable;
pub mod solidity;
pub mod toolchain;
pub mod yul;

pub use chain::{verify_on_chain, Chain, Connect, Deployed, EvmVerification};
pub use deployment::DeploymentFile;
pub use solidity::{compile_verifier, generate_verifier, CompiledContract};

/// The calldata the generated verifier reads: each instance as a 32-byte word, then the proof.
pub fn encode_calldata(instances: &[halo2_base::halo2_proofs::halo2curves::bn256::Fr], proof: &[u8]) -> Vec<u8> {
    snark_verifier_sdk::evm::encode_calldata(&[instances.to_vec()], proof)
}
