//! What a circuit's direct EVM verifier will cost, known at compile time, before any key exists:
//! the verifier's code depends on the circuit's columns, gates, lookups, k and instance count,
//! not on its commitments, so a verifying key with placeholder commitments generates the same
//! code (other constants) as the real one. Its size and gas are then read off the code, which is
//! straight-line (snark-verifier unrolls every step): bytes in proportion to its statements, gas
//! as its precompile calls, its calldata and its statements.

use halo2_base::halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1Affine, G2Affine, G1};
use halo2_base::halo2_proofs::halo2curves::group::Curve;
use halo2_base::halo2_proofs::plonk::{Circuit, ConstraintSystem, VerifyingKey};
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use halo2_base::halo2_proofs::SerdeFormat;

use super::solidity::generate_verifier;
use crate::circuit::lookup::{ModelCircuit, ModelCircuitParams};

/// Runtime bytes per line of the generated verifier, compiled without the optimizer, besides
/// its 32-byte constants, and per such constant: fitted to the 784→128→10 MLP's verifiers
/// without the linear gate (1,977 lines, 40 constants, 23,706 bytes) and with the 4x4 gate
/// (2,993, 90, 36,435); the 2x2 one (2,141, 50, 25,774) comes out 0.1% high.
const BYTES_PER_LINE: f64 = 11.62;
const BYTES_PER_CONSTANT: f64 = 18.6;
/// Gas per line besides precompiles and calldata (memory, arithmetic): 22.3 on the same MLP
/// without the gate (411,875 gas in all).
const GAS_PER_LINE: u64 = 23;

/// A verifier's estimated cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifierEstimate {
    /// Lines of generated Solidity.
    pub lines: usize,
    /// Estimated runtime bytecode.
    pub runtime_bytes: usize,
    /// Estimated gas of one verification transaction.
    pub gas: u64,
}

/// A verifying key of the model circuit with `params` at `k` whose commitments are all the
/// small multiples of the generator (not a key anything verifies against: its shape only).
fn placeholder_vk(params: &ModelCircuitParams, k: u32) -> VerifyingKey<G1Affine> {
    let mut cs = ConstraintSystem::<Fr>::default();
    let _ = ModelCircuit::configure_with_params(&mut cs, params.clone());
    // Key generation turns every selector into a fixed column.
    let fixed = cs.num_fixed_columns() + cs.num_selectors();
    let permuted = cs.permutation().get_columns().len();
    let mut bytes = vec![0x02];
    bytes.extend(k.to_le_bytes());
    bytes.push(0); // selectors not compressed, as `keygen_vk` does
    bytes.extend((fixed as u32).to_le_bytes());
    // Distinct points: the code generator shares equal constants.
    let g = G1Affine::generator();
    let mut point = G1::from(g);
    for _ in 0..fixed + permuted {
        point += g;
        halo2_base::halo2_proofs::SerdeCurveAffine::write(&point.to_affine(), &mut bytes, SerdeFormat::RawBytes)
            .expect("writing to memory");
    }
    VerifyingKey::read::<_, ModelCircuit>(&mut &bytes[..], SerdeFormat::RawBytes, params.clone())
        .expect("a key of the circuit's own shape reads")
}

/// The direct verifier's source for the model circuit with `params` at `k` and `num_instances`
/// public instances, with placeholder constants.
pub fn placeholder_verifier(params: &ModelCircuitParams, k: u32, num_instances: usize) -> String {
    let vk = placeholder_vk(params, k);
    // The verifier reads k, the first SRS point and the G2 points from the SRS: any will do.
    let g = G1Affine::generator();
    let tiny = ParamsKZG::<Bn256>::setup(1, rand::rngs::OsRng);
    let srs = tiny.from_parts(k, vec![g], Some(vec![g]), G2Affine::generator(), tiny.s_g2());
    generate_verifier(&srs, &vk, num_instances, false)
}

/// Estimates a verifier's runtime size and verification gas from its source.
pub fn estimate_source(source: &str) -> VerifierEstimate {
    let lines = source.lines().count();
    let calls = |precompile: &str| source.matches(&format!("staticcall(gas(), {precompile},")).count() as u64;
    // Calldata: the selector-free payload snark-verifier reads, up to its last word.
    let calldata = source
        .match_indices("calldataload(0x")
        .filter_map(|(at, m)| {
            let hex: String = source[at + m.len()..].chars().take_while(char::is_ascii_hexdigit).collect();
            u64::from_str_radix(&hex, 16).ok()
        })
        .max()
        .map_or(0, |last| last + 32);
    let gas = 21_000
        + 16 * calldata
        + 6_000 * calls("0x7")
        + 150 * calls("0x6")
        + 113_000 * calls("0x8")
        + 1_400 * calls("0x5")
        + GAS_PER_LINE * lines as u64;
    let constants = source
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() >= 62 && w.starts_with("0x") && w[2..].chars().all(|c| c.is_ascii_hexdigit()))
        .count();
    let runtime_bytes = (lines as f64 * BYTES_PER_LINE + constants as f64 * BYTES_PER_CONSTANT) as usize;
    VerifierEstimate { lines, runtime_bytes, gas }
}

/// Estimates the direct verifier of the model circuit with `params` at `k` and `num_instances`
/// public instances.
pub fn estimate_verifier(params: &ModelCircuitParams, k: u32, num_instances: usize) -> VerifierEstimate {
    estimate_source(&placeholder_verifier(params, k, num_instances))
}
