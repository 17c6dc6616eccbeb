//! The chains zkinfer deploys to and submits on, behind one synchronous interface: the
//! in-process EVM (revm, the default: nothing to install, nothing persists) or a node over
//! JSON-RPC (alloy), with the signing key from the environment or an encrypted keystore.
//!
//! Every chain fault comes back as an [`Error`] that says what to do: an unreachable node, a
//! chain id other than the one expected, an account that cannot pay, a nonce conflict, a
//! reverted transaction (with its decoded reason) and a receipt that does not come in time
//! (with the transaction hash, so nothing is lost).

use std::future::{Future, IntoFuture};
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, Bytes, Log, TxKind, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::TransportError;
use revm::context::result::{ExecutionResult, Output};
use revm::context::TxEnv;
use revm::database::InMemoryDB;
use revm::handler::{MainnetContext, MainnetEvm};
use revm::{Context, ExecuteCommitEvm, ExecuteEvm, MainBuilder, MainContext};
use serde::{Deserialize, Serialize};

use crate::error::EvmError;
use crate::error::{Error, Result};

/// anvil's first well-known development account. Used only on local chains.
const ANVIL_DEV_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// Chain ids of local development nodes (anvil, hardhat, ganache).
pub const LOCAL_CHAIN_IDS: [u64; 2] = [31337, 1337];
/// The chain id the in-process EVM reports.
pub const IN_PROCESS_CHAIN_ID: u64 = 31337;
/// The environment variable holding the hex private key that pays for transactions.
pub const PRIVATE_KEY_ENV: &str = "ZKINFER_PRIVATE_KEY";
/// The environment variable holding the password of the `--keystore` file.
pub const KEYSTORE_PASSWORD_ENV: &str = "ZKINFER_KEYSTORE_PASSWORD";
/// How long to wait for the node to answer a request, or for a receipt, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Gas limit of the in-process EVM's transactions.
const IN_PROCESS_GAS_LIMIT: u64 = 30_000_000;

/// How to reach a chain and who pays.
#[derive(Clone, Debug)]
pub struct Connect {
    /// The JSON-RPC node; `None` for the in-process EVM.
    pub rpc_url: Option<String>,
    /// An encrypted JSON keystore (password in [`KEYSTORE_PASSWORD_ENV`]); else the key in
    /// [`PRIVATE_KEY_ENV`]; else, on a local chain only, anvil's first development account.
    pub keystore: Option<PathBuf>,
    /// Refuse the node unless it reports this chain id.
    pub expected_chain_id: Option<u64>,
    /// How long to wait for an answer or a receipt.
    pub timeout: Duration,
}

impl Default for Connect {
    fn default() -> Self {
        Connect { rpc_url: None, keystore: None, expected_chain_id: None, timeout: DEFAULT_TIMEOUT }
    }
}

/// A mined transaction.
#[derive(Clone, Debug)]
pub struct Mined {
    /// Its hash (none in the in-process EVM, which has no signed transactions).
    pub tx_hash: Option<B256>,
    /// The contract it created.
    pub contract: Option<Address>,
    /// Gas used, including the 21,000 base and the calldata.
    pub gas_used: u64,
    /// The block it was mined in.
    pub block: u64,
    /// The logs it emitted.
    pub logs: Vec<Log>,
}

/// Turns revert data into a sentence, when it is an error the caller knows.
pub type RevertDecoder = fn(&[u8]) -> Option<String>;

/// A call that did not return: the revert data, or the node's word for a failure without any
/// (out of gas, an invalid opcode).
#[derive(Clone, Debug)]
pub struct Revert {
    /// The revert data (empty when the execution halted).
    pub data: Bytes,
    /// Why it halted, when there is no revert data.
    pub halted: Option<String>,
}

impl Revert {
    /// The revert in words: the caller's own errors, then Solidity's `Error(string)` and `Panic`.
    pub fn describe(&self, decode: RevertDecoder) -> String {
        match (&self.halted, self.data.is_empty()) {
            (Some(reason), true) => format!("execution failed ({reason})"),
            _ => describe_revert(&self.data, decode),
        }
    }
}

/// A chain to deploy to and transact on.
pub struct Chain {
    backend: Backend,
    chain_id: u64,
    sender: Address,
    timeout: Duration,
}

enum Backend {
    InProcess(Box<InProcess>),
    Rpc(Box<Rpc>),
}

struct InProcess {
    evm: MainnetEvm<MainnetContext<InMemoryDB>>,
    nonce: u64,
}

struct Rpc {
    url: String,
    runtime: tokio::runtime::Runtime,
    provider: DynProvider,
}

fn rpc_error(url: &str, reason: impl std::fmt::Display) -> Error {
    EvmError::Rpc { url: url.to_string(), reason: reason.to_string() }.into()
}

impl Chain {
    /// The in-process EVM, or the node of `connect.rpc_url`.
    pub fn open(connect: &Connect) -> Result<Chain> {
        match &connect.rpc_url {
            None => Ok(Chain::in_process()),
            Some(url) => Chain::connect(url, connect),
        }
    }

    /// A fresh in-process EVM (revm), paid for by anvil's first development account.
    pub fn in_process() -> Chain {
        let evm = Context::mainnet()
            .modify_cfg_chained(|cfg| cfg.chain_id = IN_PROCESS_CHAIN_ID)
            .modify_block_chained(|block| block.number = U256::from(1))
            .with_db(InMemoryDB::default())
            .build_mainnet();
        let sender = dev_signer().address();
        Chain {
            backend: Backend::InProcess(Box::new(InProcess { evm, nonce: 0 })),
            chain_id: IN_PROCESS_CHAIN_ID,
            sender,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Connects to the node at `url`: checks it answers (and has the expected chain id), then
    /// loads the signing key.
    pub fn connect(url: &str, connect: &Connect) -> Result<Chain> {
        let parsed: alloy::transports::http::reqwest::Url =
            url.parse().map_err(|e| rpc_error(url, format!("not a valid URL: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| EvmError::Execution(format!("cannot start the async runtime: {e}")))?;
        let probe = ProviderBuilder::new().connect_http(parsed.clone());
        let chain_id = runtime
            .block_on(within(connect.timeout, probe.get_chain_id()))
            .map_err(|_| rpc_error(url, format!("no answer within {} s", connect.timeout.as_secs())))?
            .map_err(|e| rpc_error(url, e))?;
        if let Some(expected) = connect.expected_chain_id.filter(|&e| e != chain_id) {
            return Err(EvmError::WrongChain { url: url.to_string(), expected, found: chain_id }.into());
        }
        let signer = signer_for(chain_id, connect.keystore.as_deref())?;
        let sender = signer.address();
        let provider = ProviderBuilder::new().wallet(EthereumWallet::from(signer)).connect_http(parsed).erased();
        Ok(Chain {
            backend: Backend::Rpc(Box::new(Rpc { url: url.to_string(), runtime, provider })),
            chain_id,
            sender,
            timeout: connect.timeout,
        })
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The account that signs and pays.
    pub fn sender(&self) -> Address {
        self.sender
    }

    /// The node's URL; `None` for the in-process EVM.
    pub fn rpc_url(&self) -> Option<&str> {
        match &self.backend {
            Backend::InProcess(_) => None,
            Backend::Rpc(rpc) => Some(&rpc.url),
        }
    }

    /// Whether this is a development chain: the in-process EVM or a local chain id.
    pub fn is_local(&self) -> bool {
        self.rpc_url().is_none() || LOCAL_CHAIN_IDS.contains(&self.chain_id)
    }

    /// "the in-process EVM" or "chain 31337 at http://…".
    pub fn describe(&self) -> String {
        match self.rpc_url() {
            None => "the in-process EVM (revm)".to_string(),
            Some(url) => format!("chain {} at {url}", self.chain_id),
        }
    }

    /// Calls `to` with `data` without a transaction (eth_call): its return data, or the
    /// [`Revert`] when it does not return.
    pub fn call(&mut self, to: Address, data: Vec<u8>) -> Result<std::result::Result<Bytes, Revert>> {
        let sender = self.sender;
        let timeout = self.timeout;
        match &mut self.backend {
            Backend::InProcess(evm) => {
                let tx = evm.tx(sender, TxKind::Call(to), data);
                let outcome = evm
                    .evm
                    .transact(tx)
                    .map_err(|e| EvmError::InProcess { what: "call".into(), source: Box::new(e) })?
                    .result;
                Ok(match outcome {
                    ExecutionResult::Success { output, .. } => Ok(output.into_data()),
                    ExecutionResult::Revert { output, .. } => Err(Revert { data: output, halted: None }),
                    ExecutionResult::Halt { reason, .. } => {
                        Err(Revert { data: Bytes::new(), halted: Some(format!("{reason:?}")) })
                    }
                })
            }
            Backend::Rpc(rpc) => {
                let request = TransactionRequest::default().with_from(sender).with_to(to).with_input(data);
                let answer = rpc
                    .runtime
                    .block_on(within(timeout, rpc.provider.call(request).into_future()))
                    .map_err(|_| rpc_error(&rpc.url, format!("no answer within {} s to a call", timeout.as_secs())))?;
                match answer {
                    Ok(bytes) => Ok(Ok(bytes)),
                    Err(e) => match (revert_data(&e), e.as_error_resp()) {
                        (Some(data), _) => Ok(Err(Revert { data, halted: None })),
                        // The node ran the call and it failed without revert data.
                        (None, Some(payload)) => {
                            Ok(Err(Revert { data: Bytes::new(), halted: Some(payload.message.to_string()) }))
                        }
                        (None, None) => Err(rpc_error(&rpc.url, e)),
                    },
                }
            }
        }
    }

    /// Deploys `code` (creation bytecode with any constructor arguments appended).
    pub fn deploy(&mut self, what: &str, code: Vec<u8>, decode: RevertDecoder) -> Result<Deployed> {
        let mined = self.transact(what, TxKind::Create, code, decode, |_| Ok(()))?;
        let address = mined.contract.ok_or_else(|| EvmError::Execution(format!("the {what} created no contract")))?;
        Ok(Deployed { address, tx_hash: mined.tx_hash, gas_used: mined.gas_used })
    }

    /// Sends a transaction to `to` and waits for its receipt. It is simulated first, so that a
    /// revert is reported (decoded by `decode`) without paying for it. `on_sent` receives the
    /// transaction hash as soon as the node has it, before the wait.
    pub fn send(
        &mut self,
        what: &str,
        to: Address,
        data: Vec<u8>,
        decode: RevertDecoder,
        on_sent: impl FnOnce(B256) -> Result<()>,
    ) -> Result<Mined> {
        if let Err(revert) = self.call(to, data.clone())? {
            return Err(EvmError::Reverted { what: what.to_string(), reason: revert.describe(decode) }.into());
        }
        self.transact(what, TxKind::Call(to), data, decode, on_sent)
    }

    fn transact(
        &mut self,
        what: &str,
        kind: TxKind,
        data: Vec<u8>,
        decode: RevertDecoder,
        on_sent: impl FnOnce(B256) -> Result<()>,
    ) -> Result<Mined> {
        let (sender, chain_id, timeout) = (self.sender, self.chain_id, self.timeout);
        match &mut self.backend {
            Backend::InProcess(evm) => evm.transact_commit(what, kind, data, sender, decode),
            Backend::Rpc(rpc) => rpc.transact(what, kind, data, sender, chain_id, timeout, decode, on_sent),
        }
    }
}

impl InProcess {
    fn tx(&self, caller: Address, kind: TxKind, data: Vec<u8>) -> TxEnv {
        TxEnv {
            caller,
            kind,
            data: data.into(),
            nonce: self.nonce,
            gas_limit: IN_PROCESS_GAS_LIMIT,
            chain_id: Some(IN_PROCESS_CHAIN_ID),
            ..Default::default()
        }
    }

    fn transact_commit(
        &mut self,
        what: &str,
        kind: TxKind,
        data: Vec<u8>,
        sender: Address,
        decode: RevertDecoder,
    ) -> Result<Mined> {
        let tx = self.tx(sender, kind, data);
        let outcome = self
            .evm
            .transact_commit(tx)
            .map_err(|e| EvmError::InProcess { what: what.to_string(), source: Box::new(e) })?;
        self.nonce += 1;
        match outcome {
            ExecutionResult::Success { gas_used, logs, output, .. } => {
                let contract = match output {
                    Output::Create(_, address) => address,
                    Output::Call(_) => None,
                };
                Ok(Mined { tx_hash: None, contract, gas_used, block: 1, logs })
            }
            ExecutionResult::Revert { output, .. } => {
                Err(EvmError::Reverted { what: what.to_string(), reason: describe_revert(&output, decode) }.into())
            }
            ExecutionResult::Halt { reason, gas_used } => Err(EvmError::Reverted {
                what: what.to_string(),
                reason: format!("execution halted ({reason:?}) after {gas_used} gas"),
            }
            .into()),
        }
    }
}

impl Rpc {
    #[allow(clippy::too_many_arguments)]
    fn transact(
        &self,
        what: &str,
        kind: TxKind,
        data: Vec<u8>,
        sender: Address,
        chain_id: u64,
        timeout: Duration,
        decode: RevertDecoder,
        on_sent: impl FnOnce(B256) -> Result<()>,
    ) -> Result<Mined> {
        let mut request = TransactionRequest::default().with_from(sender).with_input(data);
        request.to = Some(kind);
        let url = &self.url;
        let sent = self.runtime.block_on(within(timeout, self.provider.send_transaction(request))).map_err(|_| {
            rpc_error(url, format!("no answer within {} s while sending the {what}", timeout.as_secs()))
        })?;
        let pending = match sent {
            Ok(pending) => pending,
            Err(e) => return Err(self.send_failure(what, sender, chain_id, decode, e)),
        };
        let tx_hash = *pending.tx_hash();
        on_sent(tx_hash)?;
        let receipt = self
            .runtime
            .block_on(within(timeout, pending.get_receipt()))
            .map_err(|_| EvmError::ReceiptTimeout {
                what: what.to_string(),
                tx_hash: tx_hash.to_string(),
                seconds: timeout.as_secs(),
            })?
            .map_err(|e| rpc_error(url, format!("waiting for the receipt of {tx_hash}: {e}")))?;
        if !receipt.status() {
            return Err(EvmError::Reverted {
                what: what.to_string(),
                reason: format!(
                    "transaction {tx_hash} was mined but reverted (status 0, {} gas used)",
                    receipt.gas_used
                ),
            }
            .into());
        }
        Ok(Mined {
            tx_hash: Some(tx_hash),
            contract: receipt.contract_address,
            gas_used: receipt.gas_used,
            block: receipt.block_number.unwrap_or_default(),
            logs: receipt.inner.logs().iter().map(|log| log.inner.clone()).collect(),
        })
    }

    /// Names the cause of a transaction the node refused.
    fn send_failure(
        &self,
        what: &str,
        sender: Address,
        chain_id: u64,
        decode: RevertDecoder,
        e: TransportError,
    ) -> Error {
        if let Some(data) = revert_data(&e) {
            return EvmError::Reverted { what: what.to_string(), reason: describe_revert(&data, decode) }.into();
        }
        let message = e.to_string();
        let lower = message.to_lowercase();
        if lower.contains("insufficient funds") || lower.contains("funds for gas") {
            let balance = self
                .runtime
                .block_on(within(Duration::from_secs(10), self.provider.get_balance(sender).into_future()))
                .ok()
                .and_then(|b| b.ok())
                .map_or_else(|| "unknown".to_string(), |b| b.to_string());
            return EvmError::InsufficientFunds {
                what: what.to_string(),
                account: sender.to_string(),
                chain_id,
                balance,
            }
            .into();
        }
        if lower.contains("nonce") || lower.contains("already known") || lower.contains("underpriced") {
            return EvmError::NonceConflict { what: what.to_string(), account: sender.to_string(), reason: message }
                .into();
        }
        rpc_error(&self.url, format!("sending the {what}: {message}"))
    }
}

async fn within<T>(
    timeout: Duration,
    fut: impl Future<Output = T>,
) -> std::result::Result<T, tokio::time::error::Elapsed> {
    tokio::time::timeout(timeout, fut).await
}

fn revert_data(e: &TransportError) -> Option<Bytes> {
    e.as_error_resp().and_then(|payload| payload.as_revert_data())
}

/// A revert in words: the caller's own errors, then Solidity's `Error(string)` and `Panic`.
pub fn describe_revert(data: &[u8], decode: RevertDecoder) -> String {
    if let Some(reason) = decode(data) {
        return reason;
    }
    if data.is_empty() {
        return "reverted without a reason".to_string();
    }
    match alloy::sol_types::decode_revert_reason(data) {
        Some(reason) => reason,
        None => format!("reverted with data 0x{}", hex::encode(data)),
    }
}

/// A decoder that knows no custom errors.
pub fn no_custom_errors(_: &[u8]) -> Option<String> {
    None
}

fn dev_signer() -> PrivateKeySigner {
    ANVIL_DEV_KEY.parse().expect("anvil's development key is a valid key")
}

/// The signing key: `keystore` (decrypted with [`KEYSTORE_PASSWORD_ENV`]), else
/// [`PRIVATE_KEY_ENV`], else anvil's development key when `chain_id` is a local chain.
pub fn signer_for(chain_id: u64, keystore: Option<&Path>) -> Result<PrivateKeySigner> {
    if let Some(path) = keystore {
        let password = std::env::var(KEYSTORE_PASSWORD_ENV).map_err(|_| {
            EvmError::Key(format!("set {KEYSTORE_PASSWORD_ENV} to the password of the keystore {}", path.display()))
        })?;
        if !path.is_file() {
            return Err(EvmError::Key(format!("the keystore {} does not exist", path.display())).into());
        }
        return PrivateKeySigner::decrypt_keystore(path, password).map_err(|e| {
            EvmError::Key(format!(
                "cannot decrypt the keystore {} ({e}); check {KEYSTORE_PASSWORD_ENV} and that the file is an Ethereum JSON keystore",
                path.display()
            ))
            .into()
        });
    }
    match std::env::var(PRIVATE_KEY_ENV) {
        Ok(key) => key.trim().trim_start_matches("0x").parse::<PrivateKeySigner>().map_err(|_| {
            EvmError::Key(format!("{PRIVATE_KEY_ENV} is not a valid private key (expected 32 bytes of hex)")).into()
        }),
        Err(_) if LOCAL_CHAIN_IDS.contains(&chain_id) => Ok(dev_signer()),
        Err(_) => Err(EvmError::Key(format!(
            "chain {chain_id} is not a local development chain: give the key of a funded account with --keystore FILE \
             (password in {KEYSTORE_PASSWORD_ENV}) or in {PRIVATE_KEY_ENV}; keys are never taken on the command line"
        ))
        .into()),
    }
}

/// A contract deployed by zkinfer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deployed {
    /// Its address.
    pub address: Address,
    /// The deploying transaction (none in the in-process EVM).
    pub tx_hash: Option<B256>,
    /// Gas used by the deployment.
    pub gas_used: u64,
}

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

/// Deploys `bytecode` on the node at `url` (or in process) and verifies `calldata` against it
/// with a transaction, simulated first: a revert means the proof is rejected.
pub fn verify_on_chain(
    connect: &Connect,
    bytecode: &[u8],
    calldata: &[u8],
) -> Result<(EvmVerification, Chain, Deployed)> {
    let mut chain = Chain::open(connect)?;
    let deployed = chain.deploy("verifier deployment", bytecode.to_vec(), no_custom_errors)?;
    let verification = match chain
        .send("verification", deployed.address, calldata.to_vec(), no_custom_errors, |_| Ok(()))
    {
        Ok(mined) => EvmVerification { verified: true, gas_used: Some(mined.gas_used), reason: None },
        Err(Error::Evm(EvmError::Reverted { reason, .. })) => EvmVerification {
            verified: false,
            gas_used: None,
            reason: Some(format!("the verifier reverted ({reason}): the proof or its public instances are invalid")),
        },
        Err(e) => return Err(e),
    };
    Ok((verification, chain, deployed))
}
