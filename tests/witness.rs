//! The integer reference execution is bit for bit the witness the circuit checks, and the
//! MockProver accepts it, for each example.

mod common;

use halo2_base::halo2_proofs::dev::MockProver;
use zkinfer::circuit::layout::{build_circuit, choose_shape, Stage};
use zkinfer::model::{import_onnx, load_input, QuantizedModel};
use zkinfer::settings::Settings;

fn settings_for(graph: &zkinfer::model::Graph) -> Settings {
    common::test_settings(graph, None)
}

fn check(model: &std::path::Path, input: &std::path::Path) {
    check_with(model, input, None)
}

fn check_with(model: &std::path::Path, input: &std::path::Path, lookup_range: Option<[f64; 2]>) {
    let graph = import_onnx(model).unwrap();
    let settings = Settings { lookup_range, ..settings_for(&graph) };
    let quantized = QuantizedModel::quantize(&graph, &settings).unwrap();
    let inputs = quantized.quantize_inputs(&load_input(input, &quantized.input_shapes()).unwrap());
    let reference = quantized.execute(&inputs).unwrap();
    let shape = choose_shape(&quantized, None, 8).unwrap();
    let laid = build_circuit(&quantized, &inputs, Stage::Mock { k: shape.k }).unwrap();
    assert_eq!(laid.values.len(), reference.len());
    for (node, (circuit, integer)) in quantized.nodes.iter().zip(laid.values.iter().zip(&reference)) {
        let integer: Vec<i128> = integer.iter().map(|&v| v as i128).collect();
        assert_eq!(circuit, &integer, "node {}", node.name);
    }
    let prover = MockProver::run(shape.k, &laid.circuit, vec![laid.instances.clone()]).unwrap();
    assert!(prover.verify().is_ok());
    // A wrong claimed output is refused.
    let mut wrong = laid.instances.clone();
    *wrong.last_mut().unwrap() += halo2_base::halo2_proofs::halo2curves::bn256::Fr::from(1u64);
    assert!(MockProver::run(shape.k, &laid.circuit, vec![wrong]).unwrap().verify().is_err());
}

#[test]
fn mlp_small_witness_equals_integer_reference() {
    check(&common::example("mlp_small").join("network.onnx"), &common::example("mlp_small").join("input.json"));
}

#[test]
fn mlp_mnist_witness_equals_integer_reference() {
    check(&common::example("mlp_mnist").join("network.onnx"), &common::example("mlp_mnist").join("input.json"));
}

#[test]
fn matmul_add_witness_equals_integer_reference() {
    check(&common::fixture("matmul_add.onnx"), &common::fixture("matmul_add.input.json"));
}

#[test]
fn lookup_functions_witness_equals_integer_reference() {
    // Exp, Softplus, Softsign, Elu, Selu, Pow, Sqrt, Log and Erf, each through its table.
    check_with(&common::fixture("lookup_ops.onnx"), &common::fixture("lookup_ops.input.json"), Some([-4.0, 4.0]));
}

#[test]
fn softmax_reductions_and_division_witness_equals_integer_reference() {
    check_with(&common::fixture("softmax_ops.onnx"), &common::fixture("softmax_ops.input.json"), Some([-8.0, 8.0]));
}

#[test]
fn transposed_convolution_and_instance_norm_witness_equals_integer_reference() {
    check_with(&common::fixture("decoder_ops.onnx"), &common::fixture("decoder_ops.input.json"), Some([-16.0, 16.0]));
}

#[test]
fn new_activations_witness_equals_integer_reference() {
    // HardSigmoid, HardSwish, Celu, Mish, ThresholdedRelu, the trigonometric and hyperbolic
    // functions and their inverses, Round, Floor, Ceil and Sign, each through its table.
    check_with(
        &common::fixture("activation_ops.onnx"),
        &common::fixture("activation_ops.input.json"),
        Some([-4.0, 4.0]),
    );
}

#[test]
fn attention_block_witness_equals_integer_reference() {
    // Batched products of computed tensors, Softmax, LayerNormalization.
    check_with(
        &common::fixture("attention_block.onnx"),
        &common::fixture("attention_block.input.json"),
        Some([-8.0, 8.0]),
    );
}

#[test]
fn group_normalization_witness_equals_integer_reference() {
    check_with(&common::fixture("group_norm.onnx"), &common::fixture("group_norm.input.json"), Some([-8.0, 8.0]));
}

#[test]
fn comparisons_logic_and_where_witness_equals_integer_reference() {
    check(&common::fixture("logic_ops.onnx"), &common::fixture("logic_ops.input.json"));
}

#[test]
fn tree_ensembles_witness_equals_integer_reference() {
    // A random forest and a gradient-boosted model in the GEMM strategy: comparisons against
    // the thresholds, path counts, Equal against the leaves' depths.
    check(&common::fixture("tree_forest.onnx"), &common::fixture("tree_forest.input.json"));
    check(&common::fixture("tree_boosting.onnx"), &common::fixture("tree_boosting.input.json"));
}

mod random_inputs {
    //! The integer reference equals the laid-out circuit's values on random inputs, op family by
    //! op family (each fixture mixes several).
    use super::*;
    use proptest::prelude::*;

    /// Whether the values agree; `Ok(false)` when the input is outside what the model can prove.
    fn agree(name: &str, lookup_range: Option<[f64; 2]>, input: &[f64]) -> Result<bool, TestCaseError> {
        let graph = import_onnx(&common::fixture(&format!("{name}.onnx"))).unwrap();
        let settings = Settings { lookup_range, ..settings_for(&graph) };
        let quantized = QuantizedModel::quantize(&graph, &settings).unwrap();
        let sizes: Vec<usize> = quantized.input_shapes().iter().map(|s| s.iter().product()).collect();
        let inputs: Vec<Vec<f32>> =
            sizes.iter().map(|&n| input.iter().cycle().take(n).map(|&v| v as f32).collect()).collect();
        let inputs = quantized.quantize_inputs(&inputs);
        let Ok(reference) = quantized.execute(&inputs) else { return Ok(false) }; // refused, not proven
        let shape = choose_shape(&quantized, None, 8).unwrap();
        let laid = build_circuit(&quantized, &inputs, Stage::Mock { k: shape.k }).unwrap();
        for (node, (circuit, integer)) in quantized.nodes.iter().zip(laid.values.iter().zip(&reference)) {
            let integer: Vec<i128> = integer.iter().map(|&v| v as i128).collect();
            prop_assert_eq!(circuit, &integer, "node {}", node.name);
        }
        Ok(true)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn the_reference_equals_the_circuit_on_random_inputs(input in proptest::collection::vec(-2.0..2.0f64, 1..40)) {
            let mut compared = 0;
            for (name, range) in [
                ("ops_mix", None),
                ("neg_abs_tile", None),
                ("conv2d_ops", None),
                ("conv1d_ops", None),
                ("matmul_add", None),
                ("lookup_ops", Some([-4.0, 4.0])),
                ("softmax_ops", Some([-8.0, 8.0])),
                ("decoder_ops", Some([-16.0, 16.0])),
                ("activation_ops", Some([-4.0, 4.0])),
                ("attention_block", Some([-8.0, 8.0])),
                ("group_norm", Some([-8.0, 8.0])),
                ("logic_ops", None),
                ("tree_forest", None),
            ] {
                compared += agree(name, range, &input)? as usize;
            }
            prop_assert!(compared >= 10, "only {compared} of 13 fixtures could run this input");
        }
    }
}
