//! A real EVM node over JSON-RPC (alloy): deploy the verifier and verify a proof on it.

use std::future::IntoFuture;
use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::Address;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use serde::{Deserialize, Serialize};

use super::inproc::EvmVerification;
use crate::error::{Error, Result};

/// anvil's first well-known development account. Used only on local chains.
const ANVIL_DEV_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// Chain ids of local development nodes (anvil, hardhat, ganache).
pub const LOCAL_CHAIN_IDS: [u64; 2] = [31337, 1337];
/// The environment variable holding the hex private key that pays for transactions.
pub const PRIVATE_KEY_ENV: &str = "ZKINFER_PRIVATE_KEY";
const RPC_TIMEOUT: Duration = Duration::from_secs(60);

/// Where and how a contract was deployed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// The chain id the node reported.
    pub chain_id: u64,
    /// The contract's address.
    pub address: String,
    /// The deploying transaction.
    pub tx_hash: String,
    /// Gas used by the deployment.
    pub gas_used: u64,
}

fn rpc_error(url: &str, reason: impl std::fmt::Display) -> Error {
    Error::Rpc { url: url.to_string(), reason: reason.to_string() }
}

async fn within<T>(url: &str, what: &str, fut: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(RPC_TIMEOUT, fut)
        .await
        .map_err(|_| rpc_error(url, format!("no answer within {} s while {what}", RPC_TIMEOUT.as_secs())))
}

fn signer_for(chain_id: u64) -> Result<PrivateKeySigner> {
    let key = match std::env::var(PRIVATE_KEY_ENV) {
        Ok(key) => key,
        Err(_) if LOCAL_CHAIN_IDS.contains(&chain_id) => ANVIL_DEV_KEY.to_string(),
        Err(_) => {
            return Err(Error::Evm(format!(
                "chain {chain_id} is not a local development chain: set {PRIVATE_KEY_ENV} to the hex private key of a funded account"
            )))
        }
    };
    key.trim()
        .trim_start_matches("0x")
        .parse::<PrivateKeySigner>()
        .map_err(|e| Error::Evm(format!("{PRIVATE_KEY_ENV} is not a valid private key: {e}")))
}

/// Sends a transaction and waits for its receipt, each step bounded by the RPC timeout.
async fn send_and_confirm(
    url: &str,
    provider: &impl Provider,
    tx: TransactionRequest,
    what: &str,
) -> Result<TransactionReceipt> {
    let pending = within(url, &format!("sending the {what}"), provider.send_transaction(tx))
        .await?
        .map_err(|e| Error::Evm(format!("{what} transaction failed: {e}")))?;
    within(url, &format!("waiting for the {what} receipt"), pending.get_receipt())
        .await?
        .map_err(|e| Error::Evm(format!("{what} receipt: {e}")))
}

/// Deploys `bytecode` on the node at `url` and verifies `calldata` against it: a call first
/// (a revert means the proof is rejected), then a transaction whose receipt gives the gas.
pub fn verify_on_chain(url: &str, bytecode: &[u8], calldata: &[u8]) -> Result<(EvmVerification, Deployment)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Evm(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(verify_on_chain_async(url, bytecode, calldata))
}

async fn verify_on_chain_async(url: &str, bytecode: &[u8], calldata: &[u8]) -> Result<(EvmVerification, Deployment)> {
    let parsed: alloy::transports::http::reqwest::Url =
        url.parse().map_err(|e| rpc_error(url, format!("not a valid URL: {e}")))?;
    let probe = ProviderBuilder::new().connect_http(parsed.clone());
    let chain_id = within(url, "asking the chain id", probe.get_chain_id()).await?.map_err(|e| rpc_error(url, e))?;
    let signer = signer_for(chain_id)?;
    let from = signer.address();
    let provider = ProviderBuilder::new().wallet(EthereumWallet::from(signer)).connect_http(parsed);

    let deploy = TransactionRequest::default().with_from(from).with_deploy_code(bytecode.to_vec());
    let receipt = send_and_confirm(url, &provider, deploy, "deployment").await?;
    let address: Address = match (receipt.status(), receipt.contract_address) {
        (true, Some(address)) => address,
        _ => return Err(Error::Evm(format!("the deployment transaction {} reverted", receipt.transaction_hash))),
    };
    let deployment = Deployment {
        chain_id,
        address: address.to_string(),
        tx_hash: receipt.transaction_hash.to_string(),
        gas_used: receipt.gas_used,
    };

    let call = TransactionRequest::default().with_from(from).with_to(address).with_input(calldata.to_vec());
    if let Err(e) = within(url, "calling the verifier", provider.call(call.clone()).into_future()).await? {
        return Ok((
            EvmVerification { verified: false, gas_used: None, reason: Some(format!("the verifier reverted: {e}")) },
            deployment,
        ));
    }
    let receipt = send_and_confirm(url, &provider, call, "verification").await?;
    let verification = if receipt.status() {
        EvmVerification { verified: true, gas_used: Some(receipt.gas_used), reason: None }
    } else {
        EvmVerification {
            verified: false,
            gas_used: None,
            reason: Some(format!("transaction {} reverted", receipt.transaction_hash)),
        }
    };
    Ok((verification, deployment))
}
