//! `deployment.json`: where zkinfer's contracts are on a chain, what they cost, and the models
//! registered there (written by `deploy`, read by `submit` and `verify-evm`).

use std::path::Path;

use alloy::primitives::{Address, B256};
use serde::{Deserialize, Serialize};

use super::chain::{Chain, Deployed};
use super::registry::{Layout, WeightBinding};
use crate::error::{read_json, Error, Result};

/// Version of the `deployment.json` layout.
pub const DEPLOYMENT_FORMAT_VERSION: u32 = 2;

/// `deployment.json`: where zkinfer's contracts are, and what they cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentFile {
    /// Layout version ([`DEPLOYMENT_FORMAT_VERSION`]).
    pub format_version: u32,
    /// The chain id.
    pub chain_id: u64,
    /// The node; absent for the in-process EVM, whose contracts live only as long as the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_url: Option<String>,
    /// The account that deployed (and owns the registry).
    pub deployer: Address,
    /// Whether the verifier's key was made with the insecure development SRS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_srs: Option<bool>,
    /// The generated verifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<Deployed>,
    /// Its runtime bytecode size (bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier_runtime_bytes: Option<usize>,
    /// Whether `verifier` is the shared verifier (`create-evm-verifier --reusable`), which the
    /// next `deploy` on this chain uses again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_verifier: Option<bool>,
    /// With the shared verifier: the model's key (a data contract).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Deployed>,
    /// The `Halo2VerifierAdapter` giving the verifier the registry's interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<Deployed>,
    /// The `InferenceRegistry` (an existing one, given by address, has no transaction here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<Deployed>,
    /// Models registered by this deployment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<RegisteredModel>,
}

/// A model registered in the registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegisteredModel {
    /// The name it was registered under.
    pub name: String,
    /// Its id in the registry (keccak256 of the name, unless the name is a 32-byte hex id).
    pub model_id: B256,
    /// The verifier the registry calls: the adapter of a verifier of its own, or the shared
    /// verifier.
    pub verifier: Address,
    /// With the shared verifier: the model's key it was registered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Address>,
    /// How its proofs are tied to its weights.
    pub weights: WeightBinding,
    /// keccak256 of the bound instance words proofs must carry (zero when none).
    pub binding: B256,
    /// The layout of the public instances.
    pub layout: Layout,
    /// The registering transaction.
    pub tx_hash: Option<B256>,
    /// Its gas.
    pub gas_used: u64,
}

impl DeploymentFile {
    /// An empty deployment on `chain`.
    pub fn new(chain: &Chain) -> DeploymentFile {
        DeploymentFile {
            format_version: DEPLOYMENT_FORMAT_VERSION,
            chain_id: chain.chain_id(),
            rpc_url: chain.rpc_url().map(str::to_string),
            deployer: chain.sender(),
            insecure_srs: None,
            verifier: None,
            verifier_runtime_bytes: None,
            shared_verifier: None,
            key: None,
            adapter: None,
            registry: None,
            models: Vec::new(),
        }
    }

    /// Reads a deployment file.
    pub fn load(path: &Path) -> Result<DeploymentFile> {
        let file: DeploymentFile = read_json(path)?;
        if file.format_version != DEPLOYMENT_FORMAT_VERSION {
            return Err(Error::artifact(
                path,
                format!(
                    "deployment format {} is not {DEPLOYMENT_FORMAT_VERSION}; run `zkinfer deploy` again",
                    file.format_version
                ),
            ));
        }
        Ok(file)
    }
}
