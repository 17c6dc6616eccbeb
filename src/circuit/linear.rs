//! Linear layers (dense / Gemm / MatMul with fixed weights) and the rescale that brings a
//! product back to the activation scale.

use halo2_base::gates::{GateInstructions, RangeChip, RangeInstructions};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::{AssignedValue, Context, QuantumCell};

use super::field::{fe, to_i128};
use super::linear_gate::{Block, CellBlock, LinearRegion};
use super::mutation::keep;

/// The private witness of a rescale: `shifted = quotient · 2^shift + remainder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RescaleHint {
    /// `round(acc / 2^shift) + 2^(bits-1)`, in `[0, 2^bits)`.
    pub quotient: i128,
    /// In `[0, 2^shift)`.
    pub remainder: i128,
}

/// The constant added to an accumulator before the rescale's division: rounding (half of
/// 2^shift) and the offset that makes every in-range quotient non-negative.
pub fn rescale_offset(shift: u32, bits: u32) -> i128 {
    let half = if shift == 0 { 0 } else { 1i128 << (shift - 1) };
    half + (1i128 << (bits - 1 + shift))
}

/// The honest hint for a shifted accumulator (see [`rescale_offset`]).
pub fn rescale_hint(shifted: i128, shift: u32) -> RescaleHint {
    RescaleHint { quotient: shifted.div_euclid(1 << shift), remainder: shifted.rem_euclid(1 << shift) }
}

/// Constrains and returns `round(acc / 2^shift)` as a signed value of `bits` bits, given
/// `shifted = acc + rescale_offset(shift, bits)`. The quotient is range-checked to `bits` bits
/// and the remainder to `shift` bits, so exactly one hint satisfies the constraints.
pub fn layout_rescale(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    shifted: AssignedValue<Fr>,
    shift: u32,
    bits: u32,
    hint: RescaleHint,
) -> AssignedValue<Fr> {
    let gate = range.gate();
    let quotient = ctx.load_witness(fe(hint.quotient));
    if keep("rescale: quotient range") {
        range.range_check(ctx, quotient, bits as usize);
    }
    layout_recomposition(ctx, range, shifted, quotient, shift, hint.remainder);
    gate.sub(ctx, quotient, QuantumCell::Constant(fe(1i128 << (bits - 1))))
}

/// A rescale's output `v` (of `bits` signed bits) split by sign: `sign` is 1 when `v >= 0`, else
/// 0, and `low` is in `[0, 2^(bits-1))`, with `v = low + (sign - 1) · 2^(bits-1)`. A Relu of `v`
/// is then the one product `sign · low` (see [`super::nonlinear::layout_relu_of_split`]).
#[derive(Clone, Copy, Debug)]
pub struct SignSplit {
    /// The sign bit, constrained to be a bit.
    pub sign: AssignedValue<Fr>,
    /// The low bits, range-checked to `bits - 1` bits.
    pub low: AssignedValue<Fr>,
}

/// The private witness of a rescale with its quotient split by sign:
/// `shifted = (sign · 2^(bits-1) + low) · 2^shift + remainder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitHint {
    /// The quotient's top bit: 1 when the rescaled value is non-negative.
    pub sign: i128,
    /// The quotient's other bits, in `[0, 2^(bits-1))`.
    pub low: i128,
    /// In `[0, 2^shift)`.
    pub remainder: i128,
}

impl SplitHint {
    /// The honest hint for a shifted accumulator (see [`rescale_offset`]).
    pub fn honest(shifted: i128, shift: u32, bits: u32) -> Self {
        let RescaleHint { quotient, remainder } = rescale_hint(shifted, shift);
        let half = 1i128 << (bits - 1);
        SplitHint { sign: quotient.div_euclid(half), low: quotient.rem_euclid(half), remainder }
    }
}

/// [`layout_rescale`] with the quotient laid out as its sign split: the bit `sign` and `low` of
/// `bits - 1` bits make the quotient `sign · 2^(bits-1) + low`, which bounds it to `bits` bits as
/// the quotient's own range check does, so exactly one hint satisfies the constraints. Costs
/// about as many cells as that range check and a Relu's sign more; a Relu that reads the split
/// is one product instead of its own sign check.
pub fn layout_rescale_split(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    shifted: AssignedValue<Fr>,
    shift: u32,
    bits: u32,
    hint: SplitHint,
) -> (AssignedValue<Fr>, SignSplit) {
    let gate = range.gate();
    let half = Fr::from(1u64 << (bits - 1));
    let sign = ctx.load_witness(fe(hint.sign));
    if keep("rescale split: sign is a bit") {
        gate.assert_bit(ctx, sign);
    }
    let low = ctx.load_witness(fe(hint.low));
    if keep("rescale split: low range") {
        range.range_check(ctx, low, (bits - 1) as usize);
    }
    let quotient = gate.mul_add(ctx, sign, QuantumCell::Constant(half), low);
    layout_recomposition(ctx, range, shifted, quotient, shift, hint.remainder);
    (gate.sub(ctx, quotient, QuantumCell::Constant(half)), SignSplit { sign, low })
}

/// Constrains `shifted = quotient · 2^shift + remainder` with the remainder in `[0, 2^shift)`.
fn layout_recomposition(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    shifted: AssignedValue<Fr>,
    quotient: AssignedValue<Fr>,
    shift: u32,
    remainder: i128,
) {
    let recomposed = if shift == 0 {
        quotient
    } else {
        let remainder = ctx.load_witness(fe(remainder));
        if keep("rescale: remainder range") {
            range.range_check(ctx, remainder, shift as usize);
        }
        range.gate().mul_add(ctx, quotient, QuantumCell::Constant(Fr::from(1u64 << shift)), remainder)
    };
    if keep("rescale: recomposition") {
        ctx.constrain_equal(&recomposed, &shifted);
    }
}

/// Parameters as the circuit holds them: constants baked into the circuit (fixed params), or
/// cells loaded as private witnesses (private, hashed or public params).
#[derive(Clone, Copy, Debug)]
pub enum ParamCells<'a> {
    /// Constants in the circuit.
    Fixed(&'a [i64]),
    /// Advice cells.
    Loaded(&'a [AssignedValue<Fr>]),
}

impl ParamCells<'_> {
    /// Parameter `i` as an operand; `None` for a fixed zero, which costs nothing.
    pub fn operand(&self, i: usize) -> Option<QuantumCell<Fr>> {
        match self {
            ParamCells::Fixed(values) => (values[i] != 0).then(|| QuantumCell::Constant(fe(values[i] as i128))),
            ParamCells::Loaded(cells) => Some(QuantumCell::Existing(cells[i])),
        }
    }
}

/// Constrains and returns `round(a · b / 2^shift)` as a signed value of `bits` bits.
pub fn layout_product(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    a: QuantumCell<Fr>,
    b: QuantumCell<Fr>,
    shift: u32,
    bits: u32,
) -> AssignedValue<Fr> {
    let offset = QuantumCell::Constant(fe(rescale_offset(shift, bits)));
    let shifted = range.gate().mul_add(ctx, a, b, offset);
    layout_honest_rescale(ctx, range, shifted, shift, bits)
}

/// [`layout_rescale`] with the honest hint, read off the shifted accumulator's value.
fn layout_honest_rescale(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    shifted: AssignedValue<Fr>,
    shift: u32,
    bits: u32,
) -> AssignedValue<Fr> {
    let hint =
        to_i128(shifted.value()).map(|v| rescale_hint(v, shift)).unwrap_or(RescaleHint { quotient: 0, remainder: 0 });
    layout_rescale(ctx, range, shifted, shift, bits, hint)
}

/// A linear layer's outputs, and their sign splits when they were asked for (else empty).
pub type Rescaled = (Vec<AssignedValue<Fr>>, Vec<SignSplit>);

/// The honest rescale of each of `shifted`, split by sign when `split` asks (see
/// [`layout_rescale_split`]).
fn layout_honest_rescales(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    shifted: impl IntoIterator<Item = AssignedValue<Fr>>,
    (shift, bits): (u32, u32),
    split: bool,
) -> Rescaled {
    let mut out = (Vec::new(), Vec::new());
    for s in shifted {
        if split {
            let fallback = SplitHint { sign: 0, low: 0, remainder: 0 };
            let hint = to_i128(s.value()).map_or(fallback, |v| SplitHint::honest(v, shift, bits));
            let (value, sign) = layout_rescale_split(ctx, range, s, shift, bits, hint);
            out.0.push(value);
            out.1.push(sign);
        } else {
            out.0.push(layout_honest_rescale(ctx, range, s, shift, bits));
        }
    }
    out
}

/// Constrains and returns `round(Σ a_i · b_i / 2^shift)` as a signed value of `bits` bits: the
/// product of two computed vectors.
pub fn layout_inner_product(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    pairs: &[(AssignedValue<Fr>, AssignedValue<Fr>)],
    shift: u32,
    bits: u32,
) -> AssignedValue<Fr> {
    let gate = range.gate();
    let dot = gate.inner_product(ctx, pairs.iter().map(|p| p.0), pairs.iter().map(|p| QuantumCell::Existing(p.1)));
    let shifted = gate.add(ctx, dot, QuantumCell::Constant(fe(rescale_offset(shift, bits))));
    layout_honest_rescale(ctx, range, shifted, shift, bits)
}

/// One output element of a linear layer: `Σ x[i] · weight[j]` over `terms`, plus `bias[bias]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AffineOutput {
    /// (input position, weight position) pairs.
    pub terms: Vec<(usize, usize)>,
    /// The bias's position.
    pub bias: usize,
}

/// The parameters of a linear layer as the circuit holds them.
#[derive(Clone, Copy, Debug)]
pub struct AffineParams<'a> {
    /// The weights.
    pub weight: ParamCells<'a>,
    /// The biases.
    pub bias: ParamCells<'a>,
    /// The rescale's shift (the weights' scale).
    pub shift: u32,
}

/// Lays out a linear layer (Dense or Conv): each output is `round((Σ x · w + bias) / 2^shift)`
/// over its `terms`, one inner product whose start value folds in the rounding and offset (and a
/// fixed bias), then a rescale to `bits` signed bits, split by sign when `split` asks. Fixed zero
/// weights cost nothing.
pub fn layout_affine(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    x: &[AssignedValue<Fr>],
    params: AffineParams<'_>,
    outputs: &[AffineOutput],
    (bits, split): (u32, bool),
) -> Rescaled {
    let shifted: Vec<_> = outputs.iter().map(|o| layout_affine_sum(ctx, range.gate(), x, params, o, bits)).collect();
    layout_honest_rescales(ctx, range, shifted, (params.shift, bits), split)
}

/// One output's shifted sum in halo2-base's gate, `Σ x · w + bias` plus the rescale's offset
/// to `bits` bits: an inner product whose start value folds in the offset (and a fixed bias).
fn layout_affine_sum(
    ctx: &mut Context<Fr>,
    gate: &impl GateInstructions<Fr>,
    x: &[AssignedValue<Fr>],
    AffineParams { weight, bias, shift }: AffineParams<'_>,
    o: &AffineOutput,
    bits: u32,
) -> AssignedValue<Fr> {
    let offset = rescale_offset(shift, bits);
    let one = || QuantumCell::Constant(Fr::from(1u64));
    let (start, bias_term) = match bias {
        ParamCells::Fixed(values) => (fe(values[o.bias] as i128 + offset), None),
        ParamCells::Loaded(_) => (fe(offset), bias.operand(o.bias).map(|c| (c, one()))),
    };
    let (a, b): (Vec<QuantumCell<Fr>>, Vec<QuantumCell<Fr>>) = std::iter::once((QuantumCell::Constant(start), one()))
        .chain(bias_term)
        .chain(o.terms.iter().filter_map(|&(i, j)| Some((QuantumCell::Existing(x[i]), weight.operand(j)?))))
        .unzip();
    gate.inner_product(ctx, a, b)
}

/// Advice cells [`layout_affine`] spends on `outputs` with fixed `weight`: three per non-zero
/// term (the input copied in, the weight, the running sum) and two for the start and the sum.
pub fn affine_base_cells(outputs: &[AffineOutput], weight: &[i64]) -> usize {
    outputs.iter().map(|o| 3 * o.terms.iter().filter(|&&(_, j)| weight[j] != 0).count() + 2).sum()
}

/// One run of the linear region: the input positions with a non-zero weight in some lane (all
/// of them when the weights are cells), and each lane's weight position for each of them.
struct GateRun {
    inputs: Vec<usize>,
    weights: Vec<Vec<usize>>,
}

/// The runs of the linear region for a layer's outputs grouped into lanes, one per group.
pub struct GatePlan(Vec<GateRun>);

impl GatePlan {
    /// The runs for `outputs` grouped into `lanes` (each group's outputs read the same inputs
    /// in the same order); `None` when a group's lanes read different inputs. Fixed zero
    /// weights (`weight` given) are left out.
    pub fn new(outputs: &[AffineOutput], lanes: &[Vec<usize>], weight: Option<&[i64]>) -> Option<Self> {
        let runs = lanes.iter().map(|group| {
            let first = &outputs[group[0]].terms;
            let same = group.iter().all(|&o| {
                let t = &outputs[o].terms;
                t.len() == first.len() && t.iter().zip(first).all(|(a, b)| a.0 == b.0)
            });
            if !same {
                return None;
            }
            let nonzero = |i: usize| weight.is_none_or(|w| group.iter().any(|&o| w[outputs[o].terms[i].1] != 0));
            let used: Vec<usize> = (0..first.len()).filter(|&i| nonzero(i)).collect();
            let inputs = used.iter().map(|&i| first[i].0).collect();
            let weights = group.iter().map(|&o| used.iter().map(|&i| outputs[o].terms[i].1).collect()).collect();
            Some(GateRun { inputs, weights })
        });
        runs.collect::<Option<Vec<_>>>().map(GatePlan)
    }

    /// Advice cells the runs take in `region`.
    pub fn cells(&self, region: &LinearRegion) -> usize {
        let g = region.geometry();
        self.0.iter().map(|run| g.rows(run.inputs.len()) * g.advice_columns()).sum()
    }
}

/// [`layout_affine`] through the linear region: each group of `lanes` is one run of `plan` (its
/// outputs' sums, with the bias and the rescale's offset, computed by the region's gate), then
/// each sum is rescaled in halo2-base as [`layout_affine`] does. Fixed params weigh the region's
/// fixed columns; params that are cells are copied into its weight columns, each bias once plus
/// the offset. A run that would pass the region's capacity has its outputs' sums computed as
/// [`layout_affine`] computes them (a layer may end in halo2-base's gate when a smaller k with
/// a few more of its cells proves faster than a larger one).
pub fn layout_affine_gate(
    (ctx, range, region): (&mut Context<Fr>, &RangeChip<Fr>, &mut LinearRegion),
    x: &[AssignedValue<Fr>],
    params: AffineParams<'_>,
    (outputs, lanes, plan): (&[AffineOutput], &[Vec<usize>], GatePlan),
    (bits, split): (u32, bool),
) -> Rescaled {
    let AffineParams { weight, bias, shift } = params;
    let offset = rescale_offset(shift, bits);
    let mut sums = vec![None; outputs.len()];
    let mut biased = std::collections::HashMap::new();
    for (group, run) in lanes.iter().zip(plan.0) {
        let rows = region.geometry().rows(run.inputs.len());
        if !region.has_room(rows) {
            // Past the region's rows at this k: this run's outputs in halo2-base's gate.
            region.overflowed(rows);
            for &o in group {
                sums[o] = Some(layout_affine_sum(ctx, range.gate(), x, params, &outputs[o], bits));
            }
            continue;
        }
        let inputs: Vec<_> = run.inputs.iter().map(|&i| x[i]).collect();
        let run_sums = match (weight, bias) {
            (ParamCells::Fixed(weight), ParamCells::Fixed(bias)) => {
                let weights: Vec<Vec<i64>> =
                    run.weights.iter().map(|l| l.iter().map(|&j| weight[j]).collect()).collect();
                let bias: Vec<i128> = group.iter().map(|&o| i128::from(bias[outputs[o].bias]) + offset).collect();
                region.push_block(ctx, Block { inputs: &inputs, weights: &weights, bias: &bias })
            }
            (ParamCells::Loaded(weight), ParamCells::Loaded(bias)) => {
                let weights: Vec<Vec<_>> = run.weights.iter().map(|l| l.iter().map(|&j| weight[j]).collect()).collect();
                let bias: Vec<_> = group
                    .iter()
                    .map(|&o| {
                        let b = outputs[o].bias;
                        *biased
                            .entry(b)
                            .or_insert_with(|| range.gate().add(ctx, bias[b], QuantumCell::Constant(fe(offset))))
                    })
                    .collect();
                region.push_cell_block(ctx, CellBlock { inputs: &inputs, weights: &weights, bias: &bias })
            }
            _ => unreachable!("a layer's weight and bias are both fixed or both cells"),
        };
        for (&o, shifted) in group.iter().zip(run_sums) {
            sums[o] = Some(shifted);
        }
    }
    let shifted = sums.into_iter().map(|c| c.expect("every output is in one run"));
    layout_honest_rescales(ctx, range, shifted, (shift, bits), split)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::soundness::assert_sound;

    fn rescale_case(
        acc: i128,
        shift: u32,
        bits: u32,
        hint: Option<RescaleHint>,
        expected: i128,
    ) -> impl Fn(&mut Context<Fr>, &RangeChip<Fr>) -> Vec<AssignedValue<Fr>> {
        move |ctx, range| {
            let shifted_value = acc + rescale_offset(shift, bits);
            let shifted = ctx.load_witness(fe(shifted_value));
            let out = layout_rescale(
                ctx,
                range,
                shifted,
                shift,
                bits,
                hint.unwrap_or_else(|| rescale_hint(shifted_value, shift)),
            );
            if hint.is_none() {
                assert_eq!(to_i128(out.value()), Some(expected));
            }
            vec![out]
        }
    }

    #[test]
    fn rescale_accepts_the_honest_witness_only() {
        let (shift, bits) = (7, 16);
        for (acc, expected) in [(1000i128, 8i128), (-1000, -8), (64, 1), (-64, 0), (0, 0)] {
            let honest = rescale_hint(acc + rescale_offset(shift, bits), shift);
            let tampered = [
                // Same linear relation, remainder out of range.
                RescaleHint { quotient: honest.quotient + 1, remainder: honest.remainder - (1 << shift) },
                RescaleHint { quotient: honest.quotient - 1, remainder: honest.remainder + (1 << shift) },
                // Wrong relation.
                RescaleHint { quotient: honest.quotient + 1, remainder: honest.remainder },
                RescaleHint { quotient: honest.quotient, remainder: (honest.remainder + 1) % (1 << shift) },
            ];
            assert_sound(
                rescale_case(acc, shift, bits, None, expected),
                tampered.iter().map(|&h| rescale_case(acc, shift, bits, Some(h), expected)).collect(),
            );
        }
    }

    #[test]
    fn rescale_rejects_a_quotient_out_of_range() {
        let (shift, bits) = (4, 12);
        // An accumulator whose quotient needs more than `bits` bits has no valid witness.
        let acc = 1i128 << (bits + shift);
        let hint = rescale_hint(acc + rescale_offset(shift, bits), shift);
        assert_sound(rescale_case(0, shift, bits, None, 0), vec![rescale_case(acc, shift, bits, Some(hint), 0)]);
    }

    fn fixed<'a>(weight: &'a [i64], bias: &'a [i64]) -> AffineParams<'a> {
        AffineParams { weight: ParamCells::Fixed(weight), bias: ParamCells::Fixed(bias), shift: 2 }
    }

    #[test]
    fn dense_layer_matches_integer_arithmetic_and_rejects_wrong_hints() {
        let weight = [3i64, -2, 0, 5, 1, -7]; // K = 3, N = 2
        let bias = [10i64, -20];
        // y[j] = Σ_i x[i] · w[i, j] + b[j], as a Dense layer of one row lays it out.
        let outputs: Vec<AffineOutput> =
            (0..2).map(|j| AffineOutput { terms: (0..3).map(|i| (i, i * 2 + j)).collect(), bias: j }).collect();
        let lying_outputs = outputs.clone();
        let inputs = [4i128, -9, 11];
        let honest = move |ctx: &mut Context<Fr>, range: &RangeChip<Fr>| {
            let x: Vec<_> = inputs.iter().map(|&v| ctx.load_witness(fe(v))).collect();
            let out = layout_affine(ctx, range, &x, fixed(&weight, &bias), &outputs, (16, false)).0;
            let expect = |j: usize| {
                crate::model::quantize::rescale(
                    (0..3).map(|i| inputs[i] * weight[i * 2 + j] as i128).sum::<i128>() + bias[j] as i128,
                    2,
                )
            };
            assert_eq!(to_i128(out[0].value()), Some(expect(0)));
            assert_eq!(to_i128(out[1].value()), Some(expect(1)));
            out
        };
        // A prover who claims another output: the output cell is overwritten after the fact.
        let lying = move |ctx: &mut Context<Fr>, range: &RangeChip<Fr>| {
            let x: Vec<_> = inputs.iter().map(|&v| ctx.load_witness(fe(v))).collect();
            let out = layout_affine(ctx, range, &x, fixed(&weight, &bias), &lying_outputs, (16, false)).0;
            let fake = ctx.load_witness(*out[0].value() + Fr::from(1u64));
            vec![fake, out[1]]
        };
        crate::circuit::soundness::assert_outputs_bound(honest, lying);
    }
}
