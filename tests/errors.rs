//! Bad input gets one clear error and a non-zero exit, never a panic.

mod common;

use common::*;

#[test]
fn a_missing_model_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let e = fails(dir.path(), &["gen-settings", "-M", "nowhere.onnx"]);
    assert!(e.contains("nowhere.onnx") && e.contains("cannot read"), "{e}");
}

#[test]
fn a_malformed_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("network.onnx"), b"this is not protobuf \xff\xfe\x00\x01 at all").unwrap();
    let e = fails(dir.path(), &["gen-settings"]);
    assert!(e.contains("not a valid ONNX model"), "{e}");
}

#[test]
fn a_model_the_float_reference_cannot_run_is_proven_and_reported_without_its_error() {
    // tract panics on a negative GatherND index; zkinfer proves and verifies the model, then
    // reports that the float reference failed, without crashing.
    let dir = work_with(&[
        (&fixture("gather_nd_negative.onnx"), "network.onnx"),
        (&fixture("gather_nd_negative.input.json"), "input.json"),
    ]);
    let out = zkinfer(dir.path(), &["run", "-M", "network.onnx", "-D", "input.json", "--dir", "out"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "the proof stands without the reference: {stderr}");
    assert!(stderr.contains("tract, the float reference, cannot run") && stderr.contains("onnxruntime"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("compare the outputs with onnxruntime"));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/report.json")).unwrap()).unwrap();
    assert_eq!(report["verified"], true, "{report}");
    assert!(report["max_abs_error"].is_null() && report["reference_outputs"].is_null(), "{report}");
    assert!(report["reference_unavailable"].as_str().unwrap().contains("GatherND"), "{report}");
}

#[test]
fn an_unsupported_operator_is_named_with_its_node() {
    let dir = work_with(&[(&fixture("shrink_mlp.onnx"), "network.onnx")]);
    let e = fails(dir.path(), &["gen-settings"]);
    assert!(e.contains("/act0/Shrink") && e.contains("Shrink") && e.contains("does not support"), "{e}");
    // The refusal lists what is supported, from the import table; `zkinfer ops` says how much.
    assert!(e.contains("supported: Gemm, MatMul") && e.contains("LSTM") && e.contains("Hardmax"), "{e}");
    let ops = ok(dir.path(), &["ops"]);
    assert!(
        ops.lines().count() > 100 && ops.contains("Gather (constant indices;") && ops.contains("\nLSTM ("),
        "{ops}"
    );
}

fn prepared() -> tempfile::TempDir {
    let dir = mlp_small_workdir();
    for stage in [&["gen-settings"][..], &["compile"], &["setup"]] {
        ok(dir.path(), stage);
    }
    dir
}

#[test]
fn bad_input_data_is_explained() {
    let dir = prepared();
    let w = dir.path();
    std::fs::write(w.join("short.json"), r#"{"input_data": [[0.1, 0.2]]}"#).unwrap();
    let e = fails(w, &["prove", "-D", "short.json"]);
    assert!(e.contains("2 value(s)") && e.contains("expects 16"), "{e}");
    std::fs::write(w.join("text.json"), r#"{"input_data": [["a", 0.2]]}"#).unwrap();
    let e = fails(w, &["prove", "-D", "text.json"]);
    assert!(e.contains("expected a number"), "{e}");
    std::fs::write(w.join("shape.json"), r#"{"data": [1]}"#).unwrap();
    let e = fails(w, &["prove", "-D", "shape.json"]);
    assert!(e.contains("input_data"), "{e}");
    std::fs::write(w.join("broken.json"), "{").unwrap();
    let e = fails(w, &["prove", "-D", "broken.json"]);
    assert!(e.contains("not valid JSON"), "{e}");
    let e = fails(w, &["prove", "-D", "missing.json"]);
    assert!(e.contains("missing.json"), "{e}");
}

#[test]
fn a_value_outside_the_circuit_range_is_refused_before_proving() {
    let dir = prepared();
    let w = dir.path();
    let values: Vec<f64> = (0..16).map(|i| if i == 3 { 1.0e6 } else { 0.1 }).collect();
    std::fs::write(w.join("huge.json"), serde_json::json!({ "input_data": [values] }).to_string()).unwrap();
    let e = fails(w, &["prove", "-D", "huge.json"]);
    assert!(e.contains("does not fit the circuit's range") && e.contains("input"), "{e}");
    assert!(!w.join("proof.json").exists());
}

#[test]
fn keys_and_proofs_of_another_circuit_or_version_are_refused() {
    let a = prepared();
    ok(a.path(), &["prove"]);
    // Another circuit: the same model at another scale.
    let b = mlp_small_workdir();
    ok(b.path(), &["gen-settings", "--input-scale", "6"]);
    ok(b.path(), &["compile"]);
    ok(b.path(), &["setup"]);
    let other_vk = b.path().join("vk.bin");
    let e = fails(a.path(), &["verify", "--vk", other_vk.to_str().unwrap()]);
    assert!(e.contains("another circuit"), "{e}");
    let other_pk = b.path().join("pk.bin");
    let e = fails(a.path(), &["prove", "--pk", other_pk.to_str().unwrap()]);
    assert!(e.contains("another circuit"), "{e}");

    // Another version of the proof format.
    let mut proof = json(&a.path().join("proof.json"));
    proof["format_version"] = serde_json::json!(99);
    write_json(&a.path().join("old-proof.json"), &proof);
    let e = fails(a.path(), &["verify", "--proof", "old-proof.json"]);
    assert!(e.contains("format 99"), "{e}");

    // Another version of the key format: patch the header.
    let vk = std::fs::read(a.path().join("vk.bin")).unwrap();
    let needle = b"\"format_version\":2";
    let at = vk.windows(needle.len()).position(|w| w == needle).expect("header carries the format version");
    let mut patched = vk.clone();
    patched[at + "\"format_version\":".len()] = b'7';
    std::fs::write(a.path().join("old-vk.bin"), patched).unwrap();
    let e = fails(a.path(), &["verify", "--vk", "old-vk.bin"]);
    assert!(e.contains("format 7"), "{e}");

    // Not a key at all.
    std::fs::write(a.path().join("junk.bin"), b"junk").unwrap();
    let e = fails(a.path(), &["verify", "--vk", "junk.bin"]);
    assert!(e.contains("not a zkinfer verifying key"), "{e}");
    // A proving key where a verifying key is expected.
    let e = fails(a.path(), &["verify", "--vk", "pk.bin"]);
    assert!(e.contains("not a verifying key"), "{e}");
}

#[test]
fn missing_tools_say_how_to_install_them() {
    let dir = prepared();
    let w = dir.path();
    let e = fails(w, &["create-evm-verifier", "--solc", "/nonexistent/solc"]);
    assert!(e.contains("solc not found") && e.contains("zkinfer toolchain"), "{e}");
    let e = fails_env(w, &["create-evm-verifier"], &[("SOLC", "/nonexistent/solc")]);
    assert!(e.contains("solc not found"), "{e}");
    ok(w, &["prove"]);
    ok(w, &["create-evm-verifier"]);
    let e = fails_env(w, &["verify-evm", "--anvil"], &[("ANVIL", "/nonexistent/anvil")]);
    assert!(e.contains("anvil not found") && e.contains("zkinfer toolchain"), "{e}");
}

#[test]
fn an_rpc_url_that_does_not_answer_is_reported() {
    let dir = prepared();
    let w = dir.path();
    ok(w, &["prove"]);
    ok(w, &["create-evm-verifier"]);
    // Port 9 (discard) on loopback: nothing listens there.
    let e = fails(w, &["verify-evm", "--rpc-url", "http://127.0.0.1:9"]);
    assert!(e.contains("cannot reach the RPC endpoint http://127.0.0.1:9"), "{e}");
    let e = fails(w, &["verify-evm", "--rpc-url", "not a url"]);
    assert!(e.contains("not a valid URL"), "{e}");
}
