//! Comparisons, logic and selection on booleans: Less, Greater, LessOrEqual, GreaterOrEqual and
//! Equal of computed tensors or a computed tensor and a constant (a tree ensemble's thresholds),
//! Not, And, Or, Xor of booleans, and Where. A boolean is the fixed-point 0 or 1 (`2^scale`), so
//! a Cast of one to float is the value itself. A comparison is the sign of a difference (a bit,
//! range-checked like ReLU's); Equal is halo2-base's zero test; And is a product; Where is
//! `c · x + (1 - c) · y`. Constant operands are model parameters: they are committed or fixed as
//! the weights are.

use halo2_base::gates::{GateInstructions, RangeInstructions};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::{AssignedValue, QuantumCell};
use serde::{Deserialize, Serialize};
use tract_onnx::pb;

use super::{broadcast_maps, ExecCx, Kernel, LayoutCx, OnnxOp, Param, QOp, Quantize, QuantizeCx, Scales};
use crate::circuit::field::fe;
use crate::circuit::linear::layout_product;
use crate::circuit::nonlinear::layout_less;
use crate::error::Result;
use crate::model::graph::{broadcast_indices, Op, Tensor};
use crate::model::onnx::{combine, Importer, Value};
use crate::model::quantize::QNode;

/// The ONNX ops of this family.
pub const ONNX: &[OnnxOp] = &[
    OnnxOp { op_type: "Less", import: |i, n| i.import_compare(n, Comparison::Less), note: "" },
    OnnxOp { op_type: "Greater", import: |i, n| i.import_compare(n, Comparison::Greater), note: "" },
    OnnxOp { op_type: "LessOrEqual", import: |i, n| i.import_compare(n, Comparison::LessOrEqual), note: "" },
    OnnxOp { op_type: "GreaterOrEqual", import: |i, n| i.import_compare(n, Comparison::GreaterOrEqual), note: "" },
    OnnxOp { op_type: "Equal", import: |i, n| i.import_compare(n, Comparison::Equal), note: "" },
    OnnxOp { op_type: "Not", import: |i, n| i.import_logic(n, Logic::Not), note: "" },
    OnnxOp { op_type: "And", import: |i, n| i.import_logic(n, Logic::And), note: "" },
    OnnxOp { op_type: "Or", import: |i, n| i.import_logic(n, Logic::Or), note: "" },
    OnnxOp { op_type: "Xor", import: |i, n| i.import_logic(n, Logic::Xor), note: "" },
    OnnxOp { op_type: "Where", import: |i, n| i.import_where(n), note: "" },
    OnnxOp { op_type: "OneHot", import: |i, n| i.import_one_hot(n), note: "constant depth and values" },
];

/// Which comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    /// `a < b`.
    Less,
    /// `a > b`.
    Greater,
    /// `a <= b`.
    LessOrEqual,
    /// `a >= b`.
    GreaterOrEqual,
    /// `a == b`.
    Equal,
}

impl Comparison {
    /// The comparison of two numbers.
    pub fn holds<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            Comparison::Less => a < b,
            Comparison::Greater => a > b,
            Comparison::LessOrEqual => a <= b,
            Comparison::GreaterOrEqual => a >= b,
            Comparison::Equal => a == b,
        }
    }
}

/// A comparison of two computed tensors, or of a computed tensor and a constant (numpy
/// broadcasting): 1 where it holds, else 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Compare {
    /// Which comparison.
    pub comparison: Comparison,
    /// The constant operand, if one is.
    pub constant: Option<Tensor>,
    /// The constant is the left operand.
    pub constant_first: bool,
}

/// [`Compare`] quantized.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QCompare {
    /// Which comparison.
    pub comparison: Comparison,
    /// The constant operand at the input scale, one per output element.
    pub constant: Option<Vec<i64>>,
    /// The constant is the left operand.
    pub constant_first: bool,
}

impl Quantize for Compare {
    fn quantize(&self, cx: &QuantizeCx<'_>) -> Result<QOp> {
        Ok(QOp::Compare(QCompare {
            comparison: self.comparison,
            constant: self.constant.as_ref().map(|c| cx.quantize_broadcast(c, cx.settings.input_scale)),
            constant_first: self.constant_first,
        }))
    }
}

/// The two operands of output element `o`: computed ones through their broadcast `maps`, the
/// constant (when the op has one) from `constant`.
fn operands<T: Copy>(
    compare: &QCompare,
    args: &[&[T]],
    maps: &[Vec<usize>],
    o: usize,
    constant: impl Fn(usize) -> T,
) -> (T, T) {
    let computed = |i: usize| args[i][maps[i][o]];
    match (&compare.constant, compare.constant_first) {
        (None, _) => (computed(0), computed(1)),
        (Some(_), false) => (computed(0), constant(o)),
        (Some(_), true) => (constant(o), computed(0)),
    }
}

/// Fixed-point one at the input scale.
fn one(scales: Scales) -> i128 {
    1i128 << scales.input
}

impl Kernel for QCompare {
    fn params(&self, node: &QNode, scales: Scales) -> Vec<Param<'_>> {
        self.constant
            .iter()
            .map(|c| Param { suffix: "constant", shape: node.shape.clone(), values: c, scale: scales.input })
            .collect()
    }

    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        let (one, maps) = (one(cx.scales), broadcast_maps(&cx.shapes, &cx.node.shape));
        let constant = |o: usize| self.constant.as_ref().map_or(0, |c| i128::from(c[o]));
        Ok((0..cx.node.shape.iter().product())
            .map(|o| {
                let (a, b) = operands(self, &cx.args, &maps, o, constant);
                if self.comparison.holds(a, b) {
                    one
                } else {
                    0
                }
            })
            .collect())
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let (bits, one, maps) = (cx.bits(), fe(one(cx.scales)), broadcast_maps(&cx.shapes, &cx.node.shape));
        let args: Vec<Vec<QuantumCell<Fr>>> =
            cx.args.iter().map(|a| a.iter().map(|&c| QuantumCell::Existing(c)).collect()).collect();
        let args: Vec<&[QuantumCell<Fr>]> = args.iter().map(Vec::as_slice).collect();
        let param = cx.params.first().copied();
        let constant = |o: usize| param.and_then(|c| c.operand(o)).unwrap_or(QuantumCell::Constant(Fr::zero()));
        let gate = cx.range.gate();
        Ok((0..cx.node.shape.iter().product())
            .map(|o| {
                let (a, b) = operands(self, &args, &maps, o, constant);
                let bit = match self.comparison {
                    Comparison::Equal => gate.is_equal(cx.ctx, a, b),
                    Comparison::Less => layout_less(cx.ctx, cx.range, (a, b), true, bits, None),
                    Comparison::Greater => layout_less(cx.ctx, cx.range, (b, a), true, bits, None),
                    Comparison::LessOrEqual => layout_less(cx.ctx, cx.range, (a, b), false, bits, None),
                    Comparison::GreaterOrEqual => layout_less(cx.ctx, cx.range, (b, a), false, bits, None),
                };
                gate.mul(cx.ctx, bit, QuantumCell::Constant(one))
            })
            .collect())
    }
}

/// Which logic op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Logic {
    /// `!a`.
    Not,
    /// `a & b`.
    And,
    /// `a | b`.
    Or,
    /// `a ^ b`.
    Xor,
}

impl Logic {
    /// The op on two booleans (`b` ignored by Not).
    pub fn apply(self, a: bool, b: bool) -> bool {
        match self {
            Logic::Not => !a,
            Logic::And => a && b,
            Logic::Or => a || b,
            Logic::Xor => a != b,
        }
    }
}

/// A logic op on computed booleans (outputs of comparisons and logic ops).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogicOp {
    /// Which op.
    pub logic: Logic,
}

impl Kernel for LogicOp {
    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        let one = one(cx.scales);
        let a = cx.args[0];
        let maps = broadcast_maps(&cx.shapes, &cx.node.shape);
        Ok((0..cx.node.shape.iter().product())
            .map(|o| {
                let x = a[maps[0][o]] != 0;
                let y = cx.args.get(1).is_some_and(|b| b[maps[1][o]] != 0);
                if self.logic.apply(x, y) {
                    one
                } else {
                    0
                }
            })
            .collect())
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let (bits, shift, one) = (cx.bits(), cx.scales.input, fe(one(cx.scales)));
        let maps = broadcast_maps(&cx.shapes, &cx.node.shape);
        let gate = cx.range.gate();
        Ok((0..cx.node.shape.iter().product())
            .map(|o| {
                let x = cx.args[0][maps[0][o]];
                if self.logic == Logic::Not {
                    return gate.sub(cx.ctx, QuantumCell::Constant(one), x);
                }
                let y = cx.args[1][maps[1][o]];
                // Booleans are 0 or 2^s: their product over 2^s is And, exactly.
                let and = layout_product(cx.ctx, cx.range, x.into(), y.into(), shift, bits);
                match self.logic {
                    Logic::And => and,
                    Logic::Or => {
                        let sum = gate.add(cx.ctx, x, y);
                        gate.sub(cx.ctx, sum, and)
                    }
                    _ => {
                        let sum = gate.add(cx.ctx, x, y);
                        gate.mul_add(cx.ctx, and, QuantumCell::Constant(fe(-2)), sum)
                    }
                }
            })
            .collect())
    }
}

/// `cond ? then : otherwise`, element-wise (numpy broadcasting), for a computed boolean `cond`;
/// each branch computed or constant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Where {
    /// The constant `then` branch (else it is the node's next input).
    pub then: Option<Tensor>,
    /// The constant `otherwise` branch (else it is the node's last input).
    pub otherwise: Option<Tensor>,
}

/// [`Where`] quantized: constant branches at the input scale, one value per output element.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QWhere {
    /// The constant `then` branch.
    pub then: Option<Vec<i64>>,
    /// The constant `otherwise` branch.
    pub otherwise: Option<Vec<i64>>,
}

impl Quantize for Where {
    fn quantize(&self, cx: &QuantizeCx<'_>) -> Result<QOp> {
        let is = cx.settings.input_scale;
        Ok(QOp::Where(QWhere {
            then: self.then.as_ref().map(|t| cx.quantize_broadcast(t, is)),
            otherwise: self.otherwise.as_ref().map(|t| cx.quantize_broadcast(t, is)),
        }))
    }
}

/// Where a branch of a Where comes from: input `i` of the node, or parameter `i` of it.
#[derive(Clone, Copy)]
enum Branch {
    Input(usize),
    Param(usize),
}

impl QWhere {
    /// The two branches' sources, in (then, otherwise) order.
    fn branches(&self) -> [Branch; 2] {
        let then = if self.then.is_some() { Branch::Param(0) } else { Branch::Input(1) };
        let next_input = if self.then.is_some() { 1 } else { 2 };
        let next_param = self.then.is_some() as usize;
        let otherwise = if self.otherwise.is_some() { Branch::Param(next_param) } else { Branch::Input(next_input) };
        [then, otherwise]
    }
}

impl Kernel for QWhere {
    fn params(&self, node: &QNode, scales: Scales) -> Vec<Param<'_>> {
        [("then", &self.then), ("otherwise", &self.otherwise)]
            .into_iter()
            .filter_map(|(suffix, c)| c.as_ref().map(|c| (suffix, c)))
            .map(|(suffix, c)| Param { suffix, shape: node.shape.clone(), values: c, scale: scales.input })
            .collect()
    }

    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        let maps = broadcast_maps(&cx.shapes, &cx.node.shape);
        let constants = [&self.then, &self.otherwise].into_iter().flatten().collect::<Vec<_>>();
        let value = |b: Branch, o: usize| match b {
            Branch::Input(i) => cx.args[i][maps[i][o]],
            Branch::Param(p) => i128::from(constants[p][o]),
        };
        let [then, otherwise] = self.branches();
        Ok((0..cx.node.shape.iter().product())
            .map(|o| if cx.args[0][maps[0][o]] != 0 { value(then, o) } else { value(otherwise, o) })
            .collect())
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let (bits, shift, one) = (cx.bits(), cx.scales.input, fe(one(cx.scales)));
        let maps = broadcast_maps(&cx.shapes, &cx.node.shape);
        let [then, otherwise] = self.branches();
        let operand = |cx: &LayoutCx<'_, '_>, b: Branch, o: usize| match b {
            Branch::Input(i) => Some(QuantumCell::Existing(cx.args[i][maps[i][o]])),
            Branch::Param(p) => cx.params[p].operand(o),
        };
        let len: usize = cx.node.shape.iter().product();
        Ok((0..len)
            .map(|o| {
                // c · x / 2^s + (2^s - c) · y / 2^s, each product exact for c in {0, 2^s}.
                let c = cx.args[0][maps[0][o]];
                let not_c = cx.range.gate().sub(cx.ctx, QuantumCell::Constant(one), c);
                let mut sum = Vec::with_capacity(2);
                for (bit, branch) in [(c, then), (not_c, otherwise)] {
                    if let Some(v) = operand(cx, branch, o) {
                        sum.push(layout_product(cx.ctx, cx.range, bit.into(), v, shift, bits));
                    }
                }
                match sum.len() {
                    0 => cx.ctx.load_zero(),
                    _ => cx.range.gate().sum(cx.ctx, sum),
                }
            })
            .collect())
    }
}

/// 1.0 or 0.0.
fn truth(b: bool) -> f32 {
    if b {
        1.0
    } else {
        0.0
    }
}

impl Importer<'_> {
    fn import_compare(&mut self, node: &pb::NodeProto, comparison: Comparison) -> Result<()> {
        let (a, b) = (self.required_input(node, 0)?, self.required_input(node, 1)?);
        let shape = self.broadcast_inputs(node, &[a.clone(), b.clone()])?;
        let compare = |constant, constant_first| Op::Compare(Compare { comparison, constant, constant_first });
        match (a, b) {
            (Value::Const(x), Value::Const(y)) => {
                let folded = combine(&x, &y, shape, |u, v| truth(comparison.holds(u, v)));
                self.set_output(node, Value::Const(folded))
            }
            (Value::Node(x), Value::Node(y)) => self.add_node(node, compare(None, false), vec![x, y], shape),
            (Value::Node(x), Value::Const(c)) => self.add_node(node, compare(Some(c), false), vec![x], shape),
            (Value::Const(c), Value::Node(y)) => self.add_node(node, compare(Some(c), true), vec![y], shape),
        }
    }

    fn import_logic(&mut self, node: &pb::NodeProto, logic: Logic) -> Result<()> {
        let inputs = if logic == Logic::Not { 1 } else { 2 };
        let values: Vec<Value> = (0..inputs).map(|i| self.required_input(node, i)).collect::<Result<_>>()?;
        let shape = self.broadcast_inputs(node, &values)?;
        let consts: Vec<&Tensor> =
            values.iter().filter_map(|v| if let Value::Const(t) = v { Some(t) } else { None }).collect();
        if consts.len() == values.len() {
            let b = consts.get(1).copied().unwrap_or(consts[0]);
            let folded = combine(consts[0], b, shape, |u, v| truth(logic.apply(u != 0.0, v != 0.0)));
            return self.set_output(node, Value::Const(folded));
        }
        let ids: Vec<usize> =
            values.iter().filter_map(|v| if let Value::Node(id) = v { Some(*id) } else { None }).collect();
        if ids.len() != values.len() {
            return Err(self.unsupported(node, "a constant operand beside a computed one (the exporter folds these)"));
        }
        self.add_node(node, Op::Logic(LogicOp { logic }), ids, shape)
    }

    /// OneHot of computed indices: `indices == j` against the constant `0..depth` along `axis`
    /// (negative indices count from the end, as ONNX says), then the on and off values.
    fn import_one_hot(&mut self, node: &pb::NodeProto) -> Result<()> {
        let Value::Node(ids) = self.required_input(node, 0)? else {
            return Err(self.unsupported(node, "constant indices (the exporter folds these)"));
        };
        let constant = |importer: &Self, i: usize, what: &str| match importer.required_input(node, i)? {
            Value::Const(t) if !t.is_empty() => Ok(t),
            _ => Err(importer.unsupported(node, format!("{what} must be a constant"))),
        };
        let depth = constant(self, 1, "depth")?.data[0] as usize;
        let values = constant(self, 2, "values")?;
        let (off, on) = (values.data[0], values.data.get(1).copied().unwrap_or(1.0));
        let shape = self.nodes[ids].shape.clone();
        let rank = shape.len() + 1;
        let a = crate::ops::movement::axis(crate::model::onnx::attr_int(node, "axis").unwrap_or(-1), rank)
            .map_err(|e| self.unsupported(node, e))?;
        let mut with_one = shape.clone();
        with_one.insert(a, 1);
        let reshaped = self.intermediate(node, "ids", Op::Reshape(crate::ops::movement::Reshape), vec![ids], with_one);
        // Both j and j - depth match position j.
        let mut classes = vec![1; rank];
        classes[a] = depth;
        let mut out = shape;
        out.insert(a, depth);
        let equal_to = |importer: &mut Self, part: &str, offset: f32| {
            let arange = Tensor::new(classes.clone(), (0..depth).map(|j| j as f32 + offset).collect());
            let op =
                Op::Compare(Compare { comparison: Comparison::Equal, constant: Some(arange), constant_first: false });
            importer.intermediate(node, part, op, vec![reshaped], out.clone())
        };
        let positive = equal_to(self, "is", 0.0);
        let negative = equal_to(self, "is_from_end", -(depth as f32));
        let either = self.intermediate(
            node,
            "hot",
            Op::Logic(LogicOp { logic: Logic::Or }),
            vec![positive, negative],
            out.clone(),
        );
        let value = |v: f32| Some(Tensor::new(vec![], vec![v]));
        self.add_node(node, Op::Where(Where { then: value(on), otherwise: value(off) }), vec![either], out)
    }

    /// Where: with a constant condition, a selection of elements (data movement); with a
    /// computed one, `c · x + (1 - c) · y`.
    fn import_where(&mut self, node: &pb::NodeProto) -> Result<()> {
        let values: Vec<Value> = (0..3).map(|i| self.required_input(node, i)).collect::<Result<_>>()?;
        let shape = self.broadcast_inputs(node, &values)?;
        let [cond, then, otherwise] = [&values[0], &values[1], &values[2]];
        match cond {
            Value::Const(c) => {
                let maps: Vec<Vec<usize>> =
                    values.iter().map(|v| broadcast_indices(&self.shape_of(v), &shape)).collect();
                let sources = (0..shape.iter().product())
                    .map(|o| {
                        let branch = if c.data[maps[0][o]] != 0.0 { 1 } else { 2 };
                        super::movement::Source::Input { input: branch - 1, index: maps[branch][o] }
                    })
                    .collect();
                let output = self.output_name(node)?;
                self.emit_moved(node, &[then.clone(), otherwise.clone()], (shape, sources), output)
            }
            Value::Node(c) => {
                let mut inputs = vec![*c];
                let mut branch = |v: &Value| match v {
                    Value::Const(t) => Some(t.clone()),
                    Value::Node(id) => {
                        inputs.push(*id);
                        None
                    }
                };
                let op = Where { then: branch(then), otherwise: branch(otherwise) };
                self.add_node(node, Op::Where(op), inputs, shape)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_and_logic_follow_onnx() {
        assert!(Comparison::Less.holds(1, 2) && !Comparison::Less.holds(2, 2));
        assert!(Comparison::LessOrEqual.holds(2, 2) && Comparison::GreaterOrEqual.holds(2, 2));
        assert!(Comparison::Greater.holds(3, 2) && Comparison::Equal.holds(-1, -1));
        assert!(Logic::Xor.apply(true, false) && !Logic::Xor.apply(true, true) && Logic::Not.apply(false, true));
        assert!(Logic::Or.apply(false, true) && !Logic::And.apply(false, true));
    }

    #[test]
    fn where_reads_its_branches_from_inputs_or_params() {
        let both = QWhere { then: None, otherwise: None };
        assert!(matches!(both.branches(), [Branch::Input(1), Branch::Input(2)]));
        let then = QWhere { then: Some(vec![1]), otherwise: None };
        assert!(matches!(then.branches(), [Branch::Param(0), Branch::Input(1)]));
        let otherwise = QWhere { then: None, otherwise: Some(vec![1]) };
        assert!(matches!(otherwise.branches(), [Branch::Input(1), Branch::Param(0)]));
        let neither = QWhere { then: Some(vec![1]), otherwise: Some(vec![2]) };
        assert!(matches!(neither.branches(), [Branch::Param(0), Branch::Param(1)]));
    }
}
