//! Poseidon commitments to private values (hashed input, params or output).
//!
//! A commitment to a list of signed integers of `bits` bits is
//! `Poseidon(pack(values, bits))`: the values are range-checked and packed as public instances
//! are (see [`super::instances`]), and the packed words are hashed with halo2-base's Poseidon
//! sponge over BN254's scalar field, width [`POSEIDON_T`], rate [`POSEIDON_RATE`],
//! [`POSEIDON_R_F`] full and [`POSEIDON_R_P`] partial rounds, S-box x^5, the MDS matrix and round
//! constants of halo2-base's `OptimizedPoseidonSpec` (the Grain LFSR generation of the Poseidon
//! paper), initial capacity element 2^64, fixed-length absorption (`hash_fix_len_array`: the
//! words in chunks of the rate, one extra permutation when their number is a multiple of the
//! rate), output the first rate element of the final state.
//!
//! Packing first hashes up to `253 / bits` values per permutation input instead of one; the
//! range checks make the packing injective, so the commitment binds every value.

use halo2_base::gates::flex_gate::threads::SinglePhaseCoreManager;
use halo2_base::gates::GateChip;
#[cfg(test)]
use halo2_base::gates::RangeChip;
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::poseidon::hasher::spec::OptimizedPoseidonSpec;
use halo2_base::poseidon::hasher::PoseidonHasher;
use halo2_base::{AssignedValue, Context};

use super::instances::pack_values;
use crate::model::QuantizedModel;

/// Poseidon state width.
pub const POSEIDON_T: usize = 5;
/// Field elements absorbed per permutation.
pub const POSEIDON_RATE: usize = 4;
/// Full rounds.
pub const POSEIDON_R_F: usize = 8;
/// Partial rounds (the count snark-verifier's Poseidon transcript uses for width 5 over BN254).
pub const POSEIDON_R_P: usize = 60;

/// A short description of the parameters, written into `proof.json`.
pub const POSEIDON_DESCRIPTION: &str =
    "halo2-base Poseidon over BN254 Fr, t=5, rate=4, R_F=8, R_P=60, x^5, fixed-length sponge of the packed words";

fn hasher(ctx: &mut Context<Fr>, gate: &GateChip<Fr>) -> PoseidonHasher<Fr, POSEIDON_T, POSEIDON_RATE> {
    let spec = OptimizedPoseidonSpec::<Fr, POSEIDON_T, POSEIDON_RATE>::new::<POSEIDON_R_F, POSEIDON_R_P, 0>();
    let mut hasher = PoseidonHasher::new(spec);
    hasher.initialize_consts(ctx, gate);
    hasher
}

/// Hashes field elements already laid out.
pub fn layout_hash(ctx: &mut Context<Fr>, gate: &GateChip<Fr>, words: &[AssignedValue<Fr>]) -> AssignedValue<Fr> {
    hasher(ctx, gate).hash_fix_len_array(ctx, gate, words)
}

/// Range-checks signed values to `bits` bits, packs and hashes them: the in-circuit commitment.
#[cfg(test)]
fn layout_commitment(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    values: &[AssignedValue<Fr>],
    bits: u32,
) -> AssignedValue<Fr> {
    use super::instances::{layout_offset, layout_pack};
    use halo2_base::gates::RangeInstructions;
    let shifted = layout_offset(ctx, range, values, bits);
    let words = layout_pack(ctx, range, &shifted, bits);
    layout_hash(ctx, range.gate(), &words)
}

/// Hashes field elements off-circuit, with the same gadget run for its values only.
pub fn hash_words(words: &[Fr]) -> Fr {
    let mut pool = SinglePhaseCoreManager::new(true, Default::default());
    let gate = GateChip::default();
    let ctx = pool.main();
    let assigned = ctx.assign_witnesses(words.iter().copied());
    *layout_hash(ctx, &gate, &assigned).value()
}

/// The commitment to signed values of `bits` bits, computed off-circuit.
pub fn commit_values(values: &[i64], bits: u32) -> Fr {
    hash_words(&pack_values(values, bits))
}

/// The salted commitment to signed values of `bits` bits (a hashed input or output), computed
/// off-circuit: the salt is absorbed before the packed values.
pub fn commit_values_salted(values: &[i64], bits: u32, salt: Fr) -> Fr {
    hash_words(&[vec![salt], pack_values(values, bits)].concat())
}

/// The model commitment: every param tensor packed at its own width, in order, hashed at once.
pub fn commit_params(model: &QuantizedModel) -> Fr {
    let words: Vec<Fr> = model.param_tensors().iter().flat_map(|t| pack_values(t.values, t.bits)).collect();
    hash_words(&words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::field::fe;
    use crate::circuit::poseidon_gate::CommitmentSpec;
    use crate::circuit::soundness::{assert_outputs_bound, mock_run};
    use crate::prove::proof::fr_to_hex;

    fn reference_permute(state: &mut [Fr; 5]) {
        use poseidon_primitives::poseidon::primitives::{ConstantLength, Hash};
        Hash::<Fr, CommitmentSpec, ConstantLength<4>, 5, 4>::init().permute(state);
    }

    /// The sponge the commitments are documented to be, on the reference permutation: capacity
    /// 2^64, the words absorbed four at a time into the rate, a final partial chunk padded with
    /// one 1 then zeros, one extra (padding-only) permutation when the words fill whole chunks,
    /// output the first rate element.
    fn reference_sponge(words: &[Fr]) -> Fr {
        let mut state = [fe(1 << 64), Fr::zero(), Fr::zero(), Fr::zero(), Fr::zero()];
        let mut chunks: Vec<&[Fr]> = words.chunks(POSEIDON_RATE).collect();
        if words.len() % POSEIDON_RATE == 0 {
            chunks.push(&[]);
        }
        for chunk in chunks {
            for (i, w) in chunk.iter().enumerate() {
                state[1 + i] += w;
            }
            if chunk.len() < POSEIDON_RATE {
                state[1 + chunk.len()] += Fr::one();
            }
            reference_permute(&mut state);
        }
        state[1]
    }

    #[test]
    fn the_permutation_matches_the_published_reference_vector() {
        // hadeshash's test_vectors.txt, poseidonperm_x5_254_5: the permutation of [0, 1, 2, 3, 4]
        // starts with this word (also circomlib's Poseidon([1, 2, 3, 4])).
        let mut state = [0u64, 1, 2, 3, 4].map(Fr::from);
        reference_permute(&mut state);
        assert_eq!(fr_to_hex(&state[0]), "0x299c867db6c1fdd79dcefa40e4510b9837e60ebb1ce0663dbaa525df65250465");
    }

    #[test]
    fn commitments_equal_the_reference_sponge() {
        // Every length class: empty, partial chunks, whole chunks, several permutations.
        for n in [0usize, 1, 3, 4, 5, 8, 11, 17] {
            let words: Vec<Fr> = (0..n as u64).map(|i| Fr::from(i * 7919 + 3)).collect();
            assert_eq!(hash_words(&words), reference_sponge(&words), "{n} words");
        }
        let values: Vec<i64> = (0..40).map(|i| (i * 37 % 23) - 11).collect();
        assert_eq!(commit_values(&values, 8), reference_sponge(&pack_values(&values, 8)));
        let salt = Fr::from(0xdead_beefu64);
        assert_eq!(
            commit_values_salted(&values, 8, salt),
            reference_sponge(&[vec![salt], pack_values(&values, 8)].concat())
        );
    }

    #[test]
    fn the_commitment_is_stable_and_binds_every_value() {
        let values: Vec<i64> = (0..40).map(|i| (i * 37 % 23) - 11).collect();
        // Pinned: a change here changes every published commitment.
        assert_eq!(
            fr_to_hex(&commit_values(&values, 8)),
            "0x14c57d6bab60d2f397ae738d50715b53488831d5deb406d876021f42a0eb7c16"
        );
        let mut other = values.clone();
        other[39] += 1;
        assert_ne!(commit_values(&values, 8), commit_values(&other, 8));
        assert_ne!(commit_values(&values, 8), commit_values(&values, 9));
    }

    #[test]
    fn the_circuit_computes_the_native_commitment_and_binds_it() {
        let values = [3i128, -4, 100, -128, 127];
        let native = commit_values(&values.map(|v| v as i64), 8);
        let honest = move |ctx: &mut Context<Fr>, range: &RangeChip<Fr>| {
            let cells: Vec<_> = values.iter().map(|&v| ctx.load_witness(fe(v))).collect();
            let c = layout_commitment(ctx, range, &cells, 8);
            assert_eq!(*c.value(), native);
            vec![c]
        };
        // Other values, claiming the honest commitment.
        let lying = move |ctx: &mut Context<Fr>, range: &RangeChip<Fr>| {
            let cells: Vec<_> = [3i128, -4, 101, -128, 127].iter().map(|&v| ctx.load_witness(fe(v))).collect();
            vec![layout_commitment(ctx, range, &cells, 8)]
        };
        assert_outputs_bound(honest, lying);
        // A value outside the committed width cannot be committed at all.
        let wide = move |ctx: &mut Context<Fr>, range: &RangeChip<Fr>| {
            let cells: Vec<_> = [3i128, 200].iter().map(|&v| ctx.load_witness(fe(v))).collect();
            vec![layout_commitment(ctx, range, &cells, 8)]
        };
        assert!(!mock_run(&wide, None).0);
    }
}
