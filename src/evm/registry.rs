//! The inference registry (`contracts/InferenceRegistry.sol`) and the verifier adapter
//! (`contracts/IInferenceVerifier.sol`) from Rust: their ABI, their compilation from the
//! sources embedded in the binary, and the registration layout of a proof.

use std::path::Path;

use alloy::primitives::{keccak256, B256, U256};
use alloy::sol;
use alloy::sol_types::{SolInterface, SolValue};
use serde::{Deserialize, Serialize};

use super::solidity::{compile_sources, CompiledContract};
use crate::error::{Error, Result};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;

use crate::prove::proof::{fr_to_word, Encoding, InstanceSpan};
use crate::prove::ProofFile;

/// The registry's source, as in `contracts/`.
pub const REGISTRY_SOURCE: &str = include_str!("../../contracts/InferenceRegistry.sol");
/// The verifier interface and adapter's source, as in `contracts/`.
pub const ADAPTER_SOURCE: &str = include_str!("../../contracts/IInferenceVerifier.sol");
/// Gas one verification may use inside the adapter by default (zkinfer's verifiers use 0.3 M
/// to 0.5 M; a malformed proof can burn all it is given).
pub const DEFAULT_GAS_CAP: u64 = 2_000_000;
/// `InferenceRegistry.NONE`: no model commitment among the instances.
pub const NO_INDEX: u16 = u16::MAX;

sol! {
    /// The registry's view of a model's public instances.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Layout {
        uint16 numInstances;
        uint16 commitmentIndex;
        uint16 inputStart;
        uint16 inputLength;
        uint16 outputStart;
        uint16 outputLength;
    }

    /// A verified inference as the registry stores it.
    #[derive(Debug)]
    struct Record {
        bytes32 modelId;
        bytes32 input;
        uint256[] outputs;
        address submitter;
        uint64 blockNumber;
    }

    /// The registry's functions, events and errors.
    interface InferenceRegistry {
        event ModelRegistered(bytes32 indexed modelId, address verifier, bytes32 commitment);
        event InferenceVerified(
            bytes32 indexed recordId, bytes32 indexed modelId, address indexed submitter, bytes32 input, uint256[] outputs
        );

        error NotOwner(address caller);
        error ZeroAddress();
        error ModelExists(bytes32 modelId);
        error UnknownModel(bytes32 modelId);
        error BadLayout(string reason);
        error WrongInstanceCount(uint256 expected, uint256 got);
        error ModelCommitmentMismatch(bytes32 expected, bytes32 got);
        error ProofRejected(bytes32 modelId);
        error AlreadyVerified(bytes32 recordId);
        error UnknownRecord(bytes32 recordId);
        error NotAContract(address verifier);

        function owner() external view returns (address);
        function registerModel(bytes32 modelId, address verifier, bytes32 commitment, Layout layout) external;
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
            format!("UnknownModel({}): no model is registered under this id; register it with `zkinfer deploy --registry`", e.modelId)
        }
        E::BadLayout(e) => format!("BadLayout: {}", e.reason),
        E::WrongInstanceCount(e) => format!(
            "WrongInstanceCount(expected {}, got {}): the proof is for another circuit than the registered one",
            e.expected, e.got
        ),
        E::ModelCommitmentMismatch(e) => format!(
            "ModelCommitmentMismatch(expected {}, got {}): the proof was made with other weights than the registered model's",
            e.expected, e.got
        ),
        E::ProofRejected(e) => {
            format!("ProofRejected({}): the model's verifier rejected the proof or its public instances", e.modelId)
        }
        E::AlreadyVerified(e) => format!("AlreadyVerified({}): this inference is already recorded", e.recordId),
        E::UnknownRecord(e) => format!("UnknownRecord({}): no such record", e.recordId),
        E::NotAContract(e) => format!("NotAContract({}): the verifier address has no code", e.verifier),
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

/// What the registry is told about a model: the layout of its instances and its commitment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// The instance layout.
    pub layout: Layout,
    /// The model commitment (hashed params) the proofs must carry; else the circuit digest,
    /// for reference.
    pub commitment: B256,
}

/// The registration of the model a proof is for: its instance layout, and the model commitment
/// among its instances (or, when the params are not hashed, its circuit digest).
pub fn registration_of(proof: &ProofFile, path: &Path) -> Result<Registration> {
    let columns = proof.instance_values(path)?;
    let words = columns.first().map(Vec::as_slice).unwrap_or(&[]);
    registration_from(&proof.instance_layout, words, &proof.circuit_digest, path)
}

/// The registration of a circuit with public instances `words` laid out as `layout`; `path`
/// names the file they come from, in errors.
pub fn registration_from(
    layout: &[InstanceSpan],
    words: &[Fr],
    circuit_digest: &str,
    path: &Path,
) -> Result<Registration> {
    let narrow = |v: usize, what: &str| {
        u16::try_from(v).map_err(|_| Error::artifact(path, format!("{what} ({v}) does not fit the registry's layout")))
    };
    let run = |kind: &str| -> Result<(u16, u16)> {
        let spans: Vec<_> = layout.iter().filter(|s| s.kind == kind).collect();
        let (Some(first), Some(last)) = (spans.first(), spans.last()) else { return Ok((0, 0)) };
        let start = first.first_instance;
        Ok((narrow(start, "instance index")?, narrow(last.first_instance + last.instances - start, "run length")?))
    };
    let (input_start, input_length) = run("input")?;
    let (output_start, output_length) = run("output")?;
    let committed = layout.iter().find(|s| s.kind == "params" && s.encoding == Encoding::Poseidon);
    let (commitment_index, commitment) = match committed {
        Some(span) => {
            let word = words
                .get(span.first_instance)
                .ok_or_else(|| Error::artifact(path, "the instance layout does not match the instances"))?;
            (narrow(span.first_instance, "instance index")?, B256::from(fr_to_word(word)))
        }
        None => {
            let digest = circuit_digest.parse::<B256>().unwrap_or_else(|_| keccak256(circuit_digest.as_bytes()));
            (NO_INDEX, digest)
        }
    };
    Ok(Registration {
        layout: Layout {
            numInstances: narrow(words.len(), "number of instances")?,
            commitmentIndex: commitment_index,
            inputStart: input_start,
            inputLength: input_length,
            outputStart: output_start,
            outputLength: output_length,
        },
        commitment,
    })
}

/// The public instances of a proof as EVM words.
pub fn instance_words(proof: &ProofFile, path: &Path) -> Result<Vec<U256>> {
    let columns = proof.instance_values(path)?;
    Ok(columns.first().map(|c| c.iter().map(|w| U256::from_be_bytes(fr_to_word(w))).collect()).unwrap_or_default())
}
