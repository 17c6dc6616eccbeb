//! The pipeline as a user runs it: `zkinfer run` on the examples, then the proof checked natively,
//! in the in-process EVM and on anvil, and tampered proofs and public inputs rejected everywhere.

mod common;

use std::path::Path;

use common::*;

fn flat(values: &serde_json::Value) -> Vec<f64> {
    values.as_array().unwrap().iter().flat_map(|o| o.as_array().unwrap().iter().map(|v| v.as_f64().unwrap())).collect()
}

/// Runs the pipeline and checks every artifact, the report, and the rejection of tampered
/// proofs and public instances natively, on revm and on anvil.
fn check_example(model: &Path, input: &Path, error_bound: f64) -> serde_json::Value {
    check_example_with(model, input, error_bound, &[])
}

/// [`check_example`] with extra settings options for `zkinfer run`; returns the run's report.
fn check_example_with(model: &Path, input: &Path, error_bound: f64, options: &[&str]) -> serde_json::Value {
    let dir = run_pipeline_with(model, input, options);
    let work = dir.path().join("out");
    for artifact in [
        "network.onnx",
        "input.json",
        "settings.json",
        "model.compiled",
        "pk.bin",
        "vk.bin",
        "witness.json",
        "proof.json",
        "Verifier.sol",
        "Verifier.json",
        "report.json",
    ] {
        assert!(work.join(artifact).is_file(), "{artifact} missing");
    }
    let report = json(&work.join("report.json"));
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["evm_verified"], true, "{report}");
    assert!(report["evm_gas"].as_u64().unwrap() > 100_000, "{report}");
    assert!(report["k"].as_u64().unwrap() >= 10);
    // compile's estimate of the verifier (it chooses the geometry by it) is close to the real one.
    let shape = &json(&work.join("model.compiled"))["shape"];
    let close = |estimate: &serde_json::Value, real: &serde_json::Value, tolerance: f64| {
        let (estimate, real) = (estimate.as_f64().unwrap(), real.as_f64().unwrap());
        (estimate - real).abs() <= tolerance * real
    };
    assert!(close(&shape["verifier_bytes"], &report["verifier_runtime_bytes"], 0.015), "size: {shape} {report}");
    assert!(close(&shape["verifier_gas"], &report["evm_gas"], 0.05), "gas: {shape} {report}");
    assert!(report["proof_bytes"].as_u64().unwrap() > 0);
    if report["reference_outputs"].is_null() {
        // tract cannot run the model: the report says why, and the caller compares the outputs
        // with onnxruntime's.
        assert!(report["reference_unavailable"].as_str().unwrap().contains("tract"), "{report}");
        assert!(report["max_abs_error"].is_null(), "{report}");
    } else {
        let (outputs, reference) = (flat(&report["outputs"]), flat(&report["reference_outputs"]));
        assert_eq!(outputs.len(), reference.len());
        let max_error = outputs.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!((max_error - report["max_abs_error"].as_f64().unwrap()).abs() < 1e-6, "{report}");
        assert!(max_error <= error_bound, "error {max_error} over {error_bound}: {report}");
    }

    let proof = json(&work.join("proof.json"));
    assert!(proof["proof"].as_str().unwrap().starts_with("0x"));
    let instances = proof["instances"][0].as_array().unwrap().len();
    assert_eq!(instances as u64, report["num_instances"].as_u64().unwrap());
    ok(&work, &["verify"]);

    let anvil = zkinfer::evm::anvil::spawn_anvil().expect("anvil starts");
    let url = anvil.endpoint();
    let on_anvil = ok(&work, &["verify-evm", "--rpc-url", &url]);
    assert!(on_anvil.contains("verified on"), "{on_anvil}");
    for position in [0.0, 0.1, 0.37, 0.5, 0.81, 1.0] {
        assert_rejected(&work, &tamper_proof_bytes(&proof, position), Some(&url), &format!("proof byte at {position}"));
    }
    // The first instance is an input, the last an output.
    assert_rejected(&work, &tamper_instance(&proof, 0), Some(&url), "wrong public input");
    assert_rejected(&work, &tamper_instance(&proof, instances - 1), Some(&url), "wrong public output");
    report
}

#[test]
fn mlp_16_32_8_proves_and_verifies_natively_on_revm_and_on_anvil() {
    check_example(&example("mlp_small").join("network.onnx"), &example("mlp_small").join("input.json"), 0.02);
}

#[test]
fn mlp_784_128_10_proves_and_verifies_natively_on_revm_and_on_anvil() {
    check_example(&example("mlp_mnist").join("network.onnx"), &example("mlp_mnist").join("input.json"), 0.05);
}

#[test]
fn matmul_add_reshape_model_proves_and_verifies() {
    check_example(&fixture("matmul_add.onnx"), &fixture("matmul_add.input.json"), 0.02);
}

#[test]
fn sigmoid_mlp_proves_and_verifies() {
    // Sigmoid outputs have a resolution of 2^-7: the error bound is half a step plus the
    // second layer's rounding.
    check_example(&fixture("sigmoid_mlp.onnx"), &fixture("sigmoid_mlp.input.json"), 0.03);
}

#[test]
fn tanh_mlp_proves_and_verifies() {
    check_example(&fixture("tanh_mlp.onnx"), &fixture("tanh_mlp.input.json"), 0.03);
}

#[test]
fn arithmetic_comparisons_reductions_and_data_movement_prove_and_verify() {
    // Transpose, Slice, Pad, Sub, Mul and Div by constants, Mul of two tensors, Clip, LeakyRelu,
    // Max, Min, ReduceMean, ReduceSum, Gather, Squeeze, Unsqueeze, the Shape/Gather/Concat
    // chain of a PyTorch flatten, Concat, Split, Tanh, PRelu and Sum.
    check_example(&fixture("ops_mix.onnx"), &fixture("ops_mix.input.json"), 0.03);
}

#[test]
fn neg_abs_and_tile_prove_and_verify() {
    check_example(&fixture("neg_abs_tile.onnx"), &fixture("neg_abs_tile.input.json"), 0.03);
}

#[test]
fn functions_proven_by_table_lookup_prove_and_verify() {
    // Exp, Softplus, Softsign, Elu, Selu, Pow, Sqrt, Log, Erf and an Erf-based GELU.
    check_example_with(
        &fixture("lookup_ops.onnx"),
        &fixture("lookup_ops.input.json"),
        0.03,
        &["--lookup-range", "-4,4"],
    );
}

#[test]
fn softmax_log_softmax_reduce_max_and_division_prove_and_verify() {
    check_example_with(
        &fixture("softmax_ops.onnx"),
        &fixture("softmax_ops.input.json"),
        0.03,
        &["--lookup-range", "-8,8"],
    );
}

#[test]
fn hard_smooth_trigonometric_and_rounding_activations_prove_and_verify() {
    // Each of the 19 tables is within 0.012 of its function at the default scale (Cosh's slope
    // is the largest); the last layer sums 114 of them.
    check_example_with(
        &fixture("activation_ops.onnx"),
        &fixture("activation_ops.input.json"),
        0.1,
        &["--lookup-range", "-4,4"],
    );
}

#[test]
fn a_self_attention_block_with_layer_normalization_proves_and_verifies() {
    // Two heads: batched MatMul of computed q and k, Softmax, batched MatMul by v, a residual,
    // LayerNormalization.
    check_example_with(
        &fixture("attention_block.onnx"),
        &fixture("attention_block.input.json"),
        0.05,
        &["--lookup-range", "-8,8"],
    );
}

#[test]
fn comparisons_logic_and_where_prove_and_verify() {
    // No comparison flips at this input (each has a margin of 0.05); the error is the last
    // layer's: 72 inputs, most of them the exact 0 and 1 of booleans, by 7-bit weights.
    check_example(&fixture("logic_ops.onnx"), &fixture("logic_ops.input.json"), 0.06);
}

#[test]
fn more_reductions_cumulative_sums_divisions_and_moves_prove_and_verify() {
    // The largest output (a sum of 16 squares, 14.3) is off by 0.11 at the default 7 bits
    // (0.0015 at 12 bits, measured).
    check_example_with(
        &fixture("reduction_ops.onnx"),
        &fixture("reduction_ops.input.json"),
        0.15,
        &["--lookup-range", "-32,32"],
    );
}

#[test]
fn one_hot_gathers_and_scatters_prove_and_verify() {
    check_example(&fixture("index_ops.onnx"), &fixture("index_ops.input.json"), 0.05);
}

#[test]
fn einsum_of_computed_tensors_proves_and_verifies() {
    // Outputs up to 3.3 through two products of computed tensors: 0.10 at the default 7 bits
    // (0.0007 at 12 bits, measured).
    check_example(&fixture("einsum_ops.onnx"), &fixture("einsum_ops.input.json"), 0.15);
}

#[test]
fn resize_nearest_and_linear_prove_and_verify() {
    // PyTorch's nn.Upsample exports: nearest by scales, bilinear (half_pixel, align_corners).
    // The last layer sums 250 resized values: 0.048 at the default 7 bits (0.0016 at 12).
    check_example(&fixture("resize_ops.onnx"), &fixture("resize_ops.input.json"), 0.07);
}

#[test]
fn top_k_reduce_prod_and_lp_pools_prove_and_verify() {
    // tract has no LpPool: the run reports no float reference, and the proven outputs are
    // checked against onnxruntime's, which make_op_fixtures.py stored.
    let report = check_example_with(
        &fixture("topk_pool_ops.onnx"),
        &fixture("topk_pool_ops.input.json"),
        0.0,
        &["--lookup-range", "-16,16"],
    );
    let expected = flat(&json(&fixture("topk_pool_ops.expected.json"))["output_data"]);
    let proven = flat(&report["outputs"]);
    assert_eq!(proven.len(), expected.len());
    let error = proven.iter().zip(&expected).map(|(p, e)| (p - e).abs()).fold(0.0, f64::max);
    // 0.011 at the default 7 bits (measured).
    assert!(error <= 0.03, "error {error}: proven {proven:?}, onnxruntime {expected:?}");
    // The top 3 positions are integers, exactly as onnxruntime finds them.
    assert_eq!(&proven[3..6], &expected[3..6]);
}

#[test]
fn mod_bit_shifts_and_bitwise_ops_prove_and_verify() {
    // int64 and uint32 inputs: every output is an integer, proven exactly.
    let report = check_example(&fixture("integer_ops.onnx"), &fixture("integer_ops.input.json"), 0.0);
    assert_eq!(report["max_abs_error"], 0.0, "{report}");
}

#[test]
fn arg_max_arg_min_and_hardmax_prove_and_verify() {
    check_example(&fixture("arg_extremum_ops.onnx"), &fixture("arg_extremum_ops.input.json"), 0.03);
}

#[test]
fn tree_ensembles_from_scikit_learn_prove_and_verify() {
    // A random forest classifier (class probabilities) and a gradient-boosted regressor trained
    // on a credit-scoring task, compiled to the GEMM strategy (hummingbird-ml's).
    check_example(&fixture("tree_forest.onnx"), &fixture("tree_forest.input.json"), 0.02);
    check_example(&fixture("tree_boosting.onnx"), &fixture("tree_boosting.input.json"), 0.02);
}

#[test]
fn recurrent_layers_prove_and_verify() {
    // LSTM, a bidirectional GRU (linear_before_reset) and a reverse RNN with an initial state.
    check_example_with(
        &fixture("lstm_sequence.onnx"),
        &fixture("lstm_sequence.input.json"),
        0.03,
        &["--lookup-range", "-8,8"],
    );
    // tract (the float reference of `run`) computes this GRU and RNN otherwise than
    // onnxruntime, the ONNX reference, does: the proven outputs are checked against
    // onnxruntime's, which make_op_fixtures.py stored.
    let report = check_example_with(
        &fixture("gru_rnn_sequence.onnx"),
        &fixture("gru_rnn_sequence.input.json"),
        1.0,
        &["--lookup-range", "-8,8"],
    );
    let expected = flat(&json(&fixture("gru_rnn_sequence.expected.json"))["output_data"]);
    let proven = flat(&report["outputs"]);
    assert_eq!(proven.len(), expected.len());
    for (p, e) in proven.iter().zip(&expected) {
        assert!((p - e).abs() <= 0.03, "proven {proven:?}, onnxruntime {expected:?}");
    }
}

#[test]
fn a_small_gpt_on_token_ids_proves_and_verifies() {
    // int64 token ids in, logits out: an embedding lookup, causal self-attention, a GELU MLP,
    // LayerNorms.
    check_example_with(&fixture("tiny_gpt.onnx"), &fixture("tiny_gpt.input.json"), 0.1, &["--lookup-range", "-16,16"]);
}

#[test]
fn a_batch_taken_from_the_data_and_a_graph_without_inputs_prove_and_verify() {
    // [batch, 4] with three samples in input.json: the batch is 3.
    check_example(&fixture("batch_mlp.onnx"), &fixture("batch_mlp.input.json"), 0.03);
    let report = json(
        &run_pipeline(&fixture("batch_mlp.onnx"), &fixture("batch_mlp.input.json")).path().join("out/report.json"),
    );
    assert_eq!(flat(&report["outputs"]).len(), 9, "{report}");
    // No input at all: the constant output is proven as itself.
    check_example(&fixture("constants_only.onnx"), &fixture("constants_only.input.json"), 0.02);
}

#[test]
fn group_normalization_proves_and_verifies() {
    check_example_with(
        &fixture("group_norm.onnx"),
        &fixture("group_norm.input.json"),
        0.05,
        &["--lookup-range", "-8,8"],
    );
}

#[test]
fn transposed_convolutions_and_instance_normalization_prove_and_verify() {
    check_example(&fixture("decoder_ops.onnx"), &fixture("decoder_ops.input.json"), 0.03);
}

#[test]
fn small_cnn_proves_and_verifies() {
    check_example(&example("cnn_small").join("network.onnx"), &example("cnn_small").join("input.json"), 0.03);
}

#[test]
fn a_linear_gate_of_two_sums_per_row_proves_and_verifies_natively_and_on_the_evm() {
    // compile keeps this small CNN in one column without the gate; asked for a 2x2 gate, its
    // convolution and Gemm go through the gate (two running sums per row), and the proof is checked
    // natively and on anvil, tampered proofs and instances rejected.
    let report = check_example_with(
        &example("cnn_small").join("network.onnx"),
        &example("cnn_small").join("input.json"),
        0.03,
        &["--linear-gate", "2x2"],
    );
    assert_eq!(report["linear_gate"], "2x2", "{report}");
    let (cells, macs) = (report["linear_cells"].as_f64().unwrap(), report["linear_macs"].as_f64().unwrap());
    assert!(macs > 1000.0 && cells / macs <= 1.25, "{report}");
}

#[test]
fn lenet_like_cnn_proves_and_verifies() {
    check_example(&example("lenet_like").join("network.onnx"), &example("lenet_like").join("input.json"), 0.03);
}

#[test]
fn conv2d_geometry_batchnorm_and_pooling_prove_and_verify() {
    // Strides, pads, dilations, grouped and depthwise convolutions, BatchNormalization (folded
    // and standalone), max and average pooling with padding, global max pooling.
    check_example(&fixture("conv2d_ops.onnx"), &fixture("conv2d_ops.input.json"), 0.03);
}

#[test]
fn conv1d_and_average_pooling_prove_and_verify() {
    check_example(&fixture("conv1d_ops.onnx"), &fixture("conv1d_ops.input.json"), 0.03);
}

/// `cargo install` then `zkinfer demo` anywhere: the binary, copied out of the build tree, runs
/// the demo from a folder outside the checkout (the model is compiled in; the EVM toolchain
/// comes from the per-user cache).
#[test]
fn demo_runs_from_an_installed_binary_in_any_folder() {
    let dir = tempfile::tempdir().unwrap();
    let installed = dir.path().join("bin").join("zkinfer");
    std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_zkinfer"), &installed).unwrap();
    let work = dir.path().join("elsewhere");
    std::fs::create_dir_all(&work).unwrap();
    let out = std::process::Command::new(&installed)
        .args(["demo", "--dir", "demo"])
        .current_dir(&work)
        .env_remove("ZKINFER_TOOLCHAIN_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("native OK"), "{stdout}");
    assert!(stdout.contains("EVM (in-process revm): OK"), "{stdout}");
    assert!(work.join("demo/report.json").is_file());
    assert!(work.join("demo/network.onnx").is_file(), "the embedded model is written beside its outputs");
}

#[test]
fn each_stage_runs_as_its_own_command() {
    let dir = mlp_small_workdir();
    let w = dir.path();
    ok(w, &["gen-settings", "--input-scale", "8", "--param-scale", "8"]);
    assert_eq!(json(&w.join("settings.json"))["input_scale"], 8);
    ok(w, &["compile"]);
    ok(w, &["setup"]);
    ok(w, &["prove"]);
    assert!(ok(w, &["verify"]).contains("verified"));
    ok(w, &["create-evm-verifier"]);
    assert!(w.join("Verifier.json").is_file());
    assert!(ok(w, &["verify-evm"]).contains("gas used"));
    assert!(ok(w, &["verify-evm", "--anvil"]).contains("verified on http://127.0.0.1"));
}

#[test]
fn a_verifier_gas_budget_from_gen_settings_lets_compile_take_a_faster_geometry() {
    // The MNIST MLP: within the default budget (10% over the gate-less circuit's ~424 k gas)
    // compile takes the 3x1 linear gate at k = 15 (~466 k, the least proving work of those whose
    // verifier fits EIP-170); allowed 450 k gas, the 2x1 gate at k = 16 (~433 k); allowed less
    // than any gate needs, no gate at all.
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    let model = example("mlp_mnist").join("network.onnx");
    let model = model.to_str().unwrap();
    let geometry = |budget: Option<&str>| {
        let mut args = vec!["gen-settings", "-M", model];
        if let Some(gas) = budget {
            args.extend(["--max-verifier-gas", gas]);
        }
        ok(w, &args);
        let settings = json(&w.join("settings.json"));
        assert_eq!(
            settings["max_verifier_gas"],
            budget.map_or(serde_json::Value::Null, |g| g.parse::<u64>().unwrap().into())
        );
        let printed = ok(w, &["compile", "-M", model]);
        let shape = &json(&w.join("model.compiled"))["shape"];
        let gate = shape["linear"].as_object().map(|g| format!("{}x{}", g["inputs"], g["outputs"]));
        (gate, shape["k"].as_u64().unwrap(), printed)
    };
    let (gate, k, printed) = geometry(None);
    assert_eq!((gate.as_deref(), k), (Some("3x1"), 15), "{printed}");
    let (gate, k, printed) = geometry(Some("450000"));
    assert_eq!((gate.as_deref(), k), (Some("2x1"), 16), "{printed}");
    assert!(printed.contains("fits EIP-170 and 450000 gas"), "{printed}");
    let (gate, _, printed) = geometry(Some("425000"));
    assert_eq!(gate, None, "{printed}");
}

#[test]
fn of_two_geometries_with_equal_proving_estimates_compile_takes_the_cheaper_verifier() {
    // The LeNet-like CNN. By default: the 2x1 linear gate one k smaller than its region needs
    // (k = 17, the rest in halo2-base's gate), whose straight-line verifier (~24.45 KB) would pass
    // EIP-170's margin: its Lagrange rows are rendered in a loop (~20 KB). At k = 18: four
    // columns of halo2-base's gate, or one and the 2x1 gate, are as many columns, the same
    // estimate; the gate's verifier costs ~26 k gas less (and it proved in 17.7 s against
    // 19.6 s here).
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    let model = example("lenet_like").join("network.onnx");
    let model = model.to_str().unwrap();
    let compile = |args: &[&str]| {
        ok(w, &[&["gen-settings", "-M", model], args].concat());
        let printed = ok(w, &["compile", "-M", model]);
        let shape = json(&w.join("model.compiled"))["shape"].clone();
        assert_eq!((&shape["linear"]["inputs"], &shape["linear"]["outputs"]), (&2.into(), &1.into()), "{printed}");
        (shape, printed)
    };
    let (shape, printed) = compile(&[]);
    assert_eq!(shape["k"], 17, "{printed}");
    assert!(shape["linear_overflow_rows"].as_u64().unwrap() > 0, "{printed}");
    let (shape, printed) = compile(&["--logrows", "18"]);
    assert_eq!(shape["k"], 18, "{printed}");
    let cost = |label: &str| {
        let at = printed.find(&format!("{label}: k = 18, cost ")).unwrap_or_else(|| panic!("{printed}"));
        printed[at..].split(", ").nth(1).unwrap().to_string()
    };
    assert_eq!(cost("no linear gate"), cost("linear gate 2x1"), "{printed}");
}

#[test]
fn an_srs_file_is_downsized_and_must_be_given_again_to_prove_and_verify() {
    let dir = mlp_small_workdir();
    let w = dir.path();
    // A parameter file larger than the circuit needs (k = 15 for a k = 12 circuit).
    ok(w, &["gen-srs", "--logrows", "15", "--srs-path", "params.srs"]);
    ok(w, &["gen-settings"]);
    let compiled = ok(w, &["compile"]);
    assert!(compiled.contains("k = 12, ") && compiled.contains("in 1 column(s)"), "{compiled}");
    let setup = ok(w, &["setup", "--srs", "params.srs"]);
    assert!(setup.contains("params.srs"), "{setup}");
    let e = fails(w, &["prove"]);
    assert!(e.contains("pass it with --srs"), "{e}");
    ok(w, &["prove", "--srs", "params.srs"]);
    ok(w, &["verify", "--srs", "params.srs"]);
    assert_eq!(json(&w.join("proof.json"))["insecure_srs"], false);
    // A file too small for the circuit is refused.
    ok(w, &["gen-srs", "--logrows", "8", "--srs-path", "small.srs"]);
    let e = fails(w, &["setup", "--srs", "small.srs"]);
    assert!(e.contains("needs k = 12"), "{e}");
}
