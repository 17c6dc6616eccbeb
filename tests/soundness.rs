//! What a valid proof cannot be made to say, tried as an attacker would: a proof file relabelled
//! after proving, a verifying key's header edited after setup, a proof of other weights, and
//! models whose gadgets would have nothing to constrain.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

/// One proved 16→32→8 MLP with public input, public params and public output, shared by the
/// tests of this file.
fn proved_public() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = mlp_small_workdir();
        let args = ["run", "-M", "network.onnx", "-D", "input.json", "--dir", "."];
        ok(dir.path(), &[&args[..], &["--param-visibility", "public"]].concat());
        dir
    })
    .path()
}

fn copy_of_public_run() -> tempfile::TempDir {
    let from = proved_public();
    work_with(&[
        (&from.join("proof.json"), "proof.json"),
        (&from.join("vk.bin"), "vk.bin"),
        (&from.join("pk.bin"), "pk.bin"),
        (&from.join("model.compiled"), "model.compiled"),
        (&from.join("Verifier.json"), "Verifier.json"),
        (&from.join("input.json"), "input.json"),
    ])
}

/// The printed "proven output" line of `verify`.
fn proven_output(printed: &str) -> String {
    printed.lines().find(|l| l.starts_with("proven output 0")).unwrap_or_default().to_string()
}

#[test]
fn a_relabelled_proof_file_is_refused_and_what_is_printed_comes_from_the_key() {
    let work = copy_of_public_run();
    let w = work.path();
    let honest = ok(w, &["verify"]);
    let line = proven_output(&honest);
    assert!(line.contains("(/fc1/Gemm) [1, 8]"), "{honest}");

    let proof = json(&w.join("proof.json"));
    let layout = proof["instance_layout"].as_array().unwrap().clone();
    let output_at = layout.iter().position(|s| s["kind"] == "output").unwrap();
    // Each field a prover could relabel: the scale (7 → 3 would print every output ×16), the
    // kind, the index, the name and where the run starts.
    let edits: [(&str, Value); 5] = [
        ("scale", Value::from(3)),
        ("kind", Value::from("input")),
        ("index", Value::from(1)),
        ("name", Value::from("/credit/approved")),
        ("first_instance", Value::from(0)),
    ];
    for (field, value) in edits {
        let mut edited = proof.clone();
        edited["instance_layout"][output_at][field] = value;
        write_json(&w.join("edited.json"), &edited);
        let e = fails(w, &["verify", "--proof", "edited.json"]);
        assert!(e.contains("instance_layout differs from the verifying key's"), "{field}: {e}");
    }
    // A run dropped from the layout is refused the same way.
    let mut shorter = proof.clone();
    shorter["instance_layout"].as_array_mut().unwrap().pop();
    write_json(&w.join("edited.json"), &shorter);
    let e = fails(w, &["verify", "--proof", "edited.json"]);
    assert!(e.contains("instance_layout differs"), "{e}");
    // The published outputs field is not what verify prints: editing it changes nothing.
    let mut outputs = proof.clone();
    outputs["outputs"][0][0] = Value::from(123.0);
    write_json(&w.join("edited.json"), &outputs);
    assert_eq!(proven_output(&ok(w, &["verify", "--proof", "edited.json"])), line);
}

#[test]
fn a_verifying_key_header_edited_after_setup_is_refused() {
    let work = copy_of_public_run();
    let w = work.path();
    let pristine = std::fs::read(w.join("vk.bin")).unwrap();
    type Edit = fn(&mut Value);
    let edits: [(&str, Edit); 5] = [
        ("a scale", |h| h["instance_layout"][0]["scale"] = Value::from(3)),
        ("a kind", |h| h["instance_layout"][0]["kind"] = Value::from("output")),
        ("the weights", |h| h["weights"] = Value::from("fixed")),
        ("a bound word", |h| h["bound"][0]["word"] = Value::from(format!("0x{}01", "00".repeat(31)))),
        ("the aggregation flag", |h| {
            h["aggregation"] = serde_json::json!({ "inner_digest": "00", "inner": [] });
        }),
    ];
    for (what, edit) in edits {
        std::fs::write(w.join("vk.bin"), &pristine).unwrap();
        edit_key_header(&w.join("vk.bin"), edit);
        let e = fails(w, &["verify"]);
        assert!(e.contains("header does not match the key"), "{what}: {e}");
        let e = fails(w, &["create-evm-verifier", "--sol", "Edited.sol"]);
        assert!(e.contains("header does not match the key"), "{what}: {e}");
        let e = fails(w, &["deploy", "--registry", "--model", "m"]);
        assert!(e.contains("header does not match the key"), "{what}: {e}");
    }
    std::fs::write(w.join("vk.bin"), &pristine).unwrap();
    ok(w, &["verify"]);
}

#[test]
fn a_proof_with_other_public_weights_is_valid_for_the_circuit_but_not_for_the_model() {
    let work = copy_of_public_run();
    let w = work.path();
    // Another model of the same architecture whose weights keep the packing widths, proved
    // with its own keys: its param instances differ from this model's.
    let other = tempfile::tempdir().unwrap();
    let o = other.path();
    std::fs::copy(fixture("mlp_small_other_weights.onnx"), o.join("network.onnx")).unwrap();
    std::fs::copy(w.join("input.json"), o.join("input.json")).unwrap();
    for step in [&["gen-settings", "--param-visibility", "public"][..], &["compile"], &["setup"], &["prove"]] {
        ok(o, step);
    }
    ok(o, &["verify"]);
    std::fs::copy(o.join("proof.json"), w.join("other.json")).unwrap();
    let e = fails(w, &["verify", "--proof", "other.json"]);
    assert!(e.contains("another circuit") || e.contains("other weights"), "{e}");
    // Relabelled with this model's circuit digest, the same proof is still refused: the key
    // holds this model's weight words, whatever the proof file says.
    let mut relabelled = json(&w.join("other.json"));
    relabelled["circuit_digest"] = json(&w.join("proof.json"))["circuit_digest"].clone();
    write_json(&w.join("relabelled.json"), &relabelled);
    let e = fails(w, &["verify", "--proof", "relabelled.json"]);
    assert!(e.contains("rejected") || e.contains("other weights"), "{e}");
}

#[test]
fn a_proof_with_other_weights_made_with_the_models_own_proving_key_is_refused() {
    let work = copy_of_public_run();
    let w = work.path();
    let forged = prove_with_other_weights(w, "forged.json", false);
    let forged = forged.to_str().unwrap();
    // Valid for the circuit: the EVM verifier alone accepts it (the weights are instances).
    assert!(ok(w, &["verify-evm", "--proof", forged]).contains("verified"));
    // Not for this model: verify, and the registry, compare the weight instances with the key's.
    let e = fails(w, &["verify", "--proof", forged]);
    assert!(e.contains("valid but for other weights"), "{e}");
    let e = fails(w, &["submit", "--model", "m", "-P", forged]);
    assert!(e.contains("OtherWeights") && e.contains("other weights"), "{e}");
    let printed = ok(w, &["submit", "--model", "m"]);
    assert!(printed.contains("verified on the in-process EVM"), "{printed}");
}

#[test]
fn pooling_windows_over_padding_only_are_refused_at_import_before_any_key() {
    for (model, node) in [("maxpool_empty_window.onnx", "/MaxPool"), ("avgpool_empty_window.onnx", "/AveragePool")] {
        let work = work_with(&[(&fixture(model), "network.onnx")]);
        let e = fails(work.path(), &["gen-settings"]);
        assert!(e.contains(node) && e.contains("lies entirely in the padding"), "{model}: {e}");
        assert!(!work.path().join("settings.json").exists(), "{model}: nothing is written");
    }
}

#[test]
fn a_compiled_model_with_an_empty_pooling_window_is_refused_when_loaded() {
    use zkinfer::model::window::Window;
    use zkinfer::model::QOp;
    // A model.compiled made by hand (its digest recomputed): a MaxPool whose outer windows
    // read only padding.
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    std::fs::copy(fixture("conv2d_ops.onnx"), w.join("network.onnx")).unwrap();
    ok(w, &["gen-settings"]);
    ok(w, &["compile"]);
    let mut compiled = zkinfer::artifacts::CompiledModel::load(&w.join("model.compiled")).unwrap();
    let pool = compiled.model.nodes.iter_mut().find_map(|n| match &mut n.op {
        QOp::MaxPool(pool) => Some(&mut pool.window),
        _ => None,
    });
    let window = pool.expect("conv2d_ops has a MaxPool");
    let d = window.input.len();
    *window = Window::new(&window.input, &vec![1; d], &vec![1; d], &vec![1; d], &vec![1; d], &vec![1; d]).unwrap();
    let rebuilt = zkinfer::artifacts::CompiledModel::new(compiled.settings, compiled.model, compiled.shape);
    std::fs::write(w.join("model.compiled"), serde_json::to_vec(&rebuilt).unwrap()).unwrap();
    let e = fails(w, &["setup"]);
    assert!(e.contains("lies entirely in the padding"), "{e}");
    assert!(!w.join("pk.bin").exists());
}
