//! Public instances: inputs and outputs are packed several to a field element, which keeps the
//! Solidity verifier small and cheap (its code and gas grow with the number of instances).
//!
//! A value `v` of `bits` signed bits is stored as `v + 2^(bits-1)`, in `[0, 2^bits)`; word `w` of
//! a run holds values `m·w .. m·w + m` as `Σ_j (v_j + 2^(bits-1)) · 2^(bits·j)`, where
//! `m = values_per_word(bits)`. Every packed value is range-checked, so a word has exactly one
//! decoding.

use halo2_base::gates::{GateInstructions, RangeChip, RangeInstructions};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::{AssignedValue, Context, QuantumCell};
use serde::{Deserialize, Serialize};

use super::field::{fe, to_i128};
use super::lookup::Lookup;
use super::mutation::keep;
use super::nonlinear::Lookups;

/// How a run of public instances encodes its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The values themselves, packed `values_per_word` to an instance.
    Packed,
    /// One instance: the Poseidon commitment to the packed values (see [`super::commit`]).
    Poseidon,
    /// One instance the circuit carries as the prover chose it, bound to the proof by the
    /// transcript (the submitter binding).
    Word,
}

/// Where a run of public instances comes from. Packed values: word `w` is
/// `Σ_j (v_j + 2^(bits-1)) · 2^(bits·j)` over the run's values `v_{w·m + j}` (quantized
/// integers, `m = values_per_word`), and a value is `v / 2^scale`. A Poseidon run is one
/// instance, the hash of the same words (of every part, in order, for the params).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceSpan {
    /// "input", "param" (one public tensor), "params" (the model commitment) or "output".
    pub kind: String,
    /// Which model input or output, or which param tensor.
    pub index: usize,
    /// The tensor's name (input and output names are their positions).
    pub name: String,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// Number of values (the product of `shape`).
    pub values: usize,
    /// First instance (word) of the run.
    pub first_instance: usize,
    /// Number of instances (words) of the run.
    pub instances: usize,
    /// The values themselves or their commitment.
    pub encoding: Encoding,
    /// Width of each packed value (for the params commitment: see `parts`).
    pub bits: u32,
    /// Values per word.
    pub values_per_word: usize,
    /// Fixed-point scale (bits).
    pub scale: u32,
    /// For the params commitment: the tensors hashed, in order, each packed at its own width.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<CommittedPart>,
    /// For a Poseidon run of an input or output: the hash absorbs a random salt (kept in the
    /// prover's witness.json) before the packed words.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub salted: bool,
    /// In an aggregation proof, which aggregated proof the run belongs to: its position among
    /// the proofs aggregated, then, for a proof that was itself an aggregate, its position there,
    /// and so on. Empty in an application proof.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proof: Vec<usize>,
}

/// One tensor inside the params commitment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommittedPart {
    /// Tensor name.
    pub name: String,
    /// Number of values.
    pub values: usize,
    /// Packing width.
    pub bits: u32,
    /// Fixed-point scale.
    pub scale: u32,
}

/// How many `bits`-bit values one BN254 scalar holds (253 bits stay below the modulus).
///
/// ## Assumptions
/// `1 ≤ bits ≤ 64` (the widths the circuit packs); a width of 0 counts as 1.
pub fn values_per_word(bits: u32) -> usize {
    (253 / bits.max(1)) as usize
}

/// Packs values that are already range-checked in offset form (`v + 2^(bits-1)`).
pub fn layout_pack(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    shifted: &[AssignedValue<Fr>],
    bits: u32,
) -> Vec<AssignedValue<Fr>> {
    let gate = range.gate();
    shifted
        .chunks(values_per_word(bits))
        .map(|chunk| gate.inner_product(ctx, chunk.iter().copied(), word_powers(chunk.len(), bits)))
        .collect()
}

/// The weights of a word's values: `2^(bits·j)` for value `j` of `len`.
fn word_powers(len: usize, bits: u32) -> Vec<QuantumCell<Fr>> {
    let base = fe(1i128 << bits);
    std::iter::successors(Some(fe(1)), |p| Some(*p * base)).take(len).map(QuantumCell::Constant).collect()
}

/// Range-checks values of `bits` signed bits and returns them in offset form.
pub fn layout_offset(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    values: &[AssignedValue<Fr>],
    bits: u32,
) -> Vec<AssignedValue<Fr>> {
    let offset = QuantumCell::Constant(fe(1i128 << (bits - 1)));
    values
        .iter()
        .map(|&v| {
            let shifted = range.gate().add(ctx, v, offset);
            if keep("instances: packed value range") {
                range.range_check(ctx, shifted, bits as usize);
            }
            shifted
        })
        .collect()
}

/// The widest values range-checked by a table of their own (2^12 rows).
pub const RANGE_TABLE_MAX_BITS: u32 = 12;

/// Values of one width, below this many in all, add no lookup argument to a circuit that has
/// none: a small circuit's proving time is not worth the verifier's extra columns and gas.
pub const RANGE_TABLE_MIN_VALUES: usize = 4096;

/// The widths of `tensors` (each `(bits, values)`) whose values [`layout_pack_lookup`] checks
/// and packs instead of [`layout_offset`] and [`layout_pack`]: a table of 2^bits rows pays when at most `RANGE_TABLE_MAX_BITS`
/// wide and a quarter as long as the values it checks, and, where the circuit has no lookup
/// argument yet (`has_lookups` false), when enough values would use it.
pub fn range_table_widths(tensors: impl IntoIterator<Item = (u32, usize)>, has_lookups: bool) -> Vec<u32> {
    let mut counts = std::collections::BTreeMap::<u32, usize>::new();
    for (bits, values) in tensors {
        *counts.entry(bits).or_default() += values;
    }
    let pays = |(&bits, &count): (&u32, &usize)| {
        bits <= RANGE_TABLE_MAX_BITS
            && count.saturating_mul(4) >= 1usize << bits
            && (has_lookups || count >= RANGE_TABLE_MIN_VALUES)
    };
    counts.iter().filter(|&e| pays(e)).map(|(&bits, _)| bits).collect()
}

/// [`layout_offset`] and [`layout_pack`] by table: each value `v` and its offset form
/// `v + 2^(bits-1)` are looked up together in the table of every `bits`-bit value beside its
/// offset form, which checks the range and the offset at once, and the offset forms are laid
/// out where the packing's inner products read them (no cell of their own). Returns the offset
/// forms and the packed words (a few cells per value instead of a dozen).
pub fn layout_pack_lookup(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    lookups: &mut Lookups,
    values: &[AssignedValue<Fr>],
    bits: u32,
) -> (Vec<AssignedValue<Fr>>, Vec<AssignedValue<Fr>>) {
    // A value out of range (never from an honest witness) has no row: any hint fails.
    let half = 1i128 << (bits - 1);
    let honest = |v: &AssignedValue<Fr>| fe(to_i128(v.value()).map_or(0, |v| v + half));
    pack_lookup_hinted(ctx, range, lookups, values, bits, &honest)
}

/// [`layout_pack_lookup`] with the offset forms `hint` gives (another than the honest one in
/// tests).
pub(crate) fn pack_lookup_hinted(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    lookups: &mut Lookups,
    values: &[AssignedValue<Fr>],
    bits: u32,
    hint: &dyn Fn(&AssignedValue<Fr>) -> Fr,
) -> (Vec<AssignedValue<Fr>>, Vec<AssignedValue<Fr>>) {
    let tag = lookups.range_tag(bits);
    let mut shifted = Vec::with_capacity(values.len());
    let words = values
        .chunks(values_per_word(bits))
        .map(|chunk| {
            let hints = chunk.iter().map(|v| QuantumCell::Witness(hint(v)));
            let (word, cells) = range.gate().inner_product_left(ctx, hints, word_powers(chunk.len(), bits));
            if keep("instances: range lookup") {
                lookups.lookups.extend(chunk.iter().zip(&cells).map(|(&x, &y)| Lookup { tag, x, y }));
            }
            shifted.extend(cells);
            word
        })
        .collect();
    (shifted, words)
}

/// Packs signed integers as the circuit does.
pub fn pack_values(values: &[i64], bits: u32) -> Vec<Fr> {
    let base = fe(1i128 << bits);
    values
        .chunks(values_per_word(bits))
        .map(|chunk| chunk.iter().rev().fold(Fr::zero(), |acc, &v| acc * base + fe(v as i128 + (1i128 << (bits - 1)))))
        .collect()
}

/// Unpacks `count` signed integers from words; `None` if a word is not a valid packing (or
/// `bits` is not a packing width, 1 to 64).
pub fn unpack_values(words: &[Fr], count: usize, bits: u32) -> Option<Vec<i64>> {
    if !(1..=64).contains(&bits) {
        return None;
    }
    let m = values_per_word(bits);
    let mut out = Vec::with_capacity(count.min(words.len().saturating_mul(m)));
    for word in words {
        let mut rest = num_from_le(&word.to_bytes());
        for _ in 0..m {
            if out.len() == count {
                break;
            }
            let digit = rest.take_low_bits(bits);
            out.push((digit as i128 - (1i128 << (bits - 1))) as i64);
        }
        if !rest.is_zero() {
            return None;
        }
    }
    (out.len() == count).then_some(out)
}

/// A little-endian 256-bit number we shift bits out of.
struct Bits256([u64; 4]);

fn num_from_le(bytes: &[u8; 32]) -> Bits256 {
    let mut limbs = [0u64; 4];
    for (i, limb) in limbs.iter_mut().enumerate() {
        *limb = u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    }
    Bits256(limbs)
}

impl Bits256 {
    /// Removes and returns the low `bits` bits (`bits` ≤ 64).
    fn take_low_bits(&mut self, bits: u32) -> u128 {
        let low = (self.0[0] as u128 | (self.0[1] as u128) << 64) & ((1u128 << bits) - 1);
        if bits == 64 {
            self.0 = [self.0[1], self.0[2], self.0[3], 0];
        } else {
            for i in 0..4 {
                let next = if i < 3 { self.0[i + 1] } else { 0 };
                self.0[i] = (self.0[i] >> bits) | (next << (64 - bits));
            }
        }
        low
    }

    fn is_zero(&self) -> bool {
        self.0.iter().all(|&l| l == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::soundness::{assert_outputs_bound, mock_run};

    #[test]
    fn packing_round_trips() {
        for bits in [8u32, 24, 64] {
            let values: Vec<i64> = (0..23).map(|i| ((i * 7919) % 200) as i64 - 100).collect();
            let words = pack_values(&values, bits);
            assert_eq!(words.len(), values.len().div_ceil(values_per_word(bits)));
            assert_eq!(unpack_values(&words, values.len(), bits), Some(values.clone()));
        }
        // A word with bits above its last value does not decode.
        let mut words = pack_values(&[1, 2, 3], 24);
        words[0] += fe(1i128 << 100);
        assert_eq!(unpack_values(&words, 3, 24), None);
    }

    #[test]
    fn packed_words_bind_every_value() {
        let bits = 16;
        let values = [5i128, -7, 300, -(1 << 15), (1 << 15) - 1];
        let honest = move |ctx: &mut Context<Fr>, range: &RangeChip<Fr>| {
            let cells: Vec<_> = values.iter().map(|&v| ctx.load_witness(fe(v))).collect();
            let shifted = layout_offset(ctx, range, &cells, bits);
            let words = layout_pack(ctx, range, &shifted, bits);
            let native = pack_values(&values.map(|v| v as i64), bits);
            assert_eq!(words.iter().map(|w| *w.value()).collect::<Vec<_>>(), native);
            words
        };
        let lying = move |ctx: &mut Context<Fr>, range: &RangeChip<Fr>| {
            let cells: Vec<_> = values.iter().map(|&v| ctx.load_witness(fe(v))).collect();
            let shifted = layout_offset(ctx, range, &cells, bits);
            let _ = layout_pack(ctx, range, &shifted, bits);
            // Claims the packing of other values without constraining it.
            pack_values(&[5, -7, 301, -(1 << 15), (1 << 15) - 1], bits)
                .into_iter()
                .map(|w| ctx.load_witness(w))
                .collect()
        };
        assert_outputs_bound(honest, lying);
        // A value outside the range cannot be packed, even by a prover who picks the words.
        let out_of_range = move |ctx: &mut Context<Fr>, range: &RangeChip<Fr>| {
            let cell = ctx.load_witness(fe(1 << 15));
            let shifted = layout_offset(ctx, range, &[cell], bits);
            layout_pack(ctx, range, &shifted, bits)
        };
        assert!(!mock_run(&out_of_range, None).0, "an out-of-range value must not be packable");
    }
}
