//! Pooling: the rounded mean of a window (an exact division by its count, not a multiplication
//! by a rounded reciprocal) and its maximum.

use halo2_base::gates::{GateInstructions, RangeChip, RangeInstructions};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::{AssignedValue, Context, QuantumCell};

use super::field::{fe, to_i128};
use super::mutation::keep;

/// The private witness of a division: `shifted = quotient · divisor + remainder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DivisionHint {
    /// In `[0, 2^bits)`.
    pub quotient: i128,
    /// In `[0, divisor)`.
    pub remainder: i128,
}

/// Constrains and returns `round(Σ cells / count)`, halves up, as a signed value of `bits` bits.
/// With `d = 2·count` and `B = 2^(bits-1)`: `2·Σ + count + d·B = q·d + r`, where `q` is
/// range-checked to `bits` bits and `r` to `[0, d)` (checked from both ends; by its width alone
/// when `d` is a power of two), so `q - B` is the only result. `hint` overrides the honest
/// witness (for soundness tests).
///
/// ## Panics
/// If `count` is 0 (a mean of no taps; such models are refused when imported and loaded).
pub fn layout_mean(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    cells: &[AssignedValue<Fr>],
    count: u64,
    bits: u32,
    hint: Option<DivisionHint>,
) -> AssignedValue<Fr> {
    assert!(count > 0, "a mean needs at least one tap");
    let gate = range.gate();
    let d = 2 * count as i128;
    let offset = 1i128 << (bits - 1);
    let sum = gate.sum(ctx, cells.iter().copied());
    let shifted =
        gate.mul_add(ctx, sum, QuantumCell::Constant(fe(2)), QuantumCell::Constant(fe(count as i128 + d * offset)));
    let hint = hint.unwrap_or_else(|| {
        let v = to_i128(shifted.value()).unwrap_or(0);
        DivisionHint { quotient: v.div_euclid(d), remainder: v.rem_euclid(d) }
    });
    let quotient = ctx.load_witness(fe(hint.quotient));
    if keep("mean: quotient range") {
        range.range_check(ctx, quotient, bits as usize);
    }
    let remainder = ctx.load_witness(fe(hint.remainder));
    let remainder_bits = (128 - (d - 1).leading_zeros()).max(1) as usize;
    if keep("mean: remainder range") {
        range.range_check(ctx, remainder, remainder_bits);
    }
    // `remainder_bits` bits are exactly `[0, d)` when `d` is a power of two (a pool of 2, 4, 8
    // taps); else the room below `d` is checked too.
    if !(d as u128).is_power_of_two() {
        let room = gate.sub(ctx, QuantumCell::Constant(fe(d - 1)), remainder);
        if keep("mean: remainder below the divisor") {
            range.range_check(ctx, room, remainder_bits);
        }
    }
    let recomposed = gate.mul_add(ctx, quotient, QuantumCell::Constant(fe(d)), remainder);
    if keep("mean: recomposition") {
        ctx.constrain_equal(&recomposed, &shifted);
    }
    gate.sub(ctx, quotient, QuantumCell::Constant(fe(offset)))
}

/// Constrains and returns `round(a · 2^shift / b)`, halves up, for `b > 0`, as a signed value of
/// `bits` bits (`a`, `b` of `bits` bits). With `B = 2^(bits-1)`:
/// `2a·2^shift + b + 2b·B = 2b·q + r` with `q` in `[0, 2^bits)`, `r` in `[0, 2^(bits+1))` and
/// `2b - r - 1` in `[0, 2^(bits+1))`; every term stays far below the field's modulus, so `q - B`
/// is the only rounded quotient. The last check also leaves no divisor below 1: it makes `2b` a
/// small positive integer `m`, and an odd `m` (`b` half of it in the field) would make the
/// doubled equation equate an odd and an even small integer; so no separate `b ≥ 1` check is
/// laid out (the exhaustive tests in `uniqueness.rs` try divisors 0, −1, −2 and `m/2`). `hint`
/// overrides the honest quotient and remainder.
pub fn layout_div(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    a: AssignedValue<Fr>,
    b: AssignedValue<Fr>,
    shift: u32,
    bits: u32,
    hint: Option<DivisionHint>,
) -> AssignedValue<Fr> {
    let gate = range.gate();
    let offset = 1i128 << (bits - 1);
    let twice_scaled = gate.mul_add(ctx, a, QuantumCell::Constant(fe(1i128 << (shift + 1))), b);
    let lhs = gate.mul_add(ctx, b, QuantumCell::Constant(fe(2 * offset)), twice_scaled);
    let hint = hint.unwrap_or_else(|| {
        let (n, d) = (to_i128(lhs.value()).unwrap_or(0), 2 * to_i128(b.value()).unwrap_or(1).max(1));
        DivisionHint { quotient: n.div_euclid(d), remainder: n.rem_euclid(d) }
    });
    let quotient = ctx.load_witness(fe(hint.quotient));
    if keep("division: quotient range") {
        range.range_check(ctx, quotient, bits as usize);
    }
    let remainder = ctx.load_witness(fe(hint.remainder));
    if keep("division: remainder range") {
        range.range_check(ctx, remainder, bits as usize + 1);
    }
    let twice_b = gate.add(ctx, b, b);
    let room = gate.sub(ctx, twice_b, remainder);
    let room = gate.sub(ctx, room, QuantumCell::Constant(fe(1)));
    if keep("division: remainder below twice the divisor") {
        range.range_check(ctx, room, bits as usize + 1);
    }
    let product = gate.mul(ctx, twice_b, quotient);
    let rhs = gate.add(ctx, product, remainder);
    if keep("division: recomposition") {
        ctx.constrain_equal(&lhs, &rhs);
    }
    gate.sub(ctx, quotient, QuantumCell::Constant(fe(offset)))
}

/// Constrains and returns the maximum (`min`: the minimum) of `cells` (values of `bits` signed
/// bits): the hinted extremum is on the right side of every value (each difference is
/// range-checked to `bits` bits) and equals one of them (the product of the differences is
/// zero). `hint` overrides the honest extremum.
///
/// ## Panics
/// If `cells` is empty: an extremum of nothing would be a free cell. Models with such an operand
/// (a pooling window over padding only) are refused when imported and when loaded.
pub fn layout_max(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    cells: &[AssignedValue<Fr>],
    bits: u32,
    min: bool,
    hint: Option<i128>,
) -> AssignedValue<Fr> {
    assert!(!cells.is_empty(), "an extremum needs at least one operand");
    let gate = range.gate();
    let values = cells.iter().filter_map(|c| to_i128(c.value()));
    let honest = if min { values.min() } else { values.max() }.unwrap_or(0);
    let extremum = ctx.load_witness(fe(hint.unwrap_or(honest)));
    let mut product: Option<AssignedValue<Fr>> = None;
    for &x in cells {
        let difference = if min { gate.sub(ctx, x, extremum) } else { gate.sub(ctx, extremum, x) };
        if keep("extremum: differences range") {
            range.range_check(ctx, difference, bits as usize);
        }
        product = Some(match product {
            None => difference,
            Some(p) => gate.mul(ctx, p, difference),
        });
    }
    if let Some(p) = product {
        if keep("extremum: one difference is zero") {
            gate.assert_is_const(ctx, &p, &Fr::zero());
        }
    }
    extremum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::soundness::assert_sound;
    use crate::model::quantize::divide_rounding;

    fn mean_case(
        values: Vec<i128>,
        count: u64,
        hint: Option<DivisionHint>,
    ) -> impl Fn(&mut Context<Fr>, &RangeChip<Fr>) -> Vec<AssignedValue<Fr>> {
        move |ctx, range| {
            let cells: Vec<_> = values.iter().map(|&v| ctx.load_witness(fe(v))).collect();
            let out = layout_mean(ctx, range, &cells, count, 12, hint);
            if hint.is_none() {
                assert_eq!(to_i128(out.value()), Some(divide_rounding(values.iter().sum(), count as i128)));
            }
            vec![out]
        }
    }

    #[test]
    fn mean_accepts_the_honest_division_only() {
        for (values, count) in
            [(vec![7, 8, -3], 3u64), (vec![-5, -6, -7, -9], 4), (vec![100, 2, 3, 4], 9), (vec![-1], 1)]
        {
            let d = 2 * count as i128;
            let v = 2 * values.iter().sum::<i128>() + count as i128 + d * (1 << 11);
            let (q, r) = (v.div_euclid(d), v.rem_euclid(d));
            let lies = [
                DivisionHint { quotient: q + 1, remainder: r - d },
                DivisionHint { quotient: q - 1, remainder: r + d },
                DivisionHint { quotient: q + 1, remainder: r },
            ];
            assert_sound(
                mean_case(values.clone(), count, None),
                lies.iter().map(|&h| mean_case(values.clone(), count, Some(h))).collect(),
            );
        }
    }

    fn div_case(
        a: i128,
        b: i128,
        hint: Option<DivisionHint>,
    ) -> impl Fn(&mut Context<Fr>, &RangeChip<Fr>) -> Vec<AssignedValue<Fr>> {
        move |ctx, range| {
            let (x, y) = (ctx.load_witness(fe(a)), ctx.load_witness(fe(b)));
            let out = layout_div(ctx, range, x, y, 5, 12, hint);
            if hint.is_none() && b > 0 {
                assert_eq!(to_i128(out.value()), Some(divide_rounding(a << 5, b)), "{a} / {b}");
            }
            vec![out]
        }
    }

    #[test]
    fn division_accepts_the_honest_rounded_quotient_only() {
        for (a, b) in [(7i128, 3i128), (-7, 3), (32, 32), (5, 1), (-2, 2047), (100, 64), (-100, 7)] {
            let d = 2 * b;
            let v = 2 * (a << 5) + b + d * (1 << 11);
            let (q, r) = (v.div_euclid(d), v.rem_euclid(d));
            let lies = [
                DivisionHint { quotient: q + 1, remainder: r - d },
                DivisionHint { quotient: q - 1, remainder: r + d },
                DivisionHint { quotient: q + 1, remainder: r },
            ];
            assert_sound(div_case(a, b, None), lies.iter().map(|&h| div_case(a, b, Some(h))).collect());
        }
        // A zero or negative divisor has no witness: the circuit refuses b - 1 < 0 whatever the
        // quotient (here the one that would satisfy the equation for b = -3).
        let v: i128 = 2 * (7 << 5) - 3 + 2 * -3 * (1 << 11);
        let fake = DivisionHint { quotient: v.div_euclid(-6), remainder: v.rem_euclid(-6) };
        assert_sound(div_case(7, 3, None), vec![div_case(7, -3, Some(fake)), div_case(7, 0, None)]);
    }

    fn max_case(
        values: Vec<i128>,
        min: bool,
        hint: Option<i128>,
    ) -> impl Fn(&mut Context<Fr>, &RangeChip<Fr>) -> Vec<AssignedValue<Fr>> {
        move |ctx, range| {
            let cells: Vec<_> = values.iter().map(|&v| ctx.load_witness(fe(v))).collect();
            let out = layout_max(ctx, range, &cells, 12, min, hint);
            if hint.is_none() {
                let expected = if min { values.iter().min() } else { values.iter().max() };
                assert_eq!(to_i128(out.value()), expected.copied());
            }
            vec![out]
        }
    }

    #[test]
    fn max_accepts_the_true_maximum_only() {
        let values = vec![-40, 17, 3, 17, -2];
        // A smaller element, a larger value that is no element, and the second largest.
        let lies = [Some(3), Some(18), Some(-40), Some(2000)];
        let case = |min, hint| max_case(values.clone(), min, hint);
        assert_sound(case(false, None), lies.iter().map(|&h| case(false, h)).collect());
        assert_sound(max_case(vec![-7], false, None), vec![max_case(vec![-7], false, Some(-6))]);
        // The minimum: the largest, a value below every element, the second smallest.
        let lies = [Some(17), Some(-41), Some(-2)];
        assert_sound(case(true, None), lies.iter().map(|&h| case(true, h)).collect());
    }
}
