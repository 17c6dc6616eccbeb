//! Helpers shared by the integration tests: run the `zkinfer` binary as a user would.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An example's folder.
pub fn example(name: &str) -> PathBuf {
    root().join("examples").join(name)
}

/// A test fixture.
pub fn fixture(name: &str) -> PathBuf {
    root().join("tests").join("fixtures").join(name)
}

/// A fresh working folder holding copies of `files` (source, name in the folder).
pub fn work_with(files: &[(&Path, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in files {
        std::fs::copy(from, dir.path().join(to)).unwrap();
    }
    dir
}

/// A fresh working folder with the 16→32→8 example's `network.onnx` and `input.json`.
pub fn mlp_small_workdir() -> tempfile::TempDir {
    let model = example("mlp_small").join("network.onnx");
    let input = example("mlp_small").join("input.json");
    work_with(&[(&model, "network.onnx"), (&input, "input.json")])
}

/// Runs `zkinfer` with `args` in `dir`.
pub fn zkinfer(dir: &Path, args: &[&str]) -> Output {
    zkinfer_env(dir, args, &[])
}

/// Runs `zkinfer` with `args` in `dir` and extra environment variables.
pub fn zkinfer_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zkinfer"));
    cmd.args(args).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("zkinfer runs")
}

/// Runs `zkinfer` and asserts success; returns stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = zkinfer(dir, args);
    assert!(
        out.status.success(),
        "zkinfer {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `zkinfer` and asserts it fails with one clear `error:` line and no panic; returns it.
pub fn fails(dir: &Path, args: &[&str]) -> String {
    fails_env(dir, args, &[])
}

/// As [`fails`], with extra environment variables.
pub fn fails_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = zkinfer_env(dir, args, env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "zkinfer {args:?} should have failed");
    assert!(!stderr.contains("panicked"), "zkinfer {args:?} panicked:\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line from {args:?}, got:\n{stderr}");
    errors[0].to_string()
}

/// Reads a JSON file.
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Writes a JSON file.
pub fn write_json(path: &Path, value: &serde_json::Value) {
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

/// Runs the whole pipeline on `model` and `input` into a fresh temporary folder.
pub fn run_pipeline(model: &Path, input: &Path) -> tempfile::TempDir {
    run_pipeline_with(model, input, &[])
}

/// [`run_pipeline`] with extra options for `zkinfer run`.
pub fn run_pipeline_with(model: &Path, input: &Path, options: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut args =
        vec!["run", "-M", model.to_str().unwrap(), "-D", input.to_str().unwrap(), "--dir", out.to_str().unwrap()];
    args.extend_from_slice(options);
    ok(dir.path(), &args);
    dir
}

/// A copy of `proof.json` with the proof bytes flipped at `positions` (fractions of its length).
pub fn tamper_proof_bytes(proof: &serde_json::Value, position: f64) -> serde_json::Value {
    let mut p = proof.clone();
    let hex_proof = p["proof"].as_str().unwrap().trim_start_matches("0x").to_string();
    let mut bytes = hex::decode(hex_proof).unwrap();
    let i = ((bytes.len() - 1) as f64 * position) as usize;
    bytes[i] ^= 0x5a;
    p["proof"] = serde_json::Value::String(format!("0x{}", hex::encode(bytes)));
    p
}

/// A copy of `proof.json` with public instance `index` changed (as if another value were claimed).
pub fn tamper_instance(proof: &serde_json::Value, index: usize) -> serde_json::Value {
    let mut p = proof.clone();
    let word = p["instances"][0][index].as_str().unwrap().trim_start_matches("0x").to_string();
    let mut bytes = hex::decode(word).unwrap();
    bytes[31] ^= 1;
    p["instances"][0][index] = serde_json::Value::String(format!("0x{}", hex::encode(bytes)));
    p
}

/// Asserts that a bad `proof.json` is rejected natively, on revm and, given a node, on it.
pub fn assert_rejected(work: &Path, bad: &serde_json::Value, rpc_url: Option<&str>, what: &str) {
    let path = work.join("bad-proof.json");
    write_json(&path, bad);
    let p = path.to_str().unwrap();
    let native = fails(work, &["verify", "--proof", p]);
    assert!(native.contains("rejected"), "{what}, native: {native}");
    let revm = fails(work, &["verify-evm", "--proof", p]);
    assert!(revm.contains("rejected"), "{what}, revm: {revm}");
    if let Some(url) = rpc_url {
        let node = fails(work, &["verify-evm", "--proof", p, "--rpc-url", url]);
        assert!(node.contains("rejected"), "{what}, {url}: {node}");
    }
}

/// What a prover holding a model's proving key can do: prove the same circuit with other
/// weights (one weight of the first dense layer lowered by one, which keeps every packing
/// width). Writes the proof, a valid one for the circuit, to `dir/name` in the model's layout
/// (Keccak transcript, or Poseidon when `for_aggregation`) and returns its path.
pub fn prove_with_other_weights(dir: &Path, name: &str, for_aggregation: bool) -> PathBuf {
    use zkinfer::circuit::layout::{build_circuit, Stage};
    use zkinfer::model::QOp;
    use zkinfer::prove::proof::fr_to_hex;
    use zkinfer::prove::TranscriptKind;

    let compiled = zkinfer::artifacts::CompiledModel::load(&dir.join("model.compiled")).unwrap();
    let mut other = compiled.model.clone();
    let weight = other
        .nodes
        .iter_mut()
        .find_map(|n| match &mut n.op {
            QOp::Dense(dense) => Some(&mut dense.weight),
            _ => None,
        })
        .expect("a dense layer");
    let largest = weight.iter().map(|v| v.abs()).max().unwrap();
    let i = weight.iter().position(|&v| v > 1 && v < largest).expect("a weight that is not extremal");
    weight[i] -= 1;
    let (header, pk) = zkinfer::prove::read_pk(&dir.join("pk.bin")).unwrap();
    let srs = zkinfer::pipeline::srs_for_key(header.shape.k, &header.srs, None).unwrap();
    let x = zkinfer::model::load_input(&dir.join("input.json"), &other.input_shapes()).unwrap();
    let inputs = other.quantize_inputs(&x);
    let laid = build_circuit(&other, &inputs, Stage::Prove(&compiled.shape, &header.break_points)).unwrap();
    let instances = laid.instances.clone();
    let transcript = if for_aggregation { TranscriptKind::Poseidon } else { TranscriptKind::Keccak };
    let proof = zkinfer::prove::snark::prove(&srs.params, &pk, laid.circuit, &instances, transcript).unwrap();
    let mut file = json(&dir.join("proof.json"));
    file["transcript"] = serde_json::Value::from(if for_aggregation { "poseidon" } else { "keccak" });
    file["proof"] = serde_json::Value::String(format!("0x{}", hex::encode(&proof)));
    file["instances"][0] = instances.iter().map(|x| serde_json::Value::String(fr_to_hex(x))).collect();
    let path = dir.join(name);
    write_json(&path, &file);
    path
}

/// Rewrites the JSON header of a key file (`vk.bin`, `pk.bin`) with `change`.
pub fn edit_key_header(path: &Path, change: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[12..12 + len]).unwrap();
    change(&mut header);
    let header = serde_json::to_vec(&header).unwrap();
    let mut out = bytes[..8].to_vec();
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&bytes[12 + len..]);
    std::fs::write(path, out).unwrap();
}

/// Settings for laying a model out directly (scales 7, 24-bit activations, default visibility),
/// with the lookup tables over `lookup_range`.
pub fn test_settings(graph: &zkinfer::model::Graph, lookup_range: Option<[f64; 2]>) -> zkinfer::settings::Settings {
    zkinfer::settings::Settings {
        zkinfer_version: "test".into(),
        model_digest: String::new(),
        input_scale: 7,
        param_scale: 7,
        activation_bits: 24,
        visibility: Default::default(),
        k: None,
        max_advice_columns: 8,
        linear_gate: Default::default(),
        poseidon_gate: Default::default(),
        max_verifier_gas: None,
        lookup_range,
        input_shapes: graph.input_shapes(),
        output_shapes: graph.output_shapes(),
    }
}

/// Runs `each` on the in-process EVM (revm), then on a fresh anvil node, and prints how long
/// each took.
pub fn on_revm_and_on_anvil(mut each: impl FnMut(&mut zkinfer::evm::Chain)) {
    let anvil = zkinfer::evm::anvil::spawn_anvil().expect("anvil starts");
    let node = zkinfer::evm::Chain::connect(&anvil.endpoint(), &zkinfer::evm::Connect::default()).unwrap();
    for mut chain in [zkinfer::evm::Chain::in_process(), node] {
        let started = std::time::Instant::now();
        each(&mut chain);
        eprintln!("done on {} in {:.1?}", chain.describe(), started.elapsed());
    }
}

/// Both verifier modes of one key deployed on a chain: the direct verifier, and the shared
/// verifier with the key's data contract(s).
pub struct BothModes {
    pub direct: alloy::primitives::Address,
    pub shared: alloy::primitives::Address,
    pub key: alloy::primitives::Address,
}

impl BothModes {
    /// Deploys the direct verifier (`direct`: its creation code as `create-evm-verifier`
    /// writes it), the shared verifier and the key data of `vk_path`.
    pub fn deploy(chain: &mut zkinfer::evm::Chain, direct: &Path, vk_path: &Path) -> BothModes {
        use zkinfer::evm::{chain::no_custom_errors, reusable};
        let (header, vk, srs) = zkinfer::prove::keys::read_vk_checked(vk_path, None).unwrap();
        let aggregation = header.aggregation.is_some();
        let program =
            zkinfer::evm::program::trace_verifier(&srs.params, &vk, header.shape.num_instances, aggregation).unwrap();
        let bytecode = |path: &Path| hex::decode(json(path)["bytecode"].as_str().unwrap().trim_start_matches("0x"));
        let direct = chain.deploy("direct verifier", bytecode(direct).unwrap(), no_custom_errors).unwrap().address;
        let solc = zkinfer::evm::toolchain::resolve_solc(None).unwrap();
        let shared = reusable::compile_shared_verifier(&solc).unwrap().bytecode;
        let shared = chain.deploy("shared verifier", shared, no_custom_errors).unwrap().address;
        let data = reusable::encode_key(&program).unwrap();
        let key = reusable::deploy_key(chain, &data, no_custom_errors).unwrap().address;
        BothModes { direct, shared, key }
    }

    /// Whether the direct and the shared verifier accept `proof` for `instances` (a call each,
    /// nothing sent): the direct one accepts by not reverting, the shared one by returning true.
    pub fn accept(
        &self,
        chain: &mut zkinfer::evm::Chain,
        instances: &[halo2_base::halo2_proofs::halo2curves::bn256::Fr],
        proof: &[u8],
    ) -> (bool, bool) {
        let direct = chain.call(self.direct, zkinfer::evm::encode_calldata(instances, proof)).unwrap().is_ok();
        let call = zkinfer::evm::reusable::encode_verify_call(self.key, instances, proof);
        let true_word = alloy::primitives::U256::from(1).to_be_bytes::<32>();
        let shared = chain.call(self.shared, call).unwrap().is_ok_and(|answer| answer[..] == true_word);
        (direct, shared)
    }

    /// Both modes accept the honest proof, and refuse it with every byte flipped (each on its
    /// own), with every instance changed, one byte short or long, and with an instance fewer.
    pub fn refuse_every_tamper(
        &self,
        chain: &mut zkinfer::evm::Chain,
        instances: &[halo2_base::halo2_proofs::halo2curves::bn256::Fr],
        proof: &[u8],
    ) {
        use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
        let on = chain.describe();
        assert_eq!(self.accept(chain, instances, proof), (true, true), "the honest proof on {on}");
        for i in 0..proof.len() {
            let mut bad = proof.to_vec();
            bad[i] ^= 0x01;
            assert_eq!(self.accept(chain, instances, &bad), (false, false), "byte {i} flipped on {on}");
        }
        for i in 0..instances.len() {
            let mut bad = instances.to_vec();
            bad[i] += Fr::from(1);
            assert_eq!(self.accept(chain, &bad, proof), (false, false), "instance {i} changed on {on}");
        }
        let short = &proof[..proof.len() - 1];
        assert_eq!(self.accept(chain, instances, short), (false, false), "a proof a byte short on {on}");
        let long = [proof, &[0]].concat();
        assert_eq!(self.accept(chain, instances, &long), (false, false), "a proof a byte long on {on}");
        if let Some((_, fewer)) = instances.split_last() {
            assert_eq!(self.accept(chain, fewer, proof), (false, false), "an instance fewer on {on}");
        }
    }
}
