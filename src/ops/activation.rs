//! Element-wise functions proven by table lookup (Sigmoid, Tanh, Exp, Log, Sqrt, Softplus,
//! Softsign, Erf, Gelu, Elu, Selu, Pow by a constant, HardSigmoid, HardSwish, Celu, Mish,
//! ThresholdedRelu, the trigonometric and hyperbolic functions and their inverses (but Tan),
//! Round, Floor, Ceil, Sign), and Softmax and LogSoftmax built from
//! them: a table holds `(x, round(f(x / 2^s) · 2^s))` for every input of its domain; where the
//! function is constant beyond the domain the input is clamped to its edge first.

use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::AssignedValue;
use serde::{Deserialize, Serialize};
use tract_onnx::pb;

use super::reduce::reduce_groups;
use super::{arith, extremum, movement, reduce};
use super::{ExecCx, Kernel, LayoutCx, OnnxOp, QOp, Quantize, QuantizeCx};
use crate::circuit::nonlinear::layout_lookup;
use crate::error::Result;
use crate::error::{ImportError, QuantizeError};
use crate::model::function::{domain, Domain, Function, Rounding, Trig};
use crate::model::graph::{Op, Tensor};
use crate::model::onnx::{attr, attr_float, attr_int, combine, Importer, Value};

/// The ONNX ops of this family.
pub const ONNX: &[OnnxOp] = &[
    OnnxOp { op_type: "Sigmoid", import: |i, n| i.import_lookup(n, Function::Sigmoid), note: "" },
    OnnxOp { op_type: "Tanh", import: |i, n| i.import_lookup(n, Function::Tanh), note: "" },
    OnnxOp { op_type: "Exp", import: |i, n| i.import_lookup(n, Function::Exp), note: "" },
    OnnxOp { op_type: "Log", import: |i, n| i.import_lookup(n, Function::Log), note: "" },
    OnnxOp { op_type: "Sqrt", import: |i, n| i.import_lookup(n, Function::Sqrt), note: "" },
    OnnxOp { op_type: "Softplus", import: |i, n| i.import_lookup(n, Function::Softplus), note: "" },
    OnnxOp { op_type: "Softsign", import: |i, n| i.import_lookup(n, Function::Softsign), note: "" },
    OnnxOp { op_type: "Erf", import: |i, n| i.import_lookup(n, Function::Erf), note: "" },
    OnnxOp { op_type: "Gelu", import: |i, n| i.import_gelu(n), note: "" },
    OnnxOp { op_type: "Elu", import: |i, n| i.import_elu(n), note: "" },
    OnnxOp { op_type: "Selu", import: |i, n| i.import_selu(n), note: "" },
    OnnxOp { op_type: "Pow", import: |i, n| i.import_pow(n), note: "by a constant, or e^(y ln x) for positive bases" },
    OnnxOp { op_type: "HardSigmoid", import: |i, n| i.import_hard_sigmoid(n), note: "" },
    OnnxOp { op_type: "HardSwish", import: |i, n| i.import_lookup(n, Function::HardSwish), note: "" },
    OnnxOp { op_type: "Celu", import: |i, n| i.import_celu(n), note: "" },
    OnnxOp { op_type: "Mish", import: |i, n| i.import_lookup(n, Function::Mish), note: "" },
    OnnxOp { op_type: "ThresholdedRelu", import: |i, n| i.import_thresholded_relu(n), note: "" },
    OnnxOp { op_type: "Sin", import: |i, n| i.import_lookup(n, Function::Trig(Trig::Sin)), note: "" },
    OnnxOp { op_type: "Cos", import: |i, n| i.import_lookup(n, Function::Trig(Trig::Cos)), note: "" },
    OnnxOp { op_type: "Asin", import: |i, n| i.import_lookup(n, Function::Trig(Trig::Asin)), note: "" },
    OnnxOp { op_type: "Acos", import: |i, n| i.import_lookup(n, Function::Trig(Trig::Acos)), note: "" },
    OnnxOp { op_type: "Atan", import: |i, n| i.import_lookup(n, Function::Trig(Trig::Atan)), note: "" },
    OnnxOp { op_type: "Sinh", import: |i, n| i.import_lookup(n, Function::Trig(Trig::Sinh)), note: "" },
    OnnxOp { op_type: "Cosh", import: |i, n| i.import_lookup(n, Function::Trig(Trig::Cosh)), note: "" },
    OnnxOp { op_type: "Asinh", import: |i, n| i.import_lookup(n, Function::Trig(Trig::Asinh)), note: "" },
    OnnxOp { op_type: "Acosh", import: |i, n| i.import_lookup(n, Function::Trig(Trig::Acosh)), note: "" },
    OnnxOp { op_type: "Atanh", import: |i, n| i.import_lookup(n, Function::Trig(Trig::Atanh)), note: "" },
    OnnxOp { op_type: "Round", import: |i, n| i.import_lookup(n, Function::Round(Rounding::HalfEven)), note: "" },
    OnnxOp { op_type: "Floor", import: |i, n| i.import_lookup(n, Function::Round(Rounding::Floor)), note: "" },
    OnnxOp { op_type: "Ceil", import: |i, n| i.import_lookup(n, Function::Round(Rounding::Ceil)), note: "" },
    OnnxOp { op_type: "Sign", import: |i, n| i.import_lookup(n, Function::Sign), note: "" },
    OnnxOp { op_type: "Softmax", import: |i, n| i.import_softmax(n), note: "" },
    OnnxOp { op_type: "LogSoftmax", import: |i, n| i.import_softmax(n), note: "" },
];

/// An element-wise function proven by table lookup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lookup {
    /// The function.
    pub func: Function,
}

/// [`Lookup`] quantized: `round(f(x / 2^s) · 2^s)` over the table's domain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QLookup {
    /// The function.
    pub func: Function,
    /// The inputs the table holds.
    pub domain: Domain,
}

impl Quantize for Lookup {
    fn quantize(&self, cx: &QuantizeCx<'_>) -> Result<QOp> {
        let s = cx.settings;
        let range = s.lookup_range.map(|[lo, hi]| (lo, hi));
        let domain = domain(self.func, s.input_scale, s.activation_bits, range).map_err(|e| {
            ImportError::UnsupportedModel(format!("node '{}' ({}): {e}", cx.node.name, self.func.name()))
        })?;
        Ok(QOp::Lookup(QLookup { func: self.func, domain }))
    }
}

impl Kernel for QLookup {
    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        let scale = cx.scales.input;
        cx.args[0]
            .iter()
            .map(|&x| {
                let row = self.domain.row_input(x).ok_or_else(|| {
                    let one = (1u64 << scale) as f64;
                    QuantizeError::LookupRange {
                        node: cx.node.name.clone(),
                        op: self.func.name().into(),
                        value: x as f64 / one,
                        low: self.domain.lo as f64 / one,
                        high: self.domain.hi as f64 / one,
                    }
                })?;
                Ok(self.func.quantized(row, scale).expect("the table's inputs have outputs"))
            })
            .collect()
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let f = (self.func, self.domain, cx.scales.input);
        let bits = cx.bits();
        Ok(cx.args[0].iter().map(|&x| layout_lookup(cx.ctx, cx.range, cx.lookups, x, f, bits, None)).collect())
    }
}

impl Importer<'_> {
    fn import_gelu(&mut self, node: &pb::NodeProto) -> Result<()> {
        let tanh = attr(node, "approximate").is_some_and(|a| a.s == b"tanh");
        self.import_lookup(node, Function::Gelu { tanh })
    }

    fn import_elu(&mut self, node: &pb::NodeProto) -> Result<()> {
        let alpha = f64::from(attr_float(node, "alpha").unwrap_or(1.0));
        self.import_lookup(node, Function::Elu { alpha })
    }

    fn import_hard_sigmoid(&mut self, node: &pb::NodeProto) -> Result<()> {
        let alpha = f64::from(attr_float(node, "alpha").unwrap_or(0.2));
        let beta = f64::from(attr_float(node, "beta").unwrap_or(0.5));
        self.import_lookup(node, Function::HardSigmoid { alpha, beta })
    }

    fn import_celu(&mut self, node: &pb::NodeProto) -> Result<()> {
        let alpha = f64::from(attr_float(node, "alpha").unwrap_or(1.0));
        if alpha == 0.0 {
            return Err(self.unsupported(node, "alpha = 0"));
        }
        self.import_lookup(node, Function::Celu { alpha })
    }

    fn import_thresholded_relu(&mut self, node: &pb::NodeProto) -> Result<()> {
        let alpha = f64::from(attr_float(node, "alpha").unwrap_or(1.0));
        self.import_lookup(node, Function::ThresholdedRelu { alpha })
    }

    fn import_selu(&mut self, node: &pb::NodeProto) -> Result<()> {
        let alpha = f64::from(attr_float(node, "alpha").unwrap_or(1.673_263_2));
        let gamma = f64::from(attr_float(node, "gamma").unwrap_or(1.050_701));
        self.import_lookup(node, Function::Selu { alpha, gamma })
    }

    /// An element-wise function proven by lookup: folded on a constant, a node otherwise.
    fn import_lookup(&mut self, node: &pb::NodeProto, func: Function) -> Result<()> {
        match self.required_input(node, 0)? {
            Value::Const(mut t) => {
                t.data.iter_mut().for_each(|v| *v = func.eval(f64::from(*v)) as f32);
                self.set_output(node, Value::Const(t))
            }
            Value::Node(id) => {
                let shape = self.nodes[id].shape.clone();
                self.add_node(node, Op::Lookup(Lookup { func }), vec![id], shape)
            }
        }
    }

    /// Pow by one constant exponent (a computed base); constants fold.
    /// Pow: by one constant exponent, a table of `x^e`; by a computed exponent (or a tensor of
    /// exponents), `e^(y · ln x)` from the Log and Exp tables (for positive bases, as the Log
    /// table holds); constants fold.
    fn import_pow(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (base, exponent) = (self.required_input(node, 0)?, self.required_input(node, 1)?);
        let shape = self.broadcast_inputs(node, &[base.clone(), exponent.clone()])?;
        let single = match &exponent {
            Value::Const(t) => t.data.first().copied().filter(|&e| t.data.iter().all(|&v| v == e)),
            Value::Node(_) => None,
        };
        match (&base, &exponent, single) {
            (Value::Const(b), Value::Const(e), _) => {
                let folded = combine(b, e, shape, f32::powf);
                self.set_output(node, Value::Const(folded))
            }
            (Value::Node(_), _, Some(1.0)) if self.shape_of(&base) == shape => self.set_output(node, base),
            (Value::Node(_), _, Some(e)) if self.shape_of(&base) == shape => {
                self.import_lookup(node, Function::Pow { exponent: f64::from(e) })
            }
            (_, _, _) => {
                // y · ln x, then its exponential.
                let exp = |f| Op::Lookup(Lookup { func: f });
                let log_x = match &base {
                    Value::Node(x) => Value::Node(self.intermediate(
                        node,
                        "ln",
                        exp(Function::Log),
                        vec![*x],
                        self.nodes[*x].shape.clone(),
                    )),
                    Value::Const(b) => {
                        Value::Const(Tensor::new(b.shape.clone(), b.data.iter().map(|&v| v.ln()).collect()))
                    }
                };
                let product = match (log_x, exponent) {
                    (Value::Node(l), Value::Node(y)) => (Op::Mul(arith::Mul), vec![y, l]),
                    (Value::Node(l), Value::Const(y)) => (Op::MulConst(arith::MulConst { constant: y }), vec![l]),
                    (Value::Const(l), Value::Node(y)) => (Op::MulConst(arith::MulConst { constant: l }), vec![y]),
                    (Value::Const(_), Value::Const(_)) => unreachable!("folded above"),
                };
                let scaled = self.intermediate(node, "y_ln", product.0, product.1, shape.clone());
                self.add_node(node, exp(Function::Exp), vec![scaled], shape)
            }
        }
    }

    /// Softmax and LogSoftmax along one axis (from opset 13; before, over all axes from `axis`
    /// on, as a 2-D `[outer, inner]` view): with `d = x - max(x)`, `e^d / Σ e^d` and
    /// `d - ln Σ e^d`. The exponential and the logarithm are table lookups; the maximum makes
    /// every `d ≤ 0` and the sum at least 1.
    fn import_softmax(&mut self, node: &pb::NodeProto) -> Result<()> {
        let Value::Node(x) = self.required_input(node, 0)? else {
            return Err(self.unsupported(node, "the input must be computed"));
        };
        let shape = self.nodes[x].shape.clone();
        let rank = shape.len();
        let legacy = self.opset < 13;
        let axis = attr_int(node, "axis").unwrap_or(if legacy { 1 } else { -1 });
        let a = movement::axis(axis, rank).map_err(|e| self.unsupported(node, e))?;
        let (x, view, a) = if legacy && (rank != 2 || a != 1) {
            let view = vec![shape[..a].iter().product(), shape[a..].iter().product()];
            (self.intermediate(node, "2d", Op::Reshape(movement::Reshape), vec![x], view.clone()), view, 1)
        } else {
            (x, shape.clone(), a)
        };
        let (groups, reduced) = reduce_groups(&view, &[a]);
        let max = self.intermediate(
            node,
            "max",
            Op::ReduceMax(extremum::ReduceMax { groups: groups.clone(), min: false }),
            vec![x],
            reduced.clone(),
        );
        let shifted = self.intermediate(node, "shifted", Op::Sub(arith::Sub), vec![x, max], view.clone());
        let exp =
            self.intermediate(node, "exp", Op::Lookup(Lookup { func: Function::Exp }), vec![shifted], view.clone());
        let sum = self.intermediate(
            node,
            "sum",
            Op::Reduce(reduce::Reduce { groups, mean: false }),
            vec![exp],
            reduced.clone(),
        );
        let (op, inputs) = if node.op_type == "Softmax" {
            (Op::Div(arith::Div), vec![exp, sum])
        } else {
            let log = self.intermediate(node, "log", Op::Lookup(Lookup { func: Function::Log }), vec![sum], reduced);
            (Op::Sub(arith::Sub), vec![shifted, log])
        };
        if view == shape {
            return self.add_node(node, op, inputs, shape);
        }
        let result = self.intermediate(node, "result", op, inputs, view);
        self.add_node(node, Op::Reshape(movement::Reshape), vec![result], shape)
    }
}
