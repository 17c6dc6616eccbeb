//! Normalisations, as compositions of other ops: BatchNormalization (inference) is a
//! per-channel scale, a depthwise 1×1 convolution folded into the convolution before it when it
//! is that convolution's only reader; InstanceNormalization is a mean, a variance, the Sqrt table
//! and a proven division per channel, then the channel's affine; LayerNormalization and
//! GroupNormalization standardise the same way over their own axes.

use tract_onnx::pb;

use super::reduce::reduce_groups;
use super::OnnxOp;
use super::{activation, arith, linear, movement, reduce};
use crate::error::Result;
use crate::model::function::Function;
use crate::model::graph::{broadcast_shape, Op, Tensor, Window};
use crate::model::onnx::{attr_float, attr_int, Importer, Value};

/// The ONNX ops of this family.
pub const ONNX: &[OnnxOp] = &[
    OnnxOp { op_type: "BatchNormalization", import: |i, n| i.import_batch_norm(n), note: "inference" },
    OnnxOp { op_type: "InstanceNormalization", import: |i, n| i.import_instance_norm(n), note: "" },
    OnnxOp { op_type: "LayerNormalization", import: |i, n| i.import_layer_norm(n), note: "" },
    OnnxOp { op_type: "GroupNormalization", import: |i, n| i.import_group_norm(n), note: "" },
];

impl Importer<'_> {
    /// BatchNormalization in inference mode: a per-channel `x · a + b`, proven as a depthwise
    /// 1×1 convolution (folded into a preceding convolution when that is its only reader).
    fn import_batch_norm(&mut self, node: &pb::NodeProto) -> Result<()> {
        if attr_int(node, "training_mode").unwrap_or(0) != 0 {
            return Err(self.unsupported(node, "training_mode = 1 (only inference is proven)"));
        }
        let (x, shape) = self.spatial_input(node)?;
        let c = shape[1];
        let params = self.channel_constants(node, 1..5, c, "scale, B, mean and var")?;
        let epsilon = attr_float(node, "epsilon").unwrap_or(1e-5);
        let a: Vec<f32> = (0..c).map(|i| params[0][i] / (params[3][i] + epsilon).sqrt()).collect();
        let b: Vec<f32> = (0..c).map(|i| params[1][i] - params[2][i] * a[i]).collect();
        self.add_node(node, channel_affine(&shape, a, b), vec![x], shape)
    }

    /// Inputs `which` of a normalisation node: constants of one value per channel (`c`).
    fn channel_constants(
        &self,
        node: &pb::NodeProto,
        which: std::ops::Range<usize>,
        c: usize,
        names: &str,
    ) -> Result<Vec<Vec<f32>>> {
        which
            .map(|i| match self.required_input(node, i)? {
                Value::Const(t) if t.len() == c => Ok(t.data),
                _ => Err(self.unsupported(node, format!("{names} must be constants of {c} values"))),
            })
            .collect()
    }

    /// `(x - mean) / √(var + ε)` over `axes` of node `x` (of `shape`), from a mean, a product,
    /// the Sqrt table and a proven division: returns the node of the result.
    fn standardize(&mut self, node: &pb::NodeProto, x: usize, shape: &[usize], axes: &[usize], epsilon: f32) -> usize {
        let (groups, reduced) = reduce_groups(shape, axes);
        let mean = Op::Reduce(reduce::Reduce { groups: groups.clone(), mean: true });
        let mean = self.intermediate(node, "mean", mean, vec![x], reduced.clone());
        let centred = self.intermediate(node, "centred", Op::Sub(arith::Sub), vec![x, mean], shape.to_vec());
        let square = self.intermediate(node, "square", Op::Mul(arith::Mul), vec![centred, centred], shape.to_vec());
        let var = Op::Reduce(reduce::Reduce { groups, mean: true });
        let var = self.intermediate(node, "var", var, vec![square], reduced.clone());
        let eps = Op::AddConst(arith::AddConst { constant: Tensor::new(vec![], vec![epsilon]) });
        let var = self.intermediate(node, "var_eps", eps, vec![var], reduced.clone());
        let sqrt = Op::Lookup(activation::Lookup { func: Function::Sqrt });
        let std = self.intermediate(node, "std", sqrt, vec![var], reduced);
        self.intermediate(node, "normal", Op::Div(arith::Div), vec![centred, std], shape.to_vec())
    }

    /// InstanceNormalization: `(x - mean) / √(var + ε) · scale + B` over each channel's
    /// spatial values.
    fn import_instance_norm(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (x, shape) = self.spatial_input(node)?;
        let mut params = self.channel_constants(node, 1..3, shape[1], "scale and B")?;
        let epsilon = attr_float(node, "epsilon").unwrap_or(1e-5);
        let normal = self.standardize(node, x, &shape, &(2..shape.len()).collect::<Vec<_>>(), epsilon);
        let (scale, bias) = (params.remove(0), params.remove(0));
        self.add_node(node, channel_affine(&shape, scale, bias), vec![normal], shape)
    }

    /// LayerNormalization (opset 17): `(x - mean) / √(var + ε) · Scale + B` over the axes from
    /// `axis` on, with Scale and B constants that broadcast to those axes.
    fn import_layer_norm(&mut self, node: &pb::NodeProto) -> Result<()> {
        let Value::Node(x) = self.required_input(node, 0)? else {
            return Err(self.unsupported(node, "the input must be computed"));
        };
        if node.output.iter().skip(1).any(|o| !o.is_empty()) {
            return Err(self.unsupported(node, "the Mean and InvStdDev outputs (training only)"));
        }
        let shape = self.nodes[x].shape.clone();
        let axis = attr_int(node, "axis").unwrap_or(-1);
        let first = movement::axis(axis, shape.len()).map_err(|e| self.unsupported(node, e))?;
        let epsilon = attr_float(node, "epsilon").unwrap_or(1e-5);
        let inner = &shape[first..];
        let constant = |i: usize, name: &str| -> Result<Option<Tensor>> {
            match self.input(node, i)? {
                None => Ok(None),
                Some(Value::Const(t)) if broadcast_shape(&t.shape, inner).as_deref() == Some(inner) => Ok(Some(t)),
                Some(_) => {
                    Err(self.unsupported(node, format!("{name} must be a constant that broadcasts to {inner:?}")))
                }
            }
        };
        let (scale, bias) = (constant(1, "Scale")?, constant(2, "B")?);
        let mut current = self.standardize(node, x, &shape, &(first..shape.len()).collect::<Vec<_>>(), epsilon);
        let ops: Vec<(&str, Op)> = [
            scale
                .filter(|t| t.data.iter().any(|&v| v != 1.0))
                .map(|t| ("scaled", Op::MulConst(arith::MulConst { constant: t }))),
            bias.map(|t| ("shifted", Op::AddConst(arith::AddConst { constant: t }))),
        ]
        .into_iter()
        .flatten()
        .collect();
        let last = ops.len();
        for (i, (part, op)) in ops.into_iter().enumerate() {
            if i + 1 == last {
                return self.add_node(node, op, vec![current], shape);
            }
            current = self.intermediate(node, part, op, vec![current], shape.clone());
        }
        self.add_node(node, Op::Reshape(movement::Reshape), vec![current], shape)
    }

    /// GroupNormalization: the channels in `num_groups` groups, each group standardised over
    /// its channels' values, then a per-channel Scale and B (one per channel, or one per group
    /// as opset 18 gives them).
    fn import_group_norm(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (x, shape) = self.spatial_input(node)?;
        let (n, c) = (shape[0], shape[1]);
        let groups = attr_int(node, "num_groups").filter(|&g| g > 0).map(|g| g as usize);
        let Some(g) = groups.filter(|g| c % g == 0) else {
            return Err(self.unsupported(node, format!("num_groups {groups:?} does not divide the {c} channels")));
        };
        let per_channel = |t: Vec<f32>| -> Option<Vec<f32>> {
            match t.len() {
                len if len == c => Some(t),
                len if len == g => Some((0..c).map(|i| t[i / (c / g)]).collect()),
                _ => None,
            }
        };
        let mut params = Vec::new();
        for (i, name) in [(1, "scale"), (2, "bias")] {
            match self.required_input(node, i)? {
                Value::Const(t) => params.push(per_channel(t.data).ok_or_else(|| {
                    self.unsupported(node, format!("{name} must hold one value per channel or per group"))
                })?),
                Value::Node(_) => return Err(self.unsupported(node, format!("{name} must be a constant"))),
            }
        }
        let epsilon = attr_float(node, "epsilon").unwrap_or(1e-5);
        let view = vec![n, g, shape[1..].iter().product::<usize>() / g];
        let grouped = self.intermediate(node, "grouped", Op::Reshape(movement::Reshape), vec![x], view.clone());
        let normal = self.standardize(node, grouped, &view, &[2], epsilon);
        let back = self.intermediate(node, "ungrouped", Op::Reshape(movement::Reshape), vec![normal], shape.clone());
        let (scale, bias) = (params.remove(0), params.remove(0));
        self.add_node(node, channel_affine(&shape, scale, bias), vec![back], shape)
    }
}

/// `a[c] · x + b[c]` for each channel `c` of an `[N, C, spatial...]` tensor of `shape`: a
/// depthwise 1×…×1 convolution.
pub(crate) fn channel_affine(shape: &[usize], a: Vec<f32>, b: Vec<f32>) -> Op {
    let (c, spatial) = (shape[1], &shape[2..]);
    let ones = vec![1; spatial.len()];
    let zeros = vec![0; spatial.len()];
    let window = Window::new(spatial, &ones, &ones, &zeros, &zeros, &ones).expect("a 1×1 window fits any input");
    let weight = Tensor::new([vec![c, 1], ones].concat(), a);
    Op::Conv(linear::Conv { weight, bias: Some(Tensor::new(vec![c], b)), group: c, window })
}
