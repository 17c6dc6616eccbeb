//! Lays out a whole quantized model, node by node, and chooses the circuit's size.

use halo2_base::gates::circuit::{builder::BaseCircuitBuilder, BaseCircuitParams, CircuitBuilderStage};
use halo2_base::gates::{RangeChip, RangeInstructions};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::halo2_proofs::halo2curves::ff::Field;
use halo2_base::{AssignedValue, Context};
use serde::{Deserialize, Serialize};

use super::commit::layout_hash;
use super::field::{fe, to_i128};
use super::instances::{layout_offset, layout_pack, values_per_word, CommittedPart, Encoding, InstanceSpan};
use super::linear::ParamCells;
use super::lookup::{ModelCircuit, ModelCircuitParams};
use super::nonlinear::Lookups;
use crate::error::LayoutError;
use crate::error::Result;
use crate::model::quantize::QuantizedModel;
use crate::ops::LayoutCx;
use crate::settings::Visibility;

/// Rows at the end of the circuit kept free for halo2's blinding factors.
pub const BLINDING_ROWS: usize = 20;
/// Smallest k we lay out (the range lookup table takes 2^(k-1) rows).
pub const MIN_K: u32 = 10;
/// Largest k we choose automatically.
pub const MAX_K: u32 = 26;

/// Everything about the circuit's geometry that keygen and proving must agree on.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
}

impl CircuitShape {
    /// The circuit's params, as keys are read with.
    pub fn params(&self) -> ModelCircuitParams {
        ModelCircuitParams { base: self.config.clone(), lookup_sets: self.lookup_sets }
    }
}

/// How to build the circuit.
#[derive(Clone, Debug)]
pub enum Stage<'a> {
    /// For the MockProver, at the given k.
    Mock {
        /// log2 rows.
        k: u32,
    },
    /// For key generation, at the given k.
    Keygen {
        /// log2 rows.
        k: u32,
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
}

/// A tensor about to be exposed (packed or committed).
struct Exposed<'a> {
    kind: &'static str,
    index: usize,
    name: String,
    shape: Vec<usize>,
    /// Values in offset form, range-checked to `bits`.
    shifted: &'a [AssignedValue<Fr>],
    bits: u32,
    scale: u32,
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

    /// Exposes the tensor as public values (`Public`) or as its commitment (`Hashed`).
    fn expose(&mut self, ctx: &mut Context<Fr>, range: &RangeChip<Fr>, t: Exposed<'_>, visibility: Visibility) {
        let words = layout_pack(ctx, range, t.shifted, t.bits);
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
                self.cells.push(layout_hash(ctx, range.gate(), &absorbed));
            }
            Visibility::Private | Visibility::Fixed => {}
        }
    }

    /// Exposes the commitment to several tensors at once (the model commitment).
    fn expose_commitment(&mut self, ctx: &mut Context<Fr>, range: &RangeChip<Fr>, parts: Vec<Exposed<'_>>) {
        let mut words = Vec::new();
        for t in &parts {
            words.extend(layout_pack(ctx, range, t.shifted, t.bits));
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
        self.cells.push(layout_hash(ctx, range.gate(), &words));
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
        Stage::Mock { k } | Stage::Keygen { k } => {
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
            scales,
            inputs,
            laid_inputs: &mut shifted_inputs,
        };
        let out = node.op.kernel().layout(&mut cx)?;
        cells.push(out);
    }

    // Inputs (in input order), params, then outputs; each tensor starts a new word.
    let mut exposer = Exposer {
        cells: Vec::new(),
        layout: Vec::new(),
        salted: visibility.salt,
        random_salts: matches!(stage, Stage::Prove(..)),
        salts: Vec::new(),
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
            scale: model.input_scale,
        };
        exposer.expose(ctx, &range, t, visibility.input);
    }
    if matches!(visibility.params, Visibility::Public | Visibility::Hashed) {
        let shifted: Vec<_> = params.iter().zip(&loaded).map(|(t, c)| layout_offset(ctx, &range, c, t.bits)).collect();
        let parts = params.iter().zip(&shifted).enumerate().map(|(i, (t, s))| Exposed {
            kind: "param",
            index: i,
            name: t.name.clone(),
            shape: t.shape.clone(),
            shifted: s,
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
        Stage::Mock { k } | Stage::Keygen { k } => {
            builder.calculate_params(Some(BLINDING_ROWS));
            lookups.lookups.len().div_ceil(usable_rows(k))
        }
    };
    let circuit = ModelCircuit {
        base: builder,
        lookup_sets,
        tables: lookups.tables,
        lookups: lookups.lookups,
        binding: Fr::zero(),
    };
    Ok(LaidOut { circuit, values, instances, layout: exposer.layout, salts: exposer.salts })
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
/// function tables do not fit 2^k rows.
pub fn shape_at(model: &QuantizedModel, k: u32) -> Result<CircuitShape> {
    let shape = layout_shape(model, k)?;
    if shape.table_rows > usable_rows(k) {
        return Err(LayoutError::TablesTooLarge { rows: shape.table_rows, usable: usable_rows(k), k }.into());
    }
    Ok(shape)
}

fn layout_shape(model: &QuantizedModel, k: u32) -> Result<CircuitShape> {
    let laid = build_circuit(model, &zero_inputs(model), Stage::Keygen { k })?;
    let stats = laid.circuit.base.statistics();
    Ok(CircuitShape {
        k,
        lookup_bits: lookup_bits_for(k),
        config: laid.circuit.base.config_params.clone(),
        num_instances: laid.instances.len(),
        advice_cells: stats.gate.total_advice_per_phase.iter().sum(),
        lookup_cells: stats.total_lookup_advice_per_phase.iter().sum(),
        lookup_sets: laid.circuit.lookup_sets,
        table_rows: laid.circuit.table_rows(),
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

/// Chooses k: the given one; else, starting from the smallest k that holds the function tables,
/// one advice column at the smallest k that holds it when that k is at most
/// [`SINGLE_COLUMN_MAX_K`]; else the smallest k at which the circuit needs at most
/// `max_advice_columns` advice columns.
pub fn choose_shape(model: &QuantizedModel, k: Option<u32>, max_advice_columns: usize) -> Result<CircuitShape> {
    if let Some(k) = k {
        return shape_at(model, k);
    }
    let first = layout_shape(model, MIN_K)?;
    let table_k = rows_k(first.table_rows, 1);
    if table_k > MAX_K {
        return shape_at(model, MAX_K);
    }
    let mut shape = if table_k > MIN_K { shape_at(model, table_k)? } else { first };
    let columns = if rows_k(shape.advice_cells, 1) <= SINGLE_COLUMN_MAX_K { 1 } else { max_advice_columns.max(1) };
    loop {
        let advice: usize = shape.config.num_advice_per_phase.iter().sum();
        if advice <= columns || shape.k == MAX_K {
            return Ok(shape);
        }
        // Jump close to the k the cell count asks for, then step.
        let k = (shape.k + 1).max(rows_k(shape.advice_cells, columns).saturating_sub(1)).min(MAX_K);
        shape = shape_at(model, k)?;
    }
}
