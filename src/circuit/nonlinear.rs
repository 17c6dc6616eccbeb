//! Non-linear activations checked with range checks: ReLU.

use halo2_base::gates::{GateInstructions, RangeChip, RangeInstructions};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::{AssignedValue, Context, QuantumCell};

use super::field::fe;

/// Constrains and returns `max(v, 0)` for a value `v` of `bits` signed bits. The hint is the
/// sign (`v >= 0`); the gadget checks `v` in `[0, 2^(bits-1))` when the sign is set and
/// `-1 - v` in the same range when it is not, so only the true sign is accepted.
pub fn layout_relu(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    v: AssignedValue<Fr>,
    bits: u32,
    non_negative: bool,
) -> AssignedValue<Fr> {
    let gate = range.gate();
    let sign = ctx.load_witness(Fr::from(non_negative as u64));
    gate.assert_bit(ctx, sign);
    let minus_one_minus_v = gate.sub(ctx, QuantumCell::Constant(fe(-1)), v);
    let magnitude = gate.select(ctx, v, minus_one_minus_v, sign);
    range.range_check(ctx, magnitude, (bits - 1) as usize);
    gate.mul(ctx, v, sign)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::field::to_i128;
    use crate::circuit::soundness::assert_sound;

    fn relu_case(
        v: i128,
        bits: u32,
        sign: Option<bool>,
    ) -> impl Fn(&mut Context<Fr>, &RangeChip<Fr>) -> Vec<AssignedValue<Fr>> {
        move |ctx, range| {
            let cell = ctx.load_witness(fe(v));
            let out = layout_relu(ctx, range, cell, bits, sign.unwrap_or(v >= 0));
            if sign.is_none() {
                assert_eq!(to_i128(out.value()), Some(v.max(0)));
            }
            vec![out]
        }
    }

    #[test]
    fn relu_accepts_the_true_sign_only() {
        let bits = 16;
        for v in [0i128, 1, -1, 300, -300, (1 << 15) - 1, -(1 << 15)] {
            assert_sound(relu_case(v, bits, None), vec![relu_case(v, bits, Some(v < 0))]);
        }
    }

    #[test]
    fn relu_rejects_values_outside_its_range() {
        let bits = 16;
        let honest = relu_case(5, bits, None);
        assert_sound(honest, vec![relu_case(1 << 15, bits, Some(true)), relu_case(-(1 << 15) - 1, bits, Some(false))]);
    }

    #[test]
    fn relu_rejects_a_non_boolean_sign() {
        // A "sign" of 2 would give 2v: the bit constraint stops it.
        let tampered = |ctx: &mut Context<Fr>, range: &RangeChip<Fr>| {
            let gate = range.gate();
            let v = ctx.load_witness(fe(7));
            let sign = ctx.load_witness(Fr::from(2u64));
            gate.assert_bit(ctx, sign);
            vec![gate.mul(ctx, v, sign)]
        };
        let honest = |ctx: &mut Context<Fr>, range: &RangeChip<Fr>| {
            let v = ctx.load_witness(fe(7));
            vec![layout_relu(ctx, range, v, 16, true)]
        };
        assert_sound::<crate::circuit::soundness::Gadget<'_>>(Box::new(honest), vec![Box::new(tampered)]);
    }
}
