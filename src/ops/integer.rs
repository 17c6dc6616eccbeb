//! Integer arithmetic on fixed-point values: Mod by a constant (a proven quotient and a
//! remainder range-checked on the divisor's or the dividend's side), BitShift by constant
//! amounts (a product by `2^n`, or a proven floor division by it), and the bitwise ops (each
//! integer's two's complement bits, proven by decomposition, combined bit by bit; BitwiseNot is
//! `-x - 1`).
//!
//! A value `x` is held as `X = x · 2^input_scale`; Mod works on those integers directly (the
//! remainder of two fixed-point numbers is the fixed-point remainder), the bitwise ops on `x`,
//! which must be whole.

use halo2_base::gates::{GateInstructions, RangeChip, RangeInstructions};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::{AssignedValue, Context, QuantumCell};
use serde::{Deserialize, Serialize};
use tract_onnx::pb;

use super::{broadcast_maps, ExecCx, Kernel, LayoutCx, OnnxOp, QOp, Quantize, QuantizeCx};
use crate::circuit::field::{fe, to_i128};
use crate::circuit::nonlinear::layout_sign;
use crate::error::{LayoutError, QuantizeError, Result};
use crate::model::graph::{broadcast_indices, Op, Tensor};
use crate::model::onnx::{attr, attr_int, combine, Importer, Value};

/// The ONNX ops of this family.
pub const ONNX: &[OnnxOp] = &[
    OnnxOp { op_type: "Mod", import: |i, n| i.import_mod(n), note: "by a constant; fmod 0 and 1" },
    OnnxOp { op_type: "BitShift", import: |i, n| i.import_bit_shift(n), note: "by constant amounts" },
    OnnxOp { op_type: "BitwiseAnd", import: |i, n| i.import_bitwise(n), note: "" },
    OnnxOp { op_type: "BitwiseOr", import: |i, n| i.import_bitwise(n), note: "" },
    OnnxOp { op_type: "BitwiseXor", import: |i, n| i.import_bitwise(n), note: "" },
    OnnxOp { op_type: "BitwiseNot", import: |i, n| i.import_bitwise_not(n), note: "" },
];

/// The remainder of a division by a constant: with the divisor's sign (`fmod` false, Python's
/// `%`), or with the dividend's (`fmod` true, C's `fmod`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mod {
    /// The divisor, broadcast to the output.
    pub divisor: Tensor,
    /// The remainder takes the dividend's sign.
    pub fmod: bool,
}

/// [`Mod`] quantized: the divisor at the input scale, one per output element, never zero. It is
/// part of the circuit (a structural constant, like Clip's bounds), not a parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QMod {
    /// The divisor of each output element.
    pub divisor: Vec<i64>,
    /// The remainder takes the dividend's sign.
    pub fmod: bool,
}

impl Quantize for Mod {
    fn quantize(&self, cx: &QuantizeCx<'_>) -> Result<QOp> {
        let divisor = cx.quantize_broadcast(&self.divisor, cx.settings.input_scale);
        if let Some(&zero) = divisor.iter().find(|&&d| d == 0) {
            return Err(crate::error::ImportError::UnsupportedModel(format!(
                "node '{}' takes a remainder by a divisor that is {zero} at input scale {}: raise input_scale",
                cx.node.name, cx.settings.input_scale
            ))
            .into());
        }
        Ok(QOp::Mod(QMod { divisor, fmod: self.fmod }))
    }
}

/// The quotient of `a / b` that [`QMod`] proves: rounded toward zero (`fmod`) or down.
fn mod_quotient(a: i128, b: i128, fmod: bool) -> i128 {
    if fmod {
        a / b
    } else {
        a.div_euclid(b) - i128::from(b < 0 && a.rem_euclid(b) != 0)
    }
}

impl Kernel for QMod {
    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        let a = cx.args[0];
        Ok(a.iter()
            .zip(&self.divisor)
            .map(|(&a, &b)| a - mod_quotient(a, b.into(), self.fmod) * i128::from(b))
            .collect())
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let bits = cx.bits();
        let bound = 1i128 << (bits - 1);
        if let Some(&b) = self.divisor.iter().find(|&&b| i128::from(b).abs() >= bound) {
            return Err(LayoutError::ConstantTooLarge { node: cx.node.name.clone(), value: b.into(), bits }.into());
        }
        let cells = cx.args[0].to_vec();
        Ok(cells
            .into_iter()
            .zip(&self.divisor)
            .map(|(a, &b)| {
                let honest = to_i128(a.value()).map_or(0, |v| mod_quotient(v, b.into(), self.fmod));
                layout_mod(cx.ctx, cx.range, a, (b.into(), self.fmod), bits, fe(honest))
            })
            .collect())
    }
}

/// Loads the hinted quotient of a division and checks that it is a signed `bits`-bit integer:
/// the remainder computed from it is then one in the integers, not a field element that only
/// looks small.
fn layout_quotient(ctx: &mut Context<Fr>, range: &RangeChip<Fr>, quotient: Fr, bits: u32) -> AssignedValue<Fr> {
    let q = ctx.load_witness(quotient);
    let offset_q = range.gate().add(ctx, q, QuantumCell::Constant(fe(1i128 << (bits - 1))));
    range.range_check(ctx, offset_q, bits as usize);
    q
}

/// Constrains and returns `a - q · b` for the hinted quotient `q` (a field element, checked to be
/// a signed `bits`-bit integer),
/// with the remainder's magnitude below `|b|` on the divisor's side (or, `fmod`, the
/// dividend's): one remainder, so one quotient, passes.
///
/// ## Assumptions
/// `a` is a signed `bits`-bit value; `0 < |b| < 2^(bits - 1)`.
pub fn layout_mod(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    a: AssignedValue<Fr>,
    (b, fmod): (i128, bool),
    bits: u32,
    quotient: Fr,
) -> AssignedValue<Fr> {
    let gate = range.gate();
    let q = layout_quotient(ctx, range, quotient, bits);
    let remainder = gate.mul_add(ctx, q, QuantumCell::Constant(fe(-b)), a);
    // The remainder's magnitude, on the side it must be: the divisor's sign, or the dividend's.
    let positive_side = if fmod {
        let sign = to_i128(a.value()).map_or(1, |v| i128::from(v >= 0));
        let non_negative = layout_sign(ctx, range, a, bits, sign);
        let negated = gate.neg(ctx, remainder);
        gate.select(ctx, remainder, negated, non_negative)
    } else if b > 0 {
        remainder
    } else {
        gate.neg(ctx, remainder)
    };
    range.range_check(ctx, positive_side, bits as usize);
    let room = gate.sub(ctx, QuantumCell::Constant(fe(b.abs() - 1)), positive_side);
    range.range_check(ctx, room, bits as usize);
    remainder
}

/// A shift by constant amounts: `x · 2^n` (left) or `⌊x / 2^n⌋` (right).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BitShift {
    /// Left, else right.
    pub left: bool,
    /// The amount of each output element.
    pub amounts: Vec<u32>,
}

impl Kernel for BitShift {
    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        let (x, scale) = (cx.args[0], cx.scales.input);
        Ok(x.iter()
            .zip(&self.amounts)
            .map(|(&v, &n)| if self.left { v << n } else { (v >> (n + scale)) << scale })
            .collect())
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let (bits, scale) = (cx.bits(), cx.scales.input);
        let gate = cx.range.gate();
        let cells = cx.args[0].to_vec();
        Ok(cells
            .into_iter()
            .zip(&self.amounts)
            .map(|(x, &n)| {
                if self.left {
                    return gate.mul(cx.ctx, x, QuantumCell::Constant(fe(1i128 << n)));
                }
                let shift = n + scale;
                let honest = to_i128(x.value()).map_or(0, |v| v >> shift);
                let q = layout_floor_shift(cx.ctx, cx.range, x, (shift, bits), fe(honest));
                gate.mul(cx.ctx, q, QuantumCell::Constant(fe(1i128 << scale)))
            })
            .collect())
    }
}

/// Constrains and returns `⌊x / 2^shift⌋` for the hinted quotient `q` (a field element, checked to
/// be a signed `bits`-bit integer): `x = q · 2^shift + r` with `0 ≤ r < 2^shift`, so one quotient
/// passes.
///
/// ## Assumptions
/// `x` is a signed `bits`-bit value.
pub fn layout_floor_shift(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    x: AssignedValue<Fr>,
    (shift, bits): (u32, u32),
    quotient: Fr,
) -> AssignedValue<Fr> {
    let gate = range.gate();
    let q = layout_quotient(ctx, range, quotient, bits);
    let r = gate.mul_add(ctx, q, QuantumCell::Constant(fe(-(1i128 << shift))), x);
    range.range_check(ctx, r, shift as usize);
    q
}

/// A bitwise op of two integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BitOp {
    /// BitwiseAnd.
    And,
    /// BitwiseOr.
    Or,
    /// BitwiseXor.
    Xor,
}

impl BitOp {
    fn apply(self, a: i128, b: i128) -> i128 {
        match self {
            BitOp::And => a & b,
            BitOp::Or => a | b,
            BitOp::Xor => a ^ b,
        }
    }
}

/// A bitwise op of two computed integer tensors (broadcast), on their two's complement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bitwise {
    /// Which op.
    pub op: BitOp,
}

impl Kernel for Bitwise {
    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        let (a, b, scale) = (cx.args[0], cx.args[1], cx.scales.input);
        let whole = |v: i128| {
            if v & ((1i128 << scale) - 1) == 0 {
                Ok(v >> scale)
            } else {
                let value = v as f64 / (1u64 << scale) as f64;
                Err(QuantizeError::NotInteger { node: cx.node.name.clone(), op: format!("{:?}", self.op), value })
            }
        };
        let maps = broadcast_maps(&cx.shapes, &cx.node.shape);
        let (ia, ib) = (&maps[0], &maps[1]);
        ia.iter().zip(ib).map(|(&i, &j)| Ok(self.op.apply(whole(a[i])?, whole(b[j])?) << scale)).collect()
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let (bits, scale) = (cx.bits(), cx.scales.input);
        let width = bits.saturating_sub(scale);
        if width < 2 {
            return Err(LayoutError::NoIntegerBits { node: cx.node.name.clone(), bits, scale }.into());
        }
        let maps = broadcast_maps(&cx.shapes, &cx.node.shape);
        let (ia, ib) = (&maps[0], &maps[1]);
        let (a, b) = (cx.args[0].to_vec(), cx.args[1].to_vec());
        let gate = cx.range.gate();
        // Each integer's bits once, however often broadcasting reads it.
        let mut bits_a: Vec<Option<Vec<AssignedValue<Fr>>>> = vec![None; a.len()];
        let mut bits_b: Vec<Option<Vec<AssignedValue<Fr>>>> = vec![None; b.len()];
        let mut out = Vec::with_capacity(ia.len());
        for (&i, &j) in ia.iter().zip(ib) {
            let x =
                bits_a[i].get_or_insert_with(|| layout_twos_complement(cx.ctx, cx.range, a[i], scale, width)).clone();
            let y =
                bits_b[j].get_or_insert_with(|| layout_twos_complement(cx.ctx, cx.range, b[j], scale, width)).clone();
            let combined: Vec<AssignedValue<Fr>> = x
                .iter()
                .zip(&y)
                .map(|(&p, &q)| {
                    let both = gate.mul(cx.ctx, p, q);
                    let either = gate.add(cx.ctx, p, q);
                    match self.op {
                        BitOp::And => both,
                        BitOp::Or => gate.sub(cx.ctx, either, both),
                        BitOp::Xor => gate.mul_add(cx.ctx, both, QuantumCell::Constant(fe(-2)), either),
                    }
                })
                .collect();
            out.push(layout_from_twos_complement(cx.ctx, cx.range, &combined, scale));
        }
        Ok(out)
    }
}

/// Constrains and returns the `width` two's complement bits (least significant first) of the
/// integer `x = X / 2^scale` held by `value`. Fails unless `X` is a multiple of `2^scale`; the
/// sign bit and the bits are then unique.
///
/// ## Assumptions
/// `x` in `[-2^(width-1), 2^(width-1))`: `value` is a signed `width + scale`-bit value.
pub fn layout_twos_complement(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    value: AssignedValue<Fr>,
    scale: u32,
    width: u32,
) -> Vec<AssignedValue<Fr>> {
    let gate = range.gate();
    let whole = to_i128(value.value()).map_or(0, |v| v >> scale);
    let x = ctx.load_witness(fe(whole));
    let back = gate.mul(ctx, x, QuantumCell::Constant(fe(1i128 << scale)));
    ctx.constrain_equal(&back, &value);
    let negative = ctx.load_witness(fe(i128::from(whole < 0)));
    gate.assert_bit(ctx, negative);
    let unsigned = gate.mul_add(ctx, negative, QuantumCell::Constant(fe(1i128 << width)), x);
    gate.num_to_bits(ctx, unsigned, width as usize)
}

/// `Σ_(i < w-1) bit_i · 2^i - bit_(w-1) · 2^(w-1)`, times `2^scale`: the fixed-point value of
/// two's complement bits.
fn layout_from_twos_complement(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    bits: &[AssignedValue<Fr>],
    scale: u32,
) -> AssignedValue<Fr> {
    let top = bits.len() - 1;
    let weights = (0..bits.len()).map(|i| {
        let weight = 1i128 << (i as u32 + scale);
        QuantumCell::Constant(fe(if i == top { -weight } else { weight }))
    });
    range.gate().inner_product(ctx, bits.iter().copied(), weights)
}

impl Importer<'_> {
    /// Mod of a computed tensor by a constant divisor without a zero (`fmod`).
    fn import_mod(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (a, b) = (self.required_input(node, 0)?, self.required_input(node, 1)?);
        let shape = self.broadcast_inputs(node, &[a.clone(), b.clone()])?;
        let fmod = attr_int(node, "fmod").unwrap_or(0) != 0;
        let remainder = |u: f32, v: f32| if fmod { u % v } else { u - v * (u / v).floor() };
        match (a, b) {
            (_, Value::Const(d)) if d.data.contains(&0.0) => Err(self.unsupported(node, "a divisor that holds a zero")),
            (Value::Const(x), Value::Const(d)) => {
                self.set_output(node, Value::Const(combine(&x, &d, shape, remainder)))
            }
            (Value::Node(x), Value::Const(divisor)) => {
                self.add_node(node, Op::Mod(Mod { divisor, fmod }), vec![x], shape)
            }
            _ => Err(self.unsupported(node, "a computed divisor")),
        }
    }

    /// BitShift of a computed tensor by constant amounts (`direction`).
    fn import_bit_shift(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (x, amounts) = (self.required_input(node, 0)?, self.required_input(node, 1)?);
        let shape = self.broadcast_inputs(node, &[x.clone(), amounts.clone()])?;
        let direction = attr(node, "direction").map(|a| String::from_utf8_lossy(&a.s).into_owned()).unwrap_or_default();
        let left = match direction.as_str() {
            "LEFT" => true,
            "RIGHT" => false,
            other => return Err(self.unsupported(node, format!("direction {other:?}"))),
        };
        let Value::Const(n) = amounts else {
            return Err(self.unsupported(node, "computed shift amounts"));
        };
        if n.data.iter().any(|&v| !(0.0..=62.0).contains(&v) || v.fract() != 0.0) {
            return Err(self.unsupported(node, format!("shift amounts {:?} (0 to 62)", n.data)));
        }
        match x {
            Value::Const(x) => {
                let shifted = combine(&x, &n, shape, |v, s| {
                    let (v, s) = (v as i64, s as u32);
                    (if left { v << s } else { v >> s }) as f32
                });
                self.set_output(node, Value::Const(shifted))
            }
            Value::Node(id) => {
                let amounts = broadcast_indices(&n.shape, &shape).into_iter().map(|i| n.data[i] as u32).collect();
                self.add_node(node, Op::BitShift(BitShift { left, amounts }), vec![id], shape)
            }
        }
    }

    /// BitwiseAnd, BitwiseOr and BitwiseXor: a constant operand is laid out as constant cells
    /// (a node of constants) and decomposed like a computed one.
    fn import_bitwise(&mut self, node: &pb::NodeProto) -> Result<()> {
        let op = match node.op_type.as_str() {
            "BitwiseAnd" => BitOp::And,
            "BitwiseOr" => BitOp::Or,
            _ => BitOp::Xor,
        };
        let (a, b) = (self.required_input(node, 0)?, self.required_input(node, 1)?);
        let shape = self.broadcast_inputs(node, &[a.clone(), b.clone()])?;
        if matches!((&a, &b), (Value::Const(_), Value::Const(_))) {
            return Err(self.unsupported(node, "two constant operands (the exporter folds these)"));
        }
        let mut ids = Vec::with_capacity(2);
        for (i, value) in [a, b].into_iter().enumerate() {
            ids.push(match value {
                Value::Node(id) => id,
                Value::Const(t) => {
                    let constants = super::movement::constants(&t);
                    self.intermediate(node, &format!("constant{i}"), constants, vec![], t.shape.clone())
                }
            });
        }
        self.add_node(node, Op::Bitwise(Bitwise { op }), ids, shape)
    }

    /// BitwiseNot: `-x - 1`, exact in fixed point.
    fn import_bitwise_not(&mut self, node: &pb::NodeProto) -> Result<()> {
        match self.required_input(node, 0)? {
            Value::Const(t) => {
                let data = t.data.iter().map(|&v| -v - 1.0).collect();
                self.set_output(node, Value::Const(Tensor::new(t.shape.clone(), data)))
            }
            Value::Node(x) => {
                let shape = self.nodes[x].shape.clone();
                let negated = self.intermediate(node, "neg", super::arith::negation(), vec![x], shape.clone());
                let minus_one = super::arith::AddConst { constant: Tensor::new(vec![], vec![-1.0]) };
                self.add_node(node, Op::AddConst(minus_one), vec![negated], shape)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::soundness::{assert_sound, mock_run};

    fn mod_case(
        a: i128,
        b: i128,
        fmod: bool,
        q: Option<Fr>,
    ) -> impl Fn(&mut Context<Fr>, &RangeChip<Fr>) -> Vec<AssignedValue<Fr>> {
        move |ctx, range| {
            let x = ctx.load_witness(fe(a));
            vec![layout_mod(ctx, range, x, (b, fmod), 10, q.unwrap_or_else(|| fe(mod_quotient(a, b, fmod))))]
        }
    }

    #[test]
    fn mod_accepts_the_one_remainder_only() {
        // (a, b, fmod, remainder): Python's % follows the divisor's sign, fmod the dividend's.
        for (a, b, fmod, r) in [
            (17, 5, false, 2),
            (-17, 5, false, 3),
            (17, -5, false, -3),
            (-17, -5, false, -2),
            (-17, 5, true, -2),
            (17, -5, true, 2),
            (0, 7, true, 0),
            (-15, 5, false, 0),
            (-15, 5, true, 0),
        ] {
            let (ok, out) = mock_run(&mod_case(a, b, fmod, None), None);
            assert!(ok && to_i128(&out[0]) == Some(r), "{a} mod {b} (fmod {fmod})");
            let q = mod_quotient(a, b, fmod);
            // Another integer quotient puts the remainder off its side or over |b|; the field
            // element that would make the remainder r + 1 (or r - 1) is no small integer.
            let toward = |r: i128| (fe(a) - fe(r)) * fe(b).invert().unwrap();
            let lies = vec![
                mod_case(a, b, fmod, Some(fe(q + 1))),
                mod_case(a, b, fmod, Some(fe(q - 1))),
                mod_case(a, b, fmod, Some(toward(r + 1))),
                mod_case(a, b, fmod, Some(toward(r - 1))),
            ];
            assert_sound(mod_case(a, b, fmod, None), lies);
        }
    }

    fn shift_case(x: i128, q: Option<Fr>) -> impl Fn(&mut Context<Fr>, &RangeChip<Fr>) -> Vec<AssignedValue<Fr>> {
        move |ctx, range| {
            let cell = ctx.load_witness(fe(x));
            vec![layout_floor_shift(ctx, range, cell, (3, 10), q.unwrap_or_else(|| fe(x >> 3)))]
        }
    }

    #[test]
    fn a_right_shift_accepts_the_floor_only() {
        for x in [-300i128, -9, -8, -1, 0, 7, 8, 300] {
            let (ok, out) = mock_run(&shift_case(x, None), None);
            assert!(ok && to_i128(&out[0]) == Some(x.div_euclid(8)), "{x} >> 3");
            // The neighbouring integers, and the field elements that would leave the remainder
            // one more (or one less) than the true one, are refused.
            let (q, r) = (x >> 3, x.rem_euclid(8));
            let toward = |r: i128| (fe(x) - fe(r)) * fe(8).invert().unwrap();
            let lies = vec![
                shift_case(x, Some(fe(q + 1))),
                shift_case(x, Some(fe(q - 1))),
                shift_case(x, Some(toward(r + 1))),
                shift_case(x, Some(toward(r - 1))),
            ];
            assert_sound(shift_case(x, None), lies);
        }
    }

    fn bits_case(
        v: i128,
        hint: Option<(i128, i128)>,
    ) -> impl Fn(&mut Context<Fr>, &RangeChip<Fr>) -> Vec<AssignedValue<Fr>> {
        move |ctx, range| {
            let value = ctx.load_witness(fe(v));
            let bits = match hint {
                None => layout_twos_complement(ctx, range, value, 3, 6),
                // A lying decomposition: another integer and sign for the same value.
                Some((whole, negative)) => {
                    let gate = range.gate();
                    let x = ctx.load_witness(fe(whole));
                    let back = gate.mul(ctx, x, QuantumCell::Constant(fe(8)));
                    ctx.constrain_equal(&back, &value);
                    let n = ctx.load_witness(fe(negative));
                    gate.assert_bit(ctx, n);
                    let unsigned = gate.mul_add(ctx, n, QuantumCell::Constant(fe(64)), x);
                    gate.num_to_bits(ctx, unsigned, 6)
                }
            };
            vec![layout_from_twos_complement(ctx, range, &bits, 3)]
        }
    }

    #[test]
    fn twos_complement_bits_are_the_only_decomposition() {
        for v in [-32i128, -5, -1, 0, 1, 31] {
            let (ok, out) = mock_run(&bits_case(v * 8, None), None);
            assert!(ok && to_i128(&out[0]) == Some(v * 8), "{v}");
            let wrong_sign = (v, i128::from(v >= 0));
            assert_sound(bits_case(v * 8, None), vec![bits_case(v * 8, Some(wrong_sign))]);
        }
        // Not a whole number at scale 3.
        assert!(!mock_run(&bits_case(12, None), None).0);
    }
}
