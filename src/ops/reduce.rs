//! Reductions over axes: the sum and the rounded mean of each group of elements (ReduceSum,
//! ReduceMean) and their compositions (ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum,
//! ReduceLogSumExp, ReduceProd, CumSum); ReduceMax and ReduceMin import here too and are proven by
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
use crate::model::function::Function;
use crate::model::graph::{Op, Tensor};
use crate::model::onnx::{attr_int, Importer, Value};
use crate::model::quantize::{divide_rounding, QNode};

/// The ONNX ops of this family.
pub const ONNX: &[OnnxOp] = &[
    OnnxOp { op_type: "ReduceSum", import: |i, n| i.import_reduce(n), note: "" },
    OnnxOp { op_type: "ReduceMean", import: |i, n| i.import_reduce(n), note: "" },
    OnnxOp { op_type: "ReduceMax", import: |i, n| i.import_reduce(n), note: "" },
    OnnxOp { op_type: "ReduceMin", import: |i, n| i.import_reduce(n), note: "" },
    OnnxOp { op_type: "ReduceL1", import: |i, n| i.import_reduce(n), note: "" },
    OnnxOp { op_type: "ReduceL2", import: |i, n| i.import_reduce(n), note: "" },
    OnnxOp { op_type: "ReduceSumSquare", import: |i, n| i.import_reduce(n), note: "" },
    OnnxOp { op_type: "ReduceLogSum", import: |i, n| i.import_reduce(n), note: "" },
    OnnxOp { op_type: "ReduceLogSumExp", import: |i, n| i.import_reduce(n), note: "" },
    OnnxOp { op_type: "ReduceProd", import: |i, n| i.import_reduce(n), note: "" },
    OnnxOp { op_type: "CumSum", import: |i, n| i.import_cumsum(n), note: "exclusive, reverse" },
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
        // A sum of no element is 0 (an exclusive CumSum's first); a mean of none is undefined.
        match self.mean {
            true => check_groups(node, &self.groups),
            false => Ok(()),
        }
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
                        "ReduceL1" => values.map(f32::abs).sum::<f32>(),
                        "ReduceL2" => values.map(|v| v * v).sum::<f32>().sqrt(),
                        "ReduceSumSquare" => values.map(|v| v * v).sum::<f32>(),
                        "ReduceLogSum" => values.sum::<f32>().ln(),
                        "ReduceLogSumExp" => values.map(f32::exp).sum::<f32>().ln(),
                        "ReduceProd" => values.product::<f32>(),
                        _ => values.sum::<f32>(),
                    }
                };
                let data = groups.iter().map(fold).collect();
                self.set_output(node, Value::Const(Tensor::new(out_shape, data)))
            }
            Value::Node(id) => self.reduce_computed(node, op, id, groups, (out_full, out_shape)),
        }
    }

    /// A reduction of a computed tensor: the max/min and sum/mean kernels, and the others as
    /// their compositions (`Σ|x|`, `√Σx²`, `Σx²`, `ln Σx`, `m + ln Σ e^(x - m)`, `Πx`).
    fn reduce_computed(
        &mut self,
        node: &pb::NodeProto,
        op: &str,
        id: usize,
        groups: Vec<Vec<usize>>,
        (out_full, out_shape): (Vec<usize>, Vec<usize>),
    ) -> Result<()> {
        let shape = self.nodes[id].shape.clone();
        let lookup = |func| Op::Lookup(super::activation::Lookup { func });
        let sum = |groups: Vec<Vec<usize>>| Op::Reduce(Reduce { groups, mean: false });
        match op {
            "ReduceMax" | "ReduceMin" => {
                let reduce = Op::ReduceMax(extremum::ReduceMax { groups, min: op == "ReduceMin" });
                self.add_node(node, reduce, vec![id], out_shape)
            }
            "ReduceSum" | "ReduceMean" => {
                self.add_node(node, Op::Reduce(Reduce { groups, mean: op == "ReduceMean" }), vec![id], out_shape)
            }
            "ReduceL1" => {
                let (max, inputs) = self.abs_of(node, id);
                let abs = self.intermediate(node, "abs", max, inputs, shape);
                self.add_node(node, sum(groups), vec![abs], out_shape)
            }
            "ReduceL2" | "ReduceSumSquare" => {
                let square = self.intermediate(node, "square", Op::Mul(super::arith::Mul), vec![id, id], shape);
                if op == "ReduceSumSquare" {
                    return self.add_node(node, sum(groups), vec![square], out_shape);
                }
                let total = self.intermediate(node, "sum", sum(groups), vec![square], out_full.clone());
                self.add_node(node, lookup(Function::Sqrt), vec![total], out_shape)
            }
            "ReduceProd" => {
                // A chain of products, each rounded and range-checked as a Mul node is: factor
                // t of every group selected, times the running product.
                let Some(n) = groups.first().map(Vec::len).filter(|&n| n > 0) else {
                    return Err(self.unsupported(node, "a product over no element"));
                };
                let factor = |t: usize| {
                    let sources = groups.iter().map(|g| super::movement::Source::Input { input: 0, index: g[t] });
                    Op::Select(super::movement::Select { sources: sources.collect() })
                };
                let mut product = self.intermediate(node, "factor0", factor(0), vec![id], out_full.clone());
                for t in 1..n {
                    let next = self.intermediate(node, &format!("factor{t}"), factor(t), vec![id], out_full.clone());
                    let mul = Op::Mul(super::arith::Mul);
                    product =
                        self.intermediate(node, &format!("product{t}"), mul, vec![product, next], out_full.clone());
                }
                self.add_node(node, Op::Reshape(super::movement::Reshape), vec![product], out_shape)
            }
            "ReduceLogSum" => {
                let total = self.intermediate(node, "sum", sum(groups), vec![id], out_full);
                self.add_node(node, lookup(Function::Log), vec![total], out_shape)
            }
            _ => {
                // ReduceLogSumExp, shifted by the maximum so that every exponent is at most 0.
                let max = Op::ReduceMax(extremum::ReduceMax { groups: groups.clone(), min: false });
                let max = self.intermediate(node, "max", max, vec![id], out_full.clone());
                let shifted =
                    self.intermediate(node, "shifted", Op::Sub(super::arith::Sub), vec![id, max], shape.clone());
                let exp = self.intermediate(node, "exp", lookup(Function::Exp), vec![shifted], shape);
                let total = self.intermediate(node, "sum", sum(groups), vec![exp], out_full.clone());
                let log = self.intermediate(node, "log", lookup(Function::Log), vec![total], out_full.clone());
                let result =
                    self.intermediate(node, "result", Op::Add(super::arith::Add), vec![max, log], out_full.clone());
                self.add_node(node, Op::Reshape(super::movement::Reshape), vec![result], out_shape)
            }
        }
    }

    /// CumSum along a constant axis (`exclusive`, `reverse`): each output the sum of a prefix
    /// (or suffix) group of its line.
    fn import_cumsum(&mut self, node: &pb::NodeProto) -> Result<()> {
        let Value::Node(x) = self.required_input(node, 0)? else {
            return Err(self.unsupported(node, "the input must be computed"));
        };
        let axis = self.const_ints(node, 1)?;
        let shape = self.nodes[x].shape.clone();
        let a = super::movement::axis(axis.first().copied().unwrap_or(0), shape.len())
            .map_err(|e| self.unsupported(node, e))?;
        let (exclusive, reverse) =
            (attr_int(node, "exclusive").unwrap_or(0) != 0, attr_int(node, "reverse").unwrap_or(0) != 0);
        let stride: usize = shape[a + 1..].iter().product();
        let len = shape[a];
        let groups: Vec<Vec<usize>> = (0..shape.iter().product::<usize>())
            .map(|o| {
                let i = (o / stride) % len;
                let base = o - i * stride;
                let range: Vec<usize> = match (reverse, exclusive) {
                    (false, false) => (0..=i).collect(),
                    (false, true) => (0..i).collect(),
                    (true, false) => (i..len).collect(),
                    (true, true) => (i + 1..len).collect(),
                };
                range.into_iter().map(|j| base + j * stride).collect()
            })
            .collect();
        // An exclusive sum's first element sums nothing: a zero, as a sum of no cells.
        self.add_node(node, Op::Reduce(Reduce { groups, mean: false }), vec![x], shape)
    }
}
