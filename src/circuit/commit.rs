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
#[cfg(test)]
use halo2_base::gates::RangeChip;
use halo2_base::gates::{GateChip, GateInstructions};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::halo2_proofs::halo2curves::ff::PrimeField;
use halo2_base::poseidon::hasher::spec::OptimizedPoseidonSpec;
use halo2_base::poseidon::hasher::PoseidonHasher;
use halo2_base::{AssignedValue, Context, QuantumCell};

use super::instances::pack_values;
use super::linear_gate::{LinearGeometry, LinearRegion};
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

/// A word of the sponge's state in [`layout_hash_in_region`]: a cell plus a constant (constants
/// ride along until a product needs them), or a constant.
#[derive(Clone, Copy)]
enum Word {
    Cell(AssignedValue<Fr>, Fr),
    Const(Fr),
}

/// Each round's constants, the MDS matrix and its inverse.
type Rounds = (Vec<[Fr; POSEIDON_T]>, [[Fr; POSEIDON_T]; POSEIDON_T], [[Fr; POSEIDON_T]; POSEIDON_T]);

/// The commitments' round constants (`R_F + R_P` rounds), MDS matrix and its inverse, from PSE's
/// primitives (see [`super::poseidon_gate::CommitmentSpec`]), derived once for both of our
/// layouts of the permutation. In the textbook order: each round adds its constants, applies the
/// S-box (to every word in a full round, to the first in a partial one), then the matrix;
/// halo2-base's optimized form computes the same permutation.
pub(super) fn rounds() -> &'static Rounds {
    static ROUNDS: std::sync::OnceLock<Rounds> = std::sync::OnceLock::new();
    ROUNDS.get_or_init(|| {
        use poseidon_primitives::poseidon::primitives::Spec;
        super::poseidon_gate::CommitmentSpec::constants()
    })
}

/// Rows of the linear-layer gate's region at most that [`layout_hash_in_region`] takes for a
/// hash of `words` words.
pub fn region_hash_rows(geometry: LinearGeometry, words: usize) -> usize {
    let permutations = words / POSEIDON_RATE + 1;
    let round = POSEIDON_T.div_ceil(geometry.outputs) * geometry.rows(POSEIDON_T);
    permutations * (POSEIDON_R_F + POSEIDON_R_P) * round + 1
}

/// The same hash as [`layout_hash`], with each round's matrix product (and the next round's
/// constants) in the linear-layer gate's region, whose fixed weights hold the matrix: a round
/// costs the region `⌈5/K⌉` runs of 5 inputs, and halo2-base's gate only the S-boxes (three
/// products each) and the absorbed words' sums, about a third of the cells its own permutation
/// spends. For a circuit whose layers leave the region room and halo2-base's columns little (a
/// hashed input beside a large linear layer). `region` must have fixed weights.
pub fn layout_hash_in_region(
    ctx: &mut Context<Fr>,
    gate: &GateChip<Fr>,
    region: &mut LinearRegion,
    words: &[AssignedValue<Fr>],
) -> AssignedValue<Fr> {
    let (constants, mds, _) = rounds();
    let lanes = region.geometry().outputs;
    let mut state = [
        Word::Const(Fr::from_u128(1u128 << 64)),
        Word::Const(Fr::zero()),
        Word::Const(Fr::zero()),
        Word::Const(Fr::zero()),
        Word::Const(Fr::zero()),
    ];
    // Fixed-length absorption: chunks of the rate, one empty chunk more when the words fill the
    // last; each chunk's words go to state words 1.., a 1 after them when the chunk is short.
    let mut chunks: Vec<&[AssignedValue<Fr>]> = words.chunks(POSEIDON_RATE).collect();
    if words.len() % POSEIDON_RATE == 0 {
        chunks.push(&[]);
    }
    let rounds = POSEIDON_R_F + POSEIDON_R_P;
    let half = POSEIDON_R_F / 2;
    for chunk in chunks {
        for (i, word) in state.iter_mut().enumerate() {
            let padding = if i == chunk.len() + 1 { Fr::one() } else { Fr::zero() };
            let k = constants[0][i] + padding;
            let absorbed = i.checked_sub(1).and_then(|j| chunk.get(j));
            *word = match (*word, absorbed) {
                (Word::Const(c), Some(&w)) => Word::Cell(w, c + k),
                (Word::Const(c), None) => Word::Const(c + k),
                (Word::Cell(x, c), Some(&w)) => Word::Cell(gate.add(ctx, x, w), c + k),
                (Word::Cell(x, c), None) => Word::Cell(x, c + k),
            };
        }
        for round in 0..rounds {
            let full = round < half || round >= half + POSEIDON_R_P;
            for word in state.iter_mut().take(if full { POSEIDON_T } else { 1 }) {
                *word = fifth_power(ctx, gate, *word);
            }
            // The next round's constants go in with the product (the next chunk's first round
            // adds its own with the words).
            let next = if round + 1 < rounds { constants[round + 1] } else { [Fr::zero(); POSEIDON_T] };
            let cells: Vec<(usize, AssignedValue<Fr>)> = state
                .iter()
                .enumerate()
                .filter_map(|(j, w)| match w {
                    Word::Cell(x, _) => Some((j, *x)),
                    Word::Const(_) => None,
                })
                .collect();
            let constant = |j: usize| match state[j] {
                Word::Cell(_, c) | Word::Const(c) => c,
            };
            let bias: Vec<Fr> = (0..POSEIDON_T)
                .map(|i| (0..POSEIDON_T).map(|j| mds[i][j] * constant(j)).sum::<Fr>() + next[i])
                .collect();
            if cells.is_empty() {
                state = std::array::from_fn(|i| Word::Const(bias[i]));
                continue;
            }
            let inputs: Vec<AssignedValue<Fr>> = cells.iter().map(|&(_, x)| x).collect();
            let mut out = Vec::with_capacity(POSEIDON_T);
            for group in (0..POSEIDON_T).collect::<Vec<_>>().chunks(lanes) {
                let weights: Vec<Vec<Fr>> =
                    group.iter().map(|&i| cells.iter().map(|&(j, _)| mds[i][j]).collect()).collect();
                let bias: Vec<Fr> = group.iter().map(|&i| bias[i]).collect();
                out.extend(region.push_field_block(ctx, &inputs, &weights, &bias));
            }
            state = std::array::from_fn(|i| Word::Cell(out[i], Fr::zero()));
        }
    }
    match state[1] {
        Word::Cell(x, c) if c == Fr::zero() => x,
        Word::Cell(x, c) => gate.add(ctx, x, QuantumCell::Constant(c)),
        Word::Const(c) => ctx.load_constant(c),
    }
}

/// `w^5`, the S-box, of a state word.
fn fifth_power(ctx: &mut Context<Fr>, gate: &GateChip<Fr>, word: Word) -> Word {
    match word {
        Word::Const(c) => Word::Const(c.square().square() * c),
        Word::Cell(x, c) => {
            let u = if c == Fr::zero() { x } else { gate.add(ctx, x, QuantumCell::Constant(c)) };
            let square = gate.mul(ctx, u, u);
            let fourth = gate.mul(ctx, square, square);
            Word::Cell(gate.mul(ctx, fourth, u), Fr::zero())
        }
    }
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
    use halo2_base::halo2_proofs::dev::MockProver;

    use super::*;
    use crate::circuit::field::fe;
    use crate::circuit::linear_gate::Tamper;
    use crate::circuit::lookup::ModelCircuit;
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

    /// Hashes `words` with each round's matrix in a region of `geometry` (a deviation `tamper`
    /// from its honest witness, the hash claimed one more with `wrong_claim`), the hash public:
    /// whether the MockProver accepts, and the hash the circuit computed.
    fn region_hash_run(
        geometry: LinearGeometry,
        words: &[Fr],
        tamper: Option<Tamper>,
        wrong_claim: bool,
    ) -> (bool, Fr) {
        const K: u32 = 12;
        let mut base = crate::circuit::soundness::mock_builder(K as usize);
        let gate = base.range_chip().gate;
        let ctx = base.main(0);
        let cells = ctx.assign_witnesses(words.iter().copied());
        let mut region = LinearRegion::new(geometry);
        if let Some(t) = tamper {
            region.set_tamper(t);
        }
        let hash = layout_hash_in_region(ctx, &gate, &mut region, &cells);
        let value = *hash.value();
        let public = gate.add(ctx, hash, QuantumCell::Constant(Fr::zero()));
        base.assigned_instances[0] = vec![public];
        base.calculate_params(Some(20));
        assert!(region.rows() <= region_hash_rows(geometry, words.len()), "{geometry}: more rows than counted");
        let claimed = if wrong_claim { value + Fr::one() } else { value };
        let circuit = ModelCircuit { linear: Some(region), ..ModelCircuit::from_base(base) };
        (MockProver::run(K, &circuit, vec![vec![claimed]]).expect("mock prover runs").verify().is_ok(), value)
    }

    #[test]
    fn the_hash_with_its_matrices_in_the_linear_region_is_the_commitment_and_binds_it() {
        let geometries = [LinearGeometry::new(2, 1), LinearGeometry::new(2, 2), LinearGeometry::new(4, 1)];
        // A partial chunk, a whole one (and its padding permutation), and two chunks.
        for n in [1usize, 4, 6] {
            let words: Vec<Fr> = (0..n as u64).map(|i| Fr::from(i * 7919 + 3)).collect();
            for g in geometries {
                let (ok, value) = region_hash_run(g, &words, None, false);
                assert!(ok, "{g}, {n} words: the honest witness must pass");
                assert_eq!(value, hash_words(&words), "{g}, {n} words: halo2-base's hash");
            }
        }
        let words: Vec<Fr> = (0..6u64).map(Fr::from).collect();
        let g = LinearGeometry::new(2, 1);
        assert!(!region_hash_run(g, &words, None, true).0, "a wrong hash must be rejected");
        // A wrong product in the first permutation, in the second, a wrong matrix input, wrong
        // round constants (every run's constant slot doubled), a hash handed on wrong.
        for tamper in [
            Tamper::WrongSum { row: 7 },
            Tamper::WrongSum { row: 1500 },
            Tamper::WrongInput { row: 31, slot: 1 },
            Tamper::WrongConstant,
            Tamper::WrongOutput,
        ] {
            assert!(!region_hash_run(g, &words, Some(tamper), false).0, "{tamper:?} must be rejected");
        }
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
