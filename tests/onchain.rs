//! `zkinfer deploy` and `zkinfer submit` as a dApp developer runs them: against anvil (started
//! on 127.0.0.1 with a free port, stopped after) and on the in-process EVM, with the chain
//! faults that can be provoked locally.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use serde_json::Value;
use zkinfer::evm::anvil::{spawn_anvil, spawn_anvil_with};

/// anvil's second well-known development account (funded on every anvil chain).
const SECOND_DEV_KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const SECOND_DEV_ADDRESS: &str = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";

/// One proved 16→32→8 MLP with a private input and hashed weights (a registry layout with a
/// model commitment), shared by the tests of this file.
fn proved() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = mlp_small_workdir();
        let args = ["run", "-M", "network.onnx", "-D", "input.json", "--dir", "."];
        ok(dir.path(), &[&args[..], &["--input-visibility", "private", "--param-visibility", "hashed"]].concat());
        dir
    })
    .path()
}

/// A fresh folder with the compiled model, the proof and the verifier, and a tampered copy of
/// the proof of each kind.
fn workdir() -> tempfile::TempDir {
    let from = proved();
    let dir = work_with(&[
        (&from.join("proof.json"), "proof.json"),
        (&from.join("Verifier.json"), "Verifier.json"),
        (&from.join("model.compiled"), "model.compiled"),
        (&from.join("vk.bin"), "vk.bin"),
        (&from.join("pk.bin"), "pk.bin"),
        (&from.join("input.json"), "input.json"),
    ]);
    let proof: Value = read(&dir.path().join("proof.json"));
    let mut bad_proof = proof.clone();
    let hex = bad_proof["proof"].as_str().unwrap().to_string();
    let flipped = if &hex[100..101] == "0" { "1" } else { "0" };
    bad_proof["proof"] = Value::String(format!("{}{flipped}{}", &hex[..100], &hex[101..]));
    write(&dir.path().join("bad-proof.json"), &bad_proof);
    let mut other_model = proof;
    other_model["instances"][0][0] = Value::String(format!("0x{}05", "00".repeat(31)));
    write(&dir.path().join("other-model.json"), &other_model);
    dir
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn write(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

fn keystore_in(dir: &Path, password: &str) -> PathBuf {
    let key = hex::decode(SECOND_DEV_KEY).unwrap();
    alloy::signers::local::PrivateKeySigner::encrypt_keystore(
        dir,
        &mut rand::thread_rng(),
        key,
        password,
        Some("deployer.json"),
    )
    .unwrap();
    dir.join("deployer.json")
}

#[test]
fn deploy_register_and_submit_on_anvil_with_every_rejection_decoded() {
    let work = workdir();
    let w = work.path();
    let anvil = spawn_anvil().expect("anvil starts");
    let url = anvil.endpoint();
    let rpc = ["--rpc-url", url.as_str()];

    // Deploy with a keystore: the registry is owned by the keystore's account.
    let keystore = keystore_in(w, "correct horse");
    let keystore_arg = keystore.to_str().unwrap();
    let e = fails_env(
        w,
        &[&["deploy", "--keystore", keystore_arg], &rpc[..]].concat(),
        &[("ZKINFER_KEYSTORE_PASSWORD", "wrong")],
    );
    assert!(e.contains("cannot decrypt the keystore"), "{e}");
    let out = zkinfer_env(
        w,
        &[&["deploy", "--registry", "--model", "mlp", "--keystore", keystore_arg], &rpc[..]].concat(),
        &[("ZKINFER_KEYSTORE_PASSWORD", "correct horse")],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deployment = read(&w.join("deployment.json"));
    assert_eq!(deployment["chain_id"], 31337);
    assert_eq!(deployment["deployer"], SECOND_DEV_ADDRESS);
    assert_eq!(deployment["insecure_srs"], true);
    for contract in ["verifier", "adapter", "registry"] {
        assert!(deployment[contract]["address"].as_str().unwrap().starts_with("0x"), "{deployment}");
        assert!(deployment[contract]["tx_hash"].as_str().unwrap().len() == 66, "{deployment}");
        assert!(deployment[contract]["gas_used"].as_u64().unwrap() > 100_000, "{deployment}");
    }
    let model = &deployment["models"][0];
    assert_eq!(model["name"], "mlp");
    assert_eq!(model["weights"], "Instances");
    assert_eq!(model["layout"]["bound"], serde_json::json!([0]), "the hashed params are the first instance");
    let proof = read(&w.join("proof.json"));
    let commitment: alloy::primitives::B256 = proof["instances"][0][0].as_str().unwrap().parse().unwrap();
    assert_eq!(
        model["binding"],
        format!("{}", alloy::primitives::keccak256(commitment)),
        "registered with the model commitment"
    );

    // Rejections, decoded from the registry's custom errors, and nothing recorded.
    fn with<'a>(rpc: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [&["submit", "--model", "mlp"], rpc, extra].concat()
    }
    let submit = |extra: &[&'static str]| with(&rpc, extra);
    let e = fails(w, &submit(&["-P", "bad-proof.json"]));
    assert!(e.contains("ProofRejected") && e.contains("rejected the proof"), "{e}");
    let e = fails(w, &submit(&["-P", "other-model.json"]));
    assert!(e.contains("OtherWeights") && e.contains("other weights"), "{e}");
    let e = fails(w, &[&["submit", "--model", "someone-else"], &rpc[..]].concat());
    assert!(e.contains("UnknownModel"), "{e}");
    let e = fails(
        w,
        &[
            &["deploy", "--registry-address", deployment["registry"]["address"].as_str().unwrap(), "--model", "again"],
            &rpc[..],
        ]
        .concat(),
    );
    assert!(e.contains("NotOwner"), "only the owner registers: {e}");

    // Accepted: the record is read back from the registry, outputs decoded.
    let printed = ok(w, &submit(&[]));
    assert!(printed.contains("verified on chain 31337"), "{printed}");
    let submission = read(&w.join("submission.json"));
    assert_eq!(submission["status"], "verified");
    let gas = submission["gas_used"].as_u64().unwrap();
    assert!((300_000..1_000_000).contains(&gas), "{gas}");
    assert_eq!(submission["submitter"], "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266");
    assert_eq!(submission["inputs"], serde_json::json!([format!("0x{}", "00".repeat(32))]), "the input is private");
    let outputs: Vec<f64> = proof["outputs"][0].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(submission["outputs"][0], format!("{outputs:?}"), "the registry holds the proven outputs");
    let tx_hash = submission["tx_hash"].clone();

    // Re-running is safe: nothing is sent, and what the first run learnt is kept.
    let again = ok(w, &submit(&[]));
    assert!(again.contains("already verified") && again.contains("nothing sent"), "{again}");
    let submission = read(&w.join("submission.json"));
    assert_eq!(submission["status"], "already-verified");
    assert_eq!(submission["tx_hash"], tx_hash);

    // Chain faults.
    let unfunded = "0x1111111111111111111111111111111111111111111111111111111111111111";
    let e = fails_env(w, &submit(&["-P", "other-model.json", "-O", "x.json"]), &[("ZKINFER_PRIVATE_KEY", unfunded)]);
    assert!(e.contains("OtherWeights"), "a revert is found before paying: {e}");
    let fresh = workdir();
    let f = fresh.path();
    // The registration is read from the verifying key alone.
    std::fs::remove_file(f.join("model.compiled")).unwrap();
    std::fs::rename(f.join("vk.bin"), f.join("model-vk.bin")).unwrap();
    ok(f, &[&["deploy", "--registry", "--model", "mlp", "--vk", "model-vk.bin"], &rpc[..]].concat());
    assert_eq!(read(&f.join("deployment.json"))["models"][0]["layout"], model["layout"]);
    std::fs::rename(f.join("model-vk.bin"), f.join("vk.bin")).unwrap();
    let e = fails_env(f, &submit(&[]), &[("ZKINFER_PRIVATE_KEY", unfunded)]);
    assert!(e.contains("cannot pay") && e.contains("balance 0 wei"), "{e}");
    let e = fails(w, &[&["submit", "--model", "mlp", "--chain-id", "1"], &rpc[..]].concat());
    assert!(e.contains("is on chain 31337, not chain 1"), "{e}");
    drop(anvil);
    let e = fails(w, &submit(&[]));
    assert!(e.contains("cannot reach the RPC endpoint") && e.contains("check that the node is running"), "{e}");
    assert_eq!(read(&w.join("submission.json"))["tx_hash"], tx_hash, "a failed run loses nothing");
}

#[test]
fn a_verifier_on_the_development_srs_goes_only_to_local_chains() {
    let work = workdir();
    let w = work.path();
    let anvil = spawn_anvil_with(&["--chain-id", "11155111"]).expect("anvil starts");
    let url = anvil.endpoint();
    let key = [("ZKINFER_PRIVATE_KEY", SECOND_DEV_KEY)];
    let e = fails(w, &["deploy", "--rpc-url", &url]);
    assert!(e.contains("not a local development chain") && e.contains("--keystore"), "no dev key on a real chain: {e}");
    let e = fails_env(w, &["deploy", "--rpc-url", &url], &key);
    assert!(
        e.contains("refusing to deploy") && e.contains("development SRS") && e.contains("--allow-insecure-srs"),
        "{e}"
    );
    assert!(!w.join("deployment.json").exists(), "nothing deployed");
    let out = zkinfer_env(w, &["deploy", "--rpc-url", &url, "--allow-insecure-srs"], &key);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read(&w.join("deployment.json"))["chain_id"], 11155111);
}

#[test]
fn a_receipt_that_does_not_come_keeps_the_transaction_and_a_rerun_finds_the_record() {
    let work = workdir();
    let w = work.path();
    let anvil = spawn_anvil().expect("anvil starts");
    let url = anvil.endpoint();
    ok(w, &["deploy", "--rpc-url", &url, "--registry", "--model", "mlp"]);

    anvil_rpc(&url, "evm_setAutomine", serde_json::json!([false]));
    let e = fails(w, &["submit", "--rpc-url", &url, "--model", "mlp", "--timeout", "3"]);
    assert!(e.contains("no receipt came within 3 s") && e.contains("0x"), "{e}");
    let pending = read(&w.join("submission.json"));
    assert_eq!(pending["status"], "pending");
    let tx_hash = pending["tx_hash"].as_str().expect("the hash is written before the wait").to_string();
    assert!(e.contains(&tx_hash), "{e}");

    anvil_rpc(&url, "evm_mine", serde_json::json!([]));
    let again = ok(w, &["submit", "--rpc-url", &url, "--model", "mlp"]);
    assert!(again.contains("already verified"), "the pending transaction was mined: {again}");
    assert_eq!(read(&w.join("submission.json"))["tx_hash"], tx_hash);
}

fn anvil_rpc(url: &str, method: &'static str, params: Value) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        use alloy::providers::{Provider, ProviderBuilder};
        let provider = ProviderBuilder::new().connect_http(url.parse().unwrap());
        let _: Value = provider.raw_request(method.into(), params).await.unwrap();
    });
}

#[test]
fn submit_without_a_node_runs_the_whole_flow_in_process() {
    let work = workdir();
    let w = work.path();
    let printed = ok(w, &["submit", "--model", "mlp"]);
    assert!(printed.contains("deployed on the in-process EVM"), "{printed}");
    assert!(printed.contains("verified on the in-process EVM"), "{printed}");
    let submission = read(&w.join("submission.json"));
    assert_eq!(submission["status"], "verified");
    assert!(submission.get("rpc_url").is_none());
    assert!(submission["gas_used"].as_u64().unwrap() > 300_000);
    assert!(!w.join("deployment.json").exists(), "an in-process deployment is not a record of anything");
    let e = fails(w, &["submit", "--model", "mlp", "-P", "bad-proof.json"]);
    assert!(e.contains("ProofRejected"), "{e}");
    // In process too, the model is registered from its verifying key: another commitment is
    // refused before the verifier runs.
    let e = fails(w, &["submit", "--model", "mlp", "-P", "other-model.json"]);
    assert!(e.contains("OtherWeights"), "{e}");

    let deployed = ok(w, &["deploy", "--registry", "--model", "mlp"]);
    assert!(deployed.contains("registry"), "{deployed}");
    let deployment = read(&w.join("deployment.json"));
    assert!(deployment.get("rpc_url").is_none());
    let e = fails(w, &["deploy", "--model", "mlp"]);
    assert!(e.contains("needs a registry"), "{e}");
}

#[test]
fn the_credit_score_example_runs_on_anvil_as_its_readme_says() {
    let example = example("credit_score");
    let work =
        work_with(&[(&example.join("network.onnx"), "network.onnx"), (&example.join("input.json"), "input.json")]);
    let w = work.path();
    for step in
        [&["gen-settings", "--input-visibility", "private"][..], &["compile"], &["setup"], &["create-evm-verifier"]]
    {
        ok(w, step);
    }
    let anvil = spawn_anvil().expect("anvil starts");
    let url = anvil.endpoint();
    ok(w, &["deploy", "--rpc-url", &url, "--registry", "--model", "credit-score-v1"]);
    assert_eq!(read(&w.join("deployment.json"))["models"][0]["name"], "credit-score-v1");
    ok(w, &["prove", "-D", "input.json"]);
    let printed = ok(w, &["submit", "--rpc-url", &url, "--model", "credit-score-v1"]);
    assert!(printed.contains("verified on chain 31337"), "{printed}");

    let proof = read(&w.join("proof.json"));
    let score = proof["outputs"][0][0].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score), "a probability: {score}");
    assert_eq!(read(&w.join("submission.json"))["outputs"][0], format!("[{score:?}]"), "the registry holds the score");
    let input = read(&w.join("input.json"));
    let first = input["input_data"][0][0].as_f64().unwrap().to_string();
    let published = std::fs::read_to_string(w.join("proof.json")).unwrap()
        + &std::fs::read_to_string(w.join("submission.json")).unwrap();
    assert!(!published.contains(&first[..6]), "the applicant's data is not published");
    assert!(ok(w, &["submit", "--rpc-url", &url, "--model", "credit-score-v1"]).contains("already verified"));
}

#[test]
fn the_registry_refuses_proofs_of_other_weights_for_public_and_hashed_params() {
    let anvil = spawn_anvil().expect("anvil starts");
    let url = anvil.endpoint();
    let public = mlp_small_workdir();
    let args = ["run", "-M", "network.onnx", "-D", "input.json", "--dir", "."];
    ok(public.path(), &[&args[..], &["--input-visibility", "private", "--param-visibility", "public"]].concat());
    let hashed = workdir();
    for (params, w) in [("public", public.path()), ("hashed", hashed.path())] {
        // A proof made with the model's own proving key and other weights: valid for the
        // verifier, whose circuit takes the weights (or their commitment) as instances.
        let forged = prove_with_other_weights(w, "forged.json", false);
        let forged = forged.to_str().unwrap();
        assert!(ok(w, &["verify-evm", "--proof", forged]).contains("verified"), "{params}");
        ok(w, &["deploy", "--rpc-url", &url, "--registry", "--model", "m"]);
        let deployment = read(&w.join("deployment.json"));
        assert_eq!(deployment["models"][0]["weights"], "Instances", "{params}: {deployment}");
        let e = fails(w, &["submit", "--rpc-url", &url, "--model", "m", "-P", forged]);
        assert!(e.contains("OtherWeights"), "{params}: {e}");
        let printed = ok(w, &["submit", "--rpc-url", &url, "--model", "m"]);
        assert!(printed.contains("verified on chain 31337"), "{params}: {printed}");
    }
}

#[test]
fn a_model_with_private_weights_is_registered_only_when_asked_and_says_so() {
    let dir = mlp_small_workdir();
    let w = dir.path();
    let args = ["run", "-M", "network.onnx", "-D", "input.json", "--dir", "."];
    ok(w, &[&args[..], &["--param-visibility", "private"]].concat());
    let e = fails(w, &["deploy", "--registry", "--model", "m"]);
    assert!(e.contains("not tied to the model's weights") && e.contains("--allow-unbound-weights"), "{e}");
    let printed = ok(w, &["deploy", "--registry", "--model", "m", "--allow-unbound-weights"]);
    assert!(printed.contains("weights NOT bound"), "{printed}");
    assert_eq!(read(&w.join("deployment.json"))["models"][0]["weights"], "Unbound");
    let e = fails(w, &["submit", "--model", "m"]);
    assert!(e.contains("--allow-unbound-weights"), "{e}");
    assert!(ok(w, &["submit", "--model", "m", "--allow-unbound-weights"]).contains("verified"));
}

#[test]
fn a_proof_bound_to_its_submitter_cannot_be_front_run_or_replayed_elsewhere() {
    let dir = mlp_small_workdir();
    let w = dir.path();
    for step in [&["gen-settings", "--bind-submitter"][..], &["compile"], &["setup"], &["create-evm-verifier"]] {
        ok(w, step);
    }
    let e = fails(w, &["prove"]);
    assert!(e.contains("binds each proof to its submitter") && e.contains("--submitter"), "{e}");
    let anvil = spawn_anvil().expect("anvil starts");
    let url = anvil.endpoint();
    ok(w, &["deploy", "--rpc-url", &url, "--registry", "--model", "m"]);
    let first_account = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
    // The registry and chain come from deployment.json.
    ok(w, &["prove", "--submitter", first_account]);
    let printed = ok(w, &["verify"]);
    assert!(printed.contains("proven submitter 0") && printed.contains("binding word 0x"), "{printed}");
    // The word is free in the circuit but bound by the transcript: changed, the proof fails.
    let proof = read(&w.join("proof.json"));
    let at = proof["instances"][0].as_array().unwrap().len() - 1;
    assert_rejected(w, &tamper_instance(&proof, at), Some(&url), "the submitter word");

    // A front-runner sending the same proof from another account is refused before paying.
    let e = fails_env(w, &["submit", "--rpc-url", &url, "--model", "m"], &[("ZKINFER_PRIVATE_KEY", SECOND_DEV_KEY)]);
    assert!(e.contains("bound to another submitter") && e.to_lowercase().contains(SECOND_DEV_ADDRESS), "{e}");
    // So is a replay into another registry on the same chain.
    ok(w, &["deploy", "--rpc-url", &url, "--registry", "--model", "m", "-O", "second.json"]);
    let second = read(&w.join("second.json"))["registry"]["address"].as_str().unwrap().to_string();
    let e = fails(w, &["submit", "--rpc-url", &url, "--model", "m", "--registry", &second]);
    assert!(e.contains("bound to another submitter, chain or registry"), "{e}");
    // The account it was made for records it.
    let printed = ok(w, &["submit", "--rpc-url", &url, "--model", "m"]);
    assert!(printed.contains("verified on chain 31337"), "{printed}");
    assert_eq!(read(&w.join("submission.json"))["submitter"], first_account);
}

#[test]
fn the_shared_verifier_is_deployed_once_and_each_model_registers_its_key() {
    let work = workdir();
    let w = work.path();
    ok(w, &["create-evm-verifier", "--reusable"]);
    let anvil = spawn_anvil().expect("anvil starts");
    let url = anvil.endpoint();
    let shared = ["--verifier", "SharedVerifier.json", "--key-contract", "VerifyingKey.json"];
    ok(w, &[&["deploy", "--rpc-url", url.as_str(), "--registry", "--model", "mlp"], &shared[..]].concat());
    let first = read(&w.join("deployment.json"));
    assert_eq!(first["shared_verifier"], true, "{first}");
    for contract in ["verifier", "key", "registry"] {
        assert!(first[contract]["gas_used"].as_u64().unwrap() > 0, "{contract}: {first}");
    }
    // The registry holds the shared verifier and the key itself: no adapter.
    assert!(first["adapter"].is_null(), "{first}");
    assert_eq!(first["models"][0]["verifier"], first["verifier"]["address"], "{first}");
    assert_eq!(first["models"][0]["key"], first["key"]["address"], "{first}");
    // Submissions go to the shared verifier with the model's key (the rejections first: a
    // statement already recorded is not sent again).
    let e = fails(w, &["submit", "--model", "mlp", "-P", "bad-proof.json", "--rpc-url", url.as_str()]);
    assert!(e.contains("ProofRejected"), "{e}");
    let e = fails(w, &["submit", "--model", "mlp", "-P", "other-model.json", "--rpc-url", url.as_str()]);
    assert!(e.contains("OtherWeights"), "{e}");
    let submitted = ok(w, &["submit", "--model", "mlp", "--rpc-url", url.as_str()]);
    assert_eq!(read(&w.join("submission.json"))["status"], "verified", "{submitted}");

    // One more model in the same registry: the shared verifier is used again (from
    // deployment.json), only its key and registration are paid for.
    let registry = first["registry"]["address"].as_str().unwrap().to_string();
    ok(
        w,
        &[&["deploy", "--rpc-url", url.as_str(), "--registry-address", &registry, "--model", "mlp-again"], &shared[..]]
            .concat(),
    );
    let second = read(&w.join("deployment.json"));
    assert_eq!(second["verifier"]["address"], first["verifier"]["address"], "{second}");
    assert!(second["verifier"]["tx_hash"].is_null(), "not deployed again: {second}");
    let gas = |d: &Value, what: &str| d[what]["gas_used"].as_u64().unwrap();
    let one_more = gas(&second, "key") + second["models"][0]["gas_used"].as_u64().unwrap();
    eprintln!(
        "shared verifier {} gas once; one more model: key {} + registration {} = {one_more} gas",
        gas(&first, "verifier"),
        gas(&second, "key"),
        second["models"][0]["gas_used"]
    );
    // Issue 19's goal: a quarter of this model's direct verifier deployment (3.2 M gas); 1.41 M
    // before the compact key (1-byte operands, fused operations) and the packed registry layout.
    assert!(one_more <= 800_000, "one more model costs {one_more} gas");
    ok(w, &["submit", "--model", "mlp-again", "--rpc-url", url.as_str()]);
    assert_eq!(read(&w.join("submission.json"))["status"], "verified");
    // A contract that is not a shared verifier reading this version's keys is refused as one.
    let e = fails(w, &[&["deploy", "--rpc-url", url.as_str(), "--shared-verifier", &registry], &shared[..]].concat());
    assert!(e.contains("not a shared verifier that reads this zkinfer's keys"), "{e}");
    // A direct verifier with a key contract, or the shared one without, is refused before
    // anything is sent.
    let e = fails(w, &["deploy", "--rpc-url", url.as_str(), "--key-contract", "VerifyingKey.json"]);
    assert!(e.contains("direct one"), "{e}");
    let e = fails(w, &["deploy", "--rpc-url", url.as_str(), "--verifier", "SharedVerifier.json"]);
    assert!(e.contains("--key-contract"), "{e}");
}
