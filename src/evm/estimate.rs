//! What a circuit's direct EVM verifier will cost, known at compile time, before any key exists:
//! the verifier's code depends on the circuit's columns, gates, lookups, k and instance count,
//! not on its commitments, so a verifying key with placeholder commitments generates the same
//! program and code (other constants) as the real one. Its gas is read off the program (its
//! precompile calls, its calldata, its operations) and its size off the code, which is
//! straight-line: bytes in proportion to its literals and statements.

use halo2_base::halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1Affine, G2Affine, G1};
use halo2_base::halo2_proofs::halo2curves::group::Curve;
use halo2_base::halo2_proofs::plonk::{Circuit, ConstraintSystem, VerifyingKey};
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use halo2_base::halo2_proofs::SerdeFormat;

use super::program::{trace_verifier, Op, Program};
use super::yul::{render_direct_counting, Header, LOOPED_ROW_GAS};
use crate::circuit::lookup::{ModelCircuit, ModelCircuitParams};

/// Runtime bytes of our direct verifier, compiled with the bytecode optimizer: a constant, per
/// hex literal, per byte of hex literals and per failure branch. Fitted (least squares) to the
/// placeholder verifiers of 24 geometries measured here (9.8 to 36.9 KB: five models without a
/// linear gate and with the 2x1 and 4x4 gates, and four of them with every commitment hashed in
/// the Poseidon gate, without and with the 2x1 gate; `fit_the_size_estimate` in
/// `tests/verifier.rs` prints the data), each within 0.25%.
const BYTES_BASE: f64 = 150.6;
const BYTES_PER_LITERAL: f64 = 2.553;
const BYTES_PER_LITERAL_BYTE: f64 = 1.0055;
const BYTES_PER_FAIL: f64 = 4.568;
/// The code of a loop of Lagrange rows besides its literals (measured: 95 and 99 bytes more than
/// the literals count on the MNIST MLP's 3x1 verifier at k = 15 and the LeNet-like CNN's 2x1 at
/// k = 17).
const BYTES_PER_LOOP: f64 = 97.0;
/// Gas per operation besides precompiles and calldata (memory, arithmetic, the calldata's zero
/// bytes counted at 16): 46 on the 16→32→8 MLP (301,077 gas in all, 487 operations).
const GAS_PER_OP: u64 = 46;

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
pub fn placeholder_vk(params: &ModelCircuitParams, k: u32) -> VerifyingKey<G1Affine> {
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

/// The direct verifier's program for the model circuit with `params` at `k` and
/// `num_instances` public instances, with placeholder constants.
pub fn placeholder_program(params: &ModelCircuitParams, k: u32, num_instances: usize) -> Program {
    let vk = placeholder_vk(params, k);
    trace_verifier(&placeholder_srs(k), &vk, num_instances, false).expect("a key of the circuit's own shape traces")
}

/// An SRS of `k` for placeholder verifiers: the verifier reads k, the first SRS point and the G2
/// points from it, and any will do.
pub fn placeholder_srs(k: u32) -> ParamsKZG<Bn256> {
    let g = G1Affine::generator();
    let tiny = ParamsKZG::<Bn256>::setup(1, rand::rngs::OsRng);
    tiny.from_parts(k, vec![g], Some(vec![g]), G2Affine::generator(), tiny.s_g2())
}

/// What the size estimate counts in a verifier's source: hex literals, their bytes, failure
/// branches.
pub fn source_features(source: &str) -> [usize; 3] {
    let (mut literals, mut literal_bytes) = (0usize, 0usize);
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
            literal_bytes += hex.trim_start_matches('0').len().div_ceil(2);
        }
        at = end;
    }
    [literals, literal_bytes, source.matches("fail()").count()]
}

/// Estimates a verifier's runtime size and verification gas from its program.
pub fn estimate_program(program: &Program) -> VerifierEstimate {
    let (source, looped_rows) = render_direct_counting(program, &Header::default());
    let lines = source.lines().count();
    let count = |kind: fn(&Op) -> bool| program.count(kind) as u64;
    let gas = 21_000
        + 16 * program.calldata_len as u64
        + 6_000 * count(|op| matches!(op, Op::EcMul { .. }))
        + 150 * count(|op| matches!(op, Op::EcAdd { .. }))
        + 113_000 * count(|op| matches!(op, Op::Pairing { .. }))
        + 1_400 * count(|op| matches!(op, Op::Pow { .. }))
        + GAS_PER_OP * program.ops.len() as u64
        + LOOPED_ROW_GAS * looped_rows as u64;
    VerifierEstimate { lines, runtime_bytes: estimate_bytes(&source).max(0.0) as usize, gas }
}

/// A verifier's estimated runtime bytes from its source (see [`source_features`]).
pub fn estimate_bytes(source: &str) -> f64 {
    let [literals, literal_bytes, fails] = source_features(source).map(|f| f as f64);
    let loops = source.matches(super::yul::LAGRANGE_LOOP).count() as f64;
    BYTES_BASE
        + BYTES_PER_LITERAL * literals
        + BYTES_PER_LITERAL_BYTE * literal_bytes
        + BYTES_PER_FAIL * fails
        + BYTES_PER_LOOP * loops
}

/// Estimates the direct verifier of the model circuit with `params` at `k` and `num_instances`
/// public instances.
pub fn estimate_verifier(params: &ModelCircuitParams, k: u32, num_instances: usize) -> VerifierEstimate {
    estimate_program(&placeholder_program(params, k, num_instances))
}
