//! Reductions over axes: the sum and the rounded mean of each group of elements (ReduceSum,
//! ReduceMean); ReduceMax and ReduceMin import here too and are proven by
//! [`super::extremum::ReduceMax`].

use halo2_base::gates::{GateInstructions, RangeInstructions};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::AssignedValue;
use serde::{Deserialize, Serialize};
use tract_onnx::pb;

use super::extremum;
use super::extremum::check_groups;
use super::{ExecCx, Kernel, LayoutCx, OnnxOp};
use crate::circuit::pool::layout_mean;
use crate::error::Result;
use crate::model::graph::{Op, Tensor};
use crate::model::onnx::{attr_int, Importer, Value};
use crate::model::quantize::{divide_rounding, QNode};

/// The ONNX ops of this family.
pub const ONNX: &[OnnxOp] = &[
    OnnxOp { op_type: "ReduceSum", import: |i, n| i.import_reduce(n), note: "" },
    OnnxOp { op_type: "ReduceMean", import: |i, n| i.import_reduce(n), note: "" },
    OnnxOp { op_type: "ReduceMax", import: |i, n| i.import_reduce(n), note: "" },
    OnnxOp { op_type: "ReduceMin", import: |i, n| i.import_reduce(n), note: "" },
];

/// The sum (`mean`: the mean, rounded) of the elements of each group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reduce {
    /// Flat input positions summed into each output element.
    pub groups: Vec<Vec<usize>>,
    /// Divide by the group's size.
    pub mean: bool,
}

impl Kernel for Reduce {
    fn check(&self, node: &QNode) -> Result<()> {
        check_groups(node, &self.groups)
    }

    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        let x = cx.args[0];
        Ok(self
            .groups
            .iter()
            .map(|g| {
                let sum: i128 = g.iter().map(|&i| x[i]).sum();
                if self.mean {
                    divide_rounding(sum, g.len() as i128)
                } else {
                    sum
                }
            })
            .collect())
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let (x, bits) = (cx.args[0], cx.bits());
        Ok(self
            .groups
            .iter()
            .map(|g| {
                let operands: Vec<_> = g.iter().map(|&i| x[i]).collect();
                if self.mean {
                    layout_mean(cx.ctx, cx.range, &operands, g.len() as u64, bits, None)
                } else {
                    cx.range.gate().sum(cx.ctx, operands)
                }
            })
            .collect())
    }
}

/// For reducing `axes` of a tensor of `shape`: the flat positions of each output element's
/// group, and the output shape with the reduced axes kept as 1.
pub fn reduce_groups(shape: &[usize], axes: &[usize]) -> (Vec<Vec<usize>>, Vec<usize>) {
    let rank = shape.len();
    let out_full: Vec<usize> = (0..rank).map(|a| if axes.contains(&a) { 1 } else { shape[a] }).collect();
    let mut groups = vec![Vec::new(); out_full.iter().product()];
    for i in 0..shape.iter().product() {
        let (mut rest, mut o, mut stride) = (i, 0, 1);
        for a in (0..rank).rev() {
            let c = rest % shape[a];
            rest /= shape[a];
            if !axes.contains(&a) {
                o += c * stride;
                stride *= shape[a];
            }
        }
        groups[o].push(i);
    }
    (groups, out_full)
}

impl Importer<'_> {
    fn import_reduce(&mut self, node: &pb::NodeProto) -> Result<()> {
        let value = self.required_input(node, 0)?;
        let shape = self.shape_of(&value);
        let rank = shape.len();
        let keepdims = attr_int(node, "keepdims").unwrap_or(1) != 0;
        let axes = self.ints_input_or_attr(node, 1, "axes")?.unwrap_or_default();
        let axes: Vec<usize> = if axes.is_empty() {
            if attr_int(node, "noop_with_empty_axes").unwrap_or(0) != 0 {
                return self.set_output(node, value);
            }
            (0..rank).collect()
        } else {
            self.axes(node, &axes, rank)?
        };
        let (groups, out_full) = reduce_groups(&shape, &axes);
        let out_shape: Vec<usize> = if keepdims {
            out_full.clone()
        } else {
            (0..rank).filter(|a| !axes.contains(a)).map(|a| shape[a]).collect()
        };
        let op = node.op_type.as_str();
        match value {
            Value::Const(t) => {
                let fold = |g: &Vec<usize>| {
                    let values = g.iter().map(|&i| t.data[i]);
                    match op {
                        "ReduceMax" => values.fold(f32::NEG_INFINITY, f32::max),
                        "ReduceMin" => values.fold(f32::INFINITY, f32::min),
                        "ReduceMean" => values.sum::<f32>() / g.len() as f32,
                        _ => values.sum::<f32>(),
                    }
                };
                let data = groups.iter().map(fold).collect();
                self.set_output(node, Value::Const(Tensor::new(out_shape, data)))
            }
            Value::Node(id) => {
                let reduce = match op {
                    "ReduceMax" | "ReduceMin" => Op::ReduceMax(extremum::ReduceMax { groups, min: op == "ReduceMin" }),
                    _ => Op::Reduce(Reduce { groups, mean: op == "ReduceMean" }),
                };
                self.add_node(node, reduce, vec![id], out_shape)
            }
        }
    }
}
