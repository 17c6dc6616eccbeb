//! Element-wise sums and data movement (reshape needs no cells).

use halo2_base::gates::GateChip;
use halo2_base::gates::GateInstructions;
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::{AssignedValue, Context, QuantumCell};

use super::linear::ParamCells;
use crate::model::graph::broadcast_indices;

/// `a + b` with numpy broadcasting of both operands to `out_shape`.
pub fn layout_add(
    ctx: &mut Context<Fr>,
    gate: &GateChip<Fr>,
    a: (&[AssignedValue<Fr>], &[usize]),
    b: (&[AssignedValue<Fr>], &[usize]),
    out_shape: &[usize],
) -> Vec<AssignedValue<Fr>> {
    let (ia, ib) = (broadcast_indices(a.1, out_shape), broadcast_indices(b.1, out_shape));
    ia.iter().zip(&ib).map(|(&i, &j)| gate.add(ctx, a.0[i], b.0[j])).collect()
}

/// `x + c` for a parameter already broadcast to the output shape; `x` broadcasts from `x_shape`.
pub fn layout_add_const(
    ctx: &mut Context<Fr>,
    gate: &GateChip<Fr>,
    x: (&[AssignedValue<Fr>], &[usize]),
    constant: ParamCells<'_>,
    out_shape: &[usize],
) -> Vec<AssignedValue<Fr>> {
    let ix = broadcast_indices(x.1, out_shape);
    ix.iter()
        .enumerate()
        .map(|(j, &i)| gate.add(ctx, x.0[i], constant.operand(j).unwrap_or(QuantumCell::Constant(Fr::zero()))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::field::fe;
    use crate::circuit::soundness::assert_outputs_bound;
    use halo2_base::gates::RangeChip;

    #[test]
    fn sums_are_bound_to_their_operands() {
        let honest = |ctx: &mut Context<Fr>, range: &RangeChip<Fr>| {
            let a: Vec<_> = [1i128, -2].iter().map(|&v| ctx.load_witness(fe(v))).collect();
            let b = vec![ctx.load_witness(fe(5))];
            let sum = layout_add(ctx, &range.gate, (&a, &[2]), (&b, &[1]), &[2]);
            let shifted = layout_add_const(ctx, &range.gate, (&sum, &[2]), ParamCells::Fixed(&[10, 20]), &[2]);
            assert_eq!(shifted.iter().map(|c| *c.value()).collect::<Vec<_>>(), vec![fe(16), fe(23)]);
            shifted
        };
        let lying = |ctx: &mut Context<Fr>, range: &RangeChip<Fr>| {
            let a: Vec<_> = [1i128, -2].iter().map(|&v| ctx.load_witness(fe(v))).collect();
            let b = vec![ctx.load_witness(fe(5))];
            let _ = layout_add(ctx, &range.gate, (&a, &[2]), (&b, &[1]), &[2]);
            vec![ctx.load_witness(fe(16)), ctx.load_witness(fe(24))]
        };
        assert_outputs_bound(honest, lying);
    }
}
