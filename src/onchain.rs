//! `zkinfer deploy` and `zkinfer submit`: put a verifier (and the inference registry) on a
//! chain, register a model, and post proofs to the registry.
//!
//! Nothing is lost on the way: `deployment.json` is rewritten after every contract that lands
//! (a failure half-way leaves the addresses already paid for), and `submission.json` gets the
//! transaction hash as soon as the node has it. `submit` first asks the registry whether the
//! inference is already recorded, so running it again after a timeout or a crash is safe.

use std::path::{Path, PathBuf};

use alloy::primitives::{Address, Log, B256, U256};
use alloy::sol_types::{SolCall, SolError, SolEvent};
use serde::{Deserialize, Serialize};

use crate::error::EvmError;
use crate::error::{read_json, write_json, Error, Result};
use crate::evm::chain::{Chain, Deployed};
use crate::evm::registry::{
    self, adapter_creation_code, decode_error, model_id, registration_of_key, InferenceRegistry, Record, Registration,
    SubmitterBinding, WeightBinding,
};
use crate::evm::CompiledContract;
use crate::prove::proof::{decode_run, fr_from_word, InstanceSpan};
use crate::prove::{KeyHeader, ProofFile};

pub use crate::evm::deployment::{DeploymentFile, RegisteredModel, DEPLOYMENT_FORMAT_VERSION};

/// Which registry `deploy` uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryTarget {
    /// Deploy only the verifier.
    None,
    /// Deploy a new registry (owned by the deploying account) and the verifier's adapter.
    New,
    /// Use the registry at this address (the deploying account must own it to register).
    At(Address),
}

/// What `deploy` does.
#[derive(Clone, Debug)]
pub struct DeployOptions {
    /// The compiled verifier (`Verifier.json`), or the shared verifier (`SharedVerifier.json`).
    pub verifier: PathBuf,
    /// With the shared verifier: the model's key (`VerifyingKey.json`).
    pub key: Option<PathBuf>,
    /// With the shared verifier: one already deployed on this chain, used instead of deploying
    /// it again (else the one in the previous `deployment.json` of this chain, if any).
    pub shared_verifier: Option<Address>,
    /// The registry.
    pub registry: RegistryTarget,
    /// Register the model under this name (needs a registry).
    pub model: Option<String>,
    /// The model's verifying key: what is registered (the instance layout, the weight binding)
    /// is read from it.
    pub vk: PathBuf,
    /// The SRS file the key was made with (none: the development SRS).
    pub srs: Option<PathBuf>,
    /// Register a model whose proofs are not tied to its weights (private weights: a record
    /// then says only that some weights of this architecture gave the output).
    pub allow_unbound_weights: bool,
    /// Gas one verification may use (inside the adapter, or the shared verifier's call).
    pub gas_cap: u64,
    /// Deploy a verifier built on the development SRS to a non-local chain anyway.
    pub allow_insecure_srs: bool,
    /// The solc for the registry.
    pub solc: Option<PathBuf>,
    /// Where to write `deployment.json`; `None` writes nothing (the in-process flow of `submit`,
    /// whose contracts vanish with the command).
    pub out: Option<PathBuf>,
}

/// Refuses a verifier built on the development SRS for a chain that is not a local one.
fn check_srs(chain: &Chain, verifier: &CompiledContract, allow: bool) -> Result<()> {
    if chain.is_local() || allow || verifier.insecure_srs == Some(false) {
        return Ok(());
    }
    let why = match verifier.insecure_srs {
        Some(_) => "it was built on the development SRS, whose secret is public: anyone can forge proofs it accepts",
        None => "its file does not say which SRS it was built on (an older zkinfer wrote it), so it may be the development one",
    };
    Err(EvmError::InsecureSrs { chain_id: chain.chain_id(), why: why.to_string() }.into())
}

/// The registration of the model the verifying key is for, checked against the verifier it is
/// registered with and refused, unless asked for, when the proofs are not tied to the weights.
fn registration_for(verifier: &CompiledContract, path: &Path, options: &DeployOptions) -> Result<Registration> {
    let (header, _, _) = crate::prove::keys::read_vk_checked(&options.vk, options.srs.as_deref())?;
    if let Some(digest) = verifier.circuit_digest.as_ref().filter(|d| **d != header.circuit_digest) {
        return Err(Error::artifact(
            path,
            format!(
                "this verifier was generated for circuit {digest}, the verifying key {} is for circuit {}: \
                 run `zkinfer create-evm-verifier --vk {}` first",
                options.vk.display(),
                header.circuit_digest,
                options.vk.display()
            ),
        ));
    }
    let registration = registration_of_key(&header, &options.vk)?;
    if registration.weights == WeightBinding::Unbound && !options.allow_unbound_weights {
        return Err(Error::Usage(format!(
            "the proofs of {} are not tied to the model's weights (private weights, or an aggregation that does not \
             expose them): a record would say only that some weights of this architecture gave the output, not that \
             this model did. Make the weights fixed, public or hashed and run setup again, or pass \
             --allow-unbound-weights to register it with that meaning",
            options.vk.display()
        )));
    }
    Ok(registration)
}

/// `deploy`: the verifier, then (as asked) the adapter and the registry, then the model's
/// registration; `deployment.json` is written after each step.
pub fn deploy(chain: &mut Chain, options: &DeployOptions) -> Result<DeploymentFile> {
    let verifier: CompiledContract = read_json(&options.verifier)?;
    // The shared verifier verifies for a key: the key then says which circuit (and SRS) it is.
    let shared = verifier.name == crate::evm::reusable::SHARED_VERIFIER_CONTRACT;
    let key = match (&options.key, shared) {
        (Some(path), true) => Some((read_json::<CompiledContract>(path)?, path.clone())),
        (None, true) => {
            return Err(Error::Usage(format!(
                "{} is the shared verifier: give the model's key contract too (--key-contract VerifyingKey.json, written by \
                 create-evm-verifier --reusable)",
                options.verifier.display()
            )))
        }
        (Some(path), false) => {
            return Err(Error::Usage(format!(
                "--key-contract {} is for the shared verifier, and {} is a direct one: leave --key-contract out, or give \
                 SharedVerifier.json (create-evm-verifier --reusable)",
                path.display(),
                options.verifier.display()
            )))
        }
        (None, false) => None,
    };
    let (keyed, keyed_path) = key.as_ref().map_or((&verifier, &options.verifier), |(k, p)| (k, p));
    check_srs(chain, keyed, options.allow_insecure_srs)?;
    if options.model.is_some() && options.registry == RegistryTarget::None {
        return Err(Error::Usage(
            "registering a model needs a registry: add --registry (or --registry-address)".into(),
        ));
    }
    // Everything that can fail without the chain is checked before paying for anything.
    let registration = match &options.model {
        None => None,
        Some(_) => Some(registration_for(keyed, keyed_path, options)?),
    };
    let contracts = match options.registry {
        RegistryTarget::None => None,
        _ => Some(registry::compile_registry(&crate::evm::toolchain::resolve_solc(options.solc.as_deref())?)?),
    };
    // A shared verifier already on this chain is used again: given, or in the previous file.
    let previous = options.out.as_ref().filter(|out| out.exists()).and_then(|out| DeploymentFile::load(out).ok());
    let recorded_shared = previous
        .as_ref()
        .filter(|p| shared && p.chain_id == chain.chain_id() && p.shared_verifier.is_some())
        .and_then(|p| p.verifier.as_ref().map(|v| v.address));
    let existing_shared = match (options.shared_verifier, recorded_shared) {
        (Some(given), _) => {
            if !crate::evm::reusable::reads_our_keys(chain, given)? {
                return Err(Error::Usage(format!(
                    "--shared-verifier {given} is not a shared verifier that reads this zkinfer's keys (encoding {}): it \
                     may be from another version; leave --shared-verifier out to deploy one",
                    String::from_utf8_lossy(crate::evm::reusable::MAGIC)
                )));
            }
            Some(given)
        }
        (None, Some(recorded)) if crate::evm::reusable::reads_our_keys(chain, recorded)? => Some(recorded),
        (None, Some(recorded)) => {
            tracing::warn!(
                "the shared verifier at {recorded} (from the previous deployment file) does not read this zkinfer's \
                 keys; deploying a new one"
            );
            None
        }
        (None, None) => None,
    };
    if let Some(out) = options.out.as_ref().filter(|out| out.exists()) {
        let backup = out.with_extension("json.bak");
        std::fs::rename(out, &backup).map_err(|e| Error::io("rename", out, e))?;
        tracing::warn!("kept the previous {} as {}", out.display(), backup.display());
    }
    let save = |file: &DeploymentFile| options.out.as_ref().map_or(Ok(()), |out| write_json(out, file));

    let mut file = DeploymentFile::new(chain);
    file.insecure_srs = keyed.insecure_srs;
    let deployed_verifier = match existing_shared {
        Some(address) => Deployed { address, tx_hash: None, gas_used: 0 },
        None => chain.deploy("verifier deployment", verifier.bytecode.clone(), decode_error)?,
    };
    let verifier_address = deployed_verifier.address;
    file.verifier = Some(deployed_verifier);
    file.verifier_runtime_bytes = Some(verifier.runtime.len());
    file.shared_verifier = shared.then_some(true);
    let key_address = match &key {
        Some((key, _)) => {
            let deployed = crate::evm::reusable::deploy_key(chain, &key.runtime, decode_error)?;
            let address = deployed.address;
            file.key = Some(deployed);
            Some(address)
        }
        None => None,
    };
    save(&file)?;
    let Some(contracts) = contracts else { return Ok(file) };

    // A verifier of its own gets the registry's interface from an adapter; the shared verifier
    // is registered with the model's key instead.
    let registered_verifier = match key_address {
        Some(_) => verifier_address,
        None => {
            let code = adapter_creation_code(&contracts.adapter, verifier_address, options.gas_cap);
            let adapter = chain.deploy("adapter deployment", code, decode_error)?;
            file.adapter = Some(adapter.clone());
            save(&file)?;
            adapter.address
        }
    };
    let registry = match options.registry {
        // An existing registry: recorded with no deploying transaction of ours.
        RegistryTarget::At(address) => Deployed { address, tx_hash: None, gas_used: 0 },
        _ => chain.deploy("registry deployment", contracts.registry.bytecode.clone(), decode_error)?,
    };
    let registry_address = registry.address;
    file.registry = Some(registry);
    save(&file)?;
    if let (Some(name), Some(registration)) = (&options.model, registration) {
        let id = model_id(name);
        let (weights, binding, layout) = (registration.weights, registration.binding, registration.layout.clone());
        let verifier = registered_verifier;
        let call = match key_address {
            Some(key) => InferenceRegistry::registerModelWithKeyCall {
                modelId: id,
                verifier,
                key,
                gasCap: options.gas_cap,
                weights,
                binding,
                layout,
            }
            .abi_encode(),
            None => {
                InferenceRegistry::registerModelCall { modelId: id, verifier, weights, binding, layout }.abi_encode()
            }
        };
        let mined = chain.send("model registration", registry_address, call, decode_error, |_| Ok(()))?;
        file.models.push(RegisteredModel {
            name: name.clone(),
            model_id: id,
            verifier: registered_verifier,
            key: key_address,
            weights: registration.weights,
            binding: registration.binding,
            layout: registration.layout,
            tx_hash: mined.tx_hash,
            gas_used: mined.gas_used,
        });
        save(&file)?;
    }
    Ok(file)
}

/// What `submit` does.
#[derive(Clone, Debug)]
pub struct SubmitOptions {
    /// The proof.
    pub proof: PathBuf,
    /// The model's verifying key: the proof is read through its instance layout.
    pub vk: PathBuf,
    /// The SRS file the key was made with (none: the development SRS).
    pub srs: Option<PathBuf>,
    /// In the in-process EVM: register a model whose weights are not bound (see `deploy`).
    pub allow_unbound_weights: bool,
    /// The model's registered name (or 32-byte hex id).
    pub model: String,
    /// The registry; else the one in `deployment`.
    pub registry: Option<Address>,
    /// `deployment.json` of the chain.
    pub deployment: PathBuf,
    /// In the in-process EVM, which has no registry yet: the verifier to deploy first...
    pub verifier: PathBuf,
    /// ... and, for the shared verifier, the model's key.
    pub key: Option<PathBuf>,
    /// Where to write `submission.json`.
    pub out: PathBuf,
    /// The solc for the registry (in-process EVM only).
    pub solc: Option<PathBuf>,
    /// Gas one verification may use inside the adapter (in-process EVM only).
    pub gas_cap: u64,
}

/// Whether a submission was recorded by this run, found already recorded, or is still pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubmissionStatus {
    /// Sent; no receipt yet.
    Pending,
    /// Verified and recorded by this submission.
    Verified,
    /// The registry already had this inference: nothing was sent.
    AlreadyVerified,
}

/// `submission.json`: a proof posted to the registry and what the registry recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    /// The outcome.
    pub status: SubmissionStatus,
    /// The chain id.
    pub chain_id: u64,
    /// The node (absent for the in-process EVM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_url: Option<String>,
    /// The registry.
    pub registry: Address,
    /// The model id.
    pub model_id: B256,
    /// The record's id: keccak256(modelId, instances).
    pub record_id: B256,
    /// The submitting transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<B256>,
    /// Its gas (the registry's checks, the verification and the storage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gas_used: Option<u64>,
    /// Who submitted it first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitter: Option<Address>,
    /// The block it was recorded in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    /// The recorded inputs, one per inference: a commitment, the keccak256 of the packed
    /// words, or zero if private.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<B256>,
    /// The recorded output words, decoded with the verifying key's layout (dequantized values,
    /// or a commitment in hex).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
}

/// `submit` on a chain with a registry: posts the proof, or finds it already recorded.
pub fn submit(chain: &mut Chain, options: &SubmitOptions) -> Result<Submission> {
    let (proof, key) = load_submitted(options)?;
    let registry = match options.registry {
        Some(address) => address,
        None => registry_from_deployment(chain, &options.deployment)?,
    };
    submit_to(chain, registry, &proof, &key, options)
}

/// The proof to submit, and its verifying key's header (checked against the key), whose layout
/// the proof file must have.
fn load_submitted(options: &SubmitOptions) -> Result<(ProofFile, KeyHeader)> {
    let proof = ProofFile::load_for_evm(&options.proof)?;
    let (key, _, _) = crate::prove::keys::read_vk_checked(&options.vk, options.srs.as_deref())?;
    proof.check_key(&options.proof, &key)?;
    Ok((proof, key))
}

/// `submit` on the in-process EVM: deploys the verifier, its adapter and a registry, registers
/// the model from the proof's layout, then submits, so that the whole flow and its gas can be
/// checked without a node. Nothing persists after the command.
pub fn submit_in_process(chain: &mut Chain, options: &SubmitOptions) -> Result<(DeploymentFile, Submission)> {
    let (proof, key) = load_submitted(options)?;
    let deployment = deploy(
        chain,
        &DeployOptions {
            verifier: options.verifier.clone(),
            key: options.key.clone(),
            shared_verifier: None,
            registry: RegistryTarget::New,
            model: Some(options.model.clone()),
            vk: options.vk.clone(),
            srs: options.srs.clone(),
            allow_unbound_weights: options.allow_unbound_weights,
            gas_cap: options.gas_cap,
            allow_insecure_srs: false,
            solc: options.solc.clone(),
            out: None,
        },
    )?;
    let registry = deployment.registry.as_ref().expect("deploy made a registry").address;
    let submission = submit_to(chain, registry, &proof, &key, options)?;
    Ok((deployment, submission))
}

/// What a proof of a model made with `--bind-submitter` is bound to: `submitter`, and the
/// registry and chain given, or else those of the deployment record at `deployment`.
pub fn submitter_binding(
    submitter: Address,
    registry: Option<Address>,
    chain_id: Option<u64>,
    deployment: &Path,
) -> Result<SubmitterBinding> {
    if let (Some(registry), Some(chain_id)) = (registry, chain_id) {
        return Ok(SubmitterBinding { chain_id, registry, submitter });
    }
    if !deployment.is_file() {
        return Err(Error::Usage(format!(
            "a proof bound to its submitter needs the registry and the chain it is for: pass --registry ADDRESS and \
             --chain-id ID, or the deployment record (--deployment; {} does not exist)",
            deployment.display()
        )));
    }
    let file = DeploymentFile::load(deployment)?;
    let recorded = file
        .registry
        .as_ref()
        .map(|r| r.address)
        .ok_or_else(|| Error::artifact(deployment, "this deployment has no registry; pass --registry ADDRESS"))?;
    Ok(SubmitterBinding {
        chain_id: chain_id.unwrap_or(file.chain_id),
        registry: registry.unwrap_or(recorded),
        submitter,
    })
}

/// Refuses, before anything is paid, a proof bound to another submitter, chain or registry than
/// the ones of this submission.
fn check_submitter(chain: &Chain, registry: Address, key: &KeyHeader, instances: &[U256]) -> Result<()> {
    let binding = SubmitterBinding { chain_id: chain.chain_id(), registry, submitter: chain.sender() };
    let expected = U256::from_be_bytes(crate::prove::proof::fr_to_word(&binding.word()));
    for span in key.instance_layout.iter().filter(|s| s.kind == "submitter") {
        let got = instances.get(span.first_instance).copied().unwrap_or_default();
        if got != expected {
            return Err(Error::Usage(format!(
                "this proof is bound to another submitter, chain or registry (instance {} is {got:#x}; from {} on chain \
                 {} to registry {registry} it must be {expected:#x}): prove again with --submitter {} --chain-id {} \
                 --registry {registry}",
                span.first_instance,
                binding.submitter,
                binding.chain_id,
                binding.submitter,
                binding.chain_id
            )));
        }
    }
    Ok(())
}

fn registry_from_deployment(chain: &Chain, path: &Path) -> Result<Address> {
    if !path.is_file() {
        return Err(Error::Usage(format!(
            "no registry given: pass --registry ADDRESS, or run `zkinfer deploy --registry` first (it writes {})",
            path.display()
        )));
    }
    let file = DeploymentFile::load(path)?;
    if file.chain_id != chain.chain_id() {
        return Err(EvmError::WrongChain {
            url: chain.rpc_url().unwrap_or("the in-process EVM").to_string(),
            expected: file.chain_id,
            found: chain.chain_id(),
        }
        .into());
    }
    let registry = file.registry.ok_or_else(|| {
        Error::artifact(path, "this deployment has no registry; run `zkinfer deploy --registry --model NAME`")
    })?;
    Ok(registry.address)
}

fn submit_to(
    chain: &mut Chain,
    registry: Address,
    proof: &ProofFile,
    key: &KeyHeader,
    options: &SubmitOptions,
) -> Result<Submission> {
    let instances = registry::instance_words(proof, &options.proof)?;
    check_submitter(chain, registry, key, &instances)?;
    let proof_bytes = proof.proof_bytes(&options.proof)?;
    let id = model_id(&options.model);
    let record_id = {
        let call = InferenceRegistry::recordIdOfCall { modelId: id, instances: instances.clone() };
        let answer = chain.call(registry, call.abi_encode())?.map_err(|revert| EvmError::Reverted {
            what: "recordIdOf call".into(),
            reason: revert.describe(decode_error),
        })?;
        InferenceRegistry::recordIdOfCall::abi_decode_returns(&answer).map_err(|_| not_a_registry(registry))?
    };
    let mut submission = Submission {
        status: SubmissionStatus::Pending,
        chain_id: chain.chain_id(),
        rpc_url: chain.rpc_url().map(str::to_string),
        registry,
        model_id: id,
        record_id,
        tx_hash: None,
        gas_used: None,
        submitter: None,
        block: None,
        inputs: Vec::new(),
        outputs: Vec::new(),
    };
    if let Some(record) = read_record(chain, registry, record_id)? {
        submission.status = SubmissionStatus::AlreadyVerified;
        // A re-run after a lost receipt keeps what the first run learnt of its transaction.
        if let Ok(previous) = read_json::<Submission>(&options.out) {
            if previous.record_id == record_id && previous.registry == registry {
                (submission.tx_hash, submission.gas_used) = (previous.tx_hash, previous.gas_used);
            }
        }
        fill_record(&mut submission, &record, &key.instance_layout)?;
        write_json(&options.out, &submission)?;
        return Ok(submission);
    }

    let call = InferenceRegistry::submitCall { modelId: id, proof: proof_bytes.into(), instances };
    let out = &options.out;
    let pending = submission.clone();
    let mined = chain.send("submission", registry, call.abi_encode(), decode_error, |tx_hash| {
        write_json(out, &Submission { tx_hash: Some(tx_hash), ..pending })
    })?;
    let event = mined
        .logs
        .iter()
        .find_map(|log: &Log| InferenceRegistry::InferenceVerified::decode_log(log).ok())
        .ok_or_else(|| {
            EvmError::Execution(format!("the submission was mined but {registry} emitted no InferenceVerified event"))
        })?;
    if event.recordId != record_id {
        return Err(
            EvmError::Execution(format!("the registry recorded {} instead of {record_id}", event.recordId)).into()
        );
    }
    submission.status = SubmissionStatus::Verified;
    submission.tx_hash = mined.tx_hash;
    submission.gas_used = Some(mined.gas_used);
    let record = read_record(chain, registry, record_id)?.ok_or_else(|| {
        EvmError::Execution(format!("the registry emitted InferenceVerified but has no record {record_id}"))
    })?;
    fill_record(&mut submission, &record, &key.instance_layout)?;
    write_json(&options.out, &submission)?;
    Ok(submission)
}

fn not_a_registry(address: Address) -> Error {
    EvmError::Execution(format!("{address} does not answer like an InferenceRegistry; check the address")).into()
}

/// The record of `record_id`, or `None` when the registry has none.
pub fn read_record(chain: &mut Chain, registry: Address, record_id: B256) -> Result<Option<Record>> {
    let call = InferenceRegistry::recordOfCall { recordId: record_id };
    match chain.call(registry, call.abi_encode())? {
        Ok(answer) => Ok(Some(
            InferenceRegistry::recordOfCall::abi_decode_returns(&answer).map_err(|_| not_a_registry(registry))?,
        )),
        Err(revert) if InferenceRegistry::UnknownRecord::abi_decode(&revert.data).is_ok() => Ok(None),
        Err(revert) => {
            Err(EvmError::Reverted { what: "recordOf call".into(), reason: revert.describe(decode_error) }.into())
        }
    }
}

fn fill_record(submission: &mut Submission, record: &Record, layout: &[InstanceSpan]) -> Result<()> {
    submission.submitter = Some(record.submitter);
    submission.block = Some(record.blockNumber);
    submission.inputs = record.inputs.clone();
    submission.outputs = decode_outputs(&record.outputs, layout)?;
    Ok(())
}

/// The recorded output words (every inference's output run, in order), decoded with the output
/// spans of the verifying key's layout.
fn decode_outputs(words: &[U256], layout: &[InstanceSpan]) -> Result<Vec<String>> {
    let fields = words
        .iter()
        .map(|w| {
            fr_from_word(w.to_be_bytes())
                .ok_or_else(|| EvmError::Execution(format!("recorded word {w:#x} is not a field element")).into())
        })
        .collect::<Result<Vec<_>>>()?;
    let mut rest = fields.as_slice();
    let mut decoded = Vec::new();
    for span in layout.iter().filter(|s| s.kind == "output") {
        if rest.len() < span.instances {
            return Err(
                EvmError::Execution("the recorded outputs do not match the verifying key's layout".into()).into()
            );
        }
        let (run, tail) = rest.split_at(span.instances);
        rest = tail;
        let value = decode_run(span, run)
            .ok_or_else(|| EvmError::Execution("the recorded outputs are not a valid packing".into()))?;
        decoded.push(value.to_string());
    }
    Ok(decoded)
}
