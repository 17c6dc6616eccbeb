//! Non-linear activations: ReLU, checked with a range check, and the functions proven by table
//! lookup.

use halo2_base::gates::{GateInstructions, RangeChip, RangeInstructions};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::{AssignedValue, Context, QuantumCell};

use super::field::{fe, to_i128};
use super::linear::SignSplit;
use super::lookup::{Lookup, Table};
use super::mutation::keep;
use super::pool::layout_max;
use crate::model::function::{Domain, Function};

/// What a table holds: a function over a domain, or a column of a constant tensor's rows (an
/// embedding) named by its node and column.
#[derive(Clone, Debug, PartialEq)]
enum TableKey {
    Function(Function, Domain),
    Rows {
        value: String,
        column: usize,
    },
    /// Every signed value of a width, each beside its offset form.
    Range(u32),
}

/// The tables of a circuit, one per distinct (function, domain) or embedding column, and the
/// lookups into them, gathered while the model is laid out.
#[derive(Default)]
pub struct Lookups {
    keys: Vec<TableKey>,
    /// The tables, tag `i + 1` for table `i`.
    pub tables: Vec<Table>,
    /// Every lookup, in layout order.
    pub lookups: Vec<Lookup>,
}

impl Lookups {
    /// The tag of `func`'s table over `domain` at `scale`, made on first use.
    pub fn tag(&mut self, func: Function, domain: Domain, scale: u32) -> u64 {
        self.tag_of(TableKey::Function(func, domain), || {
            let outputs = (domain.lo..=domain.hi)
                .map(|x| func.quantized(i128::from(x), scale).expect("a domain's inputs have outputs") as i64)
                .collect();
            Table { lo: domain.lo, step: 1, outputs }
        })
    }

    /// The tag of column `column` of the embedding table of the node computing ONNX value
    /// `value` (unique in a graph, where node names need not be), made by `make` on first use.
    pub fn rows_tag(&mut self, value: &str, column: usize, make: impl FnOnce() -> Table) -> u64 {
        self.tag_of(TableKey::Rows { value: value.into(), column }, make)
    }

    /// The tag of the table of every signed value `v` of `bits` bits beside its offset form
    /// `v + 2^(bits-1)` (see [`super::instances::layout_offset_lookup`]), made on first use.
    pub fn range_tag(&mut self, bits: u32) -> u64 {
        self.tag_of(TableKey::Range(bits), || {
            let half = 1i64 << (bits - 1);
            Table { lo: -half, step: 1, outputs: (0..2 * half).collect() }
        })
    }

    fn tag_of(&mut self, key: TableKey, make: impl FnOnce() -> Table) -> u64 {
        let at = match self.keys.iter().position(|k| *k == key) {
            Some(at) => at,
            None => {
                self.keys.push(key);
                self.tables.push(make());
                self.keys.len() - 1
            }
        };
        at as u64 + 1
    }
}

/// Constrains and returns `f(x)` for a function proven by table lookup, recording the lookup
/// (and the table, on first use) in `lookups`: `x` is first clamped to the table on each side
/// where the domain says `f` is constant beyond it, then `(x, y)` is looked up. `hint` replaces
/// the honest output (tests).
pub fn layout_lookup(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    lookups: &mut Lookups,
    x: AssignedValue<Fr>,
    (func, domain, scale): (Function, Domain, u32),
    bits: u32,
    hint: Option<i128>,
) -> AssignedValue<Fr> {
    let tag = lookups.tag(func, domain, scale);
    let mut x = x;
    for (clamp, edge, min) in [(domain.clamp_low, domain.lo, false), (domain.clamp_high, domain.hi, true)] {
        if clamp {
            let edge = ctx.load_constant(fe(i128::from(edge)));
            x = layout_max(ctx, range, &[x, edge], bits, min, None);
        }
    }
    let honest = to_i128(x.value()).and_then(|v| domain.row_input(v)).and_then(|r| func.quantized(r, scale));
    let y = ctx.load_witness(fe(hint.or(honest).unwrap_or(0)));
    lookups.lookups.push(Lookup { tag, x, y });
    y
}

/// Constrains and returns the entry at `x` of table `tag` (a column of an embedding): the hint
/// `y` (the honest entry, or another in tests) is looked up with `x` in the table, whose inputs
/// are distinct, so only the table's entry passes; an `x` the table lacks has none.
pub fn layout_row_lookup(
    ctx: &mut Context<Fr>,
    lookups: &mut Lookups,
    x: AssignedValue<Fr>,
    tag: u64,
    y: i128,
) -> AssignedValue<Fr> {
    let y = ctx.load_witness(fe(y));
    lookups.lookups.push(Lookup { tag, x, y });
    y
}

/// Constrains and returns `max(v, 0)` for a value `v` of `bits` signed bits: `v` times its sign
/// bit (see [`layout_sign`]; the hint `sign` is 1 when `v >= 0`, else 0).
pub fn layout_relu(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    v: AssignedValue<Fr>,
    bits: u32,
    sign: i128,
) -> AssignedValue<Fr> {
    let sign = layout_sign(ctx, range, v, bits, sign);
    range.gate().mul(ctx, v, sign)
}

/// Constrains and returns `max(v, 0)` for a value `v` laid out with its sign split (see
/// [`SignSplit`]): `sign · low`, which is `v` when the sign bit is set and 0 when it is not.
pub fn layout_relu_of_split(ctx: &mut Context<Fr>, range: &RangeChip<Fr>, split: &SignSplit) -> AssignedValue<Fr> {
    range.gate().mul(ctx, split.sign, split.low)
}

/// Constrains and returns the bit `v >= 0` for a value `v` of `bits` signed bits. The hint `sign`
/// is that bit (tests pass other values); the gadget checks that it is a bit, then `v` in
/// `[0, 2^(bits-1))` when it is set and `-1 - v` in the same range when it is not, so only the
/// true sign is accepted.
pub fn layout_sign(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    v: AssignedValue<Fr>,
    bits: u32,
    sign: i128,
) -> AssignedValue<Fr> {
    let gate = range.gate();
    let sign = ctx.load_witness(fe(sign));
    if keep("relu: sign is a bit") {
        gate.assert_bit(ctx, sign);
    }
    let minus_one_minus_v = gate.sub(ctx, QuantumCell::Constant(fe(-1)), v);
    let magnitude = gate.select(ctx, v, minus_one_minus_v, sign);
    if keep("relu: magnitude range") {
        range.range_check(ctx, magnitude, (bits - 1) as usize);
    }
    sign
}

/// Constrains and returns the bit `a < b` (`strict`) or `a <= b` for `a` and `b` of `bits` signed
/// bits: the sign of `b - a - 1` (or `b - a`), a value of `bits + 1` signed bits. `hint` replaces
/// the honest bit (tests).
pub fn layout_less(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    (a, b): (QuantumCell<Fr>, QuantumCell<Fr>),
    strict: bool,
    bits: u32,
    hint: Option<i128>,
) -> AssignedValue<Fr> {
    let gate = range.gate();
    let difference = gate.sub(ctx, b, a);
    let v = if strict { gate.add(ctx, difference, QuantumCell::Constant(fe(-1))) } else { difference };
    let honest = to_i128(v.value()).is_some_and(|v| v >= 0) as i128;
    layout_sign(ctx, range, v, bits + 1, hint.unwrap_or(honest))
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
            let out = layout_relu(ctx, range, cell, bits, sign.unwrap_or(v >= 0) as i128);
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
        // A "sign" of 2 would give 2v, and its range check would pass for small v: the bit
        // constraint of the gadget itself stops it.
        let with_sign = |sign: i128| {
            move |ctx: &mut Context<Fr>, range: &RangeChip<Fr>| {
                let v = ctx.load_witness(fe(7));
                vec![layout_relu(ctx, range, v, 16, sign)]
            }
        };
        assert_sound(with_sign(1), vec![with_sign(2), with_sign(-1), with_sign(0)]);
    }
}
