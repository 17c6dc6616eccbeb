//! The embedded EVM (revm, through snark-verifier): deploy a verifier and call it, no node needed.

use crate::error::{Error, Result};

/// Outcome of a verification on an EVM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvmVerification {
    /// Whether the verifier accepted the proof.
    pub verified: bool,
    /// Gas of the verifying transaction (including the 21,000 base and calldata), when accepted.
    pub gas_used: Option<u64>,
    /// Why it was rejected.
    pub reason: Option<String>,
}

/// Deploys `bytecode` in a fresh in-process EVM and calls it with `calldata`.
pub fn verify_in_process(bytecode: &[u8], calldata: &[u8]) -> Result<EvmVerification> {
    use snark_verifier_sdk::snark_verifier::loader::evm::deploy_and_call;
    match deploy_and_call(bytecode.to_vec(), calldata.to_vec()) {
        Ok(gas) => Ok(EvmVerification { verified: true, gas_used: Some(gas), reason: None }),
        Err(reason) if reason.contains("deployment") => Err(Error::Evm(reason)),
        Err(reason) => {
            let reason = if reason.contains("reverts") {
                "the verifier contract reverted: the proof or its public instances are invalid".to_string()
            } else {
                reason
            };
            Ok(EvmVerification { verified: false, gas_used: None, reason: Some(reason) })
        }
    }
}
