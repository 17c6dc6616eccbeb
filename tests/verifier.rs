//! Our verifier generator against snark-verifier's: the traced program (what the generated
//! contracts execute) accepts and rejects exactly the proofs snark-verifier's native verifier
//! does, over sweeps of flipped proof bytes and changed instances.

mod common;

use common::example;
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use zkinfer::evm::program::{trace_verifier, Program};
use zkinfer::prove::snark::{deciding_key, protocol_of, verify};
use zkinfer::prove::{ProofFile, TranscriptKind};

struct Case {
    _work: tempfile::TempDir,
    program: Program,
    instances: Vec<Fr>,
    proof: Vec<u8>,
    native: Box<dyn Fn(&[Fr], &[u8]) -> bool>,
}

fn mlp_small() -> Case {
    let model = example("mlp_small").join("network.onnx");
    let input = example("mlp_small").join("input.json");
    let work = common::run_pipeline(&model, &input);
    let out = work.path().join("out");
    let (header, vk, srs) = zkinfer::prove::keys::read_vk_checked(&out.join("vk.bin"), None).unwrap();
    let n = header.shape.num_instances;
    let program = trace_verifier(&srs.params, &vk, n, false).unwrap();
    let proof_path = out.join("proof.json");
    let file = ProofFile::load_for_evm(&proof_path).unwrap();
    let instances = file.instance_values(&proof_path).unwrap().remove(0);
    let proof = file.proof_bytes(&proof_path).unwrap();
    let protocol = protocol_of(&srs.params, &vk, n, false);
    let dk = deciding_key(&srs.params);
    let native = Box::new(move |instances: &[Fr], proof: &[u8]| {
        verify(&dk, &protocol, instances, proof, TranscriptKind::Keccak).is_ok()
    });
    Case { _work: work, program, instances, proof, native }
}

fn calldata(instances: &[Fr], proof: &[u8]) -> Vec<u8> {
    zkinfer::evm::encode_calldata(instances, proof)
}

#[test]
fn the_traced_verifier_decides_as_snark_verifier_does() {
    let case = mlp_small();
    assert!((case.native)(&case.instances, &case.proof), "the honest proof verifies natively");
    assert!(case.program.accepts(&calldata(&case.instances, &case.proof)), "and in the traced program");
    let mut disagreements = Vec::new();
    let step = (case.proof.len() / 97).max(1);
    for i in (0..case.proof.len()).step_by(step) {
        let mut bad = case.proof.clone();
        bad[i] ^= 0x01;
        let (native, ours) =
            ((case.native)(&case.instances, &bad), case.program.accepts(&calldata(&case.instances, &bad)));
        assert!(!ours, "byte {i} flipped is accepted");
        if native != ours {
            disagreements.push(i);
        }
    }
    for i in 0..case.instances.len() {
        let mut bad = case.instances.clone();
        bad[i] += Fr::from(1);
        assert!(!case.program.accepts(&calldata(&bad, &case.proof)), "instance {i} changed is accepted");
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

#[test]
fn the_rendered_direct_verifier_decides_as_snark_verifier_s_contract() {
    let case = mlp_small();
    let solc = zkinfer::evm::toolchain::resolve_solc(None).unwrap();
    let header = zkinfer::evm::yul::Header { title: "mlp_small".into(), circuit_digest: "test".into() };
    let source = zkinfer::evm::yul::render_direct(&case.program, &header);
    if let Ok(path) = std::env::var("ZKINFER_DUMP_VERIFIER") {
        std::fs::write(path, &source).unwrap();
    }
    let ours = zkinfer::evm::solidity::compile_sources(
        &solc,
        &[("Verifier.sol", &source)],
        &[("Verifier.sol", "Halo2Verifier")],
        zkinfer::evm::solidity::Optimizer::Bytecode,
    )
    .unwrap()
    .remove(0);
    let theirs = std::fs::read(case._work.path().join("out/Verifier.json")).unwrap();
    let theirs: zkinfer::evm::CompiledContract = serde_json::from_slice(&theirs).unwrap();
    let honest = calldata(&case.instances, &case.proof);
    let (our_gas, their_gas) = (on_revm(&ours.bytecode, &honest), on_revm(&theirs.bytecode, &honest));
    eprintln!(
        "runtime bytes: ours {} theirs {}; gas: ours {our_gas:?} theirs {their_gas:?}; {} ops, {} vars",
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
}
