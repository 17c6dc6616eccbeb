//! `settings.json`: the choices that shape a circuit (scales, ranges, visibility, k).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::error::{read_json, Error, Result};

/// Who learns a value (input, weights or output), and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// The values are public instances of the proof.
    Public,
    /// The values are private advice; nothing about them is revealed.
    Private,
    /// The values are baked into the circuit (parameters only).
    Fixed,
    /// Private values whose Poseidon hash is a public instance.
    Hashed,
}

impl std::fmt::Display for Visibility {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
            Visibility::Fixed => "fixed",
            Visibility::Hashed => "hashed",
        };
        f.write_str(name)
    }
}

/// Visibility of the three kinds of values in a model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visibilities {
    /// The model input.
    pub input: Visibility,
    /// The weights and biases.
    pub params: Visibility,
    /// The model output.
    pub output: Visibility,
    /// Hashed inputs and outputs absorb a random salt with their values (kept in witness.json),
    /// so that a commitment to data of a known distribution cannot be brute-forced. The params
    /// commitment is never salted: it identifies the model.
    #[serde(default = "salted_by_default")]
    pub salt: bool,
    /// The proof carries one more public instance that binds it to one submitting account on
    /// one chain and one registry (see `evm::registry::submitter_word`): a copy of the proof
    /// sent by someone else, or to another registry or chain, is refused there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub submitter: bool,
}

fn salted_by_default() -> bool {
    true
}

impl Default for Visibilities {
    fn default() -> Self {
        Visibilities {
            input: Visibility::Public,
            params: Visibility::Fixed,
            output: Visibility::Public,
            salt: true,
            submitter: false,
        }
    }
}

/// The contents of `settings.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The zkinfer version that wrote the file.
    pub zkinfer_version: String,
    /// SHA-256 of the ONNX file the settings were made for (hex).
    pub model_digest: String,
    /// Fixed-point scale of inputs and activations: a value x is stored as round(x · 2^input_scale).
    pub input_scale: u32,
    /// Fixed-point scale of weights: w is stored as round(w · 2^param_scale).
    pub param_scale: u32,
    /// Activations are range-checked as signed integers of this many bits.
    pub activation_bits: u32,
    /// Who sees the input, the weights and the output.
    pub visibility: Visibilities,
    /// log2 of the number of circuit rows; `null` lets `compile` choose the smallest that fits.
    pub k: Option<u32>,
    /// Most advice columns the automatic choice of k allows before it grows k.
    pub max_advice_columns: usize,
    /// The linear-layer gate (Gemm, MatMul by constants, Conv with fixed weights at about
    /// `1/C + 1/K` advice cells per multiply-accumulate): `"auto"` lets `compile` choose the
    /// geometry that proves fastest, `"off"` keeps every product in halo2-base's gate, `"CxK"`
    /// (e.g. `"4x4"`) asks for C inputs and K sums per row.
    #[serde(default)]
    pub linear_gate: crate::circuit::layout::LinearGate,
    /// The Poseidon gate, which hashes the commitments (hashed input, params or output) at 58
    /// rows of five columns per permutation instead of ~4,400 cells of halo2-base's gate:
    /// `"auto"` lets `compile` choose as for `linear_gate`, `"on"` or `"off"` fix it.
    #[serde(default)]
    pub poseidon_gate: crate::circuit::layout::PoseidonGate,
    /// Most verification gas `auto` accepts for a faster geometry, a hard limit (`null`: 10% more
    /// than the circuit without the linear-layer gate, growing with the proving cost a faster
    /// geometry saves, see `circuit::layout::GAS_PER_COST_SAVED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_verifier_gas: Option<u64>,
    /// Float inputs the lookup tables (Exp, Erf, Softplus, ...) cover, `[low, high]`; `null`
    /// covers every activation, which can take large tables. `calibrate` sets it from samples.
    /// Where a function is constant beyond the range, inputs there are clamped; elsewhere an
    /// input outside it is refused at proving time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup_range: Option<[f64; 2]>,
    /// Shapes of the model inputs (batch dimension fixed to 1).
    pub input_shapes: Vec<Vec<usize>>,
    /// Shapes of the model outputs.
    pub output_shapes: Vec<Vec<usize>>,
}

/// Default fixed-point scale (bits) of inputs and weights, as EZKL's.
pub const DEFAULT_SCALE: u32 = 7;
/// Default signed width (bits) of range-checked activations.
pub const DEFAULT_ACTIVATION_BITS: u32 = 16;
/// Default bound on advice columns when k is chosen automatically.
pub const DEFAULT_MAX_ADVICE_COLUMNS: usize = 4;

impl Settings {
    /// Reads and checks `settings.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let settings: Settings = read_json(path)?;
        settings.validate().map_err(|reason| Error::artifact(path, reason))?;
        Ok(settings)
    }

    /// Checks the values are within what the circuit supports.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(1..=16).contains(&self.input_scale) || self.param_scale > 16 {
            return Err(format!(
                "input_scale must be 1..=16 and param_scale 0..=16 (got {} and {})",
                self.input_scale, self.param_scale
            ));
        }
        if !(8..=64).contains(&self.activation_bits) || self.activation_bits <= self.input_scale {
            return Err(format!("activation_bits must be 8..=64 and above input_scale (got {})", self.activation_bits));
        }
        if let Some(k) = self.k {
            if !(8..=26).contains(&k) {
                return Err(format!("k must be between 8 and 26 (got {k})"));
            }
        }
        if let Some([lo, hi]) = self.lookup_range {
            if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                return Err(format!("lookup_range must be two finite numbers, low first (got [{lo}, {hi}])"));
            }
        }
        if self.max_advice_columns == 0 {
            return Err("max_advice_columns must be at least 1".into());
        }
        let v = &self.visibility;
        if v.input == Visibility::Fixed || v.output == Visibility::Fixed {
            return Err("only params can be fixed; input and output are public, private or hashed".into());
        }
        Ok(())
    }
}

/// Choices for `gen-settings` (and `run`); `None` takes the default. The command line parses
/// them as they are (clap's derive).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct SettingsOptions {
    /// Input data (`input.json`) whose size gives each input's symbolic (batch) dimension (the
    /// commands that take data set it).
    #[arg(skip)]
    pub data: Option<PathBuf>,
    /// Fixed-point scale (bits) of inputs and activations.
    #[arg(long)]
    pub input_scale: Option<u32>,
    /// Fixed-point scale (bits) of weights.
    #[arg(long)]
    pub param_scale: Option<u32>,
    /// Signed width (bits) activations are range-checked to.
    #[arg(long)]
    pub activation_bits: Option<u32>,
    /// Float inputs the lookup tables (Exp, Erf, ...) cover, as LOW,HIGH (default: every
    /// activation; `calibrate` narrows it from samples).
    #[arg(long, value_name = "LOW,HIGH", allow_hyphen_values = true, value_parser = parse_range)]
    pub lookup_range: Option<[f64; 2]>,
    /// log2 of the circuit rows (default: the smallest that fits).
    #[arg(long = "logrows")]
    pub k: Option<u32>,
    /// The linear-layer gate: auto (compile chooses), off, or CxK inputs and sums per row
    /// (e.g. 4x4).
    #[arg(long, value_name = "auto|off|CxK")]
    pub linear_gate: Option<crate::circuit::layout::LinearGate>,
    /// The Poseidon gate for the commitments: auto (compile chooses), on or off.
    #[arg(long, value_enum)]
    pub poseidon_gate: Option<crate::circuit::layout::PoseidonGate>,
    /// The most gas a proof's direct EVM verifier may cost when `compile` chooses the geometry
    /// (the gates, k, the columns) for the fastest proof: a larger budget lets it take wider,
    /// faster geometries (default: 10% more than the circuit without the linear-layer gate, plus
    /// 0.06 gas per unit of estimated proving cost a geometry saves against the cheapest within it).
    #[arg(long, value_name = "GAS")]
    pub max_verifier_gas: Option<u64>,
    /// Visibility of the input.
    #[arg(long, value_enum)]
    pub input_visibility: Option<Visibility>,
    /// Visibility of the weights.
    #[arg(long, value_enum)]
    pub param_visibility: Option<Visibility>,
    /// Visibility of the output.
    #[arg(long, value_enum)]
    pub output_visibility: Option<Visibility>,
    /// Bind every proof to the account that submits it, on one chain and one registry (one more
    /// public instance, checked by the registry): a copied proof cannot be front-run or replayed.
    #[arg(long)]
    pub bind_submitter: bool,
    /// Hash inputs and outputs without a random salt: anyone who can guess the values can then
    /// recompute (brute-force) their commitment.
    #[arg(long)]
    pub unsalted: bool,
}

/// Parses `LOW,HIGH` (two numbers, low first).
pub fn parse_range(text: &str) -> std::result::Result<[f64; 2], String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let numbers: Vec<f64> = parts.iter().filter_map(|p| p.parse().ok()).collect();
    match numbers[..] {
        [lo, hi] if parts.len() == 2 && lo <= hi => Ok([lo, hi]),
        _ => Err(format!("expected LOW,HIGH with LOW <= HIGH, e.g. -8,8 (got '{text}')")),
    }
}

/// The settings `options` give for an imported model whose ONNX file has digest `model_digest`.
pub fn gen_settings_for(graph: &crate::model::Graph, model_digest: &str, options: &SettingsOptions) -> Settings {
    let defaults = Visibilities::default();
    Settings {
        zkinfer_version: env!("CARGO_PKG_VERSION").into(),
        model_digest: model_digest.into(),
        input_scale: options.input_scale.unwrap_or(DEFAULT_SCALE),
        param_scale: options.param_scale.unwrap_or(DEFAULT_SCALE),
        activation_bits: options.activation_bits.unwrap_or(DEFAULT_ACTIVATION_BITS),
        visibility: Visibilities {
            input: options.input_visibility.unwrap_or(defaults.input),
            params: options.param_visibility.unwrap_or(defaults.params),
            output: options.output_visibility.unwrap_or(defaults.output),
            salt: !options.unsalted,
            submitter: options.bind_submitter,
        },
        k: options.k,
        max_advice_columns: DEFAULT_MAX_ADVICE_COLUMNS,
        linear_gate: options.linear_gate.unwrap_or_default(),
        poseidon_gate: options.poseidon_gate.unwrap_or_default(),
        max_verifier_gas: options.max_verifier_gas,
        lookup_range: options.lookup_range,
        input_shapes: graph.input_shapes(),
        output_shapes: graph.output_shapes(),
    }
}
