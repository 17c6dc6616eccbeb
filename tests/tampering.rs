//! Model-level tampering: in assembled circuits of multi-op fixtures (reshapes, gathers,
//! convolutions, pooling, divisions, reductions, Softmax, InstanceNorm, lookups between
//! layers), one advice cell at a time is altered at positions spread over the whole layout,
//! and the MockProver rejects every one: no layer reads its input as a fresh witness, no hint
//! inside an op is free, no copy between layers is missing.

mod common;

use common::fixture;
use halo2_base::halo2_proofs::dev::MockProver;
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::halo2_proofs::plonk::Assigned;
use zkinfer::circuit::layout::{build_circuit, choose_shape, ShapeOptions, Stage};
use zkinfer::model::{import_onnx, load_input, QuantizedModel};

/// Lays `name` out on its input and alters `samples` cells, one at a time, spread evenly over
/// the main advice column; returns how many cells the circuit has.
fn every_sampled_cell_is_bound(name: &str, lookup_range: Option<[f64; 2]>, samples: usize) -> usize {
    let graph = import_onnx(&fixture(&format!("{name}.onnx"))).unwrap();
    let settings = common::test_settings(&graph, lookup_range);
    let model = QuantizedModel::quantize(&graph, &settings).unwrap();
    let input = fixture(&format!("{name}.input.json"));
    let inputs = model.quantize_inputs(&load_input(&input, &model.input_shapes()).unwrap());
    let shape = choose_shape(&model, &ShapeOptions { max_advice_columns: 8, ..Default::default() }).unwrap();
    let k = shape.k;
    let mut laid = build_circuit(&model, &inputs, Stage::mock(&shape)).unwrap();
    let instances = laid.instances.clone();
    let accepted = |circuit: &zkinfer::circuit::lookup::ModelCircuit| {
        MockProver::run(k, circuit, vec![instances.clone()]).unwrap().verify().is_ok()
    };
    assert!(accepted(&laid.circuit), "{name}: the honest witness must pass");
    let cells = laid.circuit.base.pool(0).threads[0].advice.len();
    let step = (cells / samples).max(1);
    let mut unbound = Vec::new();
    for i in (0..cells).step_by(step) {
        let honest = laid.circuit.base.pool(0).threads[0].advice[i];
        laid.circuit.base.pool(0).threads[0].advice[i] = Assigned::Trivial(honest.evaluate() + Fr::from(1u64));
        if accepted(&laid.circuit) {
            unbound.push(i);
        }
        laid.circuit.base.pool(0).threads[0].advice[i] = honest;
    }
    assert!(unbound.is_empty(), "{name}: altering advice cells {unbound:?} of {cells} is accepted");
    cells
}

#[test]
fn every_cell_of_a_mix_of_movement_arithmetic_and_reductions_is_bound() {
    every_sampled_cell_is_bound("ops_mix", None, 200);
}

#[test]
fn every_cell_of_softmax_division_and_reductions_is_bound() {
    every_sampled_cell_is_bound("softmax_ops", Some([-8.0, 8.0]), 200);
}

#[test]
fn every_cell_of_transposed_convolution_and_instance_norm_is_bound() {
    every_sampled_cell_is_bound("decoder_ops", Some([-16.0, 16.0]), 200);
}

#[test]
fn every_cell_of_convolutions_batch_norm_and_pooling_is_bound() {
    every_sampled_cell_is_bound("conv2d_ops", None, 200);
}

#[test]
fn every_cell_of_the_lookup_functions_is_bound() {
    every_sampled_cell_is_bound("lookup_ops", Some([-4.0, 4.0]), 200);
}
