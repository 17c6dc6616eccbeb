//! Recursive aggregation with snark-verifier: N proofs (of application circuits, or themselves
//! aggregation proofs) are verified inside its aggregation circuit (SHPLONK), whose own proof
//! carries the KZG accumulator of all of them as its first public instances, followed by the
//! aggregated proofs' public instances when they are exposed. Verifying that one proof and
//! deciding its accumulator (one pairing) verifies every proof it aggregates.
//!
//! The aggregation circuit reads Poseidon-transcript proofs; its own proof uses the Keccak
//! transcript for the EVM, or Poseidon to be aggregated again (a next layer).

use std::path::{Path, PathBuf};

use halo2_base::gates::circuit::{BaseCircuitParams, CircuitBuilderStage};
use halo2_base::halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1Affine};
use halo2_base::halo2_proofs::plonk::{ProvingKey, VerifyingKey};
use halo2_base::halo2_proofs::poly::commitment::Params;
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use sha2::{Digest, Sha256};
use snark_verifier_sdk::halo2::aggregation::{AggregationCircuit, AggregationConfigParams, VerifierUniversality};
use snark_verifier_sdk::snark_verifier::verifier::plonk::PlonkProtocol;
use snark_verifier_sdk::{Snark, SHPLONK};

use crate::circuit::instances::InstanceSpan;
use crate::circuit::layout::{rows_k, BLINDING_ROWS, MAX_K};
use crate::circuit::CircuitShape;
use crate::error::{write_json, Error, Result};
use crate::progress::timed;
use crate::prove::keys::{AggregationInfo, KeyHeader, KEY_FORMAT_VERSION};
use crate::prove::proof::{fr_to_hex, AggregatedProof, PROOF_FORMAT_VERSION};
use crate::prove::snark::{self, ACCUMULATOR_INSTANCES};
use crate::prove::{self, load_srs, ProofFile, Srs, TranscriptKind};

/// Advice columns the automatic choice of k aims at. For a proof the EVM verifies, every column
/// is a commitment the verifier reads and a term of its multi-scalar multiplication, so fewer
/// columns (more rows) mean less gas and a smaller verifier; for a proof aggregated again, every
/// column is more work for the next layer's circuit (measured: 12 columns at k = 19 for the
/// inner layer made the two-layer recursion test take 570 s instead of about 350 s with 4).
pub const DEFAULT_MAX_ADVICE_COLUMNS: usize = 4;

/// The smallest aggregation circuit: its range checks use a table of 2^(k-1) rows.
const MIN_AGGREGATION_K: u32 = 16;

/// Choices for `aggregate`.
#[derive(Clone, Debug)]
pub struct AggregateOptions {
    /// The circuit's k; chosen from its size when `None`.
    pub k: Option<u32>,
    /// With `k` unset: the k is the smallest that keeps advice columns at this many or fewer.
    pub max_advice_columns: usize,
    /// The aggregation proof's transcript: Keccak for the EVM, Poseidon to aggregate it again.
    pub transcript: TranscriptKind,
    /// Expose the aggregated proofs' public instances (less their accumulators) after the
    /// accumulator.
    pub expose_instances: bool,
    /// A ceremony SRS file (default: the development SRS).
    pub srs: Option<PathBuf>,
    /// Where the keys are read and written (default: the output folder): one folder for all
    /// the aggregations of the same circuits, e.g. every pair of a tree's layer.
    pub keys: Option<PathBuf>,
}

impl Default for AggregateOptions {
    fn default() -> Self {
        Self {
            k: None,
            max_advice_columns: DEFAULT_MAX_ADVICE_COLUMNS,
            transcript: TranscriptKind::Keccak,
            expose_instances: true,
            srs: None,
            keys: None,
        }
    }
}

/// What `aggregate` did.
#[derive(Clone, Debug)]
pub struct AggregateOutcome {
    /// The proof written.
    pub proof: ProofFile,
    /// The aggregation circuit's geometry.
    pub shape: CircuitShape,
    /// Seconds of key generation; `None` when the keys in the output folder were reused.
    pub keygen_seconds: Option<f64>,
    /// Seconds of proving (the circuit's witness included).
    pub prove_seconds: f64,
}

/// The files `aggregate` writes in its output folder.
pub struct AggregateFiles {
    /// The proving key.
    pub pk: PathBuf,
    /// The verifying key.
    pub vk: PathBuf,
    /// The aggregation proof.
    pub proof: PathBuf,
}

impl AggregateFiles {
    /// The proof in `out_dir`, the keys in `keys_dir` (or `out_dir`).
    pub fn new(out_dir: &Path, keys_dir: Option<&Path>) -> Self {
        let keys = keys_dir.unwrap_or(out_dir);
        Self { pk: keys.join("pk.bin"), vk: keys.join("vk.bin"), proof: out_dir.join("proof.json") }
    }
}

/// A proof to aggregate.
struct Inner {
    snark: Snark,
    entry: AggregatedProof,
    file: ProofFile,
}

fn load_inner(path: &Path) -> Result<Inner> {
    let file = ProofFile::load(path)?;
    if file.transcript != TranscriptKind::Poseidon {
        return Err(Error::artifact(
            path,
            "this proof uses the Keccak transcript, which is for the EVM; the aggregation circuit reads \
             Poseidon-transcript proofs: prove it again with `zkinfer prove --for-aggregation` (or, for an \
             aggregation proof, `zkinfer aggregate --for-aggregation`)",
        ));
    }
    let protocol = file.protocol.clone().ok_or_else(|| {
        Error::artifact(path, "this proof has no protocol; prove it again with `zkinfer prove --for-aggregation`")
    })?;
    let protocol: PlonkProtocol<G1Affine> = serde_json::from_value(protocol)
        .map_err(|e| Error::artifact(path, format!("its protocol is not one zkinfer wrote ({e})")))?;
    let is_aggregate = !protocol.accumulator_indices.is_empty();
    let instances = file.instance_values(path)?;
    let entry = AggregatedProof {
        file: path.display().to_string(),
        circuit_digest: file.circuit_digest.clone(),
        protocol_digest: snark::protocol_digest(&protocol),
        is_aggregate,
        first_instance: None,
        exposed_instances: 0,
    };
    let snark = Snark::new(protocol, instances, file.proof_bytes(path)?);
    Ok(Inner { snark, entry, file })
}

/// Public instances of `inner` that an aggregation exposes: all but an accumulator.
fn exposed_range(inner: &Inner) -> std::ops::Range<usize> {
    let total = inner.snark.instances.first().map_or(0, Vec::len);
    let skip = if inner.entry.is_aggregate { ACCUMULATOR_INSTANCES } else { 0 };
    skip.min(total)..total
}

/// What the aggregation exposes, and where: the accumulator, then each proof's exposed instances.
fn plan_instances(inners: &mut [Inner], expose: bool) -> Vec<InstanceSpan> {
    let mut layout = Vec::new();
    let mut next = ACCUMULATOR_INSTANCES;
    for (i, inner) in inners.iter_mut().enumerate() {
        if !expose {
            continue;
        }
        let range = exposed_range(inner);
        inner.entry.first_instance = Some(next);
        inner.entry.exposed_instances = range.len();
        for span in &inner.file.instance_layout {
            let mut span = span.clone();
            span.first_instance = span.first_instance - range.start + next;
            span.proof.insert(0, i);
            layout.push(span);
        }
        next += range.len();
    }
    layout
}

/// Identifies what is aggregated, whatever the proofs' values: keys are reused when it matches.
fn inner_digest(inners: &[Inner], expose: bool) -> String {
    let ids: Vec<(&str, bool)> =
        inners.iter().map(|i| (i.entry.protocol_digest.as_str(), i.entry.is_aggregate)).collect();
    let text = serde_json::json!({ "aggregation": 1, "inner": ids, "expose_instances": expose });
    hex::encode(Sha256::digest(text.to_string()))
}

fn circuit_digest(inner_digest: &str, shape: &CircuitShape) -> String {
    let text = serde_json::json!({ "inner": inner_digest, "config": shape.config });
    hex::encode(Sha256::digest(text.to_string()))
}

/// The aggregation circuit over `snarks` at `config`, with the chosen instances exposed.
fn build(
    stage: CircuitBuilderStage,
    config: AggregationConfigParams,
    params: &ParamsKZG<Bn256>,
    inners: &[Inner],
    expose: bool,
) -> AggregationCircuit {
    let snarks = inners.iter().map(|i| i.snark.clone());
    let mut circuit = AggregationCircuit::new::<SHPLONK>(stage, config, params, snarks, VerifierUniversality::None);
    if expose {
        let previous = circuit.previous_instances().clone();
        for (prev, inner) in previous.iter().zip(inners) {
            let range = exposed_range(inner);
            circuit.builder.assigned_instances[0].extend_from_slice(&prev[range]);
        }
    }
    circuit
}

fn config_at(k: u32) -> AggregationConfigParams {
    AggregationConfigParams { degree: k, lookup_bits: k as usize - 1, ..Default::default() }
}

/// Lays the circuit out for key generation at `k` and sizes its columns.
fn keygen_circuit(
    k: u32,
    params: &ParamsKZG<Bn256>,
    inners: &[Inner],
    expose: bool,
) -> (AggregationCircuit, CircuitShape) {
    let mut circuit = build(CircuitBuilderStage::Keygen, config_at(k), params, inners, expose);
    let config: BaseCircuitParams = circuit.calculate_params(Some(BLINDING_ROWS)).into();
    let stats = circuit.builder.statistics();
    let shape = CircuitShape {
        k,
        lookup_bits: k as usize - 1,
        config,
        num_instances: circuit.builder.assigned_instances[0].len(),
        advice_cells: stats.gate.total_advice_per_phase.iter().sum(),
        lookup_cells: stats.total_lookup_advice_per_phase.iter().sum(),
        lookup_sets: 0,
        table_rows: 0,
    };
    (circuit, shape)
}

/// The k whose rows hold `advice_cells` in `columns` advice columns.
fn k_for(advice_cells: usize, columns: usize) -> u32 {
    rows_k(advice_cells, columns).clamp(MIN_AGGREGATION_K, MAX_K)
}

/// Chooses k (the given one, or the smallest keeping the advice columns within the target) and
/// returns the keygen-stage circuit at that k.
fn choose_circuit(
    options: &AggregateOptions,
    params: &ParamsKZG<Bn256>,
    inners: &[Inner],
) -> Result<(AggregationCircuit, CircuitShape)> {
    let layout = |k: u32| {
        timed(&format!("laying out the aggregation circuit (k = {k})"), || {
            keygen_circuit(k, params, inners, options.expose_instances)
        })
        .0
    };
    if let Some(k) = options.k {
        if !(MIN_AGGREGATION_K..=MAX_K).contains(&k) {
            return Err(Error::Usage(format!(
                "--k {k} is out of range: an aggregation circuit needs {MIN_AGGREGATION_K} ≤ k ≤ {MAX_K}"
            )));
        }
        return Ok(layout(k));
    }
    let columns = options.max_advice_columns.max(1);
    // The cell count barely depends on k (only through the range table's width): lay out once to
    // count, then at the k the count asks for, stepping up while the columns do not fit.
    const PROBE_K: u32 = 20;
    let probe = layout(PROBE_K);
    let mut k = k_for(probe.1.advice_cells, columns);
    let mut laid = if k == PROBE_K { probe } else { layout(k) };
    while laid.1.config.num_advice_per_phase.iter().sum::<usize>() > columns && k < MAX_K {
        k += 1;
        laid = layout(k);
    }
    Ok(laid)
}

/// Reads keys from the output folder when they were made for the same aggregated circuits (and
/// the asked k, if any): the small verifying key is checked before the proving key is read.
fn reusable_keys(files: &AggregateFiles, digest: &str, k: Option<u32>) -> Option<(KeyHeader, ProvingKey<G1Affine>)> {
    if !files.pk.is_file() || !files.vk.is_file() {
        return None;
    }
    let (vk_header, _) = prove::read_vk(&files.vk).ok()?;
    let info = vk_header.aggregation.as_ref()?;
    if info.inner_digest != digest || k.is_some_and(|k| k != vk_header.shape.k) {
        return None;
    }
    let (header, pk) = prove::read_pk(&files.pk).ok()?;
    (header.circuit_digest == vk_header.circuit_digest).then_some((header, pk))
}

/// `aggregate`: verifies each proof natively, then proves them all with one aggregation proof,
/// generating the aggregation keys (or reusing those in `out_dir` when they were made for the
/// same circuits). Writes `pk.bin`, `vk.bin` and `proof.json` in `out_dir`.
pub fn aggregate(proof_paths: &[PathBuf], out_dir: &Path, options: &AggregateOptions) -> Result<AggregateOutcome> {
    if proof_paths.is_empty() {
        return Err(Error::Usage("give at least one proof to aggregate (-P a.json b.json ...)".into()));
    }
    let mut inners = proof_paths.iter().map(|p| load_inner(p)).collect::<Result<Vec<_>>>()?;
    let layout = plan_instances(&mut inners, options.expose_instances);
    let digest = inner_digest(&inners, options.expose_instances);
    let files = AggregateFiles::new(out_dir, options.keys.as_deref());
    for dir in [Some(out_dir), options.keys.as_deref()].into_iter().flatten() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    }

    let reused = reusable_keys(&files, &digest, options.k);
    // Any size of the SRS decides the inner proofs (its G2 points are the same at every size).
    let srs = match &reused {
        Some((header, _)) => crate::pipeline::srs_for_key(header.shape.k, &header.srs, options.srs.as_deref())?,
        None => load_srs(options.k.unwrap_or(MIN_AGGREGATION_K), options.srs.as_deref())?,
    };
    check_inner_proofs(&srs, &inners, proof_paths)?;

    let (header, pk, keygen_seconds, srs) = match reused {
        Some((header, pk)) => {
            tracing::info!("reusing the aggregation keys {} (k = {})", files.pk.display(), header.shape.k);
            (header, pk, None, srs)
        }
        None => {
            let (header, pk, seconds, srs) = generate_keys(srs, &inners, &layout, &digest, options, &files)?;
            (header, pk, Some(seconds), srs)
        }
    };

    let config = AggregationConfigParams::try_from(&header.shape.config)
        .map_err(|e| Error::artifact(&files.pk, format!("not an aggregation key ({e})")))?;
    let (proved, prove_seconds) =
        timed(&format!("proving the aggregation of {} proofs (k = {})", inners.len(), header.shape.k), || {
            let circuit = build(CircuitBuilderStage::Prover, config, &srs.params, &inners, options.expose_instances)
                .use_break_points(header.break_points.clone());
            let instances: Vec<Fr> = circuit.builder.assigned_instances[0].iter().map(|v| *v.value()).collect();
            snark::prove(&srs.params, &pk, circuit.builder, &instances, options.transcript).map(|p| (p, instances))
        });
    let (proof, instances) = proved?;

    // Never hand out a proof that does not verify, with its accumulator decided.
    let protocol = snark::protocol_of(&srs.params, pk.get_vk(), instances.len(), true);
    snark::verify(&snark::deciding_key(&srs.params), &protocol, &instances, &proof, options.transcript).map_err(
        |e| Error::Proving {
            stage: "aggregation",
            reason: format!("the aggregation proof does not verify ({e}): a zkinfer bug, please report it"),
        },
    )?;

    let proof_file = ProofFile {
        format_version: PROOF_FORMAT_VERSION,
        zkinfer_version: env!("CARGO_PKG_VERSION").into(),
        circuit_digest: header.circuit_digest.clone(),
        transcript: options.transcript,
        proof: format!("0x{}", hex::encode(&proof)),
        instances: vec![instances.iter().map(fr_to_hex).collect()],
        instance_layout: layout,
        commitment_hash: inners.iter().find_map(|i| i.file.commitment_hash.clone()),
        outputs: inners.iter().flat_map(|i| i.file.outputs.clone()).collect(),
        insecure_srs: srs.info.insecure || inners.iter().any(|i| i.file.insecure_srs),
        protocol: (options.transcript == TranscriptKind::Poseidon).then(|| snark::protocol_to_json(&protocol)),
        aggregated: inners.iter().map(|i| i.entry.clone()).collect(),
    };
    write_json(&files.proof, &proof_file)?;
    Ok(AggregateOutcome { proof: proof_file, shape: header.shape, keygen_seconds, prove_seconds })
}

/// Verifies every proof natively before aggregating: the aggregation circuit has no witness for
/// a proof that does not verify, and this names the file.
fn check_inner_proofs(srs: &Srs, inners: &[Inner], paths: &[PathBuf]) -> Result<()> {
    let dk = snark::deciding_key(&srs.params);
    for (inner, path) in inners.iter().zip(paths) {
        let instances = inner.snark.instances.first().map(Vec::as_slice).unwrap_or(&[]);
        snark::verify(&dk, &inner.snark.protocol, instances, &inner.snark.proof, TranscriptKind::Poseidon).map_err(
            |e| {
                Error::Rejected(format!(
                    "{} does not verify, so it cannot be aggregated ({e}); was it made with another SRS than {}?",
                    path.display(),
                    srs.info.source
                ))
            },
        )?;
    }
    Ok(())
}

/// Chooses the circuit's size, generates its keys and writes them; returns the proving key's
/// header, the key, the seconds keygen took and the SRS at the chosen k.
fn generate_keys(
    srs: Srs,
    inners: &[Inner],
    layout: &[InstanceSpan],
    digest: &str,
    options: &AggregateOptions,
    files: &AggregateFiles,
) -> Result<(KeyHeader, ProvingKey<G1Affine>, f64, Srs)> {
    let (circuit, shape) = choose_circuit(options, &srs.params, inners)?;
    let srs = if srs.params.k() == shape.k { srs } else { load_srs(shape.k, options.srs.as_deref())? };
    let (keys, seconds) = timed(&format!("generating the aggregation keys (k = {})", shape.k), || {
        prove::keygen(&srs.params, &circuit.builder)
    });
    let (vk, pk): (VerifyingKey<G1Affine>, ProvingKey<G1Affine>) = keys?;
    let header = KeyHeader {
        kind: "proving key".into(),
        format_version: KEY_FORMAT_VERSION,
        zkinfer_version: env!("CARGO_PKG_VERSION").into(),
        circuit_digest: circuit_digest(digest, &shape),
        break_points: circuit.break_points(),
        shape,
        srs: srs.info.clone(),
        aggregation: Some(AggregationInfo {
            inner_digest: digest.into(),
            inner: inners.iter().map(|i| i.entry.clone()).collect(),
            instance_layout: layout.to_vec(),
        }),
    };
    prove::write_vk(&files.vk, &KeyHeader { kind: "verifying key".into(), ..header.clone() }, &vk)?;
    prove::write_pk(&files.pk, &header, &pk)?;
    Ok((header, pk, seconds, srs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_holds_the_cells_in_the_columns_with_the_blinding_rows() {
        // 8 M cells in 4 columns need 2 M rows plus the blinding rows: k = 21.
        assert_eq!(k_for(8_000_000, 4), 21);
        assert_eq!(k_for(4 * ((1 << 20) - BLINDING_ROWS), 4), 20);
        assert_eq!(k_for(4 * ((1 << 20) - BLINDING_ROWS) + 1, 4), 21);
        // Never below the range table's minimum, never above the SRS's maximum.
        assert_eq!(k_for(10, 4), MIN_AGGREGATION_K);
        assert_eq!(k_for(usize::MAX / 2, 1), MAX_K);
    }
}
