//! Proofs as snark-verifier reads them: a verifying key compiled to its protocol, proving with
//! either transcript, and native verification that also decides the KZG accumulator an
//! aggregation proof carries in its public instances.

use halo2_base::halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1Affine};
use halo2_base::halo2_proofs::plonk::{create_proof, Circuit, ProvingKey, VerifyingKey};
use halo2_base::halo2_proofs::poly::commitment::ParamsProver;
use halo2_base::halo2_proofs::poly::kzg::commitment::{KZGCommitmentScheme, ParamsKZG};
use halo2_base::halo2_proofs::poly::kzg::multiopen::ProverSHPLONK;
use halo2_base::halo2_proofs::transcript::TranscriptWriterBuffer;
use snark_verifier_sdk::halo2::{PoseidonTranscript, POSEIDON_SPEC};
use snark_verifier_sdk::snark_verifier::pcs::kzg::KzgDecidingKey;
use snark_verifier_sdk::snark_verifier::system::halo2::transcript::evm::EvmTranscript;
use snark_verifier_sdk::snark_verifier::system::halo2::{compile, Config};
use snark_verifier_sdk::snark_verifier::verifier::plonk::PlonkProtocol;
use snark_verifier_sdk::snark_verifier::verifier::SnarkVerifier;
use snark_verifier_sdk::{NativeLoader, PlonkVerifier, LIMBS, SHPLONK};

use super::TranscriptKind;
use crate::error::ProveError;
use crate::error::Result;

/// Public instances an aggregation proof starts with: the KZG accumulator, two G1 points of two
/// coordinates each, every coordinate in `LIMBS` limbs.
pub const ACCUMULATOR_INSTANCES: usize = 4 * LIMBS;

/// Where the accumulator sits among the instances of an aggregation proof (column 0, first words).
pub fn accumulator_indices() -> Vec<(usize, usize)> {
    (0..ACCUMULATOR_INSTANCES).map(|i| (0, i)).collect()
}

/// The protocol snark-verifier verifies a proof of `vk` against: one instance column of
/// `num_instances`, the first [`ACCUMULATOR_INSTANCES`] of which are an accumulator when
/// `has_accumulator` (an aggregation proof). `params` must be sized to the key's k.
pub fn protocol_of(
    params: &ParamsKZG<Bn256>,
    vk: &VerifyingKey<G1Affine>,
    num_instances: usize,
    has_accumulator: bool,
) -> PlonkProtocol<G1Affine> {
    compile(
        params,
        vk,
        Config::kzg()
            .with_num_instance(vec![num_instances])
            .with_accumulator_indices(has_accumulator.then(accumulator_indices)),
    )
}

/// Proves a prover-stage circuit (SHPLONK) with the chosen transcript: Keccak for the EVM,
/// Poseidon for the aggregation circuit.
pub fn prove<C: Circuit<Fr>>(
    params: &ParamsKZG<Bn256>,
    pk: &ProvingKey<G1Affine>,
    circuit: C,
    instances: &[Fr],
    transcript: TranscriptKind,
) -> Result<Vec<u8>> {
    let rng = rand::rngs::OsRng;
    let fail = |e: halo2_base::halo2_proofs::plonk::Error| ProveError::Proving {
        stage: "proving",
        reason: "halo2 could not make the proof".into(),
        source: Some(Box::new(e)),
    };
    match transcript {
        TranscriptKind::Keccak => {
            let mut t = TranscriptWriterBuffer::<_, G1Affine, _>::init(Vec::new());
            create_proof::<
                KZGCommitmentScheme<Bn256>,
                ProverSHPLONK<'_, Bn256>,
                _,
                _,
                EvmTranscript<G1Affine, _, _, _>,
                _,
            >(params, pk, &[circuit], &[&[instances]], rng, &mut t)
            .map_err(fail)?;
            Ok(t.finalize())
        }
        TranscriptKind::Poseidon => {
            let mut t = PoseidonTranscript::<NativeLoader, Vec<u8>>::from_spec(Vec::new(), POSEIDON_SPEC.clone());
            create_proof::<KZGCommitmentScheme<Bn256>, ProverSHPLONK<'_, Bn256>, _, _, _, _>(
                params,
                pk,
                &[circuit],
                &[&[instances]],
                rng,
                &mut t,
            )
            .map_err(fail)?;
            Ok(t.finalize())
        }
    }
}

/// The deciding key of an SRS: its generator and its two G2 points, the same at every size.
pub fn deciding_key(params: &ParamsKZG<Bn256>) -> KzgDecidingKey<Bn256> {
    (params.get_g()[0], params.g2(), params.s_g2()).into()
}

/// Verifies a proof natively against `protocol`: the proof itself and, for an aggregation proof,
/// the pairing check of the accumulator among its instances. Any failure, a malformed proof
/// included, is a rejection.
pub fn verify(
    dk: &KzgDecidingKey<Bn256>,
    protocol: &PlonkProtocol<G1Affine>,
    instances: &[Fr],
    proof: &[u8],
    transcript: TranscriptKind,
) -> Result<()> {
    let expected = protocol.num_instance.first().copied().unwrap_or(0);
    if protocol.num_instance.len() != 1 || instances.len() != expected {
        return Err(ProveError::Rejected(format!(
            "the verifying key expects {expected} public instances, the proof has {}",
            instances.len()
        ))
        .into());
    }
    let instances = [instances.to_vec()];
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match transcript {
        TranscriptKind::Keccak => {
            let mut t = EvmTranscript::<G1Affine, NativeLoader, _, Vec<u8>>::new(proof);
            let read = PlonkVerifier::<SHPLONK>::read_proof(dk, protocol, &instances, &mut t)?;
            PlonkVerifier::<SHPLONK>::verify(dk, protocol, &instances, &read)
        }
        TranscriptKind::Poseidon => {
            let mut t = PoseidonTranscript::<NativeLoader, &[u8]>::from_spec(proof, POSEIDON_SPEC.clone());
            let read = PlonkVerifier::<SHPLONK>::read_proof(dk, protocol, &instances, &mut t)?;
            PlonkVerifier::<SHPLONK>::verify(dk, protocol, &instances, &read)
        }
    }));
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ProveError::Rejected(format!(
            "the proof does not verify against this verifying key and these public instances ({e:?})"
        ))
        .into()),
        Err(_) => Err(ProveError::Rejected("the proof is malformed".into()).into()),
    }
}

/// A protocol as the JSON stored in a proof file.
pub fn protocol_to_json(protocol: &PlonkProtocol<G1Affine>) -> serde_json::Value {
    serde_json::to_value(protocol).expect("protocols serialize")
}

/// SHA-256 (hex) of a protocol: what identifies an aggregated circuit.
pub fn protocol_digest(protocol: &PlonkProtocol<G1Affine>) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(serde_json::to_vec(protocol).expect("protocols serialize")))
}
