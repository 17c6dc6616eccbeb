//! Visibility modes through the whole pipeline: every combination that makes sense proves and
//! verifies natively and on the EVM, commitments match the ones computed off-circuit, a prover
//! cannot claim another commitment, and proofs are blinded and carry no private value.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// Runs the whole pipeline on the 16→32→8 MLP with the given visibilities; returns the folder.
fn run_with(input: &str, params: &str, output: &str) -> tempfile::TempDir {
    run_with_options(input, params, output, &[])
}

/// [`run_with`] with more options of `zkinfer run`.
fn run_with_options(input: &str, params: &str, output: &str, options: &[&str]) -> tempfile::TempDir {
    let dir = mlp_small_workdir();
    let w = dir.path();
    let flags = ["--input-visibility", input, "--param-visibility", params, "--output-visibility", output];
    let mut args = vec!["run", "-M", "network.onnx", "-D", "input.json", "--dir", "."];
    args.extend(flags);
    args.extend(options);
    ok(w, &args);
    dir
}

fn spans(proof: &Value) -> Vec<(String, String)> {
    proof["instance_layout"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["kind"].as_str().unwrap().to_string(), s["encoding"].as_str().unwrap().to_string()))
        .collect()
}

fn span_of<'a>(proof: &'a Value, kind: &str) -> &'a Value {
    proof["instance_layout"].as_array().unwrap().iter().find(|s| s["kind"] == kind).unwrap()
}

/// What `zkinfer commit` computes for the model and its input, with the input's salt from the
/// prover's witness.json when the input is hashed.
fn commitments(w: &Path) -> Value {
    let witness = json(&w.join("witness.json"));
    let mut args = vec!["commit".to_string(), "-D".into(), "input.json".into()];
    for salt in witness["salts"].as_array().into_iter().flatten().filter(|s| s["kind"] == "input") {
        args.extend(["--salt".into(), salt["salt"].as_str().unwrap().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    serde_json::from_str(&ok(w, &args)).unwrap()
}

#[test]
fn each_visibility_combination_proves_and_verifies_natively_and_on_the_evm() {
    // (input, params, output) and the expected runs of instances: (kind, encoding).
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: [Case<'_>; 6] = [
        ("public", "fixed", "public", &[("input", "packed"), ("output", "packed")]),
        ("hashed", "fixed", "public", &[("input", "poseidon"), ("output", "packed")]),
        ("private", "hashed", "public", &[("params", "poseidon"), ("output", "packed")]),
        ("hashed", "hashed", "hashed", &[("input", "poseidon"), ("params", "poseidon"), ("output", "poseidon")]),
        ("private", "private", "public", &[("output", "packed")]),
        (
            "public",
            "public",
            "private",
            &[("input", "packed"), ("param", "packed"), ("param", "packed"), ("param", "packed"), ("param", "packed")],
        ),
    ];
    for (input, params, output, expected) in cases {
        let dir = run_with(input, params, output);
        let w = dir.path();
        let report = json(&w.join("report.json"));
        assert_eq!(report["evm_verified"], true, "{input}/{params}/{output}: {report}");
        let proof = json(&w.join("proof.json"));
        let got = spans(&proof);
        let want: Vec<(String, String)> = expected.iter().map(|(k, e)| (k.to_string(), e.to_string())).collect();
        assert_eq!(got, want, "{input}/{params}/{output}");
        assert!(ok(w, &["verify"]).contains("verified"));

        // Outputs are written into the published proof only when they are public.
        let outputs = proof["outputs"].as_array().unwrap();
        assert_eq!(outputs.is_empty(), output != "public", "{input}/{params}/{output}");

        // Commitments in the proof are the ones `zkinfer commit` computes off-circuit.
        let c = commitments(w);
        let instances = proof["instances"][0].as_array().unwrap();
        if input == "hashed" {
            let at = span_of(&proof, "input")["first_instance"].as_u64().unwrap() as usize;
            assert_eq!(instances[at], c["inputs"][0], "{input}/{params}/{output}");
            let checked = ok(w, &["verify", "--input-commitment", c["inputs"][0].as_str().unwrap()]);
            assert!(checked.contains("Poseidon commitment"), "{checked}");
        }
        if params == "hashed" {
            let at = span_of(&proof, "params")["first_instance"].as_u64().unwrap() as usize;
            assert_eq!(instances[at], c["model"], "{input}/{params}/{output}");
            ok(w, &["verify", "--model-commitment", c["model"].as_str().unwrap()]);
            // The same commitment from the ONNX file and the settings.
            let from_onnx: Value =
                serde_json::from_str(&ok(w, &["commit", "-M", "network.onnx", "-S", "settings.json"])).unwrap();
            assert_eq!(from_onnx["model"], c["model"]);
        }
        // A commitment instance changed is rejected natively and on the EVM.
        for (i, span) in proof["instance_layout"].as_array().unwrap().iter().enumerate() {
            if span["encoding"] == "poseidon" {
                let at = span["first_instance"].as_u64().unwrap() as usize;
                assert_rejected(w, &tamper_instance(&proof, at), None, &format!("commitment #{i}"));
            }
        }
    }
}

#[test]
fn the_poseidon_gate_commits_as_halo2_base_does_and_its_proofs_verify_natively_and_on_the_evm() {
    use zkinfer::circuit::commit::commit_values_salted;
    use zkinfer::prove::proof::{fr_from_hex, fr_to_hex};

    // compile keeps this small MLP in one column of halo2-base's gate; asked for the Poseidon
    // gate, its three commitments (salted input and output, the weights) are hashed there.
    let dir = run_with_options("hashed", "hashed", "hashed", &["--poseidon-gate", "on"]);
    let w = dir.path();
    let report = json(&w.join("report.json"));
    assert_eq!(report["evm_verified"], true, "{report}");
    // The weights' words, then the input's and the output's with their salts: one permutation
    // per four words and one more where a hash's words fill its last chunk.
    assert!(report["poseidon_permutations"].as_u64().unwrap() >= 3, "{report}");
    let shape = &json(&w.join("model.compiled"))["shape"];
    assert_eq!(shape["poseidon"], true, "{shape}");
    let reason = shape["reason"].as_str().unwrap();
    assert!(reason.starts_with("no linear gate and the Poseidon gate") && reason.contains("fits EIP-170"), "{shape}");

    // The commitments are the ones computed off the circuit.
    let proof = json(&w.join("proof.json"));
    let instances = proof["instances"][0].as_array().unwrap();
    let at = |kind: &str| span_of(&proof, kind)["first_instance"].as_u64().unwrap() as usize;
    let c = commitments(w);
    assert_eq!(instances[at("input")], c["inputs"][0]);
    assert_eq!(instances[at("params")], c["model"]);
    let witness = json(&w.join("witness.json"));
    let bits = json(&w.join("settings.json"))["activation_bits"].as_u64().unwrap() as u32;
    let outputs: Vec<i64> = witness["outputs"][0].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
    let salt = witness["salts"].as_array().unwrap().iter().find(|s| s["kind"] == "output").unwrap()["salt"].clone();
    let expected = commit_values_salted(&outputs, bits, fr_from_hex(salt.as_str().unwrap()).unwrap());
    assert_eq!(instances[at("output")], fr_to_hex(&expected));
    ok(w, &["verify", "--model-commitment", c["model"].as_str().unwrap()]);

    // Every commitment changed, and the proof's bytes, are rejected natively, on revm and on
    // anvil.
    let anvil = zkinfer::evm::anvil::spawn_anvil().expect("anvil starts");
    let url = anvil.endpoint();
    let on_anvil = ok(w, &["verify-evm", "--rpc-url", &url]);
    assert!(on_anvil.contains("verified on"), "{on_anvil}");
    for kind in ["input", "params", "output"] {
        assert_rejected(w, &tamper_instance(&proof, at(kind)), Some(&url), &format!("{kind} commitment"));
    }
    for position in [0.0, 0.3, 0.77, 1.0] {
        assert_rejected(w, &tamper_proof_bytes(&proof, position), Some(&url), &format!("proof byte at {position}"));
    }
}

#[test]
fn weights_checked_by_their_range_table_commit_as_zkinfer_commit_does_and_verify_on_the_evm() {
    // The sigmoid MLP has a lookup argument already (its sigmoid table), so its 7-bit weights
    // are range-checked and packed by a table of their width: more table rows than with private
    // params, the same commitment as `zkinfer commit`, the same public words.
    let rows = |w: &Path| json(&w.join("model.compiled"))["shape"]["table_rows"].as_u64().unwrap();
    let workdir = || {
        let model = example("sigmoid_mlp").join("network.onnx");
        let input = example("sigmoid_mlp").join("input.json");
        work_with(&[(&model, "network.onnx"), (&input, "input.json")])
    };
    let private = workdir();
    ok(private.path(), &["gen-settings", "--param-visibility", "private"]);
    ok(private.path(), &["compile"]);
    for params in ["hashed", "public"] {
        let dir = workdir();
        let w = dir.path();
        ok(w, &["run", "-M", "network.onnx", "-D", "input.json", "--dir", ".", "--param-visibility", params]);
        assert!(rows(w) > rows(private.path()), "{params}: no range table ({} rows)", rows(w));
        let report = json(&w.join("report.json"));
        assert_eq!(report["evm_verified"], true, "{params}: {report}");
        let proof = json(&w.join("proof.json"));
        let instances = proof["instances"][0].as_array().unwrap();
        let layout = proof["instance_layout"].as_array().unwrap();
        if params == "hashed" {
            let at = span_of(&proof, "params")["first_instance"].as_u64().unwrap() as usize;
            let model = commitments(w)["model"].clone();
            assert_eq!(instances[at], model);
            ok(w, &["verify", "--model-commitment", model.as_str().unwrap()]);
        } else {
            // `verify` compares the public params with the compiled model's.
            assert!(layout.iter().any(|s| s["kind"] == "param"), "{layout:?}");
            assert!(ok(w, &["verify"]).contains("verified"));
        }
        // Every params instance changed is rejected natively and on revm.
        for span in layout.iter().filter(|s| s["kind"] == "params" || s["kind"] == "param") {
            let at = span["first_instance"].as_u64().unwrap() as usize;
            assert_rejected(w, &tamper_instance(&proof, at), None, &format!("{params} params instance {at}"));
        }
    }
}

#[test]
fn hashed_everything_verifies_on_anvil() {
    let dir = run_with("hashed", "hashed", "hashed");
    let out = ok(dir.path(), &["verify-evm", "--anvil"]);
    assert!(out.contains("verified on http://127.0.0.1"), "{out}");
}

#[test]
fn a_prover_cannot_claim_another_model_or_input() {
    use zkinfer::prove::proof::{fr_from_hex, fr_to_hex};

    let dir = run_with("hashed", "hashed", "public");
    let w = dir.path();
    let published = json(&w.join("proof.json"));
    let c = commitments(w);

    // The proving key does not depend on the weights, so a prover holding it can prove with
    // other weights; the proof then carries another model commitment.
    let forged = json(&prove_with_other_weights(w, "forged.json", false));
    let proof = hex::decode(forged["proof"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    let instances: Vec<_> =
        forged["instances"][0].as_array().unwrap().iter().map(|x| fr_from_hex(x.as_str().unwrap()).unwrap()).collect();
    let (header, vk) = zkinfer::prove::read_vk(&w.join("vk.bin")).unwrap();
    let srs = zkinfer::pipeline::srs_for_key(header.shape.k, &header.srs, None).unwrap();
    zkinfer::prove::verify_keccak(&srs.params, &vk, &proof, &instances).expect("valid for its own commitment");
    let model_at = span_of(&published, "params")["first_instance"].as_u64().unwrap() as usize;
    assert_ne!(fr_to_hex(&instances[model_at]), c["model"].as_str().unwrap());
    // Claiming the committed model's commitment fails.
    let mut claimed = instances.clone();
    claimed[model_at] = fr_from_hex(c["model"].as_str().unwrap()).unwrap();
    assert!(zkinfer::prove::verify_keccak(&srs.params, &vk, &proof, &claimed).is_err());

    // As a file, the proof with other weights is valid for the circuit, but the verifying key
    // holds the model's commitment: verify refuses it even when no commitment is given.
    let refused = fails(w, &["verify", "--proof", "forged.json"]);
    assert!(refused.contains("valid but for other weights"), "{refused}");
    let refused = fails(w, &["verify", "--proof", "forged.json", "--model-commitment", c["model"].as_str().unwrap()]);
    assert!(refused.contains("other weights"), "{refused}");
    // The honest proof passes both checks; a wrong input commitment is refused.
    ok(
        w,
        &[
            "verify",
            "--model-commitment",
            c["model"].as_str().unwrap(),
            "--input-commitment",
            c["inputs"][0].as_str().unwrap(),
        ],
    );
    let refused = fails(w, &["verify", "--input-commitment", c["model"].as_str().unwrap()]);
    assert!(refused.contains("another input"), "{refused}");
    let refused = fails(w, &["verify", "--input-commitment", "0x1234"]);
    assert!(refused.contains("not a 32-byte"), "{refused}");
}

#[test]
fn proofs_are_blinded_and_carry_no_private_value() {
    let dir = run_with("private", "hashed", "hashed");
    let w = dir.path();
    ok(w, &["prove", "--proof", "again.json", "--witness", "again-witness.json"]);
    let (first, second) = (json(&w.join("proof.json")), json(&w.join("again.json")));
    assert_ne!(first["proof"], second["proof"], "two proofs of the same statement must differ (blinding)");
    // The model commitment is the same; the output's, salted afresh, is not.
    assert_eq!(first["instances"][0][0], second["instances"][0][0]);
    assert_ne!(first["instances"][0][1], second["instances"][0][1]);

    // No private value (input, weight, output), as a 32-byte field element, in the proof or its
    // instances; the proof file has no outputs.
    let witness = json(&w.join("witness.json"));
    let compiled = json(&w.join("model.compiled"));
    let mut private: Vec<i64> = Vec::new();
    for v in witness["inputs"].as_array().unwrap().iter().chain(witness["outputs"].as_array().unwrap()) {
        private.extend(v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()));
    }
    for node in compiled["model"]["nodes"].as_array().unwrap() {
        if let Some(dense) = node["op"].get("Dense") {
            private.extend(dense["weight"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()));
        }
    }
    let proof_hex = first["proof"].as_str().unwrap().trim_start_matches("0x").to_string();
    let instances: Vec<String> = first["instances"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().trim_start_matches("0x").to_string())
        .collect();
    for v in private.into_iter().filter(|&v| v.unsigned_abs() > 1) {
        let word = zkinfer::prove::proof::fr_to_hex(&zkinfer::circuit::field::fe(v as i128));
        let word = word.trim_start_matches("0x");
        assert!(!instances.iter().any(|i| i == word), "private value {v} is a public instance");
        assert!(!proof_hex.contains(word), "private value {v} appears in the proof");
    }
    assert!(first["outputs"].as_array().unwrap().is_empty());
    let printed = ok(w, &["verify"]);
    assert!(printed.contains("proven output 0") && printed.contains("Poseidon commitment 0x"), "{printed}");
}

#[test]
fn the_private_model_example_runs_as_its_readme_says() {
    let model = example("private_model").join("network.onnx");
    let input = example("private_model").join("input.json");
    let dir = work_with(&[(&model, "network.onnx"), (&input, "input.json")]);
    let w = dir.path();
    ok(
        w,
        &[
            "gen-settings",
            "--input-visibility",
            "private",
            "--param-visibility",
            "hashed",
            "--output-visibility",
            "public",
        ],
    );
    ok(w, &["compile"]);
    ok(w, &["setup"]);
    let published: Value = serde_json::from_str(&ok(w, &["commit"])).unwrap();
    let commitment = published["model"].as_str().unwrap();
    ok(w, &["prove", "-D", "input.json"]);
    let verified = ok(w, &["verify", "--model-commitment", commitment]);
    assert!(verified.contains(&format!("Poseidon commitment {commitment}")), "{verified}");
    let proof = json(&w.join("proof.json"));
    assert_eq!(spans(&proof), vec![("params".into(), "poseidon".into()), ("output".into(), "packed".into())]);
    assert_eq!(proof["outputs"][0].as_array().unwrap().len(), 3);
    ok(w, &["create-evm-verifier"]);
    assert!(ok(w, &["verify-evm"]).contains("gas used"));
}

#[test]
fn hashed_inputs_and_outputs_are_salted_so_their_commitments_cannot_be_brute_forced() {
    use zkinfer::circuit::commit::{commit_values, commit_values_salted};
    use zkinfer::prove::proof::{fr_from_hex, fr_to_hex};

    let dir = run_with("hashed", "fixed", "hashed");
    let w = dir.path();
    let proof = json(&w.join("proof.json"));
    let witness = json(&w.join("witness.json"));
    let salts = witness["salts"].as_array().unwrap();
    assert_eq!(salts.len(), 2, "one salt for the input, one for the output: {witness}");
    let instances = proof["instances"][0].as_array().unwrap();
    let at = |kind: &str| span_of(&proof, kind)["first_instance"].as_u64().unwrap() as usize;
    assert_eq!(span_of(&proof, "input")["salted"], true);

    // The commitments are Poseidon of (salt, packed values), computed independently of the
    // circuit from the witness's values; without the salt they are not the plain hash.
    let bits = json(&w.join("settings.json"))["activation_bits"].as_u64().unwrap() as u32;
    let values = |v: &Value| -> Vec<i64> { v[0].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect() };
    for (kind, values) in [("input", values(&witness["inputs"])), ("output", values(&witness["outputs"]))] {
        let salt = salts.iter().find(|s| s["kind"] == kind).unwrap()["salt"].as_str().unwrap();
        let expected = commit_values_salted(&values, bits, fr_from_hex(salt).unwrap());
        assert_eq!(instances[at(kind)], fr_to_hex(&expected), "{kind}");
        assert_ne!(instances[at(kind)], fr_to_hex(&commit_values(&values, bits)), "{kind} is salted");
    }

    // The same input proved again commits differently; commit needs the salt.
    ok(w, &["prove", "--proof", "again.json", "--witness", "again-witness.json"]);
    let again = json(&w.join("again.json"));
    assert_ne!(again["instances"][0][at("input")], instances[at("input")]);
    let e = fails(w, &["commit", "-D", "input.json"]);
    assert!(e.contains("salted") && e.contains("--salt"), "{e}");
    let c = commitments(w);
    assert_eq!(c["inputs"][0], instances[at("input")]);
    let checked = ok(w, &["verify", "--input-commitment", c["inputs"][0].as_str().unwrap()]);
    assert!(checked.contains("verified"), "{checked}");

    // Unsalted on request: deterministic, what `commit` computes from the values alone.
    let dir = mlp_small_workdir();
    let u = dir.path();
    let args = ["run", "-M", "network.onnx", "-D", "input.json", "--dir", ".", "--input-visibility", "hashed"];
    ok(u, &[&args[..], &["--unsalted"]].concat());
    let proof = json(&u.join("proof.json"));
    let plain: Value = serde_json::from_str(&ok(u, &["commit", "-D", "input.json"])).unwrap();
    assert_eq!(proof["instances"][0][0], plain["inputs"][0]);
    assert!(json(&u.join("witness.json")).get("salts").is_none());
}
