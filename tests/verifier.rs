//! Our verifier generator against snark-verifier's: the traced program (what the generated
//! contracts execute) accepts and rejects exactly the proofs snark-verifier's native verifier
//! does, over sweeps of flipped proof bytes and changed instances.

mod common;

use common::example;
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use zkinfer::evm::program::{trace_verifier, Program};
use zkinfer::prove::snark::{deciding_key, protocol_of, verify};
use zkinfer::prove::{ProofFile, TranscriptKind};

/// A native verifier: whether it accepts a proof for instances.
type NativeVerifier = Box<dyn Fn(&[Fr], &[u8]) -> bool>;

struct Case {
    _work: tempfile::TempDir,
    program: Program,
    /// snark-verifier's generated verifier for the same key.
    reference: String,
    instances: Vec<Fr>,
    proof: Vec<u8>,
    native: NativeVerifier,
}

fn mlp_small() -> Case {
    mlp_small_with(&example("mlp_small").join("network.onnx"))
}

/// A proof of `model` (the 16→32→8 MLP's shape) on the example's input, and its verifiers.
fn mlp_small_with(model: &std::path::Path) -> Case {
    case_of(model, &example("mlp_small").join("input.json"), &[])
}

/// A proof of `model` on `input` (`zkinfer run` with `options`), and its verifiers.
fn case_of(model: &std::path::Path, input: &std::path::Path, options: &[&str]) -> Case {
    let work = common::run_pipeline_with(model, input, options);
    let out = work.path().join("out");
    let (header, vk, srs) = zkinfer::prove::keys::read_vk_checked(&out.join("vk.bin"), None).unwrap();
    let n = header.shape.num_instances;
    let program = trace_verifier(&srs.params, &vk, n, false).unwrap();
    let reference = zkinfer::evm::solidity::snark_verifier_source(&srs.params, &vk, n, false);
    let proof_path = out.join("proof.json");
    let file = ProofFile::load_for_evm(&proof_path).unwrap();
    let instances = file.instance_values(&proof_path).unwrap().remove(0);
    let proof = file.proof_bytes(&proof_path).unwrap();
    let protocol = protocol_of(&srs.params, &vk, n, false);
    let dk = deciding_key(&srs.params);
    let native = Box::new(move |instances: &[Fr], proof: &[u8]| {
        verify(&dk, &protocol, instances, proof, TranscriptKind::Keccak).is_ok()
    });
    Case { _work: work, program, reference, instances, proof, native }
}

fn calldata(instances: &[Fr], proof: &[u8]) -> Vec<u8> {
    zkinfer::evm::encode_calldata(instances, proof)
}

#[test]
fn the_traced_verifier_decides_as_snark_verifier_does() {
    decides_as_snark_verifier(mlp_small());
}

/// Ten lookup tables: the lookup arguments' part of the verification, traced and fused.
fn lookup_heavy() -> Case {
    case_of(&common::fixture("lookup_ops.onnx"), &common::fixture("lookup_ops.input.json"), &["--lookup-range", "-4,4"])
}

/// A key over a chain's code-size limit is deployed in parts (here parts of at most 1,000
/// bytes, so that the MLP's key takes three): the shared verifier joins them, accepts the
/// honest proof and refuses tampered ones as with one contract.
#[test]
fn a_key_in_parts_verifies_as_a_key_in_one_contract() {
    let case = mlp_small();
    let mut shared = Shared::new();
    let data = zkinfer::evm::reusable::encode_key(&case.program).unwrap();
    let whole = shared.register(&case.program);
    let parted = zkinfer::evm::reusable::deploy_key_within(
        &mut shared.chain,
        &data,
        1000,
        zkinfer::evm::chain::no_custom_errors,
    )
    .unwrap();
    let (one, parts) = (
        shared.verify(whole, &case.instances, &case.proof),
        shared.verify(parted.address, &case.instances, &case.proof),
    );
    eprintln!("one contract: {one:?} gas; in parts: {parts:?} gas");
    assert!(one.is_some() && parts.is_some(), "the honest proof is accepted either way");
    let step = (case.proof.len() / 29).max(1);
    for i in (0..case.proof.len()).step_by(step) {
        let mut bad = case.proof.clone();
        bad[i] ^= 0x01;
        assert_eq!(shared.verify(parted.address, &case.instances, &bad), None, "byte {i} flipped is accepted");
    }
    let mut bad = case.instances.clone();
    bad[0] += Fr::from(1);
    assert_eq!(shared.verify(parted.address, &bad, &case.proof), None, "a changed instance is accepted");
}

#[test]
fn a_lookup_heavy_proof_is_decided_as_snark_verifier_does_natively_and_by_the_shared_verifier() {
    let case = lookup_heavy();
    let mut shared = Shared::new();
    let vk = shared.register(&case.program);
    let gas = shared.verify(vk, &case.instances, &case.proof);
    eprintln!("lookup-heavy proof on the shared verifier: {gas:?} gas");
    assert!(gas.is_some(), "the honest proof is accepted");
    let step = (case.proof.len() / 61).max(1);
    for i in (0..case.proof.len()).step_by(step) {
        let mut bad = case.proof.clone();
        bad[i] ^= 0x01;
        assert_eq!(shared.verify(vk, &case.instances, &bad), None, "byte {i} flipped is accepted");
    }
    every_tamper_refused_by_both_modes_on_revm_and_on_anvil(&case, None);
    decides_as_snark_verifier(case);
}

/// Every byte of the case's proof flipped and every instance changed: the direct verifier (as
/// `zkinfer run` wrote it) and the shared verifier with the key refuse each, on revm and on anvil.
/// With `other` (a model of the same shape), each model's proof is refused by the other's
/// verifiers.
fn every_tamper_refused_by_both_modes_on_revm_and_on_anvil(case: &Case, other: Option<&Case>) {
    let deploy = |chain: &mut zkinfer::evm::Chain, case: &Case| {
        let out = case._work.path().join("out");
        common::BothModes::deploy(chain, &out.join("Verifier.json"), &out.join("vk.bin"))
    };
    common::on_revm_and_on_anvil(|chain| {
        let modes = deploy(chain, case);
        if let Some(other) = other {
            let others = deploy(chain, other);
            assert_eq!(others.accept(chain, &other.instances, &other.proof), (true, true), "B's own proof");
            let on = chain.describe();
            assert_eq!(modes.accept(chain, &other.instances, &other.proof), (false, false), "B's proof, A's key, {on}");
            assert_eq!(others.accept(chain, &case.instances, &case.proof), (false, false), "A's proof, B's key, {on}");
        }
        modes.refuse_every_tamper(chain, &case.instances, &case.proof);
    });
}

/// The traced program (and the shared verifier's fused one) against snark-verifier's native
/// verifier: the honest proof, a sweep of flipped proof bytes, every instance changed, calldata
/// one byte short and one byte long.
fn decides_as_snark_verifier(case: Case) {
    assert!((case.native)(&case.instances, &case.proof), "the honest proof verifies natively");
    assert!(case.program.accepts(&calldata(&case.instances, &case.proof)), "and in the traced program");
    // The shared verifier runs the fused program: it must decide alike, with fewer operations.
    let fused = case.program.fused();
    assert!(fused.ops.len() + 80 < case.program.ops.len(), "{} fused of {}", fused.ops.len(), case.program.ops.len());
    assert!(fused.accepts(&calldata(&case.instances, &case.proof)), "the fused program accepts the honest proof");
    let mut disagreements = Vec::new();
    let step = (case.proof.len() / 97).max(1);
    for i in (0..case.proof.len()).step_by(step) {
        let mut bad = case.proof.clone();
        bad[i] ^= 0x01;
        let (native, ours) =
            ((case.native)(&case.instances, &bad), case.program.accepts(&calldata(&case.instances, &bad)));
        assert!(!ours, "byte {i} flipped is accepted");
        assert!(!fused.accepts(&calldata(&case.instances, &bad)), "byte {i} flipped is accepted when fused");
        if native != ours {
            disagreements.push(i);
        }
    }
    for i in 0..case.instances.len() {
        let mut bad = case.instances.clone();
        bad[i] += Fr::from(1);
        assert!(!case.program.accepts(&calldata(&bad, &case.proof)), "instance {i} changed is accepted");
        assert!(!fused.accepts(&calldata(&bad, &case.proof)), "instance {i} changed is accepted when fused");
    }
    assert!(disagreements.is_empty(), "snark-verifier and the program disagree at bytes {disagreements:?}");
    let honest = calldata(&case.instances, &case.proof);
    assert!(!case.program.accepts(&honest[..honest.len() - 1]), "truncated calldata");
    assert!(!case.program.accepts(&[honest.as_slice(), &[0]].concat()), "over-long calldata");
}

/// Deploys `bytecode` in process and verifies `calldata`: the gas when accepted.
fn on_revm(bytecode: &[u8], calldata: &[u8]) -> Option<u64> {
    let connect = zkinfer::evm::Connect::default();
    let (verification, _, _) = zkinfer::evm::verify_on_chain(&connect, bytecode, calldata).unwrap();
    verification.verified.then(|| verification.gas_used.unwrap())
}

/// A direct verifier's source compiled.
fn compile_direct(
    solc: &std::path::Path,
    source: &str,
    optimizer: zkinfer::evm::solidity::Optimizer,
) -> zkinfer::evm::solidity::CompiledContract {
    let files = [("Verifier.sol", source)];
    zkinfer::evm::solidity::compile_sources(solc, &files, &[("Verifier.sol", "Halo2Verifier")], optimizer)
        .unwrap()
        .remove(0)
}

#[test]
fn the_rendered_direct_verifier_decides_as_snark_verifier_s_contract() {
    let case = mlp_small();
    let solc = zkinfer::evm::toolchain::resolve_solc(None).unwrap();
    let header = zkinfer::evm::yul::Header { title: "mlp_small".into(), circuit_digest: "test".into() };
    let source = zkinfer::evm::yul::render_direct(&case.program, &header);
    let ours = compile_direct(&solc, &source, zkinfer::evm::solidity::Optimizer::Bytecode);
    let theirs = compile_direct(&solc, &case.reference, zkinfer::evm::solidity::Optimizer::Off);
    let honest = calldata(&case.instances, &case.proof);
    let (our_gas, their_gas) = (on_revm(&ours.bytecode, &honest), on_revm(&theirs.bytecode, &honest));
    let estimate = zkinfer::evm::estimate::estimate_program(&case.program);
    eprintln!(
        "runtime bytes: ours {} theirs {}; gas: ours {our_gas:?} theirs {their_gas:?}; {} ops, {} vars; estimate {estimate:?}",
        ours.runtime.len(),
        theirs.runtime.len(),
        case.program.ops.len(),
        case.program.vars
    );
    assert!(our_gas.is_some() && their_gas.is_some(), "both accept the honest proof");
    let step = (case.proof.len() / 23).max(1);
    for i in (0..case.proof.len()).step_by(step) {
        let mut bad = case.proof.clone();
        bad[i] ^= 0x01;
        let bad = calldata(&case.instances, &bad);
        assert_eq!(on_revm(&ours.bytecode, &bad), None, "byte {i} flipped is accepted by ours");
        assert_eq!(on_revm(&theirs.bytecode, &bad), None, "byte {i} flipped is accepted by snark-verifier's");
    }
    assert_eq!(on_revm(&ours.bytecode, &honest[..honest.len() - 1]), None, "truncated calldata");
    assert_eq!(on_revm(&ours.bytecode, &[honest.as_slice(), &[0]].concat()), None, "over-long calldata");
    // With its Lagrange rows in loops (what a verifier near EIP-170's limit gets), it decides the
    // same: the honest proof passes, every flipped byte and every changed instance fails.
    let (looped, rows) = zkinfer::evm::yul::render_direct_with(&case.program, &header, true);
    assert!(rows > 0 && looped.contains(zkinfer::evm::yul::LAGRANGE_LOOP), "no loop rendered");
    assert_eq!(zkinfer::evm::yul::render_direct(&case.program, &header), source, "straight-line when it fits");
    let looped = compile_direct(&solc, &looped, zkinfer::evm::solidity::Optimizer::Bytecode);
    assert!(looped.runtime.len() < ours.runtime.len(), "loops make it smaller");
    assert!(on_revm(&looped.bytecode, &honest).is_some(), "the looped verifier accepts the honest proof");
    for i in (0..case.proof.len()).step_by(step) {
        let mut bad = case.proof.clone();
        bad[i] ^= 0x01;
        assert_eq!(on_revm(&looped.bytecode, &calldata(&case.instances, &bad)), None, "byte {i} flipped, looped");
    }
    for i in 0..case.instances.len() {
        let mut bad = case.instances.clone();
        bad[i] += Fr::from(1);
        assert_eq!(on_revm(&looped.bytecode, &calldata(&bad, &case.proof)), None, "instance {i} changed, looped");
        assert_eq!(on_revm(&ours.bytecode, &calldata(&bad, &case.proof)), None, "instance {i} changed");
    }
    // The fused operations (multiply-adds, ecMul into ecAdd, batch inversions) render too.
    let fused = zkinfer::evm::yul::render_direct(&case.program.fused(), &header);
    let fused = compile_direct(&solc, &fused, zkinfer::evm::solidity::Optimizer::Bytecode);
    assert!(on_revm(&fused.bytecode, &honest).is_some(), "the fused verifier accepts the honest proof");
    for i in (0..case.proof.len()).step_by(step) {
        let mut bad = case.proof.clone();
        bad[i] ^= 0x01;
        assert_eq!(on_revm(&fused.bytecode, &calldata(&case.instances, &bad)), None, "byte {i} flipped, fused");
    }
}

/// Prints, for verifiers of several geometries, the features the size estimate counts and the
/// size solc gives: the data `zkinfer::evm::estimate`'s constants are fitted to (run with
/// `--ignored --nocapture`).
#[test]
#[ignore]
fn fit_the_size_estimate() {
    use zkinfer::circuit::layout::{choose_shape, LinearGate, PoseidonGate, ShapeOptions};
    use zkinfer::evm::estimate::{placeholder_program, source_features};
    use zkinfer::model::{import_onnx, QuantizedModel};
    use zkinfer::settings::Visibility;
    let solc = zkinfer::evm::toolchain::resolve_solc(None).unwrap();
    let models = [
        (example("mlp_small").join("network.onnx"), None),
        (example("mlp_mnist").join("network.onnx"), None),
        (example("cnn_small").join("network.onnx"), None),
        (example("sigmoid_mlp").join("network.onnx"), Some([-8.0, 8.0])),
        (common::fixture("lookup_ops.onnx"), Some([-8.0, 8.0])),
    ];
    for (path, range) in models {
        let graph = import_onnx(&path).unwrap();
        // Default visibility without and with the linear gate; every commitment hashed, with
        // and without the Poseidon gate.
        let cases = [
            (false, "off", "off"),
            (false, "2x1", "off"),
            (false, "4x4", "off"),
            (true, "off", "on"),
            (true, "2x1", "on"),
        ];
        // Hashing the MNIST MLP's 100k weights would take long to lay out.
        let large = path.to_string_lossy().contains("mlp_mnist");
        for (hashed, gate, poseidon) in cases.into_iter().filter(|c| !(c.0 && large)) {
            let mut settings = common::test_settings(&graph, range);
            if hashed {
                let v = &mut settings.visibility;
                (v.input, v.params, v.output) = (Visibility::Hashed, Visibility::Hashed, Visibility::Hashed);
            }
            let model = QuantizedModel::quantize(&graph, &settings).unwrap();
            let options = ShapeOptions {
                linear_gate: gate.parse::<LinearGate>().unwrap(),
                poseidon_gate: if poseidon == "on" { PoseidonGate::On } else { PoseidonGate::Off },
                ..Default::default()
            };
            let gate = format!("{}{gate}/{poseidon}", if hashed { "hashed-" } else { "" });
            let shape = choose_shape(&model, &options).unwrap();
            let program = placeholder_program(&shape.params(), shape.k, shape.num_instances);
            let source = zkinfer::evm::yul::render_direct(&program, &Default::default());
            let compiled = zkinfer::evm::solidity::compile_sources(
                &solc,
                &[("Verifier.sol", &source)],
                &[("Verifier.sol", "Halo2Verifier")],
                zkinfer::evm::solidity::Optimizer::Bytecode,
            )
            .unwrap()
            .remove(0);
            if let Ok(dir) = std::env::var("ZKINFER_DUMP_VERIFIER") {
                let name = path.file_stem().unwrap().to_string_lossy().to_string();
                let parent = path.parent().unwrap().file_name().unwrap().to_string_lossy().to_string();
                std::fs::write(format!("{dir}/{parent}-{name}-{gate}.sol"), &source).unwrap();
            }
            let f = source_features(&source);
            let theirs = if std::env::var("ZKINFER_COMPARE").is_ok() {
                let vk = zkinfer::evm::estimate::placeholder_vk(&shape.params(), shape.k);
                let srs = zkinfer::evm::estimate::placeholder_srs(shape.k);
                let source = zkinfer::evm::solidity::snark_verifier_source(&srs, &vk, shape.num_instances, false);
                zkinfer::evm::solidity::compile_sources(
                    &solc,
                    &[("Verifier.sol", &source)],
                    &[("Verifier.sol", "Halo2Verifier")],
                    zkinfer::evm::solidity::Optimizer::Off,
                )
                .unwrap()
                .remove(0)
                .runtime
                .len()
            } else {
                0
            };
            println!(
                "FIT {} {} {} {:?} {} theirs {theirs}",
                path.display(),
                gate,
                program.ops.len(),
                f,
                compiled.runtime.len()
            );
        }
    }
}

alloy::sol! {
    function verifyProof(address vk, uint256[] instances, bytes proof) external view returns (bool);
}

/// The shared verifier and one key deployed in process.
struct Shared {
    chain: zkinfer::evm::Chain,
    verifier: alloy::primitives::Address,
}

impl Shared {
    fn new() -> Self {
        let solc = zkinfer::evm::toolchain::resolve_solc(None).unwrap();
        let compiled = zkinfer::evm::reusable::compile_shared_verifier(&solc).unwrap();
        eprintln!("shared verifier: {} runtime bytes", compiled.runtime.len());
        let mut chain = zkinfer::evm::Chain::in_process();
        let verifier =
            chain.deploy("shared verifier", compiled.bytecode, zkinfer::evm::chain::no_custom_errors).unwrap().address;
        Shared { chain, verifier }
    }

    fn register(&mut self, program: &Program) -> alloy::primitives::Address {
        let data = zkinfer::evm::reusable::encode_key(program).unwrap();
        let code = zkinfer::evm::reusable::data_contract_creation_code(&data).unwrap();
        let deployed = self.chain.deploy("key", code, zkinfer::evm::chain::no_custom_errors).unwrap();
        eprintln!("key: {} bytes, {} gas to deploy", data.len(), deployed.gas_used);
        deployed.address
    }

    /// The shared verifier's answer for raw calldata: `Some(gas)` when it returns true.
    fn raw(&mut self, calldata: Vec<u8>) -> Option<u64> {
        use alloy::sol_types::SolCall;
        let answer = self.chain.call(self.verifier, calldata.clone()).unwrap().ok()?;
        let accepted = verifyProofCall::abi_decode_returns(&answer).ok()?;
        if !accepted {
            return None;
        }
        let mined = self
            .chain
            .send("verification", self.verifier, calldata, zkinfer::evm::chain::no_custom_errors, |_| Ok(()))
            .unwrap();
        Some(mined.gas_used)
    }

    fn verify(&mut self, vk: alloy::primitives::Address, instances: &[Fr], proof: &[u8]) -> Option<u64> {
        use alloy::sol_types::SolCall;
        let instances = instances
            .iter()
            .map(|i| {
                alloy::primitives::U256::from_le_bytes(halo2_base::halo2_proofs::halo2curves::ff::PrimeField::to_repr(
                    i,
                ))
            })
            .collect();
        self.raw(verifyProofCall { vk, instances, proof: proof.to_vec().into() }.abi_encode())
    }
}

#[test]
fn the_shared_verifier_decides_as_the_direct_one() {
    let case = mlp_small();
    let mut shared = Shared::new();
    let vk = shared.register(&case.program);
    let gas = shared.verify(vk, &case.instances, &case.proof);
    eprintln!("shared verifier gas: {gas:?}");
    assert!(gas.is_some(), "the honest proof is accepted");
    let step = (case.proof.len() / 97).max(1);
    for i in (0..case.proof.len()).step_by(step) {
        let mut bad = case.proof.clone();
        bad[i] ^= 0x01;
        assert_eq!(shared.verify(vk, &case.instances, &bad), None, "byte {i} flipped is accepted");
    }
    for i in 0..case.instances.len() {
        let mut bad = case.instances.clone();
        bad[i] += Fr::from(1);
        assert_eq!(shared.verify(vk, &bad, &case.proof), None, "instance {i} changed is accepted");
    }
    let short = &case.proof[..case.proof.len() - 1];
    assert_eq!(shared.verify(vk, &case.instances, short), None, "a truncated proof");
    assert_eq!(shared.verify(vk, &case.instances, &[case.proof.as_slice(), &[0]].concat()), None, "a longer proof");
    assert_eq!(shared.verify(vk, &case.instances[1..], &case.proof), None, "an instance fewer");
    assert_eq!(shared.verify(shared.verifier, &case.instances, &case.proof), None, "a contract that is no key");
    assert_eq!(shared.verify(alloy::primitives::Address::ZERO, &case.instances, &case.proof), None, "no contract");
    // A proof of another model (same shape, other fixed weights) against this key, and this
    // proof against the other key.
    let other = mlp_small_with(&common::fixture("mlp_small_other_weights.onnx"));
    let other_vk = shared.register(&other.program);
    assert!(shared.verify(other_vk, &other.instances, &other.proof).is_some(), "the other model's own proof");
    assert_eq!(shared.verify(vk, &other.instances, &other.proof), None, "model B's proof against model A's key");
    assert_eq!(shared.verify(other_vk, &case.instances, &case.proof), None, "model A's proof against model B's key");
    every_tamper_refused_by_both_modes_on_revm_and_on_anvil(&case, Some(&other));
}

#[test]
#[ignore]
fn print_the_program_s_operations() {
    let mut case = mlp_small();
    if std::env::var("FUSED").is_ok() {
        case.program = case.program.fused();
    }
    let mut counts = std::collections::BTreeMap::new();
    for op in &case.program.ops {
        let name = format!("{op:?}");
        let name = name.split(|c: char| !c.is_alphanumeric()).next().unwrap().to_string();
        *counts.entry(name).or_insert(0usize) += 1;
    }
    println!(
        "{counts:?}; {} constants, {} vars, layout {} words",
        case.program.constants.len(),
        case.program.vars,
        case.program.layout().words
    );
    // Adjacent pairs: which fusions would pay.
    let mut pairs = std::collections::BTreeMap::new();
    for w in case.program.ops.windows(2) {
        let n = |op: &zkinfer::evm::program::Op| {
            format!("{op:?}").split(|c: char| !c.is_alphanumeric()).next().unwrap().to_string()
        };
        *pairs.entry(format!("{}->{}", n(&w[0]), n(&w[1]))).or_insert(0usize) += 1;
    }
    println!("{pairs:?}");
    if std::env::var("DUMP").is_ok() {
        for (i, op) in case.program.ops.iter().enumerate() {
            println!("{i}: {op:?}");
        }
    }
}

#[test]
fn create_evm_verifier_writes_the_reusable_verifier_and_verify_evm_uses_it() {
    let case = mlp_small();
    let out = case._work.path().join("out");
    let printed = common::ok(&out, &["create-evm-verifier", "--reusable"]);
    assert!(printed.contains("SharedVerifier.json") && printed.contains("VerifyingKey.json"), "{printed}");
    let key = common::json(&out.join("VerifyingKey.json"));
    assert_eq!(key["name"], "VerifyingKey");
    assert_eq!(key["insecure_srs"], true, "the development SRS is flagged");
    let verified =
        common::ok(&out, &["verify-evm", "--verifier", "SharedVerifier.json", "--key-contract", "VerifyingKey.json"]);
    assert!(verified.contains("verified on"), "{verified}");
    // Same key, same bytes: generation is deterministic.
    common::ok(&out, &["create-evm-verifier", "--reusable", "--key-out", "again.json"]);
    assert_eq!(common::json(&out.join("again.json"))["runtime"], key["runtime"]);
    // A tampered proof is refused with the verifier's reason; the shared verifier alone is not
    // enough to verify anything.
    let proof = common::json(&out.join("proof.json"));
    common::write_json(&out.join("bad.json"), &common::tamper_proof_bytes(&proof, 0.5));
    let refused = common::fails(
        &out,
        &[
            "verify-evm",
            "--proof",
            "bad.json",
            "--verifier",
            "SharedVerifier.json",
            "--key-contract",
            "VerifyingKey.json",
        ],
    );
    assert!(refused.contains("rejected") && refused.contains("returned false"), "{refused}");
    let no_key = common::fails(&out, &["verify-evm", "--verifier", "SharedVerifier.json"]);
    assert!(no_key.contains("--key-contract"), "{no_key}");
    // The calldata for callers who build transactions themselves.
    let direct = common::ok(&out, &["encode-evm-calldata"]);
    assert_eq!(direct.trim(), format!("0x{}", hex::encode(calldata(&case.instances, &case.proof))));
    let key_address = "0x00000000000000000000000000000000000000aa";
    let shared = common::ok(&out, &["encode-evm-calldata", "--key-address", key_address]);
    let expected =
        zkinfer::evm::reusable::encode_verify_call(key_address.parse().unwrap(), &case.instances, &case.proof);
    assert_eq!(shared.trim(), format!("0x{}", hex::encode(expected)));
    let bad_address = common::fails(&out, &["encode-evm-calldata", "--key-address", "0x12"]);
    assert!(bad_address.contains("not an address"), "{bad_address}");
}

/// The MNIST MLP with hashed params: its direct verifier would be over EIP-170 (about 64 KB), so
/// `create-evm-verifier` refuses it and points to the reusable mode, where the key is data in
/// several contracts, deployed by `verify-evm` (and `deploy`) and joined by the shared verifier.
#[test]
fn a_model_whose_direct_verifier_is_over_eip_170_verifies_with_the_shared_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    for file in ["network.onnx", "input.json"] {
        std::fs::copy(example("mlp_mnist").join(file), w.join(file)).unwrap();
    }
    // The 4x4 gate with the Poseidon gate: ~72 KB of direct verifier (the default geometry's,
    // with its Lagrange rows in a loop, now fits).
    common::ok(w, &["gen-settings", "--param-visibility", "hashed", "--linear-gate", "4x4"]);
    for step in ["compile", "setup", "prove"] {
        common::ok(w, &[step]);
    }
    let direct = common::fails(w, &["create-evm-verifier"]);
    assert!(direct.contains("EIP-170") && direct.contains("--reusable"), "{direct}");
    common::ok(w, &["create-evm-verifier", "--reusable"]);
    let key = common::json(&w.join("VerifyingKey.json"));
    let data = key["runtime"].as_str().unwrap().trim_start_matches("0x").len() / 2;
    assert!(data > zkinfer::evm::solidity::MAX_RUNTIME_BYTES, "the key takes parts: {data} bytes");
    let shared = ["--verifier", "SharedVerifier.json", "--key-contract", "VerifyingKey.json"];
    let verified = common::ok(w, &[&["verify-evm"][..], &shared[..]].concat());
    assert!(verified.contains("verified on"), "{verified}");
    let proof = common::json(&w.join("proof.json"));
    for (i, at) in [0.1, 0.5, 0.9].into_iter().enumerate() {
        let bad = format!("bad{i}.json");
        common::write_json(&w.join(&bad), &common::tamper_proof_bytes(&proof, at));
        let refused = common::fails(w, &[&["verify-evm", "--proof", &bad][..], &shared[..]].concat());
        assert!(refused.contains("returned false"), "{refused}");
    }
    let bad = common::tamper_instance(&proof, 0);
    common::write_json(&w.join("instance.json"), &bad);
    let refused = common::fails(w, &[&["verify-evm", "--proof", "instance.json"][..], &shared[..]].concat());
    assert!(refused.contains("returned false"), "{refused}");
}
