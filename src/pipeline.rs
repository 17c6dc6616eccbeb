//! The pipeline's stages as library functions: each reads the files the previous stage wrote
//! and writes its own, as the commands of the same names do.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::artifacts::{file_digest, output_errors, CompiledModel, Report, Witness};
use crate::circuit::commit::{commit_params, commit_values, commit_values_salted};
use crate::circuit::layout::{build_circuit, choose_shape, ShapeOptions, Stage};
use crate::error::{read_file, read_json, write_file, write_json, Error, Result};
use crate::error::{ImportError, ProveError};
use crate::evm::{self, CompiledContract, EvmVerification};
use crate::model::input::input_lengths;
use crate::model::onnx::{declared_input_shapes, import_onnx_with_shapes, shapes_for_data};
use crate::model::{import_onnx, load_input, run_float, QuantizedModel};
use crate::progress::timed;
use crate::prove::keys::{check_digest, KeyHeader, KEY_FORMAT_VERSION};
use crate::prove::proof::{decode_instances, fr_to_hex, Decoded, Encoding, InstanceSpan, PROOF_FORMAT_VERSION};
use crate::prove::{self, load_srs, ProofFile, SrsInfo, TranscriptKind};
pub use crate::settings::{gen_settings_for, SettingsOptions};
use crate::settings::{Settings, Visibility};

/// `gen-settings`: reads the model (refusing unsupported operators) and writes `settings.json`.
pub fn gen_settings(model: &Path, out: &Path, options: &SettingsOptions) -> Result<Settings> {
    let graph = match &options.data {
        None => import_onnx(model)?,
        Some(data) => {
            let shapes = shapes_for_data(&declared_input_shapes(model)?, &input_lengths(data)?);
            import_onnx_with_shapes(model, Some(&shapes))?
        }
    };
    let settings = gen_settings_for(&graph, &file_digest(&read_file(model)?), options);
    settings.validate().map_err(|reason| Error::artifact(out, reason))?;
    write_json(out, &settings)?;
    Ok(settings)
}

/// `compile`: quantizes the model and chooses the circuit's geometry; writes `model.compiled`.
pub fn compile(model: &Path, settings_path: &Path, out: &Path) -> Result<CompiledModel> {
    let settings = Settings::load(settings_path)?;
    let digest = file_digest(&read_file(model)?);
    if digest != settings.model_digest {
        return Err(Error::artifact(
            settings_path,
            format!(
                "made for another model than {} (digest differs); run `zkinfer gen-settings` again",
                model.display()
            ),
        ));
    }
    let graph = import_onnx_with_shapes(model, Some(&settings.input_shapes))?;
    let quantized = QuantizedModel::quantize(&graph, &settings)?;
    let (shape, _) = timed("laying out the circuit", || choose_shape(&quantized, &ShapeOptions::from(&settings)));
    let compiled = CompiledModel::new(settings, quantized, shape?);
    write_json(out, &compiled)?;
    Ok(compiled)
}

pub use crate::prove::srs::srs_for_key;

fn warn_if_insecure(info: &SrsInfo) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if info.insecure {
        ONCE.call_once(|| tracing::warn!("using the INSECURE development SRS: anyone can forge proofs against these keys; pass --srs with a ceremony file for real use"));
    }
}

/// What `setup` measured.
#[derive(Clone, Debug)]
pub struct SetupOutcome {
    /// Seconds for keygen (SRS loading excluded).
    pub seconds: f64,
    /// The SRS used.
    pub srs: SrsInfo,
}

/// `setup`: generates `pk.bin` and `vk.bin` for a compiled model.
pub fn setup(compiled_path: &Path, srs_file: Option<&Path>, pk_out: &Path, vk_out: &Path) -> Result<SetupOutcome> {
    let compiled = CompiledModel::load(compiled_path)?;
    let k = compiled.shape.k;
    let srs = load_srs(k, srs_file)?;
    warn_if_insecure(&srs.info);
    let mut laid =
        build_circuit(&compiled.model, &crate::circuit::zero_inputs(&compiled.model), Stage::keygen(&compiled.shape))?;
    let same = serde_json::to_value(halo2_base::halo2_proofs::plonk::Circuit::params(&laid.circuit)).ok()
        == serde_json::to_value(compiled.shape.params()).ok();
    if !same {
        return Err(Error::artifact(
            compiled_path,
            "the circuit laid out differently than at compile time; run `zkinfer compile` again",
        ));
    }
    // The params do not depend on the input: their instance words at setup are the model's.
    let private = compiled.model.visibility.params == Visibility::Private;
    let (weights, bound) = prove::binding::application_weights(&laid.layout, &laid.instances, private);
    let mut header = KeyHeader {
        kind: "verifying key".into(),
        format_version: KEY_FORMAT_VERSION,
        zkinfer_version: env!("CARGO_PKG_VERSION").into(),
        circuit_digest: compiled.circuit_digest.clone(),
        shape: compiled.shape.clone(),
        break_points: Vec::new(),
        srs: srs.info.clone(),
        aggregation: None,
        instance_layout: laid.layout.clone(),
        weights,
        bound,
    };
    laid.circuit.binding = header.binding();
    let (keys, seconds) = timed(&format!("generating keys (k = {k})"), || prove::keygen(&srs.params, &laid.circuit));
    let (vk, pk) = keys?;
    header.break_points = laid.circuit.base.break_points();
    prove::write_vk(vk_out, &header, &vk)?;
    prove::write_pk(pk_out, &KeyHeader { kind: "proving key".into(), ..header }, &pk)?;
    Ok(SetupOutcome { seconds, srs: srs.info })
}

/// What `prove` produced.
#[derive(Clone, Debug)]
pub struct ProveOutcome {
    /// The proof file written.
    pub proof: ProofFile,
    /// The dequantized outputs (also when the proof keeps them private).
    pub outputs: Vec<Vec<f64>>,
    /// Seconds spent proving (witness generation included).
    pub seconds: f64,
}

/// Fixed-point values, one flat vector per tensor.
pub type IntTensors = Vec<Vec<i64>>;

/// Quantizes `inputs` for `model` and runs the integer reference: refuses values the circuit
/// cannot hold (out of range anywhere in the model) before any proving starts, or before a
/// job is queued. Returns the quantized inputs and every node's values.
pub fn check_inputs(model: &QuantizedModel, inputs: &[Vec<f32>]) -> Result<(IntTensors, IntTensors)> {
    let quantized = model.quantize_inputs(inputs);
    let reference = model.execute(&quantized)?;
    Ok((quantized, reference))
}

/// A compiled model with its proving key and SRS loaded once: what `prove` uses for one proof
/// and the proving service keeps warm across many.
pub struct Prover {
    /// The compiled model.
    pub compiled: CompiledModel,
    header: KeyHeader,
    pk: halo2_base::halo2_proofs::plonk::ProvingKey<halo2_base::halo2_proofs::halo2curves::bn256::G1Affine>,
    srs: prove::Srs,
}

/// One proof made by a [`Prover`], before anything is written.
#[derive(Clone, Debug)]
pub struct Proved {
    /// `proof.json`'s content.
    pub proof: ProofFile,
    /// `witness.json`'s content (private values).
    pub witness: Witness,
    /// The dequantized outputs (also when the proof keeps them private).
    pub outputs: Vec<Vec<f64>>,
    /// Seconds spent proving (witness generation included).
    pub seconds: f64,
}

impl Prover {
    /// Reads the compiled model, its proving key (checked to be the compiled model's) and the
    /// SRS the key was made with.
    pub fn load(compiled_path: &Path, pk_path: &Path, srs_file: Option<&Path>) -> Result<Self> {
        let compiled = CompiledModel::load(compiled_path)?;
        let (header, pk) = prove::read_pk(pk_path)?;
        check_digest(pk_path, &header.circuit_digest, &compiled.circuit_digest)?;
        let srs = srs_for_key(compiled.shape.k, &header.srs, srs_file)?;
        Ok(Prover { compiled, header, pk, srs })
    }

    /// The flat float inputs of `input.json`'s content (`{"input_data": [[...]]}`), checked
    /// against the model's input shapes; `source` names where it came from in errors.
    pub fn parse_input(&self, json: &serde_json::Value, source: &Path) -> Result<Vec<Vec<f32>>> {
        crate::model::input::parse_input(json, &self.compiled.model.input_shapes(), source)
    }

    /// Proves the model on `inputs`. The transcript is Keccak for a proof the EVM verifies,
    /// Poseidon for one to aggregate. A model made with `--bind-submitter` needs the account,
    /// chain and registry the proof is for.
    pub fn prove(
        &self,
        inputs: &[Vec<f32>],
        transcript: TranscriptKind,
        binding: Option<&evm::registry::SubmitterBinding>,
    ) -> Result<Proved> {
        let compiled = &self.compiled;
        let submitter = match (compiled.model.visibility.submitter, binding) {
            (true, Some(binding)) => binding.word(),
            (false, None) => halo2_base::halo2_proofs::halo2curves::bn256::Fr::zero(),
            (true, None) => return Err(Error::Usage(
                "this model binds each proof to its submitter: pass --submitter ADDRESS with the registry and chain \
                 the proof will be submitted to (--registry ADDRESS --chain-id ID, or --deployment deployment.json)"
                    .into(),
            )),
            (false, Some(_)) => {
                return Err(Error::Usage(
                    "this model does not bind proofs to a submitter (make its settings with `gen-settings \
                 --bind-submitter`); leave out --submitter"
                        .into(),
                ))
            }
        };
        warn_if_insecure(&self.srs.info);
        let model = &compiled.model;
        // The integer reference catches values the circuit cannot hold before any proving starts.
        let (quantized, reference) = check_inputs(model, inputs)?;

        let (proved, seconds) = timed(&format!("proving (k = {})", compiled.shape.k), || {
            let stage = Stage::Prove(&compiled.shape, &self.header.break_points);
            let laid = crate::circuit::build_circuit_for(model, &quantized, stage, submitter)?;
            let matches = laid
                .values
                .iter()
                .zip(&reference)
                .all(|(c, r)| c.len() == r.len() && c.iter().zip(r).all(|(&a, &b)| a == b as i128));
            if !matches {
                return Err(ProveError::Proving {
                    stage: "witness generation",
                    reason: "the circuit's values differ from the integer reference (a zkinfer bug: please report it)"
                        .into(),
                    source: None,
                }
                .into());
            }
            let (instances, layout, salts) = (laid.instances.clone(), laid.layout.clone(), laid.salts.clone());
            let proof = prove::snark::prove(&self.srs.params, &self.pk, laid.circuit, &instances, transcript)?;
            Ok::<_, Error>((proof, instances, layout, salts))
        });
        let (proof, instances, layout, salts) = proved?;
        let salts = layout
            .iter()
            .filter(|s| s.salted)
            .zip(&salts)
            .map(|(span, salt)| crate::artifacts::Salt {
                kind: span.kind.clone(),
                index: span.index,
                salt: fr_to_hex(salt),
            })
            .collect();

        let outputs: Vec<Vec<i64>> = model.outputs.iter().map(|&o| reference[o].clone()).collect();
        let dequantized: Vec<Vec<f64>> = outputs.iter().map(|o| model.dequantize(o)).collect();
        let witness = Witness {
            circuit_digest: compiled.circuit_digest.clone(),
            inputs: quantized,
            outputs: outputs.clone(),
            nodes: model.nodes.iter().zip(&reference).map(|(n, v)| (n.name.clone(), v.clone())).collect(),
            salts,
        };
        let proof_file = ProofFile {
            format_version: PROOF_FORMAT_VERSION,
            zkinfer_version: env!("CARGO_PKG_VERSION").into(),
            circuit_digest: compiled.circuit_digest.clone(),
            transcript,
            proof: format!("0x{}", hex::encode(&proof)),
            instances: vec![instances.iter().map(fr_to_hex).collect()],
            commitment_hash: layout
                .iter()
                .any(|s| s.encoding == Encoding::Poseidon)
                .then(|| crate::circuit::commit::POSEIDON_DESCRIPTION.into()),
            instance_layout: layout,
            outputs: if model.visibility.output == Visibility::Public { dequantized.clone() } else { Vec::new() },
            insecure_srs: self.srs.info.insecure,
            protocol: (transcript == TranscriptKind::Poseidon).then(|| {
                let protocol = prove::snark::protocol_of(&self.srs.params, self.pk.get_vk(), instances.len(), false);
                prove::snark::protocol_to_json(&protocol)
            }),
            aggregated: Vec::new(),
        };
        Ok(Proved { proof: proof_file, witness, outputs: dequantized, seconds })
    }
}

/// `prove`: runs the model on `input.json` and proves it; writes `witness.json` and `proof.json`.
/// The transcript is Keccak for a proof the EVM verifies, Poseidon for one to aggregate. A model
/// made with `--bind-submitter` needs the account, chain and registry the proof is for.
#[allow(clippy::too_many_arguments)]
pub fn prove(
    compiled_path: &Path,
    pk_path: &Path,
    input_path: &Path,
    srs_file: Option<&Path>,
    witness_out: &Path,
    proof_out: &Path,
    transcript: TranscriptKind,
    binding: Option<&evm::registry::SubmitterBinding>,
) -> Result<ProveOutcome> {
    let prover = Prover::load(compiled_path, pk_path, srs_file)?;
    let inputs = load_input(input_path, &prover.compiled.model.input_shapes())?;
    let proved = prover.prove(&inputs, transcript, binding)?;
    write_json(witness_out, &proved.witness)?;
    write_json(proof_out, &proved.proof)?;
    Ok(ProveOutcome { proof: proved.proof, outputs: proved.outputs, seconds: proved.seconds })
}

/// Commitments a verifier was given and wants the proof bound to (0x-prefixed hex).
#[derive(Clone, Debug, Default)]
pub struct Expected {
    /// The model commitment (hashed params).
    pub model_commitment: Option<String>,
    /// The commitment to input 0 (hashed input).
    pub input_commitment: Option<String>,
}

fn check_expected(decoded: &[(InstanceSpan, Decoded)], expected: &Expected) -> Result<()> {
    let wanted = [("params", "model", &expected.model_commitment), ("input", "input", &expected.input_commitment)];
    for (kind, what, want) in wanted {
        let Some(want) = want else { continue };
        let want = crate::prove::proof::fr_from_hex(want).map(|f| fr_to_hex(&f)).ok_or_else(|| {
            Error::Usage(format!("the expected {what} commitment {want} is not a 32-byte hex field element"))
        })?;
        let found = decoded.iter().find_map(|(span, decoded)| match decoded {
            Decoded::Commitment(c) if span.kind == kind => Some(c),
            _ => None,
        });
        match found {
            None => {
                return Err(ProveError::Rejected(format!(
                    "the proof carries no {what} commitment (its {what} is not hashed), so it cannot be checked against {want}"
                )).into())
            }
            Some(got) if *got != want => {
                return Err(ProveError::Rejected(format!(
                    "the proof is valid but for another {what}: its {what} commitment is {got}, not the expected {want}"
                )).into())
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// What `verify` established: every run of public instances as the verifying key lays them out.
#[derive(Clone, Debug)]
pub struct Verified {
    /// Seconds of native verification.
    pub seconds: f64,
    /// Each run of public instances, decoded with the verifying key's layout.
    pub instances: Vec<(InstanceSpan, Decoded)>,
    /// How the proof is tied to the model's weights.
    pub weights: prove::binding::Weights,
}

/// `verify`: checks a proof against a verifying key natively, against the weights the key's
/// model has (public params, params commitments) and against the commitments the verifier
/// expects. An aggregation proof's accumulator is decided too (one pairing), which verifies every
/// proof it aggregates. What the proof says is read through the key's instance layout; a proof
/// file whose own layout differs is refused. `Ok` means accepted.
pub fn verify(vk_path: &Path, proof_path: &Path, srs_file: Option<&Path>, expected: &Expected) -> Result<Verified> {
    let (header, vk, srs) = prove::keys::read_vk_checked(vk_path, srs_file)?;
    let proof = ProofFile::load(proof_path)?;
    proof.check_key(proof_path, &header)?;
    let bytes = proof.proof_bytes(proof_path)?;
    let instances = proof.instance_values(proof_path)?;
    let column = instances.first().cloned().unwrap_or_default();
    if instances.len() != 1 || column.len() != header.shape.num_instances {
        return Err(ProveError::Rejected(format!(
            "the verifying key expects {} public instances, the proof has {}",
            header.shape.num_instances,
            column.len()
        ))
        .into());
    }
    let start = Instant::now();
    if header.aggregation.is_none() && proof.transcript == TranscriptKind::Keccak {
        prove::verify_keccak(&srs.params, &vk, &bytes, &column)?;
    } else {
        let protocol = prove::snark::protocol_of(&srs.params, &vk, column.len(), header.aggregation.is_some());
        prove::snark::verify(&prove::snark::deciding_key(&srs.params), &protocol, &column, &bytes, proof.transcript)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    prove::binding::check_bound_words(&header, &column)?;
    let decoded = decode_instances(&header.instance_layout, &column, proof_path)?;
    check_expected(&decoded, expected)?;
    Ok(Verified { seconds, instances: decoded, weights: header.weights })
}

/// What `commit` computed (0x-prefixed hex).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Commitments {
    /// The model commitment: what a proof with hashed params exposes.
    pub model: String,
    /// One commitment per model input, when an input file was given: what a proof with a hashed
    /// input exposes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
}

/// Where `commit` reads the model from.
pub enum ModelSource<'a> {
    /// A `model.compiled`.
    Compiled(&'a Path),
    /// An ONNX file and its `settings.json`.
    Onnx(&'a Path, &'a Path),
}

/// `commit`: computes off-circuit the Poseidon commitments a proof exposes, so that a verifier can
/// check the ones it was given. A salted model's input commitments need each input's salt (from
/// the prover's witness.json), in input order.
pub fn commit(source: ModelSource<'_>, input: Option<&Path>, salts: &[String]) -> Result<Commitments> {
    let model = match source {
        ModelSource::Compiled(path) => CompiledModel::load(path)?.model,
        ModelSource::Onnx(onnx, settings) => {
            let settings = Settings::load(settings)?;
            QuantizedModel::quantize(&import_onnx_with_shapes(onnx, Some(&settings.input_shapes))?, &settings)?
        }
    };
    let inputs = match input {
        None => Vec::new(),
        Some(path) => {
            let quantized = model.quantize_inputs(&load_input(path, &model.input_shapes())?);
            // Out-of-range inputs cannot be proven, so they have no commitment.
            model.execute(&quantized)?;
            let salted = model.visibility.salt && model.visibility.input == Visibility::Hashed;
            if salted && salts.len() != quantized.len() {
                return Err(Error::Usage(format!(
                    "this model's input commitments are salted: give the salt of each of its {} input(s), from the \
                     prover's witness.json, with --salt (got {})",
                    quantized.len(),
                    salts.len()
                )));
            }
            let mut commitments = Vec::with_capacity(quantized.len());
            for (i, x) in quantized.iter().enumerate() {
                let commitment = match salts.get(i).filter(|_| salted) {
                    None => commit_values(x, model.activation_bits),
                    Some(salt) => {
                        let salt = crate::prove::proof::fr_from_hex(salt).ok_or_else(|| {
                            Error::Usage(format!("the salt {salt} is not a 32-byte hex field element"))
                        })?;
                        commit_values_salted(x, model.activation_bits, salt)
                    }
                };
                commitments.push(fr_to_hex(&commitment));
            }
            commitments
        }
    };
    Ok(Commitments { model: fr_to_hex(&commit_params(&model)), inputs })
}

/// File names `create-evm-verifier` writes beside `Verifier.sol`.
pub fn verifier_artifact_path(sol: &Path) -> PathBuf {
    sol.with_extension("json")
}

/// `create-evm-verifier`: writes `Verifier.sol` and, once compiled, `Verifier.json` (bytecode,
/// runtime bytecode, ABI).
pub fn create_evm_verifier(
    vk_path: &Path,
    srs_file: Option<&Path>,
    sol_out: &Path,
    solc: Option<&Path>,
) -> Result<CompiledContract> {
    let solc = evm::toolchain::resolve_solc(solc)?;
    let (header, vk, srs) = prove::keys::read_vk_checked(vk_path, srs_file)?;
    warn_if_insecure(&srs.info);
    let title = match &header.aggregation {
        Some(_) => "zkinfer verifier of an aggregated proof".to_string(),
        None => "zkinfer verifier of a model's inference".to_string(),
    };
    let verifier_header = evm::yul::Header { title, circuit_digest: header.circuit_digest.clone() };
    let source = timed("generating the verifier", || {
        evm::generate_verifier(
            &srs.params,
            &vk,
            header.shape.num_instances,
            header.aggregation.is_some(),
            &verifier_header,
        )
    })
    .0?;
    write_file(sol_out, &source)?;
    let (compiled, _) =
        timed("compiling the verifier", || evm::compile_verifier(&solc, &source, evm::solidity::Optimizer::Bytecode));
    let compiled = CompiledContract {
        insecure_srs: Some(srs.info.insecure),
        circuit_digest: Some(header.circuit_digest.clone()),
        ..compiled?
    };
    write_json(&verifier_artifact_path(sol_out), &compiled)?;
    Ok(compiled)
}

/// What `create-evm-verifier --reusable` wrote.
#[derive(Clone, Debug)]
pub struct ReusableVerifier {
    /// The shared verifier, compiled (deployed once per chain).
    pub verifier: CompiledContract,
    /// The key's data contract: its creation code and its code (the data).
    pub key: CompiledContract,
}

/// `create-evm-verifier --reusable`: writes the shared verifier's source (`sol_out`) and, once
/// compiled, its artifact beside it (.json), and the key's data contract to `key_out`: one
/// shared verifier serves every model, each model's key is data.
pub fn create_reusable_verifier(
    vk_path: &Path,
    srs_file: Option<&Path>,
    sol_out: &Path,
    key_out: &Path,
    solc: Option<&Path>,
) -> Result<ReusableVerifier> {
    let solc = evm::toolchain::resolve_solc(solc)?;
    let (header, vk, srs) = prove::keys::read_vk_checked(vk_path, srs_file)?;
    warn_if_insecure(&srs.info);
    let (program, _) = timed("generating the verifier's program", || {
        evm::program::trace_verifier(&srs.params, &vk, header.shape.num_instances, header.aggregation.is_some())
    });
    let data = evm::reusable::encode_key(&program?)?;
    let key = CompiledContract {
        name: evm::reusable::KEY_CONTRACT.to_string(),
        // A key over EIP-170 takes several data contracts: `deploy` makes them from `runtime`.
        bytecode: evm::reusable::key_creation_code(&data)?.unwrap_or_default(),
        runtime: data,
        abi: serde_json::json!([]),
        solc_version: String::new(),
        insecure_srs: Some(srs.info.insecure),
        circuit_digest: Some(header.circuit_digest.clone()),
    };
    write_file(sol_out, evm::reusable::SHARED_VERIFIER_SOURCE)?;
    let (verifier, _) = timed("compiling the shared verifier", || evm::reusable::compile_shared_verifier(&solc));
    write_json(&verifier_artifact_path(sol_out), &verifier?)?;
    write_json(key_out, &key)?;
    Ok(ReusableVerifier { verifier: read_json(&verifier_artifact_path(sol_out))?, key })
}

/// Where `verify-evm` ran and what it found.
#[derive(Clone, Debug)]
pub struct EvmOutcome {
    /// Verification result.
    pub verification: EvmVerification,
    /// The verifier's deployment, on a node.
    pub deployment: Option<crate::evm::DeploymentFile>,
}

/// The calldata a verifier reads for `proof.json`: for the direct verifier, the instances and
/// the proof (no selector); for the shared verifier (`key` names the key's data contract),
/// `verifyProof(key, instances, proof)` ABI-encoded.
pub fn evm_calldata(proof_path: &Path, key: Option<alloy::primitives::Address>) -> Result<Vec<u8>> {
    let proof = ProofFile::load_for_evm(proof_path)?;
    let instances = proof.instance_values(proof_path)?;
    let instances = instances.first().map(Vec::as_slice).unwrap_or(&[]);
    let bytes = proof.proof_bytes(proof_path)?;
    Ok(match key {
        None => evm::encode_calldata(instances, &bytes),
        Some(key) => evm::reusable::encode_verify_call(key, instances, &bytes),
    })
}

/// `verify-evm`: deploys the verifier (in-process revm, or the node at `rpc_url`) and calls it
/// with the proof; a rejection is an error ([`ProveError::Rejected`]) with the verifier's reason.
/// A shared verifier (`create-evm-verifier --reusable`) needs the key's data contract (`key`),
/// deployed with it.
pub fn verify_evm(
    proof_path: &Path,
    verifier_path: &Path,
    key_path: Option<&Path>,
    rpc_url: Option<&str>,
) -> Result<EvmOutcome> {
    // The proof first: one made for aggregation (Poseidon transcript) is refused as such.
    ProofFile::load_for_evm(proof_path)?;
    let verifier: CompiledContract = read_json(verifier_path)?;
    // One EVM path: the in-process chain (revm) when no node is named, else the node.
    let connect = evm::Connect { rpc_url: rpc_url.map(str::to_string), ..Default::default() };
    let (verification, chain, deployed, key) = if verifier.name == evm::reusable::SHARED_VERIFIER_CONTRACT {
        let key_path = key_path.ok_or_else(|| {
            Error::Usage(format!(
                "{} is the shared verifier: give the model's key contract too (--key-contract VerifyingKey.json, written by \
                 create-evm-verifier --reusable)",
                verifier_path.display()
            ))
        })?;
        let key: CompiledContract = read_json(key_path)?;
        let mut chain = evm::Chain::open(&connect)?;
        let deployed =
            chain.deploy("shared verifier deployment", verifier.bytecode.clone(), evm::chain::no_custom_errors)?;
        let key_deployed = evm::reusable::deploy_key(&mut chain, &key.runtime, evm::chain::no_custom_errors)?;
        let calldata = evm_calldata(proof_path, Some(key_deployed.address))?;
        let verification = evm::reusable::verify_with(&mut chain, deployed.address, calldata)?;
        (verification, chain, deployed, Some((key, key_deployed)))
    } else {
        let calldata = evm_calldata(proof_path, None)?;
        let (verification, chain, deployed) = evm::verify_on_chain(&connect, &verifier.bytecode, &calldata)?;
        (verification, chain, deployed, None)
    };
    let deployment = rpc_url.map(|_| crate::evm::DeploymentFile {
        insecure_srs: verifier.insecure_srs.or(key.as_ref().and_then(|(k, _)| k.insecure_srs)),
        verifier: Some(deployed),
        verifier_runtime_bytes: Some(verifier.runtime.len()),
        shared_verifier: key.is_some().then_some(true),
        key: key.map(|(_, deployed)| deployed),
        ..crate::evm::DeploymentFile::new(&chain)
    });
    let outcome = EvmOutcome { verification, deployment };
    // A rejection is the command's failure, decided here once for every caller.
    if !outcome.verification.verified {
        let place = rpc_url.unwrap_or("in-process EVM");
        return Err(ProveError::Rejected(format!(
            "the verifier on {place} rejected the proof: {}",
            outcome.verification.reason.clone().unwrap_or_default()
        ))
        .into());
    }
    Ok(outcome)
}

/// Choices for `run`.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Settings choices.
    pub settings: SettingsOptions,
    /// A ceremony SRS file.
    pub srs: Option<PathBuf>,
    /// solc to use.
    pub solc: Option<PathBuf>,
    /// Verify on this node instead of in process.
    pub rpc_url: Option<String>,
}

/// The files of a working directory.
pub struct WorkDir(pub PathBuf);

impl WorkDir {
    /// A path inside the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

/// `run`: every stage in one working directory, then `report.json`.
pub fn run(model: &Path, input: &Path, dir: &Path, options: &RunOptions) -> Result<Report> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let w = WorkDir(dir.to_path_buf());
    let copy = |from: &Path, name: &str| -> Result<PathBuf> {
        let to = w.file(name);
        if from.canonicalize().ok() != to.canonicalize().ok() {
            write_file(&to, read_file(from)?)?;
        }
        Ok(to)
    };
    let model_copy = copy(model, "network.onnx")?;
    let input_copy = copy(input, "input.json")?;
    let settings_options = SettingsOptions { data: Some(input_copy.clone()), ..options.settings.clone() };
    gen_settings(&model_copy, &w.file("settings.json"), &settings_options)?;
    let compiled = compile(&model_copy, &w.file("settings.json"), &w.file("model.compiled"))?;
    let srs = options.srs.as_deref();
    let setup = setup(&w.file("model.compiled"), srs, &w.file("pk.bin"), &w.file("vk.bin"))?;
    let proved = prove(
        &w.file("model.compiled"),
        &w.file("pk.bin"),
        &input_copy,
        srs,
        &w.file("witness.json"),
        &w.file("proof.json"),
        TranscriptKind::Keccak,
        None,
    )?;
    let verify_seconds = verify(&w.file("vk.bin"), &w.file("proof.json"), srs, &Expected::default())?.seconds;
    let verifier = create_evm_verifier(&w.file("vk.bin"), srs, &w.file("Verifier.sol"), options.solc.as_deref())?;
    let evm = verify_evm(&w.file("proof.json"), &w.file("Verifier.json"), None, options.rpc_url.as_deref())?;
    if let Some(deployment) = &evm.deployment {
        write_json(&w.file("deployment.json"), deployment)?;
    }

    let inputs = load_input(&input_copy, &compiled.model.input_shapes())?;
    // The proof stands without the float reference; a model tract cannot run is reported
    // without its error (to compare with onnxruntime instead), never as a failed run.
    let (reference_outputs, reference_unavailable) =
        match run_float(&model_copy, &compiled.settings.input_shapes, &inputs) {
            Ok(outputs) => (Some(outputs), None),
            Err(e @ Error::Import(ImportError::FloatReference { .. })) => {
                tracing::warn!("no float reference to measure the error against: {}", e.chain());
                (None, Some(e.chain()))
            }
            Err(e) => return Err(e),
        };
    let errors = reference_outputs.as_ref().map(|r| output_errors(&proved.outputs, r));
    let report = Report {
        model: model.display().to_string(),
        k: compiled.shape.k,
        advice_columns: compiled.shape.config.num_advice_per_phase.iter().sum(),
        advice_cells: compiled.shape.advice_cells,
        linear_gate: compiled.shape.linear.map(|g| g.to_string()),
        linear_macs: compiled.shape.linear_macs,
        linear_cells: compiled.shape.linear_cells(),
        poseidon_permutations: if compiled.shape.poseidon { compiled.shape.poseidon_permutations } else { 0 },
        total_advice_columns: compiled.shape.advice_columns(),
        fixed_columns: compiled.shape.fixed_columns(),
        num_instances: compiled.shape.num_instances,
        setup_seconds: setup.seconds,
        prove_seconds: proved.seconds,
        verify_seconds,
        proof_bytes: proved.proof.proof_bytes(&w.file("proof.json"))?.len(),
        verified: true,
        evm_verified: evm.verification.verified,
        evm_gas: evm.verification.gas_used,
        evm: options.rpc_url.clone().unwrap_or_else(|| "in-process revm".into()),
        verifier_runtime_bytes: verifier.runtime.len(),
        outputs: proved.outputs.clone(),
        reference_outputs,
        max_abs_error: errors.map(|e| e.0),
        mean_abs_error: errors.map(|e| e.1),
        reference_unavailable,
        insecure_srs: setup.srs.insecure,
    };
    write_json(&w.file("report.json"), &report)?;
    if !evm.verification.verified {
        return Err(ProveError::Rejected(format!(
            "the EVM verifier rejected a proof that verified natively: {}",
            evm.verification.reason.unwrap_or_default()
        ))
        .into());
    }
    Ok(report)
}
