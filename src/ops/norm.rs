//! Normalisations, as compositions of other ops: BatchNormalization (inference) is a
//! per-channel scale, a depthwise 1×1 convolution folded into the convolution before it when it
//! is that convolution's only reader; InstanceNormalization is a mean, a variance, the Sqrt table
//! and a proven division per channel, then the channel's affine.

use tract_onnx::pb;

use super::reduce::reduce_groups;
use super::OnnxOp;
use super::{activation, arith, linear, reduce};
use crate::error::Result;
use crate::model::function::Function;
use crate::model::graph::{Op, Tensor, Window};
use crate::model::onnx::{attr_float, attr_int, Importer, Value};

/// The ONNX ops of this family.
pub const ONNX: &[OnnxOp] = &[
    OnnxOp { op_type: "BatchNormalization", import: |i, n| i.import_batch_norm(n), note: "inference" },
    OnnxOp { op_type: "InstanceNormalization", import: |i, n| i.import_instance_norm(n), note: "" },
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

    /// InstanceNormalization: `(x - mean) / √(var + ε) · scale + B` over each channel's
    /// spatial values, from a mean, a product, the Sqrt table and a proven division.
    fn import_instance_norm(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (x, shape) = self.spatial_input(node)?;
        let mut params = self.channel_constants(node, 1..3, shape[1], "scale and B")?;
        let epsilon = attr_float(node, "epsilon").unwrap_or(1e-5);
        let (groups, reduced) = reduce_groups(&shape, &(2..shape.len()).collect::<Vec<_>>());
        let mean = Op::Reduce(reduce::Reduce { groups: groups.clone(), mean: true });
        let mean = self.intermediate(node, "mean", mean, vec![x], reduced.clone());
        let centred = self.intermediate(node, "centred", Op::Sub(arith::Sub), vec![x, mean], shape.clone());
        let square = self.intermediate(node, "square", Op::Mul(arith::Mul), vec![centred, centred], shape.clone());
        let var = self.intermediate(
            node,
            "var",
            Op::Reduce(reduce::Reduce { groups, mean: true }),
            vec![square],
            reduced.clone(),
        );
        let eps = Op::AddConst(arith::AddConst { constant: Tensor::new(vec![], vec![epsilon]) });
        let var = self.intermediate(node, "var_eps", eps, vec![var], reduced.clone());
        let std =
            self.intermediate(node, "std", Op::Lookup(activation::Lookup { func: Function::Sqrt }), vec![var], reduced);
        let normal = self.intermediate(node, "normal", Op::Div(arith::Div), vec![centred, std], shape.clone());
        let (scale, bias) = (params.remove(0), params.remove(0));
        self.add_node(node, channel_affine(&shape, scale, bias), vec![normal], shape)
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
