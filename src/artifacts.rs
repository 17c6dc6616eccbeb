//! The compiled model (`model.compiled`) and the other JSON artifacts of a working directory.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::circuit::CircuitShape;
use crate::error::{read_json, Error, Result};
use crate::model::QuantizedModel;
use crate::settings::Settings;

/// Version of the `model.compiled` layout.
pub const COMPILED_FORMAT_VERSION: u32 = 3;

/// `model.compiled`: the quantized graph and the circuit geometry chosen for it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompiledModel {
    /// Layout version ([`COMPILED_FORMAT_VERSION`]).
    pub format_version: u32,
    /// zkinfer version that wrote it.
    pub zkinfer_version: String,
    /// SHA-256 of the circuit: the quantized model, its geometry and the format version. Keys
    /// and proofs carry it, so that one made for another circuit is refused.
    pub circuit_digest: String,
    /// The settings it was compiled with.
    pub settings: Settings,
    /// The quantized graph.
    pub model: QuantizedModel,
    /// The circuit geometry.
    pub shape: CircuitShape,
}

impl CompiledModel {
    /// Bundles a compiled model and computes its digest.
    pub fn new(settings: Settings, model: QuantizedModel, shape: CircuitShape) -> Self {
        let circuit_digest = circuit_digest(&model, &shape, &settings);
        CompiledModel {
            format_version: COMPILED_FORMAT_VERSION,
            zkinfer_version: env!("CARGO_PKG_VERSION").into(),
            circuit_digest,
            settings,
            model,
            shape,
        }
    }

    /// Reads `model.compiled`, checking its version and digest.
    pub fn load(path: &Path) -> Result<Self> {
        let compiled: CompiledModel = read_json(path)?;
        if compiled.format_version != COMPILED_FORMAT_VERSION {
            return Err(Error::artifact(
                path,
                format!(
                    "compiled by zkinfer {} (format {}); run `zkinfer compile` again",
                    compiled.zkinfer_version, compiled.format_version
                ),
            ));
        }
        if circuit_digest(&compiled.model, &compiled.shape, &compiled.settings) != compiled.circuit_digest {
            return Err(Error::artifact(
                path,
                "the file was modified after compilation (digest mismatch); run `zkinfer compile` again",
            ));
        }
        compiled.model.check(&compiled.settings).map_err(|reason| Error::artifact(path, reason))?;
        Ok(compiled)
    }
}

/// SHA-256 over everything that determines the circuit.
pub fn circuit_digest(model: &QuantizedModel, shape: &CircuitShape, settings: &Settings) -> String {
    let mut hasher = Sha256::new();
    hasher.update(COMPILED_FORMAT_VERSION.to_le_bytes());
    hasher.update(serde_json::to_vec(model).expect("serializable"));
    hasher.update(serde_json::to_vec(shape).expect("serializable"));
    hasher.update(serde_json::to_vec(&settings.visibility).expect("serializable"));
    hex::encode(hasher.finalize())
}

/// SHA-256 of a file's bytes, hex.
pub fn file_digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `witness.json`: the private values of a proof. Never publish it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Witness {
    /// Digest of the circuit.
    pub circuit_digest: String,
    /// Quantized inputs.
    pub inputs: Vec<Vec<i64>>,
    /// Quantized outputs.
    pub outputs: Vec<Vec<i64>>,
    /// Every node's output, by node name.
    pub nodes: Vec<(String, Vec<i64>)>,
    /// The salts of the salted commitments (hashed inputs and outputs), in instance order:
    /// whoever should be able to check a commitment against the values needs its salt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub salts: Vec<Salt>,
}

/// The salt of one salted commitment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Salt {
    /// "input" or "output".
    pub kind: String,
    /// Which model input or output.
    pub index: usize,
    /// The salt, a 0x-prefixed 32-byte big-endian field element.
    pub salt: String,
}

/// `report.json`: what `zkinfer run` measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The model file.
    pub model: String,
    /// log2 rows of the circuit.
    pub k: u32,
    /// halo2-base's advice columns.
    pub advice_columns: usize,
    /// Advice cells used in halo2-base's columns.
    pub advice_cells: usize,
    /// The linear-layer gate's geometry (`CxK`), when the circuit has the gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_gate: Option<String>,
    /// Multiply-accumulates laid out in the linear-layer gate.
    #[serde(default)]
    pub linear_macs: usize,
    /// Advice cells of the linear-layer gate's region.
    #[serde(default)]
    pub linear_cells: usize,
    /// Permutations hashed in the Poseidon gate (0: no such gate).
    #[serde(default)]
    pub poseidon_permutations: usize,
    /// Advice columns of every kind (halo2-base's, the lookups', the linear gate's).
    #[serde(default)]
    pub total_advice_columns: usize,
    /// Fixed columns of every kind (selectors included).
    #[serde(default)]
    pub fixed_columns: usize,
    /// Public instances.
    pub num_instances: usize,
    /// Seconds to generate the keys.
    pub setup_seconds: f64,
    /// Seconds to prove (witness generation included).
    pub prove_seconds: f64,
    /// Seconds to verify natively.
    pub verify_seconds: f64,
    /// Proof size in bytes.
    pub proof_bytes: usize,
    /// Native verification result.
    pub verified: bool,
    /// EVM verification result.
    pub evm_verified: bool,
    /// Gas of the verifying transaction.
    pub evm_gas: Option<u64>,
    /// Where the EVM verification ran ("in-process revm" or the RPC URL).
    pub evm: String,
    /// Runtime bytecode size of the verifier (bytes).
    pub verifier_runtime_bytes: usize,
    /// Dequantized outputs of the proof.
    pub outputs: Vec<Vec<f64>>,
    /// tract's float outputs; `None` where tract cannot run the model (see `reference_unavailable`).
    pub reference_outputs: Option<Vec<Vec<f32>>>,
    /// Largest |output - reference|.
    pub max_abs_error: Option<f64>,
    /// Mean |output - reference|.
    pub mean_abs_error: Option<f64>,
    /// Why there is no float reference: tract's error, for a model it cannot run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_unavailable: Option<String>,
    /// True when the development SRS (insecure) was used.
    pub insecure_srs: bool,
}

/// Max and mean absolute difference between quantized-then-dequantized outputs and floats.
pub fn output_errors(outputs: &[Vec<f64>], reference: &[Vec<f32>]) -> (f64, f64) {
    let diffs: Vec<f64> =
        outputs.iter().flatten().zip(reference.iter().flatten()).map(|(a, &b)| (a - b as f64).abs()).collect();
    let max = diffs.iter().copied().fold(0.0, f64::max);
    let mean = if diffs.is_empty() { 0.0 } else { diffs.iter().sum::<f64>() / diffs.len() as f64 };
    (max, mean)
}
