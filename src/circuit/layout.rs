//! Lays out a whole quantized model, node by node, and chooses the circuit's size.

use halo2_base::gates::circuit::{builder::BaseCircuitBuilder, BaseCircuitParams, CircuitBuilderStage};
use halo2_base::gates::RangeInstructions;
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::AssignedValue;
use serde::{Deserialize, Serialize};

use super::field::{fe, to_i128};
use super::instances::{layout_offset, layout_pack};
use super::linear::{layout_dense, DenseShape};
use super::nonlinear::layout_relu;
use super::shape::{layout_add, layout_add_const};
use crate::error::{Error, Result};
use crate::model::quantize::{QOp, QuantizedModel};

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
    /// The halo2-base builder, usable as a halo2 `Circuit`.
    pub builder: BaseCircuitBuilder<Fr>,
    /// Every node's output values, as signed integers.
    pub values: Vec<Vec<i128>>,
    /// The public instances (inputs then outputs).
    pub instances: Vec<Fr>,
}

fn lookup_bits_for(k: u32) -> usize {
    k as usize - 1
}

/// Lays out `model` on `inputs` (quantized, one flat vector per model input).
pub fn build_circuit(model: &QuantizedModel, inputs: &[Vec<i64>], stage: Stage<'_>) -> Result<LaidOut> {
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
    let gate = range.gate();
    let bits = model.activation_bits;
    let ctx = builder.main(0);
    let mut cells: Vec<Vec<AssignedValue<Fr>>> = Vec::with_capacity(model.nodes.len());
    let mut shifted_inputs = Vec::new();
    for node in &model.nodes {
        let arg = |i: usize| (&cells[node.inputs[i]][..], &model.nodes[node.inputs[i]].shape[..]);
        let out = match &node.op {
            QOp::Input { index } => {
                let data =
                    inputs.get(*index).ok_or_else(|| Error::UnsupportedModel(format!("missing input #{index}")))?;
                let loaded: Vec<_> = data.iter().map(|&v| ctx.load_witness(fe(v as i128))).collect();
                shifted_inputs.push(layout_offset(ctx, &range, &loaded, bits));
                loaded
            }
            QOp::Dense { weight, k, n, bias, transpose_input, shift } => {
                let (x, _) = arg(0);
                let shape = DenseShape {
                    rows: x.len() / k,
                    k: *k,
                    n: *n,
                    transpose_input: *transpose_input,
                    shift: *shift,
                    bits,
                };
                layout_dense(ctx, &range, x, weight, bias, shape)
            }
            QOp::Add => layout_add(ctx, gate, arg(0), arg(1), &node.shape),
            QOp::AddConst { constant } => layout_add_const(ctx, gate, arg(0), constant, &node.shape),
            QOp::Relu => {
                let (x, _) = arg(0);
                x.iter()
                    .map(|&v| {
                        let non_negative = to_i128(v.value()).is_some_and(|v| v >= 0);
                        layout_relu(ctx, &range, v, bits, non_negative)
                    })
                    .collect()
            }
            QOp::Reshape => arg(0).0.to_vec(),
        };
        cells.push(out);
    }
    // Inputs first (in input order), then outputs; each tensor starts a new word.
    let mut exposed = Vec::new();
    let input_order = model.nodes.iter().filter_map(|n| match n.op {
        QOp::Input { index } => Some(index),
        _ => None,
    });
    let mut by_index: Vec<(usize, Vec<AssignedValue<Fr>>)> = input_order.zip(shifted_inputs).collect();
    by_index.sort_by_key(|(i, _)| *i);
    for (_, shifted) in by_index {
        exposed.extend(layout_pack(ctx, &range, &shifted, bits));
    }
    for &o in &model.outputs {
        let shifted = layout_offset(ctx, &range, &cells[o], bits);
        exposed.extend(layout_pack(ctx, &range, &shifted, bits));
    }
    let values = cells.iter().map(|c| c.iter().map(|v| to_i128(v.value()).unwrap_or(i128::MAX)).collect()).collect();
    let instances = exposed.iter().map(|c| *c.value()).collect();
    builder.assigned_instances[0] = exposed;
    if !matches!(stage, Stage::Prove(..)) {
        builder.calculate_params(Some(BLINDING_ROWS));
    }
    Ok(LaidOut { builder, values, instances })
}

/// Zero inputs of the model's input shapes: the circuit's geometry does not depend on the data.
pub fn zero_inputs(model: &QuantizedModel) -> Vec<Vec<i64>> {
    model.input_shapes().iter().map(|s| vec![0; s.iter().product()]).collect()
}

/// Lays the model out at `k` in the keygen stage and reads off its geometry.
pub fn shape_at(model: &QuantizedModel, k: u32) -> Result<CircuitShape> {
    let laid = build_circuit(model, &zero_inputs(model), Stage::Keygen { k })?;
    let stats = laid.builder.statistics();
    Ok(CircuitShape {
        k,
        lookup_bits: lookup_bits_for(k),
        config: laid.builder.config_params.clone(),
        num_instances: laid.instances.len(),
        advice_cells: stats.gate.total_advice_per_phase.iter().sum(),
        lookup_cells: stats.total_lookup_advice_per_phase.iter().sum(),
    })
}

/// Chooses k: the given one, or the smallest at which the circuit needs at most
/// `max_advice_columns` advice columns.
pub fn choose_shape(model: &QuantizedModel, k: Option<u32>, max_advice_columns: usize) -> Result<CircuitShape> {
    if let Some(k) = k {
        return shape_at(model, k);
    }
    let mut k = MIN_K;
    loop {
        let shape = shape_at(model, k)?;
        let advice: usize = shape.config.num_advice_per_phase.iter().sum();
        if advice <= max_advice_columns || k == MAX_K {
            return Ok(shape);
        }
        // Jump close to the k the cell count asks for, then step.
        let rows_needed = shape.advice_cells.div_ceil(max_advice_columns) + BLINDING_ROWS;
        let estimate = usize::BITS - (rows_needed - 1).leading_zeros();
        k = (k + 1).max(estimate.saturating_sub(1)).min(MAX_K);
    }
}
