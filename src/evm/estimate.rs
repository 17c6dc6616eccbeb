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

/// Runtime bytes of the generated verifier, compiled without the optimizer: a constant, per hex
/// literal, per byte of hex literals and per call of an EVM builtin. Fitted to eight verifiers
/// measured here (10,882 to 36,435 bytes: the 16→32→8 and 784→128→10 MLPs, a lookup-heavy model,
/// the small CNN, LeNet-like, the 784→128→10 MLP with 2x1, 2x2 and 4x4 linear gates), each
/// within 0.75%.
const BYTES_BASE: f64 = 618.2;
const BYTES_PER_LITERAL: f64 = -18.36;
const BYTES_PER_LITERAL_BYTE: f64 = 3.028;
const BYTES_PER_CALL: f64 = 13.53;
/// The builtins whose calls the size estimate counts.
const BUILTINS: &[&str] = &[
    "mulmod",
    "addmod",
    "mstore",
    "mload",
    "calldataload",
    "staticcall",
    "add",
    "sub",
    "mul",
    "lt",
    "and",
    "eq",
    "gt",
    "iszero",
    "mod",
];
/// Gas per line besides precompiles and calldata (memory, arithmetic): 22.3 on the 784→128→10
/// MLP without the gate (411,875 gas in all); the estimates land within 1.5% of the measured gas.
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
    let (mut literals, mut literal_bytes, mut builtins) = (0usize, 0usize, 0usize);
    let bytes = source.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut at = 0;
    while at < bytes.len() {
        if !word(bytes[at]) {
            at += 1;
            continue;
        }
        let end = (at..bytes.len()).find(|&i| !word(bytes[i])).unwrap_or(bytes.len());
        let token = &source[at..end];
        if let Some(hex) =
            token.strip_prefix("0x").filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            literals += 1;
            literal_bytes += hex.len().div_ceil(2);
        } else if bytes.get(end) == Some(&b'(') && BUILTINS.contains(&token) {
            builtins += 1;
        }
        at = end;
    }
    let runtime_bytes = BYTES_BASE
        + BYTES_PER_LITERAL * literals as f64
        + BYTES_PER_LITERAL_BYTE * literal_bytes as f64
        + BYTES_PER_CALL * builtins as f64;
    let runtime_bytes = runtime_bytes.max(0.0) as usize;
    VerifierEstimate { lines, runtime_bytes, gas }
}

/// Estimates the direct verifier of the model circuit with `params` at `k` and `num_instances`
/// public instances.
pub fn estimate_verifier(params: &ModelCircuitParams, k: u32, num_instances: usize) -> VerifierEstimate {
    estimate_source(&placeholder_verifier(params, k, num_instances))
}
