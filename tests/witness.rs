//! The integer reference execution is bit for bit the witness the circuit checks, and the
//! MockProver accepts it, for each example.

mod common;

use halo2_base::halo2_proofs::dev::MockProver;
use zkinfer::circuit::layout::{build_circuit, choose_shape, CircuitShape, LinearGate, ShapeOptions, Stage};
use zkinfer::circuit::linear_gate::LinearGeometry;
use zkinfer::model::{import_onnx, load_input, QuantizedModel};
use zkinfer::settings::{Settings, Visibility};

fn settings_for(graph: &zkinfer::model::Graph) -> Settings {
    common::test_settings(graph, None)
}

fn check(model: &std::path::Path, input: &std::path::Path) {
    check_with(model, input, None)
}

/// [`check_with`] on the fixture `name` (`<name>.onnx`, `<name>.input.json`).
fn check_fixture(name: &str, lookup_range: Option<[f64; 2]>) {
    let (model, input) = (common::fixture(&format!("{name}.onnx")), common::fixture(&format!("{name}.input.json")));
    check_with(&model, &input, lookup_range)
}

/// The model quantized with the test settings, its quantized input and its circuit's shape.
fn prepare(
    model: &std::path::Path,
    input: &std::path::Path,
    lookup_range: Option<[f64; 2]>,
) -> (QuantizedModel, Vec<Vec<i64>>, CircuitShape) {
    let graph = import_onnx(model).unwrap();
    let settings = Settings { lookup_range, ..settings_for(&graph) };
    let quantized = QuantizedModel::quantize(&graph, &settings).unwrap();
    let inputs = quantized.quantize_inputs(&load_input(input, &quantized.input_shapes()).unwrap());
    let shape = choose_shape(&quantized, &ShapeOptions { max_advice_columns: 8, ..Default::default() }).unwrap();
    (quantized, inputs, shape)
}

fn check_with(model: &std::path::Path, input: &std::path::Path, lookup_range: Option<[f64; 2]>) {
    let (quantized, inputs, shape) = prepare(model, input, lookup_range);
    check_shape(&quantized, &inputs, &shape);
    // The linear layers through the linear-layer gate too, whatever compile would choose.
    let gated = choose_shape(
        &quantized,
        &ShapeOptions { max_advice_columns: 8, linear_gate: LinearGate::Geometry(GATE), ..Default::default() },
    )
    .unwrap();
    if gated.linear.is_some() {
        check_shape(&quantized, &inputs, &gated);
    }
    // And with params that are cells (private), whose weights the gate copies into its advice
    // weight columns.
    let mut private = quantized.clone();
    private.visibility.params = Visibility::Private;
    let options = ShapeOptions { max_advice_columns: 8, linear_gate: LinearGate::Geometry(GATE), ..Default::default() };
    let gated = choose_shape(&private, &options).unwrap();
    if let Some(g) = gated.linear {
        assert!(g.advice_weights, "private params take the gate's advice weights");
        check_shape(&private, &inputs, &gated);
    }
}

/// A geometry whose runs do not divide most layers evenly.
const GATE: LinearGeometry = LinearGeometry::new(3, 2);

/// The circuit of `shape` computes the integer reference, and its MockProver accepts the honest
/// witness and refuses a wrong claimed output.
fn check_shape(quantized: &QuantizedModel, inputs: &[Vec<i64>], shape: &CircuitShape) {
    let k = shape.k;
    let reference = quantized.execute(inputs).unwrap();
    let laid = build_circuit(quantized, inputs, Stage::mock(shape)).unwrap();
    assert_eq!(laid.values.len(), reference.len());
    for (node, (circuit, integer)) in quantized.nodes.iter().zip(laid.values.iter().zip(&reference)) {
        let integer: Vec<i128> = integer.iter().map(|&v| v as i128).collect();
        assert_eq!(circuit, &integer, "node {}", node.name);
    }
    let prover = MockProver::run(k, &laid.circuit, vec![laid.instances.clone()]).unwrap();
    assert!(prover.verify().is_ok());
    // A wrong claimed output is refused.
    let mut wrong = laid.instances.clone();
    *wrong.last_mut().unwrap() += halo2_base::halo2_proofs::halo2curves::bn256::Fr::from(1u64);
    assert!(MockProver::run(k, &laid.circuit, vec![wrong]).unwrap().verify().is_err());
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
    check_fixture("matmul_add", None);
}

#[test]
fn lookup_functions_witness_equals_integer_reference() {
    // Exp, Softplus, Softsign, Elu, Selu, Pow, Sqrt, Log and Erf, each through its table.
    check_fixture("lookup_ops", Some([-4.0, 4.0]));
}

#[test]
fn softmax_reductions_and_division_witness_equals_integer_reference() {
    check_fixture("softmax_ops", Some([-8.0, 8.0]));
}

#[test]
fn transposed_convolution_and_instance_norm_witness_equals_integer_reference() {
    check_fixture("decoder_ops", Some([-16.0, 16.0]));
}

#[test]
fn transposed_convolutions_skip_the_products_of_their_spread_zeros() {
    // decoder_ops: ConvTranspose 2→3 (3x3, stride 2, pads 1, output padding 1) on 3x3, an
    // InstanceNormalization (its per-channel scale: one product per element, 3 · 6² = 108), a
    // grouped (3 groups) ConvTranspose 3→3 (2x2, dilation 2) on 6x6, Pad to 300 values, Gemm
    // 300→4. Counted in the scatter form, each input element times each tap that lands in the
    // output: 8 of the 9 (input, tap) pairs per axis land in the first's 6x6 output, so
    // 8² · 2 · 3 = 384; every pair lands in the second's 8x8, 6² · 2² · 3 = 432; the Gemm reads
    // 192 computed inputs, 192 · 4 = 768. As convolutions over the spread inputs (zeros between
    // and around the elements) they would be 1,944, 768 and 1,200. With params that are cells,
    // every product of a computed input goes through the gate (one sum per row: the grouped
    // layer's runs have one output), whatever its weight.
    let (mut quantized, inputs, _) =
        prepare(&common::fixture("decoder_ops.onnx"), &common::fixture("decoder_ops.input.json"), Some([-16.0, 16.0]));
    quantized.visibility.params = Visibility::Private;
    let gate = LinearGate::Geometry(LinearGeometry::new(3, 1));
    let gated = choose_shape(&quantized, &ShapeOptions { linear_gate: gate, ..Default::default() }).unwrap();
    assert_eq!(gated.linear_macs, 384 + 108 + 432 + 768);
    check_shape(&quantized, &inputs, &gated);
}

#[test]
fn new_activations_witness_equals_integer_reference() {
    // HardSigmoid, HardSwish, Celu, Mish, ThresholdedRelu, the trigonometric and hyperbolic
    // functions and their inverses, Round, Floor, Ceil and Sign, each through its table.
    check_fixture("activation_ops", Some([-4.0, 4.0]));
}

#[test]
fn attention_block_witness_equals_integer_reference() {
    // Batched products of computed tensors, Softmax, LayerNormalization.
    check_fixture("attention_block", Some([-8.0, 8.0]));
}

#[test]
fn group_normalization_witness_equals_integer_reference() {
    check_fixture("group_norm", Some([-8.0, 8.0]));
}

#[test]
fn comparisons_logic_and_where_witness_equals_integer_reference() {
    check_fixture("logic_ops", None);
}

#[test]
fn tree_ensembles_witness_equals_integer_reference() {
    // A random forest and a gradient-boosted model in the GEMM strategy: comparisons against
    // the thresholds, path counts, Equal against the leaves' depths.
    check_fixture("tree_forest", None);
    check_fixture("tree_boosting", None);
}

#[test]
fn recurrent_layers_witness_equals_integer_reference() {
    // LSTM forward; GRU bidirectional with linear_before_reset beside a reverse RNN with an
    // initial state: unrolled over their four steps.
    check_fixture("lstm_sequence", Some([-8.0, 8.0]));
    check_fixture("gru_rnn_sequence", Some([-8.0, 8.0]));
}

#[test]
fn a_small_gpt_on_token_ids_witness_equals_integer_reference() {
    // int64 token ids, an embedding lookup, causal attention, GELU, LayerNorm, logits.
    check_fixture("tiny_gpt", Some([-16.0, 16.0]));
}

#[test]
fn embeddings_whose_nodes_share_a_name_each_have_their_own_table() {
    check_fixture("twin_embeddings", None);
}

#[test]
fn an_embedding_lookup_refuses_indices_outside_its_table() {
    let graph = import_onnx(&common::fixture("tiny_gpt.onnx")).unwrap();
    let settings = Settings { lookup_range: Some([-16.0, 16.0]), ..settings_for(&graph) };
    let quantized = QuantizedModel::quantize(&graph, &settings).unwrap();
    for ids in [[3.0, 7.0, 16.0, 0.0], [3.0, 7.0, 1.5, 0.0], [-17.0, 0.0, 0.0, 0.0]] {
        let e = quantized.execute(&quantized.quantize_inputs(&[ids.to_vec()])).unwrap_err().to_string();
        assert!(e.contains("indices must be integers in [-16, 16)"), "{ids:?}: {e}");
    }
    // A negative index counts from the end, as ONNX says.
    let wrapped = quantized.execute(&quantized.quantize_inputs(&[vec![-1.0, 7.0, 1.0, 12.0]])).unwrap();
    let last = quantized.execute(&quantized.quantize_inputs(&[vec![15.0, 7.0, 1.0, 12.0]])).unwrap();
    assert_eq!(wrapped.last(), last.last());
    // Hashed or public params cannot hold the table in the circuit: refused at compile.
    let mut hashed = settings.clone();
    hashed.visibility.params = zkinfer::settings::Visibility::Hashed;
    let e = QuantizedModel::quantize(&graph, &hashed).unwrap_err().to_string();
    assert!(e.contains("needs fixed params"), "{e}");
}

#[test]
fn more_reductions_cumulative_sums_divisions_and_moves_witness_equals_integer_reference() {
    check_fixture("reduction_ops", Some([-32.0, 32.0]));
}

#[test]
fn one_hot_gathers_and_scatters_witness_equals_integer_reference() {
    check_fixture("index_ops", None);
}

#[test]
fn einsum_witness_equals_integer_reference() {
    check_fixture("einsum_ops", None);
}

#[test]
fn resize_nearest_and_linear_witness_equals_integer_reference() {
    check_fixture("resize_ops", None);
}

#[test]
fn top_k_reduce_prod_and_lp_pools_witness_equals_integer_reference() {
    check_fixture("topk_pool_ops", Some([-16.0, 16.0]));
}

#[test]
fn mod_bit_shifts_and_bitwise_ops_witness_equals_integer_reference() {
    check_fixture("integer_ops", None);
}

#[test]
fn arg_max_arg_min_and_hardmax_witness_equals_integer_reference() {
    check_fixture("arg_extremum_ops", None);
    // The old Hardmax fixture (Hardmax between linear layers) too.
    let hardmax = common::fixture("hardmax_mlp.onnx");
    let graph = import_onnx(&hardmax).unwrap();
    let quantized = QuantizedModel::quantize(&graph, &settings_for(&graph)).unwrap();
    let values = quantized.execute(&quantized.quantize_inputs(&[vec![0.3; 8]])).unwrap();
    let hard = quantized.nodes.iter().position(|n| n.name.contains("Hardmax")).unwrap();
    assert_eq!(values[hard].iter().filter(|&&v| v != 0).count(), 1, "one position per row");
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
        let shape = choose_shape(&quantized, &ShapeOptions { max_advice_columns: 8, ..Default::default() }).unwrap();
        let laid = build_circuit(&quantized, &inputs, Stage::mock(&shape)).unwrap();
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
                ("lstm_sequence", Some([-8.0, 8.0])),
                ("gru_rnn_sequence", Some([-8.0, 8.0])),
                ("arg_extremum_ops", None),
                ("reduction_ops", Some([-32.0, 32.0])),
                ("resize_ops", None),
                ("einsum_ops", None),
                ("index_ops", None),
                ("topk_pool_ops", Some([-16.0, 16.0])),
            ] {
                compared += agree(name, range, &input)? as usize;
            }
            // Up to four fixtures may refuse an input as out of range (each refusal is checked, not
            // proven); the others must agree.
            prop_assert!(compared >= 17, "only {compared} of 21 fixtures could run this input");
        }

        /// The integer ops (Mod, BitShift, the bitwise ops) on whole numbers, as integer
        /// tensors hold them.
        #[test]
        fn the_integer_ops_reference_equals_the_circuit_on_random_integers(input in proptest::collection::vec(-30i32..50, 1..12)) {
            let input: Vec<f64> = input.into_iter().map(f64::from).collect();
            prop_assert!(agree("integer_ops", None, &input)?, "whole numbers in range are always proven");
        }
    }
}

/// Every witness cell is constrained, op family by op family: in each fixture's circuit, cells
/// spread over the whole witness (the first, the last and evenly between) are each changed in
/// turn after the honest layout, and the MockProver must then refuse the circuit. A cell no
/// constraint reads would be a value the prover may choose freely.
#[test]
fn a_tampered_witness_cell_fails_in_every_op_family() {
    use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
    use halo2_base::halo2_proofs::plonk::Assigned;
    for (name, range) in [
        ("ops_mix", None),
        ("conv2d_ops", None),
        ("lookup_ops", Some([-4.0, 4.0])),
        ("softmax_ops", Some([-8.0, 8.0])),
        ("decoder_ops", Some([-16.0, 16.0])),
        ("activation_ops", Some([-4.0, 4.0])),
        ("attention_block", Some([-8.0, 8.0])),
        ("group_norm", Some([-8.0, 8.0])),
        ("logic_ops", None),
        ("tree_forest", None),
        ("arg_extremum_ops", None),
        ("reduction_ops", Some([-32.0, 32.0])),
        ("einsum_ops", None),
        ("resize_ops", None),
        ("index_ops", None),
        ("gru_rnn_sequence", Some([-8.0, 8.0])),
        ("tiny_gpt", Some([-16.0, 16.0])),
        ("topk_pool_ops", Some([-16.0, 16.0])),
        ("integer_ops", None),
    ] {
        let (model, input) = (common::fixture(&format!("{name}.onnx")), common::fixture(&format!("{name}.input.json")));
        let (quantized, inputs, shape) = prepare(&model, &input, range);
        let k = shape.k;
        let cells = build_circuit(&quantized, &inputs, Stage::mock(&shape)).unwrap().circuit.base.main(0).advice.len();
        for i in [0, cells / 3, cells / 2, 2 * cells / 3, cells - 1] {
            let mut laid = build_circuit(&quantized, &inputs, Stage::mock(&shape)).unwrap();
            let advice = &mut laid.circuit.base.main(0).advice;
            advice[i] = Assigned::Trivial(advice[i].evaluate() + Fr::from(1u64));
            let prover = MockProver::run(k, &laid.circuit, vec![laid.instances.clone()]).unwrap();
            assert!(
                prover.verify().is_err(),
                "{name}: witness cell {i} of {cells} changed, and the circuit still holds"
            );
        }
    }
}

#[test]
fn commitments_hashed_in_the_poseidon_gate_equal_halo2_bases_and_bind_the_witness() {
    use zkinfer::circuit::layout::PoseidonGate;
    use zkinfer::settings::Visibility;

    let (model, input) = (common::fixture("matmul_add.onnx"), common::fixture("matmul_add.input.json"));
    let graph = import_onnx(&model).unwrap();
    let mut settings = settings_for(&graph);
    settings.visibility.input = Visibility::Hashed;
    settings.visibility.params = Visibility::Hashed;
    settings.visibility.output = Visibility::Hashed;
    let quantized = QuantizedModel::quantize(&graph, &settings).unwrap();
    let inputs = quantized.quantize_inputs(&load_input(&input, &quantized.input_shapes()).unwrap());
    let mut commitments = Vec::new();
    for gate in [PoseidonGate::On, PoseidonGate::Off] {
        let options = ShapeOptions { max_advice_columns: 8, poseidon_gate: gate, ..Default::default() };
        let shape = choose_shape(&quantized, &options).unwrap();
        assert_eq!(shape.poseidon, gate == PoseidonGate::On, "{gate}: {}", shape.reason);
        // The honest witness passes; a wrong output commitment (the last instance) fails.
        check_shape(&quantized, &inputs, &shape);
        commitments.push(build_circuit(&quantized, &inputs, Stage::mock(&shape)).unwrap().instances);
    }
    // Input, model and output commitments (salts are zero outside proving): the same in both.
    assert_eq!(commitments[0].len(), 3);
    assert_eq!(commitments[0], commitments[1]);
}

/// The MNIST MLP's example folder and the model quantized with the test settings as `configure`
/// changes them.
fn mnist_mlp(configure: impl FnOnce(&mut Settings)) -> (std::path::PathBuf, QuantizedModel) {
    let example = common::example("mlp_mnist");
    let graph = import_onnx(&example.join("network.onnx")).unwrap();
    let mut settings = settings_for(&graph);
    configure(&mut settings);
    let quantized = QuantizedModel::quantize(&graph, &settings).unwrap();
    (example, quantized)
}

#[test]
fn a_hashed_input_beside_the_linear_gate_hashes_in_its_region_and_commits_as_off_the_circuit() {
    use zkinfer::circuit::commit::commit_values_salted;
    use zkinfer::settings::Visibility;

    // The MNIST MLP with its input hashed: the sponge's matrices go to the 2x1 gate's region,
    // whose rows of products leave room for them at k = 16, so halo2-base's gate keeps one
    // column (its own permutation would have needed a second: ~57 k cells for 14 permutations).
    // 16-bit activations (as `calibrate` chooses for it): 15 input values a word, 54 words with
    // the salt, 14 permutations.
    let (example, quantized) = mnist_mlp(|s| {
        s.visibility.input = Visibility::Hashed;
        s.activation_bits = 16;
    });
    let inputs =
        quantized.quantize_inputs(&load_input(&example.join("input.json"), &quantized.input_shapes()).unwrap());
    let options = ShapeOptions { linear_gate: LinearGate::Geometry(LinearGeometry::new(2, 1)), ..Default::default() };
    let shape = choose_shape(&quantized, &options).unwrap();
    assert_eq!((shape.k, shape.config.num_advice_per_phase.iter().sum::<usize>()), (16, 1), "{shape:?}");
    // 45,466 rows of the layers' products (the default scales leave some weights zero) and
    // 14,281 of the hash's.
    assert!(shape.linear_rows > 59_000, "the hash is not in the region: {} rows", shape.linear_rows);
    check_shape(&quantized, &inputs, &shape);
    let laid = build_circuit(&quantized, &inputs, Stage::mock(&shape)).unwrap();
    let span = laid.layout.iter().find(|s| s.kind == "input").unwrap();
    let salt = halo2_base::halo2_proofs::halo2curves::bn256::Fr::zero();
    assert_eq!(laid.instances[span.first_instance], commit_values_salted(&inputs[0], quantized.activation_bits, salt));
}

#[test]
fn many_narrow_weights_are_range_checked_and_packed_by_a_table_and_commit_as_off_the_circuit() {
    use zkinfer::circuit::commit::commit_params;
    use zkinfer::settings::Visibility;

    // The MNIST MLP's 101,770 params, hashed, with public input and output (too many instances
    // for a direct verifier): its weights, narrow and many, go through a table of their width;
    // the model commitment is the off-circuit one, and a wrong one fails.
    let (example, quantized) = mnist_mlp(|s| {
        s.visibility.input = Visibility::Public;
        s.visibility.params = Visibility::Hashed;
        s.visibility.output = Visibility::Public;
    });
    let inputs =
        quantized.quantize_inputs(&load_input(&example.join("input.json"), &quantized.input_shapes()).unwrap());
    let shape = choose_shape(&quantized, &ShapeOptions::default()).unwrap();
    assert!(shape.table_rows > 0 && shape.lookup_sets > 0, "no range table: {shape:?}");
    // Only the gate-less circuit at k = 20 has a direct verifier that fits, at about four times the
    // proving cost of the gated ones: compile chooses as when none fits, weighing smaller k with
    // more columns too (the narrow geometry takes at most the default four of halo2-base's columns).
    assert!(shape.reason.contains("costs over 2x as much to prove"), "{}", shape.reason);
    assert!(shape.reason.contains("verify through `zkinfer aggregate`"), "{}", shape.reason);
    let columns: usize = shape.config.num_advice_per_phase.iter().sum();
    assert!(columns > zkinfer::settings::DEFAULT_MAX_ADVICE_COLUMNS, "{columns} columns at k = {}", shape.k);
    check_shape(&quantized, &inputs, &shape);
    let laid = build_circuit(&quantized, &inputs, Stage::mock(&shape)).unwrap();
    let span = laid.layout.iter().find(|s| s.kind == "params").unwrap();
    assert_eq!(laid.instances[span.first_instance], commit_params(&quantized));
    // A wrong model commitment fails.
    let mut wrong = laid.instances.clone();
    wrong[span.first_instance] += halo2_base::halo2_proofs::halo2curves::bn256::Fr::from(1u64);
    assert!(MockProver::run(shape.k, &laid.circuit, vec![wrong]).unwrap().verify().is_err());
}

#[test]
fn the_default_gas_budget_grows_with_the_proving_cost_a_faster_geometry_saves() {
    use zkinfer::circuit::layout::GAS_PER_COST_SAVED;

    // The LeNet-like CNN with its input hashed: the verifier without the gates is cheap (the hash
    // is in halo2-base's gate), and 10% over it keeps a gate at k = 18; a wider gate one k smaller
    // saves about a million of estimated cost for more gas than that budget, and the budget's
    // growth with the cost saved takes it. A budget in the settings is a hard one.
    let example = common::example("lenet_like");
    let graph = import_onnx(&example.join("network.onnx")).unwrap();
    let mut settings = settings_for(&graph);
    settings.visibility.input = Visibility::Hashed;
    let quantized = QuantizedModel::quantize(&graph, &settings).unwrap();
    let auto = choose_shape(&quantized, &ShapeOptions::default()).unwrap();
    let reason = &auto.reason;
    assert!(reason.contains("gas per unit of proving cost saved against the cheapest within it"), "{reason}");
    let budget = reason.split("fits EIP-170 and ").nth(1).and_then(|r| r.split(' ').next()).unwrap();
    let budget: u64 = budget.parse().unwrap();
    assert!(auto.verifier_gas > budget, "{reason}");
    let hard = choose_shape(&quantized, &ShapeOptions { max_gas: Some(budget), ..Default::default() }).unwrap();
    assert!(hard.verifier_gas <= budget, "{}", hard.reason);
    assert!(!hard.reason.contains("per unit of proving cost"), "{}", hard.reason);
    // The growth: over the budget by at most the allowance for the cost saved against the
    // cheapest within it (the hard budget's choice).
    let saved = hard.cost() - auto.cost();
    assert!(saved > 5e5, "{saved:e}: {reason}");
    assert!((auto.verifier_gas - budget) as f64 <= GAS_PER_COST_SAVED * saved, "{reason}");
}

#[test]
fn compile_sizes_halo2_bases_columns_as_halo2_base_does() {
    use zkinfer::circuit::layout::{distinct_constants, zero_inputs, BLINDING_ROWS};

    // `compile` counts the distinct constants with a hash set instead of halo2-base's sort: the
    // same count and the same columns, with fixed weights (constants) and without the gate.
    for name in ["mlp_small", "cnn_small"] {
        let example = common::example(name);
        let graph = import_onnx(&example.join("network.onnx")).unwrap();
        let quantized = QuantizedModel::quantize(&graph, &settings_for(&graph)).unwrap();
        let options = ShapeOptions { linear_gate: LinearGate::Off, ..Default::default() };
        let shape = choose_shape(&quantized, &options).unwrap();
        let stage = Stage::Keygen { k: shape.k, gates: shape.gates() };
        let laid = build_circuit(&quantized, &zero_inputs(&quantized), stage).unwrap();
        let ours = format!("{:?}", laid.circuit.base.config_params);
        let mut builder = laid.circuit.base.clone();
        let theirs = builder.calculate_params(Some(BLINDING_ROWS));
        assert_eq!(ours, format!("{theirs:?}"), "{name}");
        let constants = distinct_constants(&laid.circuit.base);
        assert!(constants > 10, "{name}: {constants}");
        assert_eq!(constants, laid.circuit.base.statistics().gate.total_fixed, "{name}");
    }
}

#[test]
fn runs_past_the_linear_region_at_a_smaller_k_are_proven_in_halo2_bases_gate() {
    // The 16→32→8 MLP through the 2x1 gate, at its natural k and a smaller one, where the region
    // holds only the first runs and the rest go to halo2-base's inner products: the witness is
    // still the integer reference and a wrong output is refused, for fixed weights and for
    // weights in the region's advice columns.
    let example = common::example("mlp_small");
    let (quantized, inputs, _) = prepare(&example.join("network.onnx"), &example.join("input.json"), None);
    let mut private = quantized.clone();
    private.visibility.params = Visibility::Private;
    for model in [&quantized, &private] {
        let gate = LinearGate::Geometry(LinearGeometry::new(2, 1));
        let options = ShapeOptions { max_advice_columns: 8, linear_gate: gate, ..Default::default() };
        let natural = choose_shape(model, &options).unwrap();
        assert_eq!(natural.linear_overflow_rows, 0, "{natural:?}");
        let usable = zkinfer::circuit::layout::usable_rows;
        let k = (4..natural.k).rev().find(|&k| usable(k) < natural.linear_rows).unwrap();
        let smaller = choose_shape(model, &ShapeOptions { k: Some(k), ..options }).unwrap();
        assert!(smaller.linear_rows > 0 && smaller.linear_overflow_rows > 0, "{smaller:?}");
        // Every run is somewhere, and the region holds what its rows allow.
        assert_eq!(smaller.linear_demand(), natural.linear_rows);
        assert!(smaller.linear_rows <= usable(k));
        assert!(smaller.linear_macs < natural.linear_macs);
        check_shape(model, &inputs, &smaller);
    }
}

#[test]
fn compile_proves_the_mnist_mlp_one_k_smaller_with_the_region_overflowing_into_halo2_base() {
    // The MNIST MLP (public input and output, fixed params, 16-bit activations as `calibrate`
    // chooses): its 3x1 region wants 33,845 rows, just over k = 15's; compile takes k = 15 with
    // the last runs in halo2-base's one column over the 2x1 gate at k = 16 (measured: 2.5 s
    // against 4.8 s, within the gas budget).
    let (_, quantized) = mnist_mlp(|s| {
        s.visibility.input = Visibility::Public;
        (s.activation_bits, s.input_scale, s.param_scale) = (16, 12, 12);
    });
    let shape = choose_shape(&quantized, &ShapeOptions::default()).unwrap();
    assert_eq!(shape.linear, Some(LinearGeometry::new(3, 1)), "{}", shape.reason);
    assert_eq!(shape.k, 15, "{}", shape.reason);
    assert!(shape.linear_overflow_rows > 0, "{shape:?}");
    assert_eq!(shape.config.num_advice_per_phase.iter().sum::<usize>(), 1, "{shape:?}");
}
