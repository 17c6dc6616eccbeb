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
use snark_verifier_sdk::{Snark, SHPLONK};

use crate::circuit::instances::{Encoding, InstanceSpan};
use crate::circuit::layout::{rows_k, BLINDING_ROWS, MAX_K};
use crate::circuit::lookup::ModelCircuit;
use crate::circuit::CircuitShape;
use crate::error::ProveError;
use crate::error::{write_json, Error, Result};
use crate::progress::timed;
use crate::prove::binding::{BoundWord, Weights};
use crate::prove::keys::{AggregationInfo, KeyHeader, KEY_FORMAT_VERSION};
use crate::prove::proof::{decode_instances, fr_to_hex, AggregatedProof, Decoded, PROOF_FORMAT_VERSION};
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
    /// The verifying keys of the proofs' circuits: one for every proof, or one per proof in
    /// order. What is aggregated (the protocols, the instance layouts, the weights) is read from
    /// them, never from the proof files.
    pub vks: Vec<PathBuf>,
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
            vks: Vec::new(),
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

/// A proof to aggregate, with what its verifying key says of it.
struct Inner {
    snark: Snark,
    entry: AggregatedProof,
    key: KeyHeader,
}

fn load_inner(path: &Path, vk_path: &Path, srs_file: Option<&Path>) -> Result<Inner> {
    let file = ProofFile::load(path)?;
    if file.transcript != TranscriptKind::Poseidon {
        return Err(Error::artifact(
            path,
            "this proof uses the Keccak transcript, which is for the EVM; the aggregation circuit reads \
             Poseidon-transcript proofs: prove it again with `zkinfer prove --for-aggregation` (or, for an \
             aggregation proof, `zkinfer aggregate --for-aggregation`)",
        ));
    }
    // The protocol comes from the verifying key, never from the proof file: a prover could
    // write there the protocol of a circuit of their own.
    let (key, vk, srs) = prove::keys::read_vk_checked(vk_path, srs_file)?;
    file.check_key(path, &key)?;
    let is_aggregate = key.aggregation.is_some();
    let protocol = snark::protocol_of(&srs.params, &vk, key.shape.num_instances, is_aggregate);
    let instances = file.instance_values(path)?;
    if instances.len() != 1 || instances[0].len() != key.shape.num_instances {
        return Err(Error::artifact(
            path,
            format!("its verifying key {} expects {} public instances", vk_path.display(), key.shape.num_instances),
        ));
    }
    let entry = AggregatedProof {
        file: path.display().to_string(),
        circuit_digest: key.circuit_digest.clone(),
        protocol_digest: snark::protocol_digest(&protocol),
        is_aggregate,
        first_instance: None,
        exposed_instances: 0,
    };
    let snark = Snark::new(protocol, instances, file.proof_bytes(path)?);
    Ok(Inner { snark, entry, key })
}

/// The verifying key of each proof: `--vk` once for all, or once per proof.
fn vk_paths(proofs: &[PathBuf], vks: &[PathBuf]) -> Result<Vec<PathBuf>> {
    match vks {
        [] => Err(Error::Usage(
            "give the verifying key of the proofs' circuit with --vk (once for all proofs, or once per proof, in \
             order): what is aggregated is read from the keys, not from the proof files"
                .into(),
        )),
        [one] => Ok(vec![one.clone(); proofs.len()]),
        many if many.len() == proofs.len() => Ok(many.to_vec()),
        many => Err(Error::Usage(format!(
            "{} verifying keys for {} proofs: give one --vk for all, or one per proof",
            many.len(),
            proofs.len()
        ))),
    }
}

/// Public instances of `inner` that an aggregation exposes: all but an accumulator.
fn exposed_range(inner: &Inner) -> std::ops::Range<usize> {
    let total = inner.snark.instances.first().map_or(0, Vec::len);
    let skip = if inner.entry.is_aggregate { ACCUMULATOR_INSTANCES } else { 0 };
    skip.min(total)..total
}

/// What the aggregation exposes, and where: the accumulator, then each proof's exposed instances
/// laid out as its verifying key says; and how the aggregate is tied to the proofs' weights.
fn plan_instances(inners: &mut [Inner], expose: bool) -> Result<(Vec<InstanceSpan>, Weights, Vec<BoundWord>)> {
    let mut layout = Vec::new();
    let mut bound = Vec::new();
    let mut next = ACCUMULATOR_INSTANCES;
    let mut unbound = false;
    for (i, inner) in inners.iter_mut().enumerate() {
        match (inner.key.weights, expose) {
            (Weights::Unbound, _) | (Weights::Instances, false) => unbound = true,
            _ => {}
        }
        if !expose {
            continue;
        }
        let range = exposed_range(inner);
        inner.entry.first_instance = Some(next);
        inner.entry.exposed_instances = range.len();
        // Positions among the inner proof's instances, moved to where they are exposed here.
        let moved = |at: usize| {
            at.checked_sub(range.start).filter(|&at| at < range.len()).map(|at| at + next).ok_or_else(|| {
                Error::artifact(
                    Path::new(&inner.entry.file),
                    format!("its verifying key lays out instance {at}, outside the instances it exposes"),
                )
            })
        };
        for span in &inner.key.instance_layout {
            let mut span = span.clone();
            span.first_instance = moved(span.first_instance)?;
            span.proof.insert(0, i);
            layout.push(span);
        }
        for word in &inner.key.bound {
            bound.push(BoundWord { index: moved(word.index)?, word: word.word.clone() });
        }
        next += range.len();
    }
    let weights = match (unbound, bound.is_empty()) {
        (true, _) => Weights::Unbound,
        (false, false) => Weights::Instances,
        (false, true) => Weights::Fixed,
    };
    Ok((layout, weights, bound))
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
        ..CircuitShape::default()
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
    let vks = vk_paths(proof_paths, &options.vks)?;
    let mut inners = proof_paths
        .iter()
        .zip(&vks)
        .map(|(p, vk)| load_inner(p, vk, options.srs.as_deref()))
        .collect::<Result<Vec<_>>>()?;
    let (layout, weights, bound) = plan_instances(&mut inners, options.expose_instances)?;
    let digest = inner_digest(&inners, options.expose_instances);
    let files = AggregateFiles::new(out_dir, options.keys.as_deref());
    for dir in [Some(out_dir), options.keys.as_deref()].into_iter().flatten() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    }

    let reused = reusable_keys(&files, &digest, options.k);
    // Any size of the SRS decides the inner proofs (its G2 points are the same at every size).
    let srs = match &reused {
        Some((header, _)) => prove::srs::srs_for_key(header.shape.k, &header.srs, options.srs.as_deref())?,
        None => load_srs(options.k.unwrap_or(MIN_AGGREGATION_K), options.srs.as_deref())?,
    };
    check_inner_proofs(&srs, &inners, proof_paths)?;

    let (header, pk, keygen_seconds, srs) = match reused {
        Some((header, pk)) => {
            tracing::info!("reusing the aggregation keys {} (k = {})", files.pk.display(), header.shape.k);
            (header, pk, None, srs)
        }
        None => {
            let planned = Planned { layout: &layout, weights, bound: &bound, digest: &digest };
            let (header, pk, seconds, srs) = generate_keys(srs, &inners, &planned, options, &files)?;
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
            // The proving key holds the binding column: the prover's value of it is not read.
            let circuit = with_binding(circuit, Fr::zero());
            snark::prove(&srs.params, &pk, circuit, &instances, options.transcript).map(|p| (p, instances))
        });
    let (proof, instances) = proved?;

    // Never hand out a proof that does not verify, with its accumulator decided.
    let protocol = snark::protocol_of(&srs.params, pk.get_vk(), instances.len(), true);
    snark::verify(&snark::deciding_key(&srs.params), &protocol, &instances, &proof, options.transcript).map_err(
        |e| ProveError::Proving {
            stage: "aggregation",
            reason: "the aggregation proof does not verify: a zkinfer bug, please report it".into(),
            source: Some(Box::new(e)),
        },
    )?;

    let proof_file = ProofFile {
        format_version: PROOF_FORMAT_VERSION,
        zkinfer_version: env!("CARGO_PKG_VERSION").into(),
        circuit_digest: header.circuit_digest.clone(),
        transcript: options.transcript,
        proof: format!("0x{}", hex::encode(&proof)),
        instances: vec![instances.iter().map(fr_to_hex).collect()],
        outputs: public_outputs(&layout, &instances, &files.proof)?,
        commitment_hash: layout
            .iter()
            .any(|s| s.encoding == Encoding::Poseidon)
            .then(|| crate::circuit::commit::POSEIDON_DESCRIPTION.into()),
        instance_layout: layout,
        insecure_srs: srs.info.insecure || inners.iter().any(|i| i.key.srs.insecure),
        protocol: (options.transcript == TranscriptKind::Poseidon).then(|| snark::protocol_to_json(&protocol)),
        aggregated: inners.iter().map(|i| i.entry.clone()).collect(),
    };
    write_json(&files.proof, &proof_file)?;
    Ok(AggregateOutcome { proof: proof_file, shape: header.shape, keygen_seconds, prove_seconds })
}

/// The dequantized public outputs among the instances, for reading.
fn public_outputs(layout: &[InstanceSpan], instances: &[Fr], path: &Path) -> Result<Vec<Vec<f64>>> {
    Ok(decode_instances(layout, instances, path)?
        .into_iter()
        .filter_map(|(span, decoded)| match decoded {
            Decoded::Values(v) if span.kind == "output" => Some(v),
            _ => None,
        })
        .collect())
}

/// The aggregation circuit as the model circuit wraps it: no function tables, and the key
/// binding in its own fixed column.
fn with_binding(circuit: AggregationCircuit, binding: Fr) -> ModelCircuit {
    ModelCircuit { binding, ..ModelCircuit::from_base(circuit.builder) }
}

/// What an aggregation's keys record besides its geometry.
struct Planned<'a> {
    layout: &'a [InstanceSpan],
    weights: Weights,
    bound: &'a [BoundWord],
    digest: &'a str,
}

/// Verifies every proof natively before aggregating: the aggregation circuit has no witness for
/// a proof that does not verify, and this names the file.
fn check_inner_proofs(srs: &Srs, inners: &[Inner], paths: &[PathBuf]) -> Result<()> {
    let dk = snark::deciding_key(&srs.params);
    for (inner, path) in inners.iter().zip(paths) {
        let instances = inner.snark.instances.first().map(Vec::as_slice).unwrap_or(&[]);
        snark::verify(&dk, &inner.snark.protocol, instances, &inner.snark.proof, TranscriptKind::Poseidon).map_err(
            |e| {
                ProveError::Rejected(format!(
                    "{} does not verify, so it cannot be aggregated ({e}); was it made with another SRS than {}?",
                    path.display(),
                    srs.info.source
                ))
            },
        )?;
        // A proof of other weights is valid for its circuit but not of its key's model.
        prove::binding::check_bound_words(&inner.key, instances).map_err(|e| {
            ProveError::Rejected(format!("{} cannot be aggregated as a proof of its key's model: {e}", path.display()))
        })?;
    }
    Ok(())
}

/// Chooses the circuit's size, generates its keys and writes them; returns the proving key's
/// header, the key, the seconds keygen took and the SRS at the chosen k.
fn generate_keys(
    srs: Srs,
    inners: &[Inner],
    planned: &Planned<'_>,
    options: &AggregateOptions,
    files: &AggregateFiles,
) -> Result<(KeyHeader, ProvingKey<G1Affine>, f64, Srs)> {
    let (circuit, shape) = choose_circuit(options, &srs.params, inners)?;
    let srs = if srs.params.k() == shape.k { srs } else { load_srs(shape.k, options.srs.as_deref())? };
    let mut header = KeyHeader {
        kind: "verifying key".into(),
        format_version: KEY_FORMAT_VERSION,
        zkinfer_version: env!("CARGO_PKG_VERSION").into(),
        circuit_digest: circuit_digest(planned.digest, &shape),
        break_points: Vec::new(),
        shape,
        srs: srs.info.clone(),
        aggregation: Some(AggregationInfo {
            inner_digest: planned.digest.into(),
            inner: inners.iter().map(|i| i.entry.clone()).collect(),
        }),
        instance_layout: planned.layout.to_vec(),
        weights: planned.weights,
        bound: planned.bound.to_vec(),
    };
    let circuit = with_binding(circuit, header.binding());
    let (keys, seconds) = timed(&format!("generating the aggregation keys (k = {})", header.shape.k), || {
        prove::keygen(&srs.params, &circuit)
    });
    let (vk, pk): (VerifyingKey<G1Affine>, ProvingKey<G1Affine>) = keys?;
    // Key generation decided where the virtual advice column breaks; the prover breaks there.
    header.break_points = circuit.base.break_points();
    prove::write_vk(&files.vk, &header, &vk)?;
    let header = KeyHeader { kind: "proving key".into(), ..header };
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
