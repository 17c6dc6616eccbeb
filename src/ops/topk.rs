//! TopK: the `k` largest (or smallest) elements of each line along an axis, in order, and their
//! positions. Each round proves a maximum of the elements not yet taken and the first position
//! equal to it; a taken element is moved below every other by `2^bits` (every value is a signed
//! `bits`-bit integer), so no later round can find it again.

use halo2_base::gates::RangeChip;
use halo2_base::gates::{GateInstructions, RangeInstructions};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::{AssignedValue, Context, QuantumCell};
use serde::{Deserialize, Serialize};
use tract_onnx::pb;

use super::extremum::check_groups;
use super::movement::{Select, Source};
use super::{ExecCx, Kernel, LayoutCx, OnnxOp};
use crate::circuit::field::fe;
use crate::circuit::pool::layout_max;
use crate::error::{ImportError, Result};
use crate::model::graph::Op;
use crate::model::onnx::{attr_int, node_name, Importer, Value};
use crate::model::quantize::QNode;

/// The ONNX ops of this family.
pub const ONNX: &[OnnxOp] = &[OnnxOp {
    op_type: "TopK",
    import: |i, n| i.import_topk(n),
    note: "constant K, largest and smallest, ties to the lower index; always sorted",
}];

/// The `k` extremal elements of each group, in order (ties: the earlier position first), then
/// their positions in the group (at the input scale): `[values of group 0, ..., positions of
/// group 0, ...]`, `k` of each per group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopK {
    /// Flat input positions of each group, in the order positions count.
    pub groups: Vec<Vec<usize>>,
    /// Elements taken from each group.
    pub k: usize,
    /// The largest (else the smallest).
    pub largest: bool,
}

impl Kernel for TopK {
    fn check(&self, node: &QNode) -> Result<()> {
        check_groups(node, &self.groups)?;
        match self.groups.iter().find(|g| g.len() < self.k) {
            Some(g) => Err(ImportError::UnsupportedModel(format!(
                "node '{}' takes the top {} of a line of {} elements",
                node.name,
                self.k,
                g.len()
            ))
            .into()),
            None => Ok(()),
        }
    }

    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        let (x, one) = (cx.args[0], 1i128 << cx.scales.input);
        let mut values = Vec::with_capacity(self.groups.len() * self.k);
        let mut positions = Vec::with_capacity(self.groups.len() * self.k);
        for g in &self.groups {
            let mut order: Vec<usize> = (0..g.len()).collect();
            order.sort_by(|&a, &b| {
                let by_value = if self.largest { x[g[b]].cmp(&x[g[a]]) } else { x[g[a]].cmp(&x[g[b]]) };
                by_value.then(a.cmp(&b))
            });
            for &p in &order[..self.k] {
                values.push(x[g[p]]);
                positions.push(p as i128 * one);
            }
        }
        values.extend(positions);
        Ok(values)
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let (x, bits, one) = (cx.args[0], cx.bits(), 1i128 << cx.scales.input);
        let mut values = Vec::with_capacity(self.groups.len() * self.k);
        let mut positions = Vec::with_capacity(self.groups.len() * self.k);
        for g in &self.groups {
            let cells: Vec<AssignedValue<Fr>> = g.iter().map(|&i| x[i]).collect();
            let (v, p) = layout_top_k(cx.ctx, cx.range, &cells, (self.k, self.largest), (bits, one), None);
            values.extend(v);
            positions.extend(p);
        }
        values.extend(positions);
        Ok(values)
    }
}

/// Constrains and returns the `k` largest (`largest`, else smallest) of `cells` in order, ties
/// to the earlier cell, and their positions times `one`. Every cell holds a signed `bits`-bit
/// value. Round `r` proves an extremum of the cells not yet taken (`hints[r]` overrides the
/// honest one) and the first position equal to it.
///
/// ## Assumptions
/// `k ≤ cells.len()`; `bits + 2` is within the range chip's reach.
pub fn layout_top_k(
    ctx: &mut Context<Fr>,
    range: &RangeChip<Fr>,
    cells: &[AssignedValue<Fr>],
    (k, largest): (usize, bool),
    (bits, one): (u32, i128),
    hints: Option<&[i128]>,
) -> (Vec<AssignedValue<Fr>>, Vec<AssignedValue<Fr>>) {
    let gate = range.gate();
    // A taken cell moves by 2^bits away from the side searched: below every untaken one for the
    // largest, above for the smallest. Differences then span under 2^(bits + 2).
    let away = if largest { -fe(1i128 << bits) } else { fe(1i128 << bits) };
    let mut shifted = cells.to_vec();
    let (mut values, mut positions) = (Vec::with_capacity(k), Vec::with_capacity(k));
    for round in 0..k {
        let hint = hints.and_then(|h| h.get(round).copied());
        let best = layout_max(ctx, range, &shifted, bits + 2, !largest, hint);
        // found_p = [shifted_p = best] · (no earlier one was): exactly one bit is set, since the
        // extremum equals some untaken cell and every taken one lies beyond it.
        let mut searching = ctx.load_constant(Fr::one());
        let mut position = ctx.load_zero();
        for (p, cell) in shifted.iter_mut().enumerate() {
            let equal = gate.is_equal(ctx, *cell, best);
            let found = gate.mul(ctx, equal, searching);
            searching = gate.sub(ctx, searching, found);
            position = gate.mul_add(ctx, found, QuantumCell::Constant(fe(p as i128 * one)), position);
            *cell = gate.mul_add(ctx, found, QuantumCell::Constant(away), *cell);
        }
        values.push(best);
        positions.push(position);
    }
    (values, positions)
}

impl Importer<'_> {
    /// TopK (`axis`, `largest`, `sorted`; K a constant): one node proving each line's top `k`,
    /// and the Values and Indices outputs selected from it in ONNX's layout. Unsorted output may
    /// come in any order, so it comes sorted.
    fn import_topk(&mut self, node: &pb::NodeProto) -> Result<()> {
        let Value::Node(x) = self.required_input(node, 0)? else {
            return Err(self.unsupported(node, "the input must be computed"));
        };
        let shape = self.nodes[x].shape.clone();
        let axis = super::movement::axis(attr_int(node, "axis").unwrap_or(-1), shape.len())
            .map_err(|e| self.unsupported(node, e))?;
        let k = match self.const_ints(node, 1)?[..] {
            [k] if k >= 1 && (k as usize) <= shape[axis] => k as usize,
            ref k => {
                return Err(self.unsupported(node, format!("K = {k:?} for {} elements along axis {axis}", shape[axis])))
            }
        };
        let largest = attr_int(node, "largest").unwrap_or(1) != 0;
        let (groups, _) = super::reduce::reduce_groups(&shape, &[axis]);
        let count = groups.len();
        let top = self.intermediate(node, "top", Op::TopK(TopK { groups, k, largest }), vec![x], vec![2 * count * k]);

        // Output element (outer, j, inner) is rank j of group outer · inner_len + inner.
        let inner: usize = shape[axis + 1..].iter().product();
        let mut out_shape = shape.clone();
        out_shape[axis] = k;
        let ranked = |offset: usize| -> Vec<Source> {
            (0..out_shape.iter().product::<usize>())
                .map(|p| {
                    let (outer, j, i) = (p / (k * inner), p / inner % k, p % inner);
                    Source::Input { input: 0, index: offset + (outer * inner + i) * k + j }
                })
                .collect()
        };
        for (n, output) in node.output.iter().enumerate().filter(|(_, o)| !o.is_empty()) {
            let (part, offset) = if n == 0 { (None, 0) } else { (Some("indices"), count * k) };
            let name = part.map_or_else(|| node_name(node), |p| format!("{}:{p}", node_name(node)));
            let select = Op::Select(Select { sources: ranked(offset) });
            self.push(name, output.clone(), select, vec![top], out_shape.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::field::to_i128;
    use crate::circuit::soundness::{assert_outputs_bound, assert_sound};

    fn case(
        x: &'static [i128],
        largest: bool,
        hints: Option<&'static [i128]>,
    ) -> impl Fn(&mut Context<Fr>, &RangeChip<Fr>) -> Vec<AssignedValue<Fr>> {
        move |ctx, range| {
            let cells: Vec<_> = x.iter().map(|&v| ctx.load_witness(fe(v))).collect();
            let (values, positions) = layout_top_k(ctx, range, &cells, (3, largest), (8, 1), hints);
            [values, positions].concat()
        }
    }

    #[test]
    fn top_k_accepts_the_honest_ranking_only() {
        const X: &[i128] = &[3, 7, 7, -2, 5, -128];
        let (ok, out) = crate::circuit::soundness::mock_run(&case(X, true, None), None);
        assert!(ok);
        let out: Vec<i128> = out.iter().map(|v| to_i128(v).unwrap()).collect();
        assert_eq!(out, vec![7, 7, 5, 1, 2, 4], "ties go to the earlier position");
        // Not the maximum; a value no cell holds; the same cell taken twice (a tie skipped, then
        // the taken 7 again); the second largest first.
        let lies: [&'static [i128]; 4] = [&[5, 7, 7], &[8, 7, 5], &[7, 5, 7], &[7, 7, 7]];
        assert_sound(case(X, true, None), lies.iter().map(|&h| case(X, true, Some(h))).collect());
        let (ok, out) = crate::circuit::soundness::mock_run(&case(X, false, None), None);
        assert!(ok);
        let out: Vec<i128> = out.iter().map(|v| to_i128(v).unwrap()).collect();
        assert_eq!(out, vec![-128, -2, 3, 5, 3, 0]);
        let lies: [&'static [i128]; 3] = [&[-2, -128, 3], &[-128, -128, -2], &[-128, -2, 5]];
        assert_sound(case(X, false, None), lies.iter().map(|&h| case(X, false, Some(h))).collect());
        // A prover who proves 3 as the third largest fails against the honest outputs.
        assert_outputs_bound(case(X, true, None), case(X, true, Some(&[7, 7, 3])));
    }
}
