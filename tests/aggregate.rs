//! Aggregation as a user runs it: proofs of two different models aggregated into one proof that
//! verifies natively, on the in-process EVM and on anvil, with tampered proofs and instances rejected;
//! one layer of recursion (an aggregation proof aggregated again); and the one-column circuit that
//! costs the EVM the least gas.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use common::{example, fails, fixture, ok};
use serde_json::Value;

/// Aggregation circuits take gigabytes: a test runs beside another only while the peaks of both
/// (measured, in GiB) fit this budget, so that the single-threaded steps of one (solc, the EVM
/// sweeps, native verification) overlap the other's proving on a 2-core, 24 GiB machine.
const MEMORY_BUDGET_GIB: u32 = 16;
static MEMORY_IN_USE: Mutex<u32> = Mutex::new(0);
static MEMORY_FREED: Condvar = Condvar::new();

/// A test's share of [`MEMORY_BUDGET_GIB`], given back when dropped.
struct Memory(u32);

impl Memory {
    /// Waits until `gib` more fits the budget, then holds it.
    fn reserve(gib: u32) -> Memory {
        let mut used = MEMORY_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        while *used > 0 && *used + gib > MEMORY_BUDGET_GIB {
            used = MEMORY_FREED.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += gib;
        Memory(gib)
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        *MEMORY_IN_USE.lock().unwrap_or_else(|e| e.into_inner()) -= self.0;
        MEMORY_FREED.notify_all();
    }
}

/// Proves `model` on `input` in `dir/name` with the Poseidon transcript; returns the proof's path.
fn prove_for_aggregation(dir: &Path, name: &str, model: &Path, input: &Path) -> PathBuf {
    prove_for_aggregation_with(dir, name, model, input, &[])
}

/// [`prove_for_aggregation`] with extra `gen-settings` options.
fn prove_for_aggregation_with(dir: &Path, name: &str, model: &Path, input: &Path, settings: &[&str]) -> PathBuf {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::copy(model, sub.join("network.onnx")).unwrap();
    std::fs::copy(input, sub.join("input.json")).unwrap();
    ok(&sub, &[&["gen-settings"][..], settings].concat());
    ok(&sub, &["compile"]);
    ok(&sub, &["setup"]);
    ok(&sub, &["prove", "--for-aggregation"]);
    sub.join("proof.json")
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Writes `proof` altered by `change` to `dir/name` and returns its path.
fn tampered(dir: &Path, name: &str, proof: &Path, change: impl FnOnce(&mut Value)) -> String {
    let mut value = read(proof);
    change(&mut value);
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

/// Flips one hex digit in the middle of the proof bytes.
fn flip_proof_byte(value: &mut Value) {
    let proof = value["proof"].as_str().unwrap().to_string();
    let mut chars: Vec<char> = proof.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == '0' { '1' } else { '0' };
    value["proof"] = Value::String(chars.into_iter().collect());
}

/// Adds one to the last digit of public instance `index` (still a canonical field element).
fn bump_instance(index: usize) -> impl FnOnce(&mut Value) {
    move |value: &mut Value| {
        let word = value["instances"][0][index].as_str().unwrap().to_string();
        let last = word.chars().last().unwrap();
        let bumped = if last == 'f' { '0' } else { char::from_digit(last.to_digit(16).unwrap() + 1, 16).unwrap() };
        value["instances"][0][index] = Value::String(format!("{}{bumped}", &word[..word.len() - 1]));
    }
}

/// Asserts that native verification and the EVM verifier both reject `proof`.
fn rejected_everywhere(dir: &Path, agg: &str, proof: &str) {
    let native = fails(dir, &["verify", "--vk", &format!("{agg}/vk.bin"), "--proof", proof]);
    assert!(native.contains("rejected") || native.contains("does not verify"), "{native}");
    let evm = fails(dir, &["verify-evm", "--proof", proof, "--verifier", &format!("{agg}/Verifier.json")]);
    assert!(evm.contains("reject") || evm.contains("revert"), "{evm}");
    let key = format!("{agg}/VerifyingKey.json");
    if dir.join(&key).is_file() {
        let shared = format!("{agg}/SharedVerifier.json");
        let evm = fails(dir, &["verify-evm", "--proof", proof, "--verifier", &shared, "--key-contract", &key]);
        assert!(evm.contains("returned false"), "the shared verifier: {evm}");
    }
}

/// Our generator's program for an aggregation key against snark-verifier's native verifier (which
/// also decides the accumulator): both accept the proof, and both refuse it with any of a sweep
/// of its bytes flipped or of its instances changed.
fn the_traced_verifier_decides_as_snark_verifier(vk: &Path, proof: &Path) {
    use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
    let (header, vk, srs) = zkinfer::prove::keys::read_vk_checked(vk, None).unwrap();
    let n = header.shape.num_instances;
    let program = zkinfer::evm::program::trace_verifier(&srs.params, &vk, n, true).unwrap();
    let protocol = zkinfer::prove::snark::protocol_of(&srs.params, &vk, n, true);
    let dk = zkinfer::prove::snark::deciding_key(&srs.params);
    let file = zkinfer::prove::ProofFile::load_for_evm(proof).unwrap();
    let instances = file.instance_values(proof).unwrap().remove(0);
    let bytes = file.proof_bytes(proof).unwrap();
    let decide = |instances: &[Fr], bytes: &[u8]| {
        let native =
            zkinfer::prove::snark::verify(&dk, &protocol, instances, bytes, zkinfer::prove::TranscriptKind::Keccak)
                .is_ok();
        let ours = program.accepts(&zkinfer::evm::encode_calldata(instances, bytes));
        assert_eq!(native, ours, "snark-verifier and our program disagree");
        ours
    };
    assert!(decide(&instances, &bytes), "the aggregated proof verifies");
    for i in (0..bytes.len()).step_by(bytes.len() / 40) {
        let mut bad = bytes.clone();
        bad[i] ^= 1;
        assert!(!decide(&instances, &bad), "byte {i} flipped");
    }
    for i in [0, 3, 11, 12, instances.len() - 1] {
        let mut bad = instances.clone();
        bad[i] += Fr::from(1);
        assert!(!decide(&bad, &bytes), "instance {i} changed");
    }
}

/// Every byte of the aggregated proof flipped and every instance changed: the direct verifier
/// and the shared verifier with the key refuse each, on revm and on anvil.
fn every_tamper_refused_by_both_modes_on_revm_and_on_anvil(dir: &Path, proof: &Path) {
    let file = zkinfer::prove::ProofFile::load_for_evm(proof).unwrap();
    let instances = file.instance_values(proof).unwrap().remove(0);
    let bytes = file.proof_bytes(proof).unwrap();
    common::on_revm_and_on_anvil(|chain| {
        let modes = common::BothModes::deploy(chain, &dir.join("agg/Verifier.json"), &dir.join("agg/vk.bin"));
        modes.refuse_every_tamper(chain, &instances, &bytes);
    });
}

#[test]
fn proofs_of_two_models_aggregate_into_one_verified_natively_and_on_the_evm() {
    let _memory = Memory::reserve(10); // two proofs aggregated at k = 21 in four columns: 9.3 GiB
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let hashed = ["--param-visibility", "hashed"];
    let a =
        prove_for_aggregation_with(dir, "a", &fixture("matmul_add.onnx"), &fixture("matmul_add.input.json"), &hashed);
    let b = prove_for_aggregation_with(
        dir,
        "b",
        &example("credit_score").join("network.onnx"),
        &example("credit_score").join("input.json"),
        &hashed,
    );
    let vks = ["--vk", "a/vk.bin", "b/vk.bin"];

    // Wrong kinds of proof are refused before any key is made.
    ok(&dir.join("a"), &["prove", "--proof", "evm-proof.json"]);
    let keccak = fails(dir, &["aggregate", "-P", "a/evm-proof.json", "--vk", "a/vk.bin", "-O", "agg"]);
    assert!(keccak.contains("Keccak") && keccak.contains("--for-aggregation"), "{keccak}");
    let bad_inner = tampered(dir, "bad-inner.json", &b, flip_proof_byte);
    let refused = fails(dir, &[&["aggregate", "-P", "a/proof.json", &bad_inner, "-O", "agg"][..], &vks].concat());
    assert!(refused.contains("bad-inner.json does not verify"), "{refused}");
    // What is aggregated comes from the verifying keys: a proof given with another model's key
    // is refused, whatever its file says of its circuit.
    let other_key = fails(dir, &["aggregate", "-P", "a/proof.json", "--vk", "b/vk.bin", "-O", "agg"]);
    assert!(other_key.contains("another circuit"), "{other_key}");
    let relabelled = tampered(dir, "relabelled.json", &a, |p| p["circuit_digest"] = read(&b)["circuit_digest"].clone());
    let refused = fails(dir, &["aggregate", "-P", &relabelled, "--vk", "b/vk.bin", "-O", "agg"]);
    assert!(refused.contains("instance_layout differs") || refused.contains("does not verify"), "{refused}");
    // A proof of other weights, made with the model's own proving key, is valid for its circuit
    // but not of its key's model: refused before any key is made.
    let forged = common::prove_with_other_weights(&dir.join("b"), "forged.json", true);
    let refused =
        fails(dir, &[&["aggregate", "-P", "a/proof.json", forged.to_str().unwrap(), "-O", "agg"][..], &vks].concat());
    assert!(refused.contains("forged.json cannot be aggregated") && refused.contains("other weights"), "{refused}");
    assert!(!dir.join("agg/pk.bin").exists(), "no keys are made for a batch with a bad proof");
    let evm_refuses = fails(dir, &["verify-evm", "--proof", "a/proof.json", "--verifier", "missing.json"]);
    assert!(evm_refuses.contains("Poseidon"), "{evm_refuses}");

    let out = ok(dir, &[&["aggregate", "-P", "a/proof.json", "b/proof.json", "-O", "agg"][..], &vks].concat());
    assert!(out.contains("aggregated 2 proofs"), "{out}");
    let agg = read(&dir.join("agg/proof.json"));
    assert_eq!(agg["transcript"], "keccak");
    assert_eq!(agg["aggregated"].as_array().unwrap().len(), 2);

    // The inner proofs' instances follow the 12 accumulator words, in order.
    let inner: Vec<Value> = [&a, &b].iter().flat_map(|p| read(p)["instances"][0].as_array().unwrap().clone()).collect();
    let words = agg["instances"][0].as_array().unwrap();
    assert_eq!(&words[12..], inner.as_slice());

    let verified = ok(dir, &["verify", "--vk", "agg/vk.bin", "--proof", "agg/proof.json"]);
    assert!(verified.contains("proven output 0 (/Sigmoid) [1, 1] of aggregated proof 1: [0.828125]"), "{verified}");
    ok(dir, &["create-evm-verifier", "--vk", "agg/vk.bin", "--sol", "agg/Verifier.sol"]);
    let on_evm = ok(dir, &["verify-evm", "--proof", "agg/proof.json", "--verifier", "agg/Verifier.json"]);
    assert!(on_evm.contains("verified on in-process EVM"), "{on_evm}");
    let on_anvil = ok(dir, &["verify-evm", "--proof", "agg/proof.json", "--verifier", "agg/Verifier.json", "--anvil"]);
    assert!(on_anvil.contains("verified on http://127.0.0.1"), "{on_anvil}");
    // The reusable verifier decides the aggregated proof too (its accumulator folded in).
    let reusable = ["--sol", "agg/SharedVerifier.sol", "--key-out", "agg/VerifyingKey.json"];
    ok(dir, &[&["create-evm-verifier", "--reusable", "--vk", "agg/vk.bin"], &reusable[..]].concat());
    let shared = ["--verifier", "agg/SharedVerifier.json", "--key-contract", "agg/VerifyingKey.json"];
    let on_shared = ok(dir, &[&["verify-evm", "--proof", "agg/proof.json"], &shared[..]].concat());
    eprintln!("aggregated proof: direct {on_evm}; shared {on_shared}");

    let agg_proof = dir.join("agg/proof.json");
    the_traced_verifier_decides_as_snark_verifier(&dir.join("agg/vk.bin"), &agg_proof);
    every_tamper_refused_by_both_modes_on_revm_and_on_anvil(dir, &agg_proof);
    let flipped = tampered(dir, "flipped.json", &agg_proof, flip_proof_byte);
    rejected_everywhere(dir, "agg", &flipped);
    rejected_everywhere(dir, "agg", &tampered(dir, "accumulator.json", &agg_proof, bump_instance(0)));
    rejected_everywhere(dir, "agg", &tampered(dir, "output.json", &agg_proof, bump_instance(words.len() - 1)));

    // The registry binds every aggregated proof's model commitment, not only the first.
    let registered = ok(
        dir,
        &[
            "deploy",
            "--registry",
            "--model",
            "batch",
            "--vk",
            "agg/vk.bin",
            "--verifier",
            "agg/Verifier.json",
            "-O",
            "agg/deployment.json",
        ],
    );
    assert!(registered.contains("weights bound by instances"), "{registered}");
    let model = &read(&dir.join("agg/deployment.json"))["models"][0];
    let commitment_of = |proof: &Path| {
        12 + read(proof)["instance_layout"].as_array().unwrap().iter().find(|s| s["kind"] == "params").unwrap()
            ["first_instance"]
            .as_u64()
            .unwrap()
    };
    let b_offset = read(&a)["instances"][0].as_array().unwrap().len() as u64;
    assert_eq!(
        model["layout"]["bound"],
        serde_json::json!([commitment_of(&a), commitment_of(&b) + b_offset]),
        "{model}"
    );
    assert_eq!(
        model["layout"]["outputStart"].as_array().unwrap().len(),
        2,
        "one output run per aggregated proof: {model}"
    );
    let submitted = ok(
        dir,
        &[
            "submit",
            "--model",
            "batch",
            "-P",
            "agg/proof.json",
            "--vk",
            "agg/vk.bin",
            "--verifier",
            "agg/Verifier.json",
            "-O",
            "agg/submission.json",
        ],
    );
    assert!(submitted.contains("output 1"), "every aggregated inference is recorded: {submitted}");
    // The same batch registered with the shared verifier and its key: the registry records it
    // alike and refuses the tampered proof.
    let shared =
        ["--vk", "agg/vk.bin", "--verifier", "agg/SharedVerifier.json", "--key-contract", "agg/VerifyingKey.json"];
    let registered = ok(
        dir,
        &[&["deploy", "--registry", "--model", "batch", "-O", "agg/shared-deployment.json"][..], &shared].concat(),
    );
    assert!(registered.contains("weights bound by instances"), "{registered}");
    let submit = ["submit", "--model", "batch", "-O", "agg/shared-submission.json", "-P"];
    let submitted = ok(dir, &[&submit[..], &["agg/proof.json"], &shared].concat());
    assert!(submitted.contains("output 1"), "recorded through the shared verifier: {submitted}");
    let e = fails(dir, &[&submit[..], &[flipped.as_str()], &shared].concat());
    assert!(e.contains("ProofRejected"), "{e}");

    // An aggregation key whose header no longer says it aggregates (so that its verifier would
    // skip the accumulator) is refused: the flag is bound into the key.
    let stripped = dir.join("stripped-vk.bin");
    std::fs::copy(dir.join("agg/vk.bin"), &stripped).unwrap();
    common::edit_key_header(&stripped, |h| {
        h.as_object_mut().unwrap().remove("aggregation");
    });
    let e = fails(dir, &["verify", "--vk", "stripped-vk.bin", "--proof", "agg/proof.json"]);
    assert!(e.contains("header does not match the key"), "{e}");
    let e = fails(dir, &["create-evm-verifier", "--vk", "stripped-vk.bin", "--sol", "Stripped.sol"]);
    assert!(e.contains("header does not match the key"), "{e}");
}

#[test]
fn an_aggregation_proof_aggregates_again() {
    let _memory = Memory::reserve(6); // k = 20 in three and four columns: 5.4 GiB
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    // The inner circuit with the linear-layer gate: snark-verifier compiles its gate from the key.
    let gate = ["--linear-gate", "2x1"];
    let a = prove_for_aggregation_with(dir, "a", &fixture("matmul_add.onnx"), &fixture("matmul_add.input.json"), &gate);
    assert!(read(&dir.join("a/model.compiled"))["shape"]["linear"].is_object(), "the inner circuit has the gate");

    // Layer 1, for a next layer: Poseidon transcript, its protocol in the proof file.
    ok(dir, &["aggregate", "-P", a.to_str().unwrap(), "--vk", "a/vk.bin", "-O", "layer1", "--for-aggregation"]);
    let layer1 = read(&dir.join("layer1/proof.json"));
    assert_eq!(layer1["transcript"], "poseidon");
    assert!(layer1["protocol"].is_object());
    ok(dir, &["verify", "--vk", "layer1/vk.bin", "--proof", "layer1/proof.json"]);

    // Layer 2 folds layer 1's accumulator into its own and exposes the application's instances.
    ok(dir, &["aggregate", "-P", "layer1/proof.json", "--vk", "layer1/vk.bin", "-O", "layer2"]);
    let layer2 = read(&dir.join("layer2/proof.json"));
    assert!(layer2["aggregated"][0]["is_aggregate"].as_bool().unwrap());
    assert_eq!(layer2["instances"][0].as_array().unwrap()[12..], read(&a)["instances"][0].as_array().unwrap()[..]);
    assert_eq!(layer2["instance_layout"][0]["proof"], serde_json::json!([0, 0]));
    let verified = ok(dir, &["verify", "--vk", "layer2/vk.bin", "--proof", "layer2/proof.json"]);
    assert!(verified.contains("of aggregated proof 0.0"), "{verified}");
    ok(dir, &["create-evm-verifier", "--vk", "layer2/vk.bin", "--sol", "layer2/Verifier.sol"]);
    ok(dir, &["verify-evm", "--proof", "layer2/proof.json", "--verifier", "layer2/Verifier.json"]);
    let layer2_proof = dir.join("layer2/proof.json");
    rejected_everywhere(dir, "layer2", &tampered(dir, "accumulator.json", &layer2_proof, bump_instance(11)));

    // A new batch of the same circuits reuses the keys: the deployed verifier stays the same.
    let again =
        ok(dir, &["aggregate", "-P", "layer1/proof.json", "--vk", "layer1/vk.bin", "-O", "batch2", "--keys", "layer2"]);
    assert!(again.contains("keys reused"), "{again}");
    assert!(!dir.join("batch2/pk.bin").exists());
    ok(dir, &["verify", "--vk", "layer2/vk.bin", "--proof", "batch2/proof.json"]);
    ok(dir, &["verify-evm", "--proof", "batch2/proof.json", "--verifier", "layer2/Verifier.json"]);
}

#[test]
fn a_one_column_aggregation_verifies_on_the_evm_for_less_than_350k_gas() {
    let _memory = Memory::reserve(10); // k = 22 in one column: 10.0 GiB
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let a = prove_for_aggregation(dir, "a", &fixture("matmul_add.onnx"), &fixture("matmul_add.input.json"));

    // One advice column: halo2-base looks its range checks up in that column itself, so the
    // proof carries the fewest commitments the EVM verifier multiplies (k grows instead).
    let out = ok(
        dir,
        &["aggregate", "-P", a.to_str().unwrap(), "--vk", "a/vk.bin", "-O", "one", "--max-advice-columns", "1"],
    );
    assert!(out.contains(", 1 advice columns,"), "{out}");
    ok(dir, &["verify", "--vk", "one/vk.bin", "--proof", "one/proof.json"]);
    ok(dir, &["create-evm-verifier", "--vk", "one/vk.bin", "--sol", "one/Verifier.sol"]);
    let on_evm = ok(dir, &["verify-evm", "--proof", "one/proof.json", "--verifier", "one/Verifier.json"]);
    let gas: u64 = on_evm.split("gas used ").nth(1).and_then(|s| s.trim().parse().ok()).expect(&on_evm);
    assert!(gas < 350_000, "{on_evm}");

    let proof = dir.join("one/proof.json");
    rejected_everywhere(dir, "one", &tampered(dir, "flipped.json", &proof, flip_proof_byte));
    rejected_everywhere(dir, "one", &tampered(dir, "accumulator.json", &proof, bump_instance(3)));
    let last = read(&proof)["instances"][0].as_array().unwrap().len() - 1;
    rejected_everywhere(dir, "one", &tampered(dir, "output.json", &proof, bump_instance(last)));
}
