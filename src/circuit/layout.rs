//! Lays out a whole quantized model, node by node, and chooses the circuit's size.

use halo2_base::gates::circuit::{builder::BaseCircuitBuilder, BaseCircuitParams, CircuitBuilderStage};
use halo2_base::gates::{RangeChip, RangeInstructions};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::halo2_proofs::halo2curves::ff::Field;
use halo2_base::{AssignedValue, Context};
use serde::{Deserialize, Serialize};

use super::commit::{layout_hash, layout_hash_in_region, region_hash_rows};
use super::field::{fe, to_i128};
use super::instances::{
    layout_offset, layout_pack, layout_pack_lookup, range_table_widths, values_per_word, CommittedPart, Encoding,
    InstanceSpan,
};
use super::linear::{ParamCells, SignSplit};
use super::linear_gate::{LinearGeometry, LinearRegion};
use super::lookup::{ModelCircuit, ModelCircuitParams};
use super::nonlinear::Lookups;
use super::poseidon_gate::{self, PoseidonRegion};
use crate::error::LayoutError;
use crate::error::Result;
use crate::model::quantize::QuantizedModel;
use crate::ops::{LayoutCx, QOp};
use crate::settings::Visibility;

/// Rows at the end of the circuit kept free for halo2's blinding factors.
pub const BLINDING_ROWS: usize = 20;
/// Smallest k we lay out (the range lookup table takes 2^(k-1) rows).
pub const MIN_K: u32 = 10;
/// Largest k we choose automatically.
pub const MAX_K: u32 = 26;

/// Everything about the circuit's geometry that keygen and proving must agree on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CircuitShape {
    /// The circuit has 2^k rows.
    pub k: u32,
    /// Range checks look up limbs of this many bits.
    pub lookup_bits: usize,
    /// Columns per phase, as halo2-base computed them.
    pub config: BaseCircuitParams,
    /// Number of public instances (one instance column).
    pub num_instances: usize,
    /// Advice cells used (all phases).
    pub advice_cells: usize,
    /// Cells sent to the range lookup.
    pub lookup_cells: usize,
    /// Sets of function-lookup columns (see [`super::lookup`]).
    #[serde(default)]
    pub lookup_sets: usize,
    /// Rows the function tables take.
    #[serde(default)]
    pub table_rows: usize,
    /// The linear-layer gate's row shape, when the circuit has that gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear: Option<LinearGeometry>,
    /// Rows the linear-layer gate's region takes.
    #[serde(default)]
    pub linear_rows: usize,
    /// Multiply-accumulates laid out in the linear-layer gate.
    #[serde(default)]
    pub linear_macs: usize,
    /// Rows of the region's runs that did not fit it at this k and were laid out in halo2-base's
    /// gate instead.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub linear_overflow_rows: usize,
    /// Whether the circuit hashes in the Poseidon gate (false: in halo2-base's gate).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub poseidon: bool,
    /// Rows the Poseidon gate's region takes.
    #[serde(default)]
    pub poseidon_rows: usize,
    /// Permutations laid out in the Poseidon gate.
    #[serde(default)]
    pub poseidon_permutations: usize,
    /// Why `compile` chose this geometry, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The direct EVM verifier's runtime bytes, as `compile` estimated them.
    #[serde(default)]
    pub verifier_bytes: usize,
    /// One verification's gas on the EVM, as `compile` estimated it.
    #[serde(default)]
    pub verifier_gas: u64,
}

/// The gates of ours a circuit has beside halo2-base's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gates {
    /// The linear-layer gate's geometry (none: every product in halo2-base's gate).
    pub linear: Option<LinearGeometry>,
    /// The Poseidon gate (false: every hash in halo2-base's gate).
    pub poseidon: bool,
}

impl Stage<'_> {
    /// The MockProver stage of a compiled shape.
    pub fn mock(shape: &CircuitShape) -> Stage<'static> {
        Stage::Mock { k: shape.k, gates: shape.gates() }
    }

    /// The key-generation stage of a compiled shape.
    pub fn keygen(shape: &CircuitShape) -> Stage<'static> {
        Stage::Keygen { k: shape.k, gates: shape.gates() }
    }

    fn gates(&self) -> Gates {
        match self {
            Stage::Mock { gates, .. } | Stage::Keygen { gates, .. } => *gates,
            Stage::Prove(shape, _) => shape.gates(),
        }
    }

    fn k(&self) -> u32 {
        match self {
            Stage::Mock { k, .. } | Stage::Keygen { k, .. } => *k,
            Stage::Prove(shape, _) => shape.k,
        }
    }
}

impl CircuitShape {
    /// The circuit's params, as keys are read with.
    pub fn params(&self) -> ModelCircuitParams {
        ModelCircuitParams {
            base: self.config.clone(),
            lookup_sets: self.lookup_sets,
            linear: self.linear,
            poseidon: self.poseidon,
        }
    }

    /// The gates of ours the circuit has.
    pub fn gates(&self) -> Gates {
        Gates { linear: self.linear, poseidon: self.poseidon }
    }

    /// Rows the linear-layer gate's region would take with room for every run.
    pub fn linear_demand(&self) -> usize {
        match (self.linear_rows, self.linear_overflow_rows) {
            (0, 0) => 0,
            (0, overflow) => overflow + 1,
            (rows, overflow) => rows + overflow,
        }
    }

    /// Advice cells in the linear-layer gate's region.
    pub fn linear_cells(&self) -> usize {
        self.linear.map_or(0, |g| self.linear_rows * g.advice_columns())
    }

    /// Advice columns of every kind: halo2-base's, the range lookup's, the function lookups'
    /// and our gates'.
    pub fn advice_columns(&self) -> usize {
        self.config.num_advice_per_phase.iter().sum::<usize>()
            + self.config.num_lookup_advice_per_phase.iter().sum::<usize>()
            + 2 * self.lookup_sets
            + self.linear.map_or(0, |g| g.advice_columns())
            + usize::from(self.poseidon) * poseidon_gate::ADVICE_COLUMNS
    }

    /// Fixed columns of every kind (selectors included: key generation makes each a column).
    pub fn fixed_columns(&self) -> usize {
        let base = self.config.num_fixed + self.config.num_advice_per_phase.iter().sum::<usize>();
        let range = usize::from(self.config.num_lookup_advice_per_phase.iter().sum::<usize>() > 0) * 2;
        let lookups = if self.lookup_sets > 0 { 3 + self.lookup_sets } else { 0 };
        let poseidon = usize::from(self.poseidon) * poseidon_gate::FIXED_COLUMNS;
        base + range + lookups + self.linear.map_or(0, |g| g.fixed_columns()) + poseidon + 1
    }

    /// A proving-cost estimate (arbitrary units): every column costs FFTs over 2^k rows, an
    /// advice column also a commitment, each lookup argument its permuted columns and product.
    pub fn cost(&self) -> f64 {
        let lookups = self.config.num_lookup_advice_per_phase.iter().sum::<usize>() + self.lookup_sets;
        let columns = self.advice_columns() as f64 + 0.3 * self.fixed_columns() as f64 + 3.0 * lookups as f64;
        columns * (1u64 << self.k) as f64
    }
}

/// Whether and how the circuit lays out linear layers in a gate of its own (`settings.json`'s
/// `linear_gate`): `"auto"` lets `compile` choose the geometry that proves fastest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinearGate {
    /// `compile` chooses (no gate for circuits of one column at small k, where gas matters more).
    #[default]
    Auto,
    /// Every product in halo2-base's gate.
    Off,
    /// This geometry.
    Geometry(LinearGeometry),
}

impl std::fmt::Display for LinearGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinearGate::Auto => f.write_str("auto"),
            LinearGate::Off => f.write_str("off"),
            LinearGate::Geometry(g) => write!(f, "{g}"),
        }
    }
}

impl std::str::FromStr for LinearGate {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(LinearGate::Auto),
            "off" => Ok(LinearGate::Off),
            other => {
                other.parse().map(LinearGate::Geometry).map_err(|e| format!("linear_gate: {e}, or `auto`, or `off`"))
            }
        }
    }
}

impl Serialize for LinearGate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LinearGate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether the circuit hashes its commitments in the Poseidon gate of its own
/// (`settings.json`'s `poseidon_gate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PoseidonGate {
    /// `compile` chooses, by the rule it chooses the linear-layer gate with.
    #[default]
    Auto,
    /// Every hash in the Poseidon gate (a circuit that hashes nothing has none).
    On,
    /// Every hash in halo2-base's gate.
    Off,
}

impl std::fmt::Display for PoseidonGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PoseidonGate::Auto => "auto",
            PoseidonGate::On => "on",
            PoseidonGate::Off => "off",
        })
    }
}

/// What `compile` chooses the circuit's geometry within (from `settings.json`).
#[derive(Clone, Copy, Debug)]
pub struct ShapeOptions {
    /// log2 rows; `None` lets [`choose_k`] choose.
    pub k: Option<u32>,
    /// Most of halo2-base's advice columns before k grows.
    pub max_advice_columns: usize,
    /// The linear-layer gate.
    pub linear_gate: LinearGate,
    /// The Poseidon gate.
    pub poseidon_gate: PoseidonGate,
    /// Most verification gas `auto` accepts (default: see [`AUTO_GAS_ALLOWANCE`]).
    pub max_gas: Option<u64>,
}

impl Default for ShapeOptions {
    fn default() -> Self {
        ShapeOptions {
            k: None,
            max_advice_columns: crate::settings::DEFAULT_MAX_ADVICE_COLUMNS,
            linear_gate: LinearGate::Auto,
            poseidon_gate: PoseidonGate::Auto,
            max_gas: None,
        }
    }
}

impl From<&crate::settings::Settings> for ShapeOptions {
    fn from(s: &crate::settings::Settings) -> Self {
        ShapeOptions {
            k: s.k,
            max_advice_columns: s.max_advice_columns,
            linear_gate: s.linear_gate,
            poseidon_gate: s.poseidon_gate,
            max_gas: s.max_verifier_gas,
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The geometries `auto` tries: from the fewest columns (the least verifier gas) to the fewest
/// cells per multiply-accumulate (`1/C + 1/K`: 1.5, 1.33, 1.25, 1.0, 0.75, 0.5).
pub const AUTO_GEOMETRIES: [LinearGeometry; 6] = [
    LinearGeometry::new(2, 1),
    LinearGeometry::new(3, 1),
    LinearGeometry::new(4, 1),
    LinearGeometry::new(2, 2),
    LinearGeometry::new(4, 2),
    LinearGeometry::new(4, 4),
];

/// How to build the circuit.
#[derive(Clone, Debug)]
pub enum Stage<'a> {
    /// For the MockProver, at the given k.
    Mock {
        /// log2 rows.
        k: u32,
        /// Our gates.
        gates: Gates,
    },
    /// For key generation, at the given k.
    Keygen {
        /// log2 rows.
        k: u32,
        /// Our gates.
        gates: Gates,
    },
    /// For proving, with the geometry fixed at compile time and the break points found at keygen.
    Prove(&'a CircuitShape, &'a [Vec<usize>]),
}

/// A laid-out circuit with the values it computed.
pub struct LaidOut {
    /// The circuit.
    pub circuit: ModelCircuit,
    /// Every node's output values, as signed integers.
    pub values: Vec<Vec<i128>>,
    /// The public instances: inputs, params, then outputs, as the visibility asks.
    pub instances: Vec<Fr>,
    /// What each run of the instances is.
    pub layout: Vec<InstanceSpan>,
    /// The salts of the salted commitments, in layout order (random when proving, zero
    /// otherwise).
    pub salts: Vec<Fr>,
}

fn lookup_bits_for(k: u32) -> usize {
    k as usize - 1
}

/// Collects the public instances and documents them as it goes.
struct Exposer {
    cells: Vec<AssignedValue<Fr>>,
    layout: Vec<InstanceSpan>,
    /// Salt hashed inputs and outputs.
    salted: bool,
    /// Draw the salts at random (proving); else they are zero (key generation, mock runs).
    random_salts: bool,
    /// The salts drawn, in layout order.
    salts: Vec<Fr>,
    /// The Poseidon gate's region, when the circuit hashes there.
    poseidon: Option<PoseidonRegion>,
    /// The linear-layer gate's region, which hashes when the circuit has no Poseidon gate and
    /// the region has fixed weights and room for the hash below `usable` rows.
    linear: Option<LinearRegion>,
    usable: usize,
}

/// A tensor about to be exposed (packed or committed).
struct Exposed<'a> {
    kind: &'static str,
    index: usize,
    name: String,
    shape: Vec<usize>,
    /// Values in offset form, range-checked to `bits`.
    shifted: &'a [AssignedValue<Fr>],
    /// Their packed words, when laid out with them (see [`layout_pack_lookup`]).
    words: Option<&'a [AssignedValue<Fr>]>,
    bits: u32,
    scale: u32,
}

impl Exposed<'_> {
    /// The packed words: laid out already, or now.
    fn words(&self, ctx: &mut Context<Fr>, range: &RangeChip<Fr>) -> Vec<AssignedValue<Fr>> {
        match self.words {
            Some(words) => words.to_vec(),
            None => layout_pack(ctx, range, self.shifted, self.bits),
        }
    }
}

impl Exposer {
    fn span(&self, t: &Exposed<'_>, instances: usize, encoding: Encoding) -> InstanceSpan {
        InstanceSpan {
            kind: t.kind.into(),
            index: t.index,
            name: t.name.clone(),
            shape: t.shape.clone(),
            values: t.shifted.len(),
            first_instance: self.cells.len(),
            instances,
            encoding,
            bits: t.bits,
            values_per_word: values_per_word(t.bits),
            scale: t.scale,
            parts: Vec::new(),
            salted: false,
            proof: Vec::new(),
        }
    }

    /// The commitment to `words`: in the Poseidon gate when the circuit has it.
    fn hash(&mut self, ctx: &mut Context<Fr>, range: &RangeChip<Fr>, words: &[AssignedValue<Fr>]) -> AssignedValue<Fr> {
        if let Some(region) = self.poseidon.as_mut() {
            return region.push_hash(ctx, words);
        }
        match self.linear.as_mut() {
            Some(region)
                if !region.geometry().advice_weights
                    && region.rows() + region_hash_rows(region.geometry(), words.len()) <= self.usable =>
            {
                layout_hash_in_region(ctx, range.gate(), region, words)
            }
            _ => layout_hash(ctx, range.gate(), words),
        }
    }

    /// Exposes the tensor as public values (`Public`) or as its commitment (`Hashed`).
    fn expose(&mut self, ctx: &mut Context<Fr>, range: &RangeChip<Fr>, t: Exposed<'_>, visibility: Visibility) {
        let words = t.words(ctx, range);
        match visibility {
            Visibility::Public => {
                let span = self.span(&t, words.len(), Encoding::Packed);
                self.layout.push(span);
                self.cells.extend(words);
            }
            Visibility::Hashed => {
                let mut span = self.span(&t, 1, Encoding::Poseidon);
                let mut absorbed = Vec::with_capacity(words.len() + 1);
                if self.salted {
                    // Free in the circuit by design: the salt only blinds the commitment.
                    let salt = if self.random_salts { Fr::random(rand::rngs::OsRng) } else { Fr::zero() };
                    self.salts.push(salt);
                    absorbed.push(ctx.load_witness(salt));
                    span.salted = true;
                }
                absorbed.extend(words);
                self.layout.push(span);
                let hash = self.hash(ctx, range, &absorbed);
                self.cells.push(hash);
            }
            Visibility::Private | Visibility::Fixed => {}
        }
    }

    /// Exposes the commitment to several tensors at once (the model commitment).
    fn expose_commitment(&mut self, ctx: &mut Context<Fr>, range: &RangeChip<Fr>, parts: Vec<Exposed<'_>>) {
        let mut words = Vec::new();
        for t in &parts {
            words.extend(t.words(ctx, range));
        }
        let values = parts.iter().map(|t| t.shifted.len()).sum();
        self.layout.push(InstanceSpan {
            kind: "params".into(),
            index: 0,
            name: "model commitment".into(),
            shape: vec![values],
            values,
            first_instance: self.cells.len(),
            instances: 1,
            encoding: Encoding::Poseidon,
            bits: 0,
            values_per_word: 0,
            scale: 0,
            parts: parts
                .iter()
                .map(|t| CommittedPart { name: t.name.clone(), values: t.shifted.len(), bits: t.bits, scale: t.scale })
                .collect(),
            salted: false,
            proof: Vec::new(),
        });
        let hash = self.hash(ctx, range, &words);
        self.cells.push(hash);
    }
}

/// Lays out `model` on `inputs` (quantized, one flat vector per model input); a submitter
/// binding, if the model carries one, is zero.
pub fn build_circuit(model: &QuantizedModel, inputs: &[Vec<i64>], stage: Stage<'_>) -> Result<LaidOut> {
    build_circuit_for(model, inputs, stage, Fr::zero())
}

/// [`build_circuit`] with the submitter binding word the proof carries when the model binds one
/// (see `evm::registry::submitter_word`).
pub fn build_circuit_for(
    model: &QuantizedModel,
    inputs: &[Vec<i64>],
    stage: Stage<'_>,
    submitter: Fr,
) -> Result<LaidOut> {
    let mut builder = match &stage {
        Stage::Mock { k, .. } | Stage::Keygen { k, .. } => {
            let s = if matches!(stage, Stage::Mock { .. }) {
                CircuitBuilderStage::Mock
            } else {
                CircuitBuilderStage::Keygen
            };
            BaseCircuitBuilder::from_stage(s)
                .use_k(*k as usize)
                .use_lookup_bits(lookup_bits_for(*k))
                .use_instance_columns(1)
        }
        Stage::Prove(shape, break_points) => BaseCircuitBuilder::prover(shape.config.clone(), break_points.to_vec()),
    };
    let range = builder.range_chip();
    let bits = model.activation_bits;
    let visibility = &model.visibility;
    let ctx = builder.main(0);

    // Params that are not fixed are private witnesses, loaded before the nodes that use them.
    let params = model.param_tensors();
    let loaded: Vec<Vec<AssignedValue<Fr>>> = if visibility.params == Visibility::Fixed {
        Vec::new()
    } else {
        params.iter().map(|t| ctx.assign_witnesses(t.values.iter().map(|&v| fe(v as i128)))).collect()
    };
    let scales = model.scales();
    let mut cells: Vec<Vec<AssignedValue<Fr>>> = Vec::with_capacity(model.nodes.len());
    let mut shifted_inputs = Vec::new();
    let mut lookups = Lookups::default();
    let gates = stage.gates();
    // Runs past the region's rows at this k go to halo2-base's gate (see `layout_affine_gate`).
    let mut linear = gates.linear.map(|g| LinearRegion::new(g).with_capacity(usable_rows(stage.k())));
    let mut zeros: Vec<Option<Vec<bool>>> = Vec::with_capacity(model.nodes.len());
    // Nodes a Relu reads, whose kernels may leave their outputs' sign splits for it.
    let mut relu_reads = vec![false; model.nodes.len()];
    for node in &model.nodes {
        if let (QOp::Relu(_), Some(&input)) = (&node.op, node.inputs.first()) {
            if let Some(reads) = relu_reads.get_mut(input) {
                *reads = true;
            }
        }
    }
    let mut splits: Vec<Option<Vec<SignSplit>>> = Vec::with_capacity(model.nodes.len());
    for (at, node) in model.nodes.iter().enumerate() {
        // The node's param tensors (they come in node order), loaded or fixed.
        let first = params.partition_point(|t| t.node < at);
        let node_params = (first..params.partition_point(|t| t.node <= at))
            .map(|t| match loaded.get(t) {
                Some(cells) => ParamCells::Loaded(cells),
                None => ParamCells::Fixed(params[t].values),
            })
            .collect();
        let mut cx = LayoutCx {
            ctx: &mut *ctx,
            range: &range,
            node,
            args: node.inputs.iter().map(|&i| &cells[i][..]).collect(),
            shapes: node.inputs.iter().map(|&i| &model.nodes[i].shape[..]).collect(),
            params: node_params,
            lookups: &mut lookups,
            linear: &mut linear,
            scales,
            inputs,
            laid_inputs: &mut shifted_inputs,
            zeros: node.inputs.iter().map(|&i| zeros[i].as_deref()).collect(),
            split: relu_reads[at].then(Vec::new),
            splits: node.inputs.iter().map(|&i| splits[i].as_deref()).collect(),
        };
        let out = node.op.kernel().layout(&mut cx)?;
        let known = node.op.kernel().zeros(&cx.zeros);
        splits.push(cx.split.take().filter(|s| !s.is_empty() && s.len() == out.len()));
        cells.push(out);
        zeros.push(known);
    }

    // Inputs (in input order), params, then outputs; each tensor starts a new word.
    let mut exposer = Exposer {
        cells: Vec::new(),
        layout: Vec::new(),
        salted: visibility.salt,
        random_salts: matches!(stage, Stage::Prove(..)),
        salts: Vec::new(),
        poseidon: gates.poseidon.then(PoseidonRegion::default),
        linear: linear.take(),
        usable: usable_rows(stage.k()),
    };
    shifted_inputs.sort_by_key(|(i, ..)| *i);
    for (index, name, shape, shifted) in &shifted_inputs {
        let t = Exposed {
            kind: "input",
            index: *index,
            name: name.clone(),
            shape: shape.clone(),
            shifted,
            bits,
            words: None,
            scale: model.input_scale,
        };
        exposer.expose(ctx, &range, t, visibility.input);
    }
    if matches!(visibility.params, Visibility::Public | Visibility::Hashed) {
        // Wide or few values by range checks in halo2-base; the many narrow ones (weights) by
        // a table of their width, with their packing.
        let tabled = range_table_widths(params.iter().map(|t| (t.bits, t.values.len())), !lookups.tables.is_empty());
        let laid: Vec<(Vec<_>, Option<Vec<_>>)> = params
            .iter()
            .zip(&loaded)
            .map(|(t, c)| match tabled.contains(&t.bits) {
                true => {
                    let (shifted, words) = layout_pack_lookup(ctx, &range, &mut lookups, c, t.bits);
                    (shifted, Some(words))
                }
                false => (layout_offset(ctx, &range, c, t.bits), None),
            })
            .collect();
        let parts = params.iter().zip(&laid).enumerate().map(|(i, (t, (s, w)))| Exposed {
            kind: "param",
            index: i,
            name: t.name.clone(),
            shape: t.shape.clone(),
            shifted: s,
            words: w.as_deref(),
            bits: t.bits,
            scale: t.scale,
        });
        if visibility.params == Visibility::Public {
            for t in parts {
                exposer.expose(ctx, &range, t, Visibility::Public);
            }
        } else {
            exposer.expose_commitment(ctx, &range, parts.collect());
        }
    }
    if visibility.output != Visibility::Private {
        for (index, &o) in model.outputs.iter().enumerate() {
            let shifted = layout_offset(ctx, &range, &cells[o], bits);
            let node = &model.nodes[o];
            let t = Exposed {
                kind: "output",
                index,
                name: node.name.clone(),
                shape: node.shape.clone(),
                shifted: &shifted,
                words: None,
                bits,
                scale: model.input_scale,
            };
            exposer.expose(ctx, &range, t, visibility.output);
        }
    }
    if visibility.submitter {
        // Unconstrained but public: the transcript binds it, so no one can change it without
        // proving again (which needs the private witness).
        exposer.layout.push(InstanceSpan {
            kind: "submitter".into(),
            index: 0,
            name: "submitter binding".into(),
            shape: vec![1],
            values: 1,
            first_instance: exposer.cells.len(),
            instances: 1,
            encoding: Encoding::Word,
            bits: 0,
            values_per_word: 0,
            scale: 0,
            parts: Vec::new(),
            salted: false,
            proof: Vec::new(),
        });
        exposer.cells.push(ctx.load_witness(submitter));
    }
    let values = cells.iter().map(|c| c.iter().map(|v| to_i128(v.value()).unwrap_or(i128::MAX)).collect()).collect();
    let instances = exposer.cells.iter().map(|c| *c.value()).collect();
    builder.assigned_instances[0] = exposer.cells;
    let lookup_sets = match stage {
        Stage::Prove(shape, _) => shape.lookup_sets,
        Stage::Mock { k, .. } | Stage::Keygen { k, .. } => {
            set_base_params(&mut builder, BLINDING_ROWS);
            lookups.lookups.len().div_ceil(usable_rows(k))
        }
    };
    let circuit = ModelCircuit {
        lookup_sets,
        tables: lookups.tables,
        lookups: lookups.lookups,
        linear: exposer.linear,
        poseidon: exposer.poseidon,
        ..ModelCircuit::from_base(builder)
    };
    Ok(LaidOut { circuit, values, instances, layout: exposer.layout, salts: exposer.salts })
}

/// halo2-base's cells per phase: advice of its gate, and advice of its range lookups.
fn base_cells(builder: &BaseCircuitBuilder<Fr>) -> (Vec<usize>, Vec<usize>) {
    let advice = builder.core().phase_manager.iter().map(|pm| pm.total_advice()).collect();
    let lookups = builder.lookup_manager().iter().map(|lm| lm.total_rows()).collect();
    (advice, lookups)
}

/// How many distinct constants halo2-base's gate holds in its fixed columns.
pub fn distinct_constants(builder: &BaseCircuitBuilder<Fr>) -> usize {
    let copies = builder.core().copy_manager.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    copies.constant_equalities.iter().map(|(c, _)| *c).collect::<std::collections::HashSet<Fr>>().len()
}

/// Sets the builder's columns as halo2-base's `calculate_params` does (the same numbers), but
/// counts the distinct constants in a hash set: halo2-base sorts every constant copy by `Fr`'s
/// `Ord`, which leaves Montgomery form at each comparison, a third of `compile`'s time on the
/// MLPs (every fixed weight is a constant copy).
fn set_base_params(builder: &mut BaseCircuitBuilder<Fr>, minimum_rows: usize) -> BaseCircuitParams {
    let k = builder.config_params.k;
    let max_rows = (1usize << k) - minimum_rows;
    let (advice, lookups) = base_cells(builder);
    let constants = distinct_constants(builder);
    let params = BaseCircuitParams {
        k,
        num_advice_per_phase: advice.iter().map(|c| c.div_ceil(max_rows)).collect(),
        num_fixed: constants.div_ceil(1 << k),
        num_lookup_advice_per_phase: lookups.iter().map(|c| c.div_ceil(max_rows)).collect(),
        lookup_bits: builder.lookup_bits(),
        num_instance_columns: builder.config_params.num_instance_columns,
    };
    builder.config_params = params.clone();
    params
}

/// Rows of a circuit of 2^k rows that hold cells (the rest are for blinding).
pub fn usable_rows(k: u32) -> usize {
    (1usize << k) - BLINDING_ROWS
}

/// Zero inputs of the model's input shapes: the circuit's geometry does not depend on the data.
pub fn zero_inputs(model: &QuantizedModel) -> Vec<Vec<i64>> {
    model.input_shapes().iter().map(|s| vec![0; s.iter().product()]).collect()
}

/// Lays the model out at `k` in the keygen stage and reads off its geometry; fails when the
/// function tables or the region of one of our gates do not fit 2^k rows.
pub fn shape_at(model: &QuantizedModel, k: u32, gates: Gates) -> Result<CircuitShape> {
    let shape = layout_shape(model, k, gates)?;
    if shape.table_rows > usable_rows(k) {
        return Err(LayoutError::TablesTooLarge { rows: shape.table_rows, usable: usable_rows(k), k }.into());
    }
    if shape.poseidon_rows > usable_rows(k) {
        let (rows, permutations) = (shape.poseidon_rows, shape.poseidon_permutations);
        return Err(LayoutError::PoseidonTooLarge { rows, permutations, usable: usable_rows(k), k }.into());
    }
    Ok(shape)
}

fn layout_shape(model: &QuantizedModel, k: u32, gates: Gates) -> Result<CircuitShape> {
    let laid = build_circuit(model, &zero_inputs(model), Stage::Keygen { k, gates })?;
    let (advice_cells, lookup_cells) = base_cells(&laid.circuit.base);
    let region = laid.circuit.linear.as_ref();
    let hashes = laid.circuit.poseidon.as_ref();
    Ok(CircuitShape {
        k,
        lookup_bits: lookup_bits_for(k),
        config: laid.circuit.base.config_params.clone(),
        num_instances: laid.instances.len(),
        advice_cells: advice_cells.iter().sum(),
        lookup_cells: lookup_cells.iter().sum(),
        lookup_sets: laid.circuit.lookup_sets,
        table_rows: laid.circuit.table_rows(),
        // A region no layer chose is no gate at all.
        linear: region.filter(|r| r.rows() > 0).map(LinearRegion::geometry),
        linear_rows: region.map_or(0, LinearRegion::rows),
        linear_macs: region.map_or(0, LinearRegion::macs),
        linear_overflow_rows: region.map_or(0, LinearRegion::overflow_rows),
        // As for the linear gate: a circuit that hashes nothing has no Poseidon gate.
        poseidon: hashes.is_some_and(|r| r.rows() > 0),
        poseidon_rows: hashes.map_or(0, PoseidonRegion::rows),
        poseidon_permutations: hashes.map_or(0, PoseidonRegion::permutations),
        ..CircuitShape::default()
    })
}

/// Circuits that fit one advice column at this k or below get one column: each further column
/// costs the EVM verifier a commitment, an evaluation and a share of the permutation argument
/// (measured: the 16→32→8 MLP verifies for 303,674 gas with one column at k = 13, 351,297 with
/// two at k = 12 and 376,853 with three at k = 11), while such small circuits prove in a second
/// or less either way.
pub const SINGLE_COLUMN_MAX_K: u32 = 16;

/// The smallest k whose rows hold `advice_cells` in `columns` advice columns with the blinding
/// rows (not clamped).
pub fn rows_k(advice_cells: usize, columns: usize) -> u32 {
    let rows_needed = advice_cells.div_ceil(columns.max(1)) + BLINDING_ROWS;
    usize::BITS - (rows_needed - 1).leading_zeros()
}

/// How much more verification gas than the circuit without the linear-layer gate `auto`
/// accepts for a faster proof (`settings.json`'s `max_verifier_gas` overrides it) ...
pub const AUTO_GAS_ALLOWANCE: f64 = 1.10;
/// ... and how much gas over that a verifier may cost per unit of [`CircuitShape::cost`] it saves
/// against the cheapest within it: 7,500 gas a second of proving here (1e6 is about 8 s), a
/// budget that grows with the model. A large model's faster geometry pays for its gas (the
/// 784-1024-256-10 MLP: the 4x1 gate at k = 18 proves in 20.7 s against 36 s for the 2x1 gate at
/// k = 19 for 62 k more gas, 29 k over the budget, where 2.04e6 less cost allows 122 k; the
/// LeNet-like CNN with hashed input: the 3x1 gate at k = 17 instead of the 2x1 gate at k = 18,
/// 1.03e6 less cost for 51 k over the budget); a small one's does not (the MNIST MLP with hashed
/// input: 2.1e5 less cost allows 13 k, not the 76 k over the budget the 3x1 gate needs).
pub const GAS_PER_COST_SAVED: f64 = 0.06;
/// The share of EIP-170's limit an estimated verifier may take (the estimate's margin): the fit
/// is within 0.75% on the verifiers it was made from; it underestimates those with the Poseidon
/// gate (its round constants are literals the fit saw few of) by 1.4% to 2.2% (measured: 36,043
/// for 36,552 bytes, 23,891 for 24,433).
const SIZE_MARGIN: f64 = 0.99;
/// Where no direct verifier fits, how many k below the narrow geometry's [`choose_shape`] tries
/// (each k less about doubles halo2-base's columns and halves the rows: measured on the MNIST
/// MLP with hashed params, k = 17 with six columns proves in 29 s against 52 s at k = 18 with
/// three) ...
const WIDE_STEPS: u32 = 2;
/// ... and the most of halo2-base's advice columns such a geometry may have.
const WIDE_MAX_ADVICE_COLUMNS: usize = 16;
const POSEIDON_SIZE_MARGIN: f64 = 0.975;
/// How many times the cheapest candidate's proving cost a direct verifier may cost: past it,
/// [`choose_shape`] chooses as when no direct verifier fits (through aggregation). The MNIST MLP
/// with hashed params has one direct candidate, with no gate at k = 20 (cost 1.6e7), beside
/// gated ones at k = 15-16 whose verifiers do not fit (4e6 to 6e6): proving several times
/// slower for a direct verifier is not what a user of the default wants.
const DIRECT_COST_RATIO: f64 = 2.0;
/// ... where that candidate's cost is at least this much: below it proving takes a few seconds
/// whatever the geometry (the MNIST MLP without the gate: 1.19e6, 10.1 s here), and a small MLP
/// with everything hashed keeps its direct verifier (2.28e5 against 9.05e4 for the 2x1 gate).
const DIRECT_COST_FLOOR: f64 = 1.0e6;

/// Chooses the circuit's geometry: our gates as `options` say, then k as [`choose_k`] does.
/// For `auto`: no gate when the circuit without one fits one advice column at
/// [`SINGLE_COLUMN_MAX_K`] or below (it proves in about a second, and fewer columns mean less
/// gas); else the lowest [`CircuitShape::cost`] among the combinations of no linear gate and
/// [`AUTO_GEOMETRIES`] with the Poseidon gate and without it (when the circuit hashes) whose
/// direct EVM verifier (estimated, see [`crate::evm::estimate`]) fits EIP-170 and costs at most
/// `max_gas` (default: [`AUTO_GAS_ALLOWANCE`] times the verifier without the gates, plus
/// [`GAS_PER_COST_SAVED`] per unit of cost saved against the cheapest candidate within it), the
/// cheaper verifier of two equal estimates (measured on the LeNet-like CNN at k = 18: four
/// columns of halo2-base's gate prove in 19.6 s, one and the 2x1 gate, as many columns by the
/// estimate, in 17.7 s for 26 k less gas). When no
/// candidate's direct verifier fits, the circuit is verified through aggregation and proving
/// cost alone counts: the two cheapest are then tried at up to [`WIDE_STEPS`] smaller k too,
/// with more columns (at most [`WIDE_MAX_ADVICE_COLUMNS`] of halo2-base's). So it is too when the
/// cheapest candidate within the budget (and its growth) costs more than [`DIRECT_COST_RATIO`]
/// times the cheapest (and at least [`DIRECT_COST_FLOOR`]).
pub fn choose_shape(model: &QuantizedModel, options: &ShapeOptions) -> Result<CircuitShape> {
    let estimate = |s: &CircuitShape| crate::evm::estimate::estimate_verifier(&s.params(), s.k, s.num_instances);
    let label = |s: &CircuitShape| {
        let linear = s.linear.map_or("no linear gate".to_string(), |g| format!("linear gate {g}"));
        if s.poseidon {
            format!("{linear} and the Poseidon gate")
        } else {
            linear
        }
    };
    let v = &model.visibility;
    let hashes = [v.input, v.params, v.output].contains(&Visibility::Hashed);
    let poseidon = match options.poseidon_gate {
        PoseidonGate::Off => vec![false],
        PoseidonGate::On => vec![true],
        PoseidonGate::Auto if hashes => vec![false, true],
        PoseidonGate::Auto => vec![false],
    };
    // Params that are cells (private, public or hashed) go into the gate's advice weights.
    let advice = v.params != Visibility::Fixed;
    let linear = match options.linear_gate {
        LinearGate::Off => vec![None],
        LinearGate::Geometry(g) => vec![Some(g.with_advice_weights(advice))],
        LinearGate::Auto => {
            std::iter::once(None).chain(AUTO_GEOMETRIES.map(|g| Some(g.with_advice_weights(advice)))).collect()
        }
    };
    let shape_for = |gates: Gates| choose_k(model, options.k, options.max_advice_columns, gates);
    let plain = shape_for(Gates { linear: linear[0], poseidon: poseidon[0] })?;
    if linear.len() == 1 && poseidon.len() == 1 {
        let reason =
            format!("linear_gate = {}, poseidon_gate = {} in the settings", options.linear_gate, options.poseidon_gate);
        if options.linear_gate == LinearGate::Off && options.poseidon_gate == PoseidonGate::Off {
            // No estimate: calibration ranks candidates this way, many times.
            return Ok(CircuitShape { reason, ..plain });
        }
        return Ok(with_estimate(plain, &estimate, reason));
    }
    let single = plain.config.num_advice_per_phase.iter().sum::<usize>() <= 1 && plain.k <= SINGLE_COLUMN_MAX_K;
    if single && plain.linear.is_none() && !plain.poseidon {
        let reason = format!(
            "no linear gate: the circuit fits one advice column at k = {} (at most {SINGLE_COLUMN_MAX_K}), where \
             it proves in about a second and fewer columns cost less gas",
            plain.k
        );
        return Ok(with_estimate(plain, &estimate, reason));
    }
    // The direct verifier must fit EIP-170 (a gated candidate's estimate with a margin); when no
    // candidate's does, the circuit is verified through aggregation, whose verifier does not grow
    // with it, and only proving cost counts.
    let size_limit = |s: &CircuitShape| {
        let limit = crate::evm::solidity::MAX_RUNTIME_BYTES as f64;
        let margin = match (s.linear, s.poseidon) {
            (_, true) => POSEIDON_SIZE_MARGIN,
            (Some(_), false) => SIZE_MARGIN,
            (None, false) => 1.0,
        };
        s.verifier_bytes as f64 <= limit * margin
    };
    let plain = with_estimate(plain, &estimate, String::new());
    // A geometry is tried one k smaller (more columns, more gas) only where its own verifier fits
    // EIP-170 and the budget the circuit without the gates sets.
    let early_budget = options.max_gas.or(size_limit(&plain).then(|| gas_budget(plain.verifier_gas)));
    let room = |s: &CircuitShape| size_limit(s) && early_budget.is_some_and(|b| s.verifier_gas <= b);
    let mut candidates = vec![plain];
    for &p in &poseidon {
        for &g in &linear {
            if (g, p) == (linear[0], poseidon[0]) {
                continue;
            }
            let shape = shape_for(Gates { linear: g, poseidon: p })?;
            // A gate no layer (or hash) is cheaper in is no gate: that candidate is known.
            if shape.linear == g && shape.poseidon == p {
                let shape = with_estimate(shape, &estimate, String::new());
                let smaller = (options.k.is_none() && room(&shape))
                    .then(|| overflow_shape(model, &shape, options.max_advice_columns))
                    .flatten();
                candidates.push(shape);
                if let Some(smaller) = smaller {
                    candidates.push(with_estimate(smaller, &estimate, String::new()));
                }
            }
        }
    }
    // The gas reference: the verifier without the gates, or the cheapest that fits. It is taken
    // before the wide geometries below are added: they come only where no direct verifier is
    // taken, where the budget chooses nothing.
    let reference = candidates.iter().filter(|s| size_limit(s)).map(|s| s.verifier_gas);
    let reference = if size_limit(&candidates[0]) { Some(candidates[0].verifier_gas) } else { reference.min() };
    let budget = options.max_gas.or(reference.map(gas_budget));
    debug_assert!(early_budget.is_none() || early_budget == budget, "the budget is the plain circuit's");
    // The default budget grows with the proving cost a verifier over it saves against the
    // cheapest within it (a budget in the settings is a hard one).
    let in_budget = |s: &CircuitShape, extra: u64| {
        size_limit(s) && budget.is_some_and(|b| s.verifier_gas <= b.saturating_add(extra))
    };
    let base_cost = candidates.iter().filter(|s| in_budget(s, 0)).map(CircuitShape::cost).min_by(f64::total_cmp);
    let allowance = |s: &CircuitShape| match (options.max_gas, base_cost) {
        (None, Some(base)) => (GAS_PER_COST_SAVED * (base - s.cost())).max(0.0) as u64,
        _ => 0,
    };
    let within = |s: &CircuitShape| in_budget(s, allowance(s));
    let cheapest = |fits: bool| {
        let costs = candidates.iter().filter(|s| !fits || within(s)).map(CircuitShape::cost);
        costs.min_by(f64::total_cmp)
    };
    // A direct verifier at several times the proving cost of a geometry verified through
    // aggregation is not worth it by default (a gas budget in the settings asks for one).
    let (fitting, overall) = (cheapest(true), cheapest(false).unwrap_or(f64::INFINITY));
    let costly =
        fitting.is_some_and(|c| c > overall * DIRECT_COST_RATIO && c >= DIRECT_COST_FLOOR) && options.max_gas.is_none();
    let direct = fitting.is_some() && !costly;
    // Whether a direct verifier fits EIP-170 but not a budget in the settings.
    let over_set_budget = fitting.is_none() && options.max_gas.is_some() && candidates.iter().any(size_limit);
    if !direct && options.k.is_none() {
        // Through aggregation the verifier's size no longer counts against columns: the two
        // cheapest geometries are tried at smaller k with more columns too.
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&a, &b| candidates[a].cost().total_cmp(&candidates[b].cost()));
        for at in order.into_iter().take(2) {
            let (k, gates) = (candidates[at].k, candidates[at].gates());
            for wider in (1..=WIDE_STEPS).filter_map(|step| k.checked_sub(step)).filter(|&k| k >= MIN_K) {
                // A k whose tables or regions do not fit is no candidate.
                let Ok(shape) = shape_at(model, wider, gates) else { break };
                if shape.config.num_advice_per_phase.iter().sum::<usize>() > WIDE_MAX_ADVICE_COLUMNS {
                    break;
                }
                candidates.push(with_estimate(shape, &estimate, String::new()));
            }
        }
    }
    let eligible = |s: &CircuitShape| !direct || within(s);
    let best = candidates
        .iter()
        .enumerate()
        .filter(|(_, s)| eligible(s))
        // Of equal estimates (same columns at the same k), the cheaper verifier.
        .min_by(|(_, a), (_, b)| a.cost().total_cmp(&b.cost()).then(a.verifier_gas.cmp(&b.verifier_gas)))
        .map_or(0, |(i, _)| i);
    let tried: Vec<String> = candidates
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let verdict = match () {
                _ if i == best => "chosen",
                _ if !eligible(s) => "over the verifier budget",
                _ => "slower",
            };
            format!(
                "{}: k = {}, cost {:.2e}, verifier ~{} B, ~{} gas ({verdict})",
                label(s),
                s.k,
                s.cost(),
                s.verifier_bytes,
                s.verifier_gas
            )
        })
        .collect();
    tracing::info!("geometries: {}", tried.join("; "));
    let chosen = &candidates[best];
    let rule = match budget {
        Some(budget) if direct && chosen.verifier_gas > budget => format!(
            "whose direct verifier fits EIP-170 and {budget} gas plus {GAS_PER_COST_SAVED} gas per unit of proving \
             cost saved against the cheapest within it ({} gas for {:.2e} less cost)",
            chosen.verifier_gas,
            base_cost.unwrap_or_default() - chosen.cost()
        ),
        Some(budget) if direct => format!("whose direct verifier fits EIP-170 and {budget} gas"),
        _ if direct => "whose direct verifier fits EIP-170".to_string(),
        _ if costly => format!(
            "(the cheapest whose direct verifier fits EIP-170 costs over {DIRECT_COST_RATIO}x as much to prove: verify \
             through `zkinfer aggregate`, or set max_verifier_gas in the settings for a direct verifier)"
        ),
        Some(budget) if over_set_budget => format!(
            "(no direct verifier fits EIP-170 and max_verifier_gas = {budget}: verify through `zkinfer aggregate`, \
             or raise it)"
        ),
        _ => "(no direct verifier fits EIP-170: verify through `zkinfer aggregate`)".to_string(),
    };
    let mut best = candidates.swap_remove(best);
    best.reason = format!("{}, the lowest estimated proving cost {rule} ({})", label(&best), tried.join("; "));
    Ok(best)
}

/// `shape`'s geometry one k smaller, where the linear region's runs past its rows go to
/// halo2-base's gate, when that still fits `max_advice_columns` of its columns: the MNIST MLP's
/// 3x1 region takes 33,845 rows, just over k = 15's; at k = 15, 1,128 of them in halo2-base's
/// column beside the rest halve the rows every column is proven over, for the gas of a third
/// input column and its weights.
fn overflow_shape(model: &QuantizedModel, shape: &CircuitShape, max_advice_columns: usize) -> Option<CircuitShape> {
    let k = shape.k.checked_sub(1).filter(|&k| k >= MIN_K)?;
    let over = shape.linear_demand().checked_sub(usable_rows(k)).filter(|&r| r > 0)?;
    // Laying out costs time: first an estimate of the cells with the overflow's (three a
    // product), with a tenth's margin.
    let macs_per_row = shape.linear_macs as f64 / shape.linear_rows.max(1) as f64;
    let cells = shape.advice_cells as f64 + 3.0 * macs_per_row * over as f64;
    if cells > (max_advice_columns * usable_rows(k)) as f64 * 1.1 {
        return None;
    }
    let smaller = shape_at(model, k, shape.gates()).ok()?;
    let columns: usize = smaller.config.num_advice_per_phase.iter().sum();
    (smaller.linear == shape.linear && columns <= max_advice_columns.max(1)).then_some(smaller)
}

/// The default verifier budget: [`AUTO_GAS_ALLOWANCE`] times the reference verifier's gas.
fn gas_budget(reference_gas: u64) -> u64 {
    (reference_gas as f64 * AUTO_GAS_ALLOWANCE) as u64
}

/// `shape` with its verifier estimate and `reason`.
fn with_estimate(
    mut shape: CircuitShape,
    estimate: &impl Fn(&CircuitShape) -> crate::evm::estimate::VerifierEstimate,
    reason: String,
) -> CircuitShape {
    let e = estimate(&shape);
    shape.verifier_bytes = e.runtime_bytes;
    shape.verifier_gas = e.gas;
    shape.reason = reason;
    shape
}

/// Chooses k for one linear-gate geometry: the given one; else, starting from the smallest k
/// that holds the function tables and the linear region, one advice column at the smallest k
/// that holds it when that k is at most [`SINGLE_COLUMN_MAX_K`]; else the smallest k at which
/// the circuit needs at most `max_advice_columns` of halo2-base's advice columns.
pub fn choose_k(
    model: &QuantizedModel,
    k: Option<u32>,
    max_advice_columns: usize,
    gates: Gates,
) -> Result<CircuitShape> {
    if let Some(k) = k {
        return shape_at(model, k, gates);
    }
    let first = layout_shape(model, MIN_K, gates)?;
    // k is where the region holds every run.
    let floor_k =
        [first.table_rows, first.linear_demand(), first.poseidon_rows].into_iter().map(|r| rows_k(r, 1)).max();
    let floor_k = floor_k.unwrap_or(MIN_K);
    if floor_k > MAX_K {
        return shape_at(model, MAX_K, gates);
    }
    let mut shape = if floor_k > MIN_K { shape_at(model, floor_k, gates)? } else { first };
    // One column for a small circuit without the linear gate; with it, the gate's rows set k.
    let single = gates.linear.is_none() && rows_k(shape.advice_cells, 1) <= SINGLE_COLUMN_MAX_K;
    let columns = if single { 1 } else { max_advice_columns.max(1) };
    loop {
        let advice: usize = shape.config.num_advice_per_phase.iter().sum();
        if advice <= columns || shape.k == MAX_K {
            return Ok(shape);
        }
        // Jump close to the k the cell count asks for, then step.
        let k = (shape.k + 1).max(rows_k(shape.advice_cells, columns).saturating_sub(1)).min(MAX_K);
        shape = shape_at(model, k, gates)?;
    }
}
