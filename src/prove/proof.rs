//! Proving and native verification (SHPLONK, Keccak transcript: the one the EVM verifier reads),
//! and `proof.json`.

use std::path::Path;

use halo2_base::halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1Affine};
use halo2_base::halo2_proofs::halo2curves::ff::PrimeField;
use halo2_base::halo2_proofs::plonk::{keygen_pk, keygen_vk, verify_proof, Circuit, ProvingKey, VerifyingKey};
use halo2_base::halo2_proofs::poly::commitment::ParamsProver;
use halo2_base::halo2_proofs::poly::kzg::commitment::{KZGCommitmentScheme, ParamsKZG};
use halo2_base::halo2_proofs::poly::kzg::multiopen::VerifierSHPLONK;
use halo2_base::halo2_proofs::poly::kzg::strategy::SingleStrategy;
use halo2_base::halo2_proofs::transcript::TranscriptReadBuffer;
use serde::{Deserialize, Serialize};
use snark_verifier_sdk::snark_verifier::system::halo2::transcript::evm::EvmTranscript;

use crate::error::ProveError;
use crate::error::{read_json, Error, Result};

/// Version of the `proof.json` layout.
pub const PROOF_FORMAT_VERSION: u32 = 2;

/// Which Fiat–Shamir transcript a proof uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TranscriptKind {
    /// Keccak-256: what the Solidity verifier reads.
    Keccak,
    /// Poseidon: what the aggregation circuit reads.
    Poseidon,
}

pub use crate::circuit::instances::{CommittedPart, Encoding, InstanceSpan};

/// The contents of `proof.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProofFile {
    /// Layout version ([`PROOF_FORMAT_VERSION`]).
    pub format_version: u32,
    /// zkinfer version that wrote it.
    pub zkinfer_version: String,
    /// Digest of the circuit proved.
    pub circuit_digest: String,
    /// The transcript.
    pub transcript: TranscriptKind,
    /// The proof bytes, 0x-prefixed hex.
    pub proof: String,
    /// Public instances, one list per instance column, each a 0x-prefixed 32-byte big-endian word.
    pub instances: Vec<Vec<String>>,
    /// What each run of instances is.
    pub instance_layout: Vec<InstanceSpan>,
    /// The Poseidon parameters of any commitment among the instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment_hash: Option<String>,
    /// The dequantized outputs, for reading (the instances are what is proven); empty when the
    /// output is private or hashed, since this file is meant to be published.
    pub outputs: Vec<Vec<f64>>,
    /// True when the proof was made with the insecure development SRS.
    pub insecure_srs: bool,
    /// For a Poseidon-transcript proof: its verifying key compiled to the protocol the
    /// aggregation circuit verifies (snark-verifier's `PlonkProtocol`, as JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<serde_json::Value>,
    /// For an aggregation proof: the proofs it aggregates, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregated: Vec<AggregatedProof>,
}

/// One proof inside an aggregation proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregatedProof {
    /// The file it was read from, as given.
    pub file: String,
    /// Digest of its circuit.
    pub circuit_digest: String,
    /// SHA-256 of its protocol (its verifying key as the aggregation circuit checks it).
    pub protocol_digest: String,
    /// True when it is itself an aggregation proof (its accumulator is folded into this one's).
    pub is_aggregate: bool,
    /// Where its public instances (less any accumulator) start among this proof's, if exposed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_instance: Option<usize>,
    /// How many of its public instances are exposed here.
    pub exposed_instances: usize,
}

/// A decoded run of public instances.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded {
    /// Dequantized values.
    Values(Vec<f64>),
    /// A Poseidon commitment (0x-prefixed hex).
    Commitment(String),
    /// A word as the prover chose it (0x-prefixed hex): the submitter binding.
    Word(String),
}

impl std::fmt::Display for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decoded::Values(v) => write!(f, "{v:?}"),
            Decoded::Commitment(c) => write!(f, "Poseidon commitment {c}"),
            Decoded::Word(w) => write!(f, "binding word {w}"),
        }
    }
}

/// Decodes the instance words `run` of `span`: packed values dequantized, a commitment as hex;
/// `None` when the words are not a valid packing.
pub fn decode_run(span: &InstanceSpan, run: &[Fr]) -> Option<Decoded> {
    match span.encoding {
        Encoding::Poseidon => return run.first().map(|word| Decoded::Commitment(fr_to_hex(word))),
        Encoding::Word => return run.first().map(|word| Decoded::Word(fr_to_hex(word))),
        Encoding::Packed => {}
    }
    let ints = crate::circuit::instances::unpack_values(run, span.values, span.bits)?;
    let scale = 2f64.powi(i32::try_from(span.scale).ok()?);
    Some(Decoded::Values(ints.iter().map(|&v| v as f64 / scale).collect()))
}

/// Decodes each span of `layout` (a verifying key's) over the public instances `words`, in
/// layout order: packed values dequantized, commitments as hex; `path` names the proof in errors.
pub fn decode_instances(layout: &[InstanceSpan], words: &[Fr], path: &Path) -> Result<Vec<(InstanceSpan, Decoded)>> {
    layout
        .iter()
        .map(|span| {
            let run = span
                .first_instance
                .checked_add(span.instances)
                .and_then(|end| words.get(span.first_instance..end))
                .ok_or_else(|| Error::artifact(path, "the instances do not match the verifying key's layout"))?;
            let decoded = decode_run(span, run).ok_or_else(|| {
                ProveError::Rejected(format!("the instances of {} {} are not a valid packing", span.kind, span.index))
            })?;
            Ok((span.clone(), decoded))
        })
        .collect()
}

/// A field element as a 0x-prefixed 32-byte big-endian word (as the EVM reads it).
pub fn fr_to_hex(x: &Fr) -> String {
    format!("0x{}", hex::encode(fr_to_word(x)))
}

/// A field element as the EVM reads it: 32 bytes, big-endian.
pub fn fr_to_word(x: &Fr) -> [u8; 32] {
    let mut bytes: [u8; 32] = x.to_repr();
    bytes.reverse();
    bytes
}

/// Parses a word written by [`fr_to_hex`]; `None` if it is not a canonical field element.
pub fn fr_from_hex(s: &str) -> Option<Fr> {
    let bytes = hex::decode(s.strip_prefix("0x").unwrap_or(s)).ok()?;
    fr_from_word(bytes.try_into().ok()?)
}

/// The inverse of [`fr_to_word`]; `None` if the word is not a canonical field element.
pub fn fr_from_word(mut word: [u8; 32]) -> Option<Fr> {
    word.reverse();
    Option::from(Fr::from_repr(word))
}

impl ProofFile {
    /// Reads `proof.json`, checking its version.
    pub fn load(path: &Path) -> Result<Self> {
        let file: ProofFile = read_json(path)?;
        if file.format_version != PROOF_FORMAT_VERSION {
            return Err(Error::artifact(
                path,
                format!("proof format {} (zkinfer {}) is not the format {PROOF_FORMAT_VERSION} this zkinfer reads; prove again", file.format_version, file.zkinfer_version),
            ));
        }
        Ok(file)
    }

    /// Reads `proof.json` for an EVM verifier, which reads Keccak-transcript proofs only.
    pub fn load_for_evm(path: &Path) -> Result<Self> {
        let proof = Self::load(path)?;
        if proof.transcript != TranscriptKind::Keccak {
            return Err(Error::artifact(
                path,
                "EVM verifiers read Keccak-transcript proofs; this one uses Poseidon (for aggregation)",
            ));
        }
        Ok(proof)
    }

    /// The proof bytes.
    pub fn proof_bytes(&self, path: &Path) -> Result<Vec<u8>> {
        hex::decode(self.proof.strip_prefix("0x").unwrap_or(&self.proof))
            .map_err(|e| Error::artifact(path, format!("the proof field is not hex: {e}")))
    }

    /// Refuses a proof file that is not of the circuit of `key` (a verifying key's header, checked
    /// against its key): another circuit digest, or an `instance_layout` other than the key's.
    /// The layout the key binds is the one everything is read through, and a file that says
    /// otherwise was edited or belongs to another model.
    pub fn check_key(&self, path: &Path, key: &super::KeyHeader) -> Result<()> {
        super::keys::check_digest(path, &self.circuit_digest, &key.circuit_digest)?;
        let trusted = key.instance_layout.as_slice();
        if self.instance_layout == trusted {
            return Ok(());
        }
        let first = self
            .instance_layout
            .iter()
            .zip(trusted)
            .position(|(a, b)| a != b)
            .unwrap_or(self.instance_layout.len().min(trusted.len()));
        Err(Error::artifact(
            path,
            format!(
                "its instance_layout differs from the verifying key's (from run {first} on: the file was edited, or is \
                 a proof of another model); the key's layout is what a proof says, prove again with this model's keys"
            ),
        ))
    }

    /// The public instances as field elements.
    pub fn instance_values(&self, path: &Path) -> Result<Vec<Vec<Fr>>> {
        self.instances
            .iter()
            .map(|column| {
                column
                    .iter()
                    .map(|w| {
                        fr_from_hex(w).ok_or_else(|| {
                            Error::artifact(path, format!("instance {w} is not a 32-byte field element"))
                        })
                    })
                    .collect()
            })
            .collect()
    }
}

/// Generates the verifying and proving keys of a keygen-stage circuit.
pub fn keygen<C: Circuit<Fr>>(
    params: &ParamsKZG<Bn256>,
    circuit: &C,
) -> Result<(VerifyingKey<G1Affine>, ProvingKey<G1Affine>)> {
    let fail = |e: halo2_base::halo2_proofs::plonk::Error| ProveError::Proving {
        stage: "key generation",
        reason: "halo2 refused the circuit".into(),
        source: Some(Box::new(e)),
    };
    let vk = keygen_vk(params, circuit).map_err(fail)?;
    let pk = keygen_pk(params, vk.clone(), circuit).map_err(fail)?;
    Ok((vk, pk))
}

/// Verifies a Keccak-transcript proof natively. Any failure, including a malformed proof, is
/// reported as a rejection.
pub fn verify_keccak(
    params: &ParamsKZG<Bn256>,
    vk: &VerifyingKey<G1Affine>,
    proof: &[u8],
    instances: &[Fr],
) -> Result<()> {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut transcript = TranscriptReadBuffer::<_, G1Affine, _>::init(proof);
        verify_proof::<KZGCommitmentScheme<Bn256>, VerifierSHPLONK<'_, Bn256>, _, EvmTranscript<G1Affine, _, _, _>, _>(
            params.verifier_params(),
            vk,
            SingleStrategy::new(params),
            &[&[instances]],
            &mut transcript,
        )
    }));
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ProveError::Rejected(format!(
            "the proof does not verify against this verifying key and these public instances ({e})"
        ))
        .into()),
        Err(_) => Err(ProveError::Rejected("the proof is malformed".into()).into()),
    }
}
