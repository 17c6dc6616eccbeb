//! Maxima and minima: ReLU (a range-checked sign), the element-wise maximum or minimum of
//! computed tensors and constants (Max, Min, Clip, and LeakyRelu and PRelu built on them), and
//! the maximum or minimum of groups of elements (ReduceMax, ReduceMin, Softmax's shift). A
//! maximum is a hinted value that every operand is at most (range-checked differences) and that
//! equals one of them (the product of the differences is zero). ArgMax, ArgMin and Hardmax find
//! the (first) position equal to that maximum.

use halo2_base::gates::{GateInstructions, RangeInstructions};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::{AssignedValue, QuantumCell};
use serde::{Deserialize, Serialize};
use tract_onnx::pb;

use super::{arith, movement};
use super::{ExecCx, Kernel, LayoutCx, OnnxOp, QOp, Quantize, QuantizeCx};
use crate::circuit::field::{fe, to_i128};
use crate::circuit::nonlinear::{layout_relu, layout_relu_of_split};
use crate::circuit::pool::layout_max;
use crate::error::ImportError;
use crate::error::{Error, Result};
use crate::model::graph::{broadcast_indices, broadcast_shape, Op, Tensor};
use crate::model::onnx::{attr_float, attr_int, Importer, Value};
use crate::model::quantize::QNode;

/// The ONNX ops of this family.
pub const ONNX: &[OnnxOp] = &[
    OnnxOp { op_type: "Relu", import: |i, n| i.import_relu(n), note: "" },
    OnnxOp { op_type: "Max", import: |i, n| i.import_extremum(n), note: "" },
    OnnxOp { op_type: "Min", import: |i, n| i.import_extremum(n), note: "" },
    OnnxOp { op_type: "Clip", import: |i, n| i.import_clip(n), note: "" },
    OnnxOp { op_type: "LeakyRelu", import: |i, n| i.import_leaky(n), note: "" },
    OnnxOp { op_type: "PRelu", import: |i, n| i.import_leaky(n), note: "" },
    OnnxOp { op_type: "ArgMax", import: |i, n| i.import_arg_extremum(n, false), note: "" },
    OnnxOp { op_type: "ArgMin", import: |i, n| i.import_arg_extremum(n, false), note: "" },
    OnnxOp { op_type: "Hardmax", import: |i, n| i.import_arg_extremum(n, true), note: "" },
];

/// `max(x, 0)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relu;

/// Element-wise maximum (`min`: minimum) of the inputs, computed or constant (numpy
/// broadcasting): Max, Min, Clip.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Extremum {
    /// Minimum instead of maximum.
    pub min: bool,
    /// Constant operands, broadcast with the computed ones.
    pub constants: Vec<Tensor>,
}

/// [`Extremum`] quantized.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QExtremum {
    /// Minimum instead of maximum.
    pub min: bool,
    /// Each constant operand, one value per output element, at the input scale.
    pub constants: Vec<Vec<i64>>,
}

/// The maximum (`min`: the minimum) of the elements of each group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReduceMax {
    /// Flat input positions of each output element.
    pub groups: Vec<Vec<usize>>,
    /// Minimum instead of maximum.
    pub min: bool,
}

impl Kernel for Relu {
    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        Ok(cx.args[0].iter().map(|&v| v.max(0)).collect())
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        if let Some(splits) = cx.splits[0] {
            return Ok(splits.iter().map(|s| layout_relu_of_split(cx.ctx, cx.range, s)).collect());
        }
        let bits = cx.bits();
        Ok(cx.args[0]
            .iter()
            .map(|&v| {
                let non_negative = to_i128(v.value()).is_some_and(|v| v >= 0);
                layout_relu(cx.ctx, cx.range, v, bits, non_negative as i128)
            })
            .collect())
    }
}

impl Quantize for Extremum {
    fn quantize(&self, cx: &QuantizeCx<'_>) -> Result<QOp> {
        let is = cx.settings.input_scale;
        Ok(QOp::Extremum(QExtremum {
            min: self.min,
            constants: self.constants.iter().map(|c| cx.quantize_broadcast(c, is)).collect(),
        }))
    }
}

impl QExtremum {
    /// The operands of every output element of the node: the computed ones first (`args`, of
    /// `shapes`: integers when executing, cells when laying out), then the constants, each made
    /// an operand by `constant`.
    pub fn operands<T: Copy>(
        &self,
        node: &QNode,
        args: &[&[T]],
        shapes: &[&[usize]],
        mut constant: impl FnMut(i64) -> T,
    ) -> Vec<Vec<T>> {
        let maps = super::broadcast_maps(shapes, &node.shape);
        (0..node.shape.iter().product())
            .map(|o| {
                let mut operands: Vec<T> = args.iter().zip(&maps).map(|(a, m)| a[m[o]]).collect();
                operands.extend(self.constants.iter().map(|c| constant(c[o])));
                operands
            })
            .collect()
    }
}

impl Kernel for QExtremum {
    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        Ok(self
            .operands(cx.node, &cx.args, &cx.shapes, i128::from)
            .into_iter()
            .map(|ops| if self.min { ops.into_iter().min() } else { ops.into_iter().max() }.expect("operands"))
            .collect())
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let ctx = &mut *cx.ctx;
        let operands = self.operands(cx.node, &cx.args, &cx.shapes, |c| ctx.load_constant(fe(i128::from(c))));
        let bits = cx.bits();
        Ok(operands.iter().map(|ops| layout_max(cx.ctx, cx.range, ops, bits, self.min, None)).collect())
    }
}

impl Kernel for ReduceMax {
    fn check(&self, node: &QNode) -> Result<()> {
        check_groups(node, &self.groups)
    }

    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        let x = cx.args[0];
        let pick = |g: &Vec<usize>| {
            let values = g.iter().map(|&i| x[i]);
            if self.min {
                values.min()
            } else {
                values.max()
            }
        };
        self.groups.iter().map(|g| pick(g).ok_or_else(|| empty_group(cx.node))).collect()
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let (x, bits) = (cx.args[0], cx.bits());
        self.groups
            .iter()
            .map(|g| {
                if g.is_empty() {
                    return Err(empty_group(cx.node));
                }
                let operands: Vec<_> = g.iter().map(|&i| x[i]).collect();
                Ok(layout_max(cx.ctx, cx.range, &operands, bits, self.min, None))
            })
            .collect()
    }
}

/// The position of the maximum (`min`: the minimum) of each group (the first one, or the last
/// with `last`), as an integer in fixed point: ArgMax, ArgMin. With `one_hot`, every element
/// instead: 1 at that position of its group, else 0 (Hardmax).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgExtremum {
    /// Flat input positions of each group, in the order positions count.
    pub groups: Vec<Vec<usize>>,
    /// Minimum instead of maximum.
    pub min: bool,
    /// The last extremal position instead of the first.
    pub last: bool,
    /// One-hot over the input's shape instead of one position per group.
    pub one_hot: bool,
}

impl ArgExtremum {
    /// The groups' elements in the order the search goes (reversed for the last position).
    fn order<'a>(&self, g: &'a [usize]) -> Box<dyn Iterator<Item = (usize, usize)> + 'a> {
        if self.last {
            Box::new(g.iter().copied().enumerate().rev())
        } else {
            Box::new(g.iter().copied().enumerate())
        }
    }
}

impl Kernel for ArgExtremum {
    fn check(&self, node: &QNode) -> Result<()> {
        check_groups(node, &self.groups)
    }

    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        let (x, one) = (cx.args[0], 1i128 << cx.scales.input);
        let mut out = vec![0i128; if self.one_hot { x.len() } else { self.groups.len() }];
        for (o, g) in self.groups.iter().enumerate() {
            let pick = |v: i128, best: i128| if self.min { v < best } else { v > best };
            let mut best: Option<(usize, usize, i128)> = None;
            for (position, i) in self.order(g) {
                if best.is_none_or(|(_, _, b)| pick(x[i], b)) {
                    best = Some((position, i, x[i]));
                }
            }
            let (position, i, _) = best.ok_or_else(|| empty_group(cx.node))?;
            if self.one_hot {
                out[i] = one;
            } else {
                out[o] = position as i128 * one;
            }
        }
        Ok(out)
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let (x, bits, one) = (cx.args[0], cx.bits(), fe(1i128 << cx.scales.input));
        let gate = cx.range.gate();
        let mut out = if self.one_hot { vec![None; x.len()] } else { Vec::new() };
        for g in &self.groups {
            let operands: Vec<_> = g.iter().map(|&i| x[i]).collect();
            let best = layout_max(cx.ctx, cx.range, &operands, bits, self.min, None);
            // found_i = [x_i = best] · (no earlier one was): exactly one bit is set, at the
            // first extremal position in the search order (the maximum equals some element).
            let mut searching = cx.ctx.load_constant(Fr::one());
            let mut position = cx.ctx.load_zero();
            for (p, i) in self.order(g) {
                let equal = gate.is_equal(cx.ctx, x[i], best);
                let found = gate.mul(cx.ctx, equal, searching);
                searching = gate.sub(cx.ctx, searching, found);
                if self.one_hot {
                    out[i] = Some(gate.mul(cx.ctx, found, QuantumCell::Constant(one)));
                } else {
                    position = gate.mul_add(cx.ctx, found, QuantumCell::Constant(fe(p as i128) * one), position);
                }
            }
            if !self.one_hot {
                out.push(Some(position));
            }
        }
        Ok(out.into_iter().map(|c| c.expect("every element is in a group")).collect())
    }
}

/// Refuses a reduction with a group of no element: nothing would constrain its output.
pub fn check_groups(node: &QNode, groups: &[Vec<usize>]) -> Result<()> {
    match groups.iter().any(Vec::is_empty) {
        true => Err(empty_group(node)),
        false => Ok(()),
    }
}

/// The error for a reduction over no element.
pub fn empty_group(node: &QNode) -> Error {
    ImportError::UnsupportedModel(format!("node '{}' reduces an empty group", node.name)).into()
}

impl Importer<'_> {
    /// ArgMax and ArgMin (`axis`, `keepdims`, `select_last_index`) and Hardmax (`axis`; before
    /// opset 13, over the 2-D view from `axis` on, which for its last axis is the same).
    fn import_arg_extremum(&mut self, node: &pb::NodeProto, one_hot: bool) -> Result<()> {
        let Value::Node(x) = self.required_input(node, 0)? else {
            return Err(self.unsupported(node, "the input must be computed"));
        };
        let shape = self.nodes[x].shape.clone();
        let default_axis = if one_hot { -1 } else { 0 };
        let axis = crate::ops::movement::axis(attr_int(node, "axis").unwrap_or(default_axis), shape.len())
            .map_err(|e| self.unsupported(node, e))?;
        let axes: Vec<usize> = if one_hot && self.opset < 13 { (axis..shape.len()).collect() } else { vec![axis] };
        let (groups, reduced) = crate::ops::reduce::reduce_groups(&shape, &axes);
        let keepdims = attr_int(node, "keepdims").unwrap_or(1) != 0;
        let out_shape = match (one_hot, keepdims) {
            (true, _) => shape.clone(),
            (false, true) => reduced,
            (false, false) => shape.iter().enumerate().filter(|&(a, _)| a != axis).map(|(_, &d)| d).collect(),
        };
        let op = ArgExtremum {
            groups,
            min: node.op_type == "ArgMin",
            last: attr_int(node, "select_last_index").unwrap_or(0) != 0,
            one_hot,
        };
        self.add_node(node, Op::ArgExtremum(op), vec![x], out_shape)
    }

    /// Relu: folded on a constant, a node otherwise.
    fn import_relu(&mut self, node: &pb::NodeProto) -> Result<()> {
        match self.required_input(node, 0)? {
            Value::Const(mut t) => {
                t.data.iter_mut().for_each(|v| *v = v.max(0.0));
                self.set_output(node, Value::Const(t))
            }
            Value::Node(id) => {
                let shape = self.nodes[id].shape.clone();
                self.add_node(node, Op::Relu(Relu), vec![id], shape)
            }
        }
    }

    fn import_extremum(&mut self, node: &pb::NodeProto) -> Result<()> {
        let inputs = self.all_inputs(node)?;
        let min = node.op_type == "Min";
        let shape = self.broadcast_inputs(node, &inputs)?;
        let (mut ids, mut constants) = (Vec::new(), Vec::new());
        for v in inputs {
            match v {
                Value::Node(id) => ids.push(id),
                Value::Const(t) => constants.push(t),
            }
        }
        if ids.is_empty() {
            let pick = |a: f32, b: f32| if min { a.min(b) } else { a.max(b) };
            let len: usize = shape.iter().product();
            let maps: Vec<Vec<usize>> = constants.iter().map(|t| broadcast_indices(&t.shape, &shape)).collect();
            let data = (0..len)
                .map(|o| constants.iter().zip(&maps).map(|(t, m)| t.data[m[o]]).reduce(pick).unwrap_or(0.0))
                .collect();
            return self.set_output(node, Value::Const(Tensor::new(shape, data)));
        }
        self.add_node(node, Op::Extremum(Extremum { min, constants }), ids, shape)
    }

    fn import_clip(&mut self, node: &pb::NodeProto) -> Result<()> {
        let Value::Node(x) = self.required_input(node, 0)? else {
            return Err(self.unsupported(node, "the input must be computed"));
        };
        let bound = |i: usize, name: &str| -> Result<Option<Tensor>> {
            match self.input(node, i)? {
                Some(Value::Const(t)) => Ok(Some(t)),
                Some(Value::Node(_)) => Err(self.unsupported(node, format!("the {name} bound must be a constant"))),
                None => Ok(attr_float(node, name).map(|v| Tensor::new(vec![], vec![v]))),
            }
        };
        let (lo, hi) = (bound(1, "min")?, bound(2, "max")?);
        let shape = self.nodes[x].shape.clone();
        let after_lo = match lo {
            Some(lo) if hi.is_some() => self.intermediate(
                node,
                "min",
                Op::Extremum(Extremum { min: false, constants: vec![lo] }),
                vec![x],
                shape.clone(),
            ),
            Some(lo) => {
                return self.add_node(node, Op::Extremum(Extremum { min: false, constants: vec![lo] }), vec![x], shape)
            }
            None => x,
        };
        match hi {
            Some(hi) => {
                self.add_node(node, Op::Extremum(Extremum { min: true, constants: vec![hi] }), vec![after_lo], shape)
            }
            None => self.add_node(node, Op::Reshape(movement::Reshape), vec![x], shape),
        }
    }

    /// LeakyRelu and PRelu: `max(x, 0) + slope · min(x, 0)`, for any slope.
    fn import_leaky(&mut self, node: &pb::NodeProto) -> Result<()> {
        let Value::Node(x) = self.required_input(node, 0)? else {
            return Err(self.unsupported(node, "the input must be computed"));
        };
        let slope = if node.op_type == "LeakyRelu" {
            Tensor::new(vec![], vec![attr_float(node, "alpha").unwrap_or(0.01)])
        } else {
            match self.required_input(node, 1)? {
                Value::Const(t) => t,
                Value::Node(_) => return Err(self.unsupported(node, "the slope must be a constant")),
            }
        };
        let shape = self.nodes[x].shape.clone();
        if broadcast_shape(&slope.shape, &shape).as_deref() != Some(&shape[..]) {
            return Err(self.unsupported(node, format!("slope {:?} does not broadcast to {shape:?}", slope.shape)));
        }
        let zero = || vec![Tensor::new(vec![], vec![0.0])];
        let positive = self.intermediate(node, "pos", Op::Relu(Relu), vec![x], shape.clone());
        let negative = self.intermediate(
            node,
            "neg",
            Op::Extremum(Extremum { min: true, constants: zero() }),
            vec![x],
            shape.clone(),
        );
        let scaled = self.intermediate(
            node,
            "scaled",
            Op::MulConst(arith::MulConst { constant: slope }),
            vec![negative],
            shape.clone(),
        );
        self.add_node(node, Op::Add(arith::Add), vec![positive, scaled], shape)
    }
}
