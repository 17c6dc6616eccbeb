//! The inference registry (`contracts/InferenceRegistry.sol`) and the verifier adapter
//! (`contracts/IInferenceVerifier.sol`) from Rust: their ABI, their compilation from the
//! sources embedded in the binary, and the registration layout of a proof.

use std::path::Path;

use alloy::primitives::{keccak256, Address, B256, U256};
use alloy::sol;
use alloy::sol_types::{SolInterface, SolValue};
use serde::{Deserialize, Serialize};

use super::solidity::{compile_sources, CompiledContract, Optimizer};
use crate::error::{Error, Result};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;

use crate::prove::binding::Weights;
use crate::prove::proof::{fr_from_hex, fr_from_word, fr_to_word};
use crate::prove::{KeyHeader, ProofFile};

/// The registry's source, as in `contracts/`.
pub const REGISTRY_SOURCE: &str = include_str!("../../contracts/InferenceRegistry.sol");
/// The verifier interface and adapter's source, as in `contracts/`.
pub const ADAPTER_SOURCE: &str = include_str!("../../contracts/IInferenceVerifier.sol");
/// Gas one verification may use inside the adapter by default (zkinfer's verifiers use 0.3 M
/// to 0.5 M; a malformed proof can burn all it is given).
pub const DEFAULT_GAS_CAP: u64 = 2_000_000;

sol! {
    /// How a model's proofs are tied to its weights (`InferenceRegistry.Weights`).
    #[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
    enum WeightBinding {
        /// Constants of the circuit: the verifier binds them.
        Fixed,
        /// Public instances that must hash to the registered binding.
        Instances,
        /// Not bound: private weights, registered on explicit request.
        Unbound
    }

    /// The registry's view of a model's public instances: the bound instances, then one input
    /// run and one output run per inference.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Layout {
        uint16 numInstances;
        uint16[] bound;
        uint16[] inputStart;
        uint16[] inputLength;
        uint16[] outputStart;
        uint16[] outputLength;
        uint16[] submitter;
    }

    /// A verified inference as the registry stores it.
    #[derive(Debug)]
    struct Record {
        bytes32 modelId;
        bytes32[] inputs;
        uint256[] outputs;
        address submitter;
        uint64 blockNumber;
    }

    /// The registry's functions, events and errors.
    interface InferenceRegistry {
        event ModelRegistered(bytes32 indexed modelId, address verifier, address key, WeightBinding weights, bytes32 binding);
        event InferenceVerified(
            bytes32 indexed recordId, bytes32 indexed modelId, address indexed submitter, bytes32[] inputs, uint256[] outputs
        );

        error NotOwner(address caller);
        error ZeroAddress();
        error ModelExists(bytes32 modelId);
        error UnknownModel(bytes32 modelId);
        error BadLayout(string reason);
        error WrongInstanceCount(uint256 expected, uint256 got);
        error NonCanonicalInstance(uint256 index, uint256 value);
        error OtherWeights(bytes32 expected, bytes32 got);
        error WrongSubmitter(address submitter, uint256 expected, uint256 got);
        error ProofRejected(bytes32 modelId);
        error AlreadyVerified(bytes32 recordId);
        error UnknownRecord(bytes32 recordId);
        error NotAContract(address account);
        error ZeroGasCap();

        function owner() external view returns (address);
        function registerModel(bytes32 modelId, address verifier, WeightBinding weights, bytes32 binding, Layout layout) external;
        function registerModelWithKey(
            bytes32 modelId, address verifier, address key, uint64 gasCap, WeightBinding weights, bytes32 binding, Layout layout
        ) external;
        function recordIdOf(bytes32 modelId, uint256[] instances) external pure returns (bytes32);
        function submit(bytes32 modelId, bytes proof, uint256[] instances) external returns (bytes32 recordId);
        function recordOf(bytes32 recordId) external view returns (Record memory);
    }
}

/// The registry's and the adapter's custom errors, in words.
pub fn decode_error(data: &[u8]) -> Option<String> {
    use InferenceRegistry::InferenceRegistryErrors as E;
    let text = match E::abi_decode(data).ok()? {
        E::NotOwner(e) => format!("NotOwner({}): only the registry's owner may register models", e.caller),
        E::ZeroAddress(_) => "ZeroAddress: an address argument is zero".into(),
        E::ModelExists(e) => format!("ModelExists({}): a model is already registered under this id", e.modelId),
        E::UnknownModel(e) => {
            format!(
                "UnknownModel({}): no model is registered under this id; register it with `zkinfer deploy --registry`",
                e.modelId
            )
        }
        E::BadLayout(e) => format!("BadLayout: {}", e.reason),
        E::WrongInstanceCount(e) => format!(
            "WrongInstanceCount(expected {}, got {}): the proof is for another circuit than the registered one",
            e.expected, e.got
        ),
        E::NonCanonicalInstance(e) => format!(
            "NonCanonicalInstance({}, {:#x}): the instance is not below the field modulus (the same statement as a \
             canonical word, re-labelled)",
            e.index, e.value
        ),
        E::OtherWeights(e) => format!(
            "OtherWeights(expected {}, got {}): the proof was made with other weights than the registered model's",
            e.expected, e.got
        ),
        E::WrongSubmitter(e) => format!(
            "WrongSubmitter({}): the proof is bound to another submitter, chain or registry (it carries {:#x}, this \
             account here needs {:#x}); prove again with --submitter for this account, chain and registry",
            e.submitter, e.got, e.expected
        ),
        E::ProofRejected(e) => {
            format!("ProofRejected({}): the model's verifier rejected the proof or its public instances", e.modelId)
        }
        E::AlreadyVerified(e) => format!("AlreadyVerified({}): this inference is already recorded", e.recordId),
        E::UnknownRecord(e) => format!("UnknownRecord({}): no such record", e.recordId),
        E::NotAContract(e) => {
            format!("NotAContract({}): no contract there (a verifier or key not deployed on this chain?)", e.account)
        }
        E::ZeroGasCap(_) => "ZeroGasCap: a model's verifications need a gas cap above zero (--gas-cap)".into(),
    };
    Some(text)
}

/// The registry and the adapter, compiled.
pub struct RegistryContracts {
    /// `InferenceRegistry`.
    pub registry: CompiledContract,
    /// `Halo2VerifierAdapter`.
    pub adapter: CompiledContract,
}

/// Compiles the embedded registry and adapter sources with `solc`.
pub fn compile_registry(solc: &Path) -> Result<RegistryContracts> {
    let sources = [("InferenceRegistry.sol", REGISTRY_SOURCE), ("IInferenceVerifier.sol", ADAPTER_SOURCE)];
    let mut compiled = compile_sources(
        solc,
        &sources,
        &[("InferenceRegistry.sol", "InferenceRegistry"), ("IInferenceVerifier.sol", "Halo2VerifierAdapter")],
        Optimizer::Full,
    )?;
    let adapter = compiled.pop().expect("two contracts asked for");
    let registry = compiled.pop().expect("two contracts asked for");
    Ok(RegistryContracts { registry, adapter })
}

/// The adapter's creation code for `verifier` with a gas cap per verification.
pub fn adapter_creation_code(
    adapter: &CompiledContract,
    verifier: alloy::primitives::Address,
    gas_cap: u64,
) -> Vec<u8> {
    let mut code = adapter.bytecode.clone();
    code.extend_from_slice(&(verifier, U256::from(gas_cap)).abi_encode_params());
    code
}

/// A model id: `0x` and 64 hex digits as they are, any other name hashed with keccak256.
pub fn model_id(name: &str) -> B256 {
    match name.strip_prefix("0x").filter(|h| h.len() == 64).and_then(|h| h.parse::<B256>().ok()) {
        Some(id) => id,
        None => keccak256(name.as_bytes()),
    }
}

/// What the registry is told about a model: how its proofs are tied to its weights, and the
/// layout of its instances.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// How proofs are tied to the weights.
    pub weights: WeightBinding,
    /// keccak256 of the bound instance words (zero when none).
    pub binding: B256,
    /// The instance layout.
    pub layout: Layout,
}

/// The registration of the circuit a verifying key is for, read from its header (which
/// `read_vk_checked` has checked against the key): the bound weight instances and their
/// binding, and one input and one output run per inference; `path` names the key in errors.
pub fn registration_of_key(header: &KeyHeader, path: &Path) -> Result<Registration> {
    let narrow = |v: usize, what: &str| {
        u16::try_from(v).map_err(|_| Error::artifact(path, format!("{what} ({v}) does not fit the registry's layout")))
    };
    let mut words = Vec::with_capacity(32 * header.bound.len());
    let mut bound = Vec::with_capacity(header.bound.len());
    for b in &header.bound {
        let word = fr_from_hex(&b.word)
            .ok_or_else(|| Error::artifact(path, format!("bound word {} is not a field element", b.word)))?;
        words.extend_from_slice(&fr_to_word(&word));
        bound.push(narrow(b.index, "instance index")?);
    }
    let binding = if bound.is_empty() { B256::ZERO } else { keccak256(&words) };
    // One inference per aggregated proof (an application proof is one), in layout order.
    // Per inference: the proof path of its spans, its input run and its output run (start, end).
    type Run = Option<(usize, usize)>;
    let mut inferences: Vec<(&[usize], Run, Run)> = Vec::new();
    for span in &header.instance_layout {
        let end = span.first_instance.checked_add(span.instances).ok_or_else(|| Error::artifact(path, "bad layout"))?;
        let at = match inferences.iter().position(|(p, _, _)| *p == span.proof.as_slice()) {
            Some(at) => at,
            None => {
                inferences.push((span.proof.as_slice(), None, None));
                inferences.len() - 1
            }
        };
        let run = match span.kind.as_str() {
            "input" => &mut inferences[at].1,
            "output" => &mut inferences[at].2,
            _ => continue,
        };
        *run = Some(match *run {
            None => (span.first_instance, end),
            Some((start, last)) => (start.min(span.first_instance), last.max(end)),
        });
    }
    let mut layout = Layout {
        numInstances: narrow(header.shape.num_instances, "number of instances")?,
        bound,
        inputStart: Vec::new(),
        inputLength: Vec::new(),
        outputStart: Vec::new(),
        outputLength: Vec::new(),
        submitter: header
            .instance_layout
            .iter()
            .filter(|s| s.kind == "submitter")
            .map(|s| narrow(s.first_instance, "instance index"))
            .collect::<Result<_>>()?,
    };
    for (_, input, output) in inferences {
        let (start, end) = input.unwrap_or((0, 0));
        layout.inputStart.push(narrow(start, "instance index")?);
        layout.inputLength.push(narrow(end - start, "run length")?);
        let (start, end) = output.unwrap_or((0, 0));
        layout.outputStart.push(narrow(start, "instance index")?);
        layout.outputLength.push(narrow(end - start, "run length")?);
    }
    let weights = match header.weights {
        Weights::Fixed => WeightBinding::Fixed,
        Weights::Instances => WeightBinding::Instances,
        Weights::Unbound => WeightBinding::Unbound,
    };
    Ok(Registration { weights, binding, layout })
}

/// The public instances of a proof as EVM words.
pub fn instance_words(proof: &ProofFile, path: &Path) -> Result<Vec<U256>> {
    let columns = proof.instance_values(path)?;
    Ok(columns.first().map(|c| c.iter().map(|w| U256::from_be_bytes(fr_to_word(w))).collect()).unwrap_or_default())
}

/// What a proof of a model made with `--bind-submitter` is bound to: one account submitting it to
/// one registry on one chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitterBinding {
    /// The chain id.
    pub chain_id: u64,
    /// The registry.
    pub registry: Address,
    /// The account that will send `submit`.
    pub submitter: Address,
}

impl SubmitterBinding {
    /// The instance word: keccak256(abi.encode(chainId, registry, submitter)) shifted right by
    /// 8 bits (248 bits, below the field's modulus), as `InferenceRegistry.submitterWord`.
    pub fn word(&self) -> Fr {
        let hash = keccak256((U256::from(self.chain_id), self.registry, self.submitter).abi_encode_params());
        let shifted: U256 = U256::from_be_bytes(hash.0) >> 8usize;
        fr_from_word(shifted.to_be_bytes::<32>()).expect("248 bits are below the modulus")
    }
}
