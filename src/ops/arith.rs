//! Element-wise arithmetic (numpy broadcasting): sums and differences of computed tensors and
//! constants, products (rounded back to the input scale), Neg as a product by -1, and the proven
//! division by a positive computed tensor (rounded quotient, range-checked remainder).

use halo2_base::gates::{GateInstructions, RangeInstructions};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::AssignedValue;
use serde::{Deserialize, Serialize};
use tract_onnx::pb;

use super::{broadcast_maps, ExecCx, Kernel, LayoutCx, OnnxOp, Param, QOp, Quantize, QuantizeCx, Scales};
use super::{extremum, movement};
use crate::circuit::linear::layout_product;
use crate::circuit::pool::layout_div;
use crate::circuit::shape::{layout_add, layout_add_const};
use crate::error::ImportError;
use crate::error::Result;
use crate::model::graph::{broadcast_indices, broadcast_shape, Op, Tensor};
use crate::model::onnx::{combine, node_name, Importer, Value};
use crate::model::quantize::{divide_rounding, rescale, QNode};

/// The ONNX ops of this family.
pub const ONNX: &[OnnxOp] = &[
    OnnxOp { op_type: "Add", import: |i, n| i.import_add(n), note: "" },
    OnnxOp { op_type: "Sub", import: |i, n| i.import_arithmetic(n), note: "" },
    OnnxOp { op_type: "Mul", import: |i, n| i.import_arithmetic(n), note: "of two tensors, or by a constant" },
    OnnxOp {
        op_type: "Div",
        import: |i, n| i.import_arithmetic(n),
        note: "by a constant, or of a constant or computed tensor by a positive computed one",
    },
    OnnxOp { op_type: "Reciprocal", import: |i, n| i.import_reciprocal(n), note: "of positive values" },
    OnnxOp { op_type: "Mean", import: |i, n| i.import_mean(n), note: "" },
    OnnxOp { op_type: "Sum", import: |i, n| i.import_sum(n), note: "" },
    OnnxOp { op_type: "Neg", import: |i, n| i.import_neg_abs(n), note: "" },
    OnnxOp { op_type: "Abs", import: |i, n| i.import_neg_abs(n), note: "" },
];

/// Element-wise sum of two computed tensors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Add;

/// Element-wise sum with a constant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AddConst {
    /// The constant operand.
    pub constant: Tensor,
}

/// [`AddConst`] quantized.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QAddConst {
    /// The constant at the input scale, one per output element.
    pub constant: Vec<i64>,
}

/// Element-wise difference of two computed tensors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sub;

/// Element-wise product of two computed tensors: `round(a · b / 2^input_scale)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mul;

/// Element-wise product with a constant: Mul and Div by constants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MulConst {
    /// The constant operand.
    pub constant: Tensor,
}

/// [`MulConst`] quantized: `round(x · factor / 2^param_scale)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QMulConst {
    /// One factor per output element, at the param scale.
    pub factor: Vec<i64>,
}

/// `a / b` for positive `b`: `round(a · 2^input_scale / b)`, halves up (Div of two computed
/// tensors and Softmax's normalisation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Div;

/// `(-1) · x`.
pub fn negation() -> Op {
    Op::MulConst(MulConst { constant: Tensor::new(vec![], vec![-1.0]) })
}

impl Quantize for AddConst {
    fn quantize(&self, cx: &QuantizeCx<'_>) -> Result<QOp> {
        Ok(QOp::AddConst(QAddConst { constant: cx.quantize_broadcast(&self.constant, cx.settings.input_scale) }))
    }
}

impl Quantize for MulConst {
    fn quantize(&self, cx: &QuantizeCx<'_>) -> Result<QOp> {
        Ok(QOp::MulConst(QMulConst { factor: cx.quantize_broadcast(&self.constant, cx.settings.param_scale) }))
    }
}

/// The integer reference of a two-input element-wise op.
fn execute_pair(cx: &ExecCx<'_>, f: impl Fn(i128, i128) -> Result<i128>) -> Result<Vec<i128>> {
    let (a, b) = (cx.args[0], cx.args[1]);
    let maps = broadcast_maps(&cx.shapes, &cx.node.shape);
    let (ia, ib) = (&maps[0], &maps[1]);
    ia.iter().zip(ib).map(|(&i, &j)| f(a[i], b[j])).collect()
}

/// The layout of a two-input element-wise op.
fn layout_pair(
    cx: &mut LayoutCx<'_, '_>,
    mut f: impl FnMut(&mut LayoutCx<'_, '_>, AssignedValue<Fr>, AssignedValue<Fr>) -> AssignedValue<Fr>,
) -> Vec<AssignedValue<Fr>> {
    let (a, b) = (cx.args[0], cx.args[1]);
    let maps = broadcast_maps(&cx.shapes, &cx.node.shape);
    let (ia, ib) = (&maps[0], &maps[1]);
    ia.iter().zip(ib).map(|(&i, &j)| f(cx, a[i], b[j])).collect()
}

impl Kernel for Add {
    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        execute_pair(cx, |a, b| Ok(a + b))
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let gate = cx.range.gate();
        Ok(layout_add(cx.ctx, gate, (cx.args[0], cx.shapes[0]), (cx.args[1], cx.shapes[1]), &cx.node.shape))
    }
}

impl Kernel for QAddConst {
    fn params(&self, node: &QNode, scales: Scales) -> Vec<Param<'_>> {
        vec![Param { suffix: "constant", shape: node.shape.clone(), values: &self.constant, scale: scales.input }]
    }

    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        let x = cx.args[0];
        let ix = broadcast_indices(cx.shapes[0], &cx.node.shape);
        Ok(ix.iter().zip(&self.constant).map(|(&i, &c)| x[i] + c as i128).collect())
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let gate = cx.range.gate();
        Ok(layout_add_const(cx.ctx, gate, (cx.args[0], cx.shapes[0]), cx.params[0], &cx.node.shape))
    }
}

impl Kernel for Sub {
    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        execute_pair(cx, |a, b| Ok(a - b))
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        Ok(layout_pair(cx, |cx, a, b| cx.range.gate().sub(cx.ctx, a, b)))
    }
}

impl Kernel for Mul {
    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        let shift = cx.scales.input;
        execute_pair(cx, |a, b| Ok(rescale(a * b, shift)))
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let (shift, bits) = (cx.scales.input, cx.bits());
        Ok(layout_pair(cx, |cx, a, b| layout_product(cx.ctx, cx.range, a.into(), b.into(), shift, bits)))
    }
}

impl Kernel for QMulConst {
    fn params(&self, node: &QNode, scales: Scales) -> Vec<Param<'_>> {
        vec![Param { suffix: "factor", shape: node.shape.clone(), values: &self.factor, scale: scales.param }]
    }

    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        let shift = cx.scales.param;
        Ok(cx.args[0].iter().zip(&self.factor).map(|(&x, &f)| rescale(x * f as i128, shift)).collect())
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let (factor, shift, bits) = (cx.params[0], cx.scales.param, cx.bits());
        Ok(cx.args[0]
            .iter()
            .enumerate()
            .map(|(o, &x)| match factor.operand(o) {
                Some(f) => layout_product(cx.ctx, cx.range, x.into(), f, shift, bits),
                None => cx.ctx.load_zero(),
            })
            .collect())
    }
}

impl Kernel for Div {
    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        let shift = cx.scales.input;
        execute_pair(cx, |a, b| match b {
            d if d > 0 => Ok(divide_rounding(a << shift, d)),
            d => Err(ImportError::UnsupportedModel(format!(
                "node '{}' divides by {}: zkinfer proves division by positive values only",
                cx.node.name,
                d as f64 / (1u64 << shift) as f64
            ))
            .into()),
        })
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let (shift, bits) = (cx.scales.input, cx.bits());
        Ok(layout_pair(cx, |cx, a, b| layout_div(cx.ctx, cx.range, a, b, shift, bits, None)))
    }
}

impl Importer<'_> {
    fn import_add(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (a, b) = (self.required_input(node, 0)?, self.required_input(node, 1)?);
        let shape = self.broadcast_inputs(node, &[a.clone(), b.clone()])?;
        match (a, b) {
            (Value::Node(x), Value::Const(c)) | (Value::Const(c), Value::Node(x)) => {
                self.add_node(node, Op::AddConst(AddConst { constant: c }), vec![x], shape)
            }
            (Value::Node(x), Value::Node(y)) => self.add_node(node, Op::Add(Add), vec![x, y], shape),
            (Value::Const(x), Value::Const(y)) => {
                self.set_output(node, Value::Const(combine(&x, &y, shape, |u, v| u + v)))
            }
        }
    }

    /// Sub, Mul and Div: between computed tensors (Sub, Mul), or with a constant (Div only by
    /// one); constants fold.
    fn import_arithmetic(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (a, b) = (self.required_input(node, 0)?, self.required_input(node, 1)?);
        let shape = self.broadcast_inputs(node, &[a.clone(), b.clone()])?;
        let op = node.op_type.as_str();
        let map =
            |t: &Tensor, f: &dyn Fn(f32) -> f32| Tensor::new(t.shape.clone(), t.data.iter().map(|&v| f(v)).collect());
        match (a, b) {
            (Value::Const(x), Value::Const(y)) => {
                let folded = combine(&x, &y, shape, |u, v| match op {
                    "Sub" => u - v,
                    "Mul" => u * v,
                    _ => u / v,
                });
                self.set_output(node, Value::Const(folded))
            }
            (Value::Node(x), Value::Node(y)) => match op {
                "Sub" => self.add_node(node, Op::Sub(Sub), vec![x, y], shape),
                "Mul" => self.add_node(node, Op::Mul(Mul), vec![x, y], shape),
                _ => self.add_node(node, Op::Div(Div), vec![x, y], shape),
            },
            (Value::Node(x), Value::Const(c)) => match op {
                "Sub" => self.add_node(node, Op::AddConst(AddConst { constant: map(&c, &|v| -v) }), vec![x], shape),
                "Mul" => self.add_node(node, Op::MulConst(MulConst { constant: c }), vec![x], shape),
                _ if c.data.contains(&0.0) => Err(self.unsupported(node, "division by a constant that holds a zero")),
                _ => self.add_node(node, Op::MulConst(MulConst { constant: map(&c, &|v| 1.0 / v) }), vec![x], shape),
            },
            (Value::Const(c), Value::Node(x)) => match op {
                "Mul" => self.add_node(node, Op::MulConst(MulConst { constant: c }), vec![x], shape),
                "Sub" => {
                    // c - x = (-1) · x + c
                    let negated = self.intermediate(node, "neg", negation(), vec![x], self.nodes[x].shape.clone());
                    self.add_node(node, Op::AddConst(AddConst { constant: c }), vec![negated], shape)
                }
                // c / x: the constant as a node of constants (fixed in the circuit), then the
                // proven division (for positive x).
                _ => {
                    let numerator = movement::constants(&c);
                    let numerator = self.intermediate(node, "numerator", numerator, vec![], c.shape.clone());
                    self.add_node(node, Op::Div(Div), vec![numerator, x], shape)
                }
            },
        }
    }

    /// Reciprocal: `1 / x`, the proven division of a constant one by a positive computed `x`.
    fn import_reciprocal(&mut self, node: &pb::NodeProto) -> Result<()> {
        match self.required_input(node, 0)? {
            Value::Const(mut t) => {
                t.data.iter_mut().for_each(|v| *v = 1.0 / *v);
                self.set_output(node, Value::Const(t))
            }
            Value::Node(x) => {
                let shape = self.nodes[x].shape.clone();
                let one = movement::constants(&Tensor::new(vec![1], vec![1.0]));
                let one = self.intermediate(node, "one", one, vec![], vec![1]);
                self.add_node(node, Op::Div(Div), vec![one, x], shape)
            }
        }
    }

    /// The computed inputs summed (one node, or none) and the constant ones folded (or none).
    fn sum_parts(&mut self, node: &pb::NodeProto, inputs: Vec<Value>) -> (Option<usize>, Option<Tensor>) {
        let mut constant: Option<Tensor> = None;
        let mut computed: Option<usize> = None;
        for (i, v) in inputs.into_iter().enumerate() {
            match v {
                Value::Const(t) => {
                    constant = Some(match constant {
                        None => t,
                        Some(c) => {
                            let out = broadcast_shape(&c.shape, &t.shape).expect("checked");
                            combine(&c, &t, out, |a, b| a + b)
                        }
                    })
                }
                Value::Node(id) => {
                    computed = Some(match computed {
                        None => id,
                        Some(acc) => {
                            let s = broadcast_shape(&self.nodes[acc].shape, &self.nodes[id].shape).expect("checked");
                            self.intermediate(node, &format!("sum{i}"), Op::Add(Add), vec![acc, id], s)
                        }
                    })
                }
            }
        }
        (computed, constant)
    }

    /// Mean of its inputs: their Sum, times `1 / n`.
    fn import_mean(&mut self, node: &pb::NodeProto) -> Result<()> {
        let n = node.input.len().max(1) as f32;
        let inputs = self.all_inputs(node)?;
        let shape = self.broadcast_inputs(node, &inputs)?;
        if let [single] = &inputs[..] {
            return self.set_output(node, single.clone());
        }
        let inverse = Tensor::new(vec![], vec![1.0 / n]);
        match self.sum_parts(node, inputs) {
            (None, Some(c)) => {
                let data = c.data.iter().map(|v| v / n).collect();
                self.set_output(node, Value::Const(Tensor::new(c.shape, data)))
            }
            (Some(a), c) => {
                let a = match c {
                    Some(c) => {
                        self.intermediate(node, "sum", Op::AddConst(AddConst { constant: c }), vec![a], shape.clone())
                    }
                    None => a,
                };
                self.add_node(node, Op::MulConst(MulConst { constant: inverse }), vec![a], shape)
            }
            (None, None) => Err(self.malformed(format!("Mean '{}' has no input", node_name(node)))),
        }
    }

    fn import_sum(&mut self, node: &pb::NodeProto) -> Result<()> {
        let inputs = self.all_inputs(node)?;
        let shape = self.broadcast_inputs(node, &inputs)?;
        match self.sum_parts(node, inputs) {
            (None, Some(c)) => self.set_output(node, Value::Const(c)),
            (Some(acc), Some(c)) => self.add_node(node, Op::AddConst(AddConst { constant: c }), vec![acc], shape),
            (Some(acc), None) => {
                self.rename_last(node, acc);
                self.set_output(node, Value::Node(acc))
            }
            (None, None) => Err(self.malformed(format!("Sum '{}' has no input", node_name(node)))),
        }
    }

    /// Neg is `(-1) · x`; Abs is `max(x, -x)`.
    fn import_neg_abs(&mut self, node: &pb::NodeProto) -> Result<()> {
        let abs = node.op_type == "Abs";
        let x = match self.required_input(node, 0)? {
            Value::Const(mut t) => {
                t.data.iter_mut().for_each(|v| *v = if abs { v.abs() } else { -*v });
                return self.set_output(node, Value::Const(t));
            }
            Value::Node(x) => x,
        };
        let shape = self.nodes[x].shape.clone();
        if !abs {
            return self.add_node(node, negation(), vec![x], shape);
        }
        let (abs, inputs) = self.abs_of(node, x);
        self.add_node(node, abs, inputs, shape)
    }

    /// `|x| = max(x, -x)`: lays out `-x` as an intermediate of `node` and returns the maximum's op
    /// and inputs, for the caller to add as the node's output or as another intermediate.
    pub(crate) fn abs_of(&mut self, node: &pb::NodeProto, x: usize) -> (Op, Vec<usize>) {
        let negated = self.intermediate(node, "neg", negation(), vec![x], self.nodes[x].shape.clone());
        (Op::Extremum(extremum::Extremum { min: false, constants: Vec::new() }), vec![x, negated])
    }
}
