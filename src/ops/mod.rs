//! The operations zkinfer proves, one module per family, each op's pieces side by side: its ONNX
//! import (an `impl Importer` block and the family's [`OnnxOp`] rows), its float form and how it
//! quantizes ([`Quantize`]), and its quantized form with the integer reference and the circuit
//! layout ([`Kernel`]). The circuit's hinted gadgets live in [`crate::circuit`]; a kernel only
//! chooses which gadget constrains which element.
//!
//! The [`op_table!`] below is the one list of ops: it declares the float IR's [`Op`] and the
//! quantized [`QOp`] and their dispatch. Adding an op touches its family's file and this table
//! (and the README's list, which a test keeps equal to the import table).

use halo2_base::gates::RangeChip;
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::{AssignedValue, Context};
use serde::{Deserialize, Serialize};

use crate::circuit::linear::{ParamCells, SignSplit};
use crate::circuit::linear_gate::LinearRegion;
use crate::circuit::nonlinear::Lookups;
use crate::error::Result;
use crate::model::graph::{broadcast_indices, Node};
use crate::model::onnx::Importer;
use crate::model::quantize::QNode;
use crate::settings::Settings;

pub mod activation;
pub mod arith;
pub mod compare;
pub mod constant;
pub mod extremum;
pub mod gather;
pub mod input;
pub mod integer;
pub mod linear;
pub mod movement;
pub mod norm;
pub mod pool;
pub mod recurrent;
pub mod reduce;
pub mod resize;
pub mod topk;

/// Declares the ops: each row is `Variant: FloatForm => QuantizedForm`. The float form
/// implements [`Quantize`], the quantized one [`Kernel`] (one type may be both).
macro_rules! op_table {
    ($($(#[$doc:meta])* $name:ident: $float:ty => $quant:ty;)*) => {
        /// One operation of the float IR, as imported; every op reads the outputs of earlier
        /// nodes (`Node::inputs`).
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub enum Op {
            $($(#[$doc])* $name($float),)*
        }

        /// One quantized operation; every activation is at the input scale.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub enum QOp {
            $($(#[$doc])* $name($quant),)*
        }

        impl Op {
            /// How this op quantizes.
            pub fn quantizer(&self) -> &dyn Quantize {
                match self {
                    $(Op::$name(op) => op,)*
                }
            }

            /// The op's name, as messages say it.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Op::$name(_) => stringify!($name),)*
                }
            }
        }

        impl QOp {
            /// The op's integer reference and layout.
            pub fn kernel(&self) -> &dyn Kernel {
                match self {
                    $(QOp::$name(op) => op,)*
                }
            }

            /// The op's name, as messages say it.
            pub fn name(&self) -> &'static str {
                match self {
                    $(QOp::$name(_) => stringify!($name),)*
                }
            }
        }
    };
}

op_table! {
    /// The model's input number `index`.
    Input: input::Input => input::Input;
    /// `y[m, n] = Σ_k x[m, k] · weight[k, n] + bias[m, n]`: Gemm and MatMul by constant weights.
    Dense: linear::Dense => linear::QDense;
    /// A convolution of any number of spatial axes, grouped (Conv, ConvTranspose, and the
    /// per-channel scale BatchNormalization is).
    Conv: linear::Conv => linear::QConv;
    /// The matrix product of two computed tensors.
    MatMul: linear::MatMul => linear::MatMul;
    /// The mean of each window of each channel.
    AveragePool: pool::AveragePool => pool::AveragePool;
    /// The maximum of each window of each channel.
    MaxPool: pool::MaxPool => pool::MaxPool;
    /// Element-wise sum of two computed tensors.
    Add: arith::Add => arith::Add;
    /// Element-wise sum with a constant.
    AddConst: arith::AddConst => arith::QAddConst;
    /// Element-wise difference of two computed tensors.
    Sub: arith::Sub => arith::Sub;
    /// Element-wise product of two computed tensors.
    Mul: arith::Mul => arith::Mul;
    /// Element-wise product with a constant (Mul and Div by constants).
    MulConst: arith::MulConst => arith::QMulConst;
    /// `a / b` for positive computed `b`.
    Div: arith::Div => arith::Div;
    /// `max(x, 0)`.
    Relu: extremum::Relu => extremum::Relu;
    /// Element-wise maximum or minimum of computed tensors and constants (Max, Min, Clip).
    Extremum: extremum::Extremum => extremum::QExtremum;
    /// The maximum or minimum of each group of elements (ReduceMax, ReduceMin, Softmax's shift).
    ReduceMax: extremum::ReduceMax => extremum::ReduceMax;
    /// The sum or mean of each group of elements (ReduceSum, ReduceMean).
    Reduce: reduce::Reduce => reduce::Reduce;
    /// An element-wise function proven by table lookup.
    Lookup: activation::Lookup => activation::QLookup;
    /// Copies of input elements and constants (Transpose, Slice, Concat, Gather, Pad, ...).
    Select: movement::Select => movement::QSelect;
    /// Same values, new shape (Reshape, Flatten, Squeeze, Identity).
    Reshape: movement::Reshape => movement::Reshape;
    /// A comparison: 1 where it holds, else 0 (Less, Greater, LessOrEqual, GreaterOrEqual, Equal).
    Compare: compare::Compare => compare::QCompare;
    /// Not, And, Or, Xor of computed booleans.
    Logic: compare::LogicOp => compare::LogicOp;
    /// `cond ? then : otherwise` for a computed boolean `cond`.
    Where: compare::Where => compare::QWhere;
    /// Rows of a constant table at computed indices (an embedding lookup).
    Embedding: gather::Embedding => gather::QEmbedding;
    /// The position of each group's maximum or minimum (ArgMax, ArgMin), or its one-hot (Hardmax).
    ArgExtremum: extremum::ArgExtremum => extremum::ArgExtremum;
    /// The `k` largest or smallest elements of each group and their positions (TopK).
    TopK: topk::TopK => topk::TopK;
    /// The remainder of a division by a constant (Mod).
    Mod: integer::Mod => integer::QMod;
    /// A shift by constant amounts (BitShift).
    BitShift: integer::BitShift => integer::BitShift;
    /// BitwiseAnd, BitwiseOr, BitwiseXor of two integer tensors.
    Bitwise: integer::Bitwise => integer::Bitwise;
}

/// What quantizing one node reads.
pub struct QuantizeCx<'a> {
    /// The float node.
    pub node: &'a Node,
    /// The scales, width and table range.
    pub settings: &'a Settings,
}

impl QuantizeCx<'_> {
    /// Quantizes a constant at `scale`.
    pub fn quantize(&self, t: &crate::model::Tensor, scale: u32) -> Vec<i64> {
        t.data.iter().map(|&x| quantize_value(x, scale)).collect()
    }

    /// Quantizes a constant at `scale` and broadcasts it to the node's shape: one value per
    /// output element.
    pub fn quantize_broadcast(&self, t: &crate::model::Tensor, scale: u32) -> Vec<i64> {
        let q = self.quantize(t, scale);
        broadcast_indices(&t.shape, &self.node.shape).into_iter().map(|i| q[i]).collect()
    }
}

/// `x · 2^scale`, rounded to the nearest integer.
pub fn quantize_value(x: f32, scale: u32) -> i64 {
    (x as f64 * (1u64 << scale) as f64).round() as i64
}

/// A float op: how it becomes a quantized one.
pub trait Quantize {
    /// The quantized op of this node.
    fn quantize(&self, cx: &QuantizeCx<'_>) -> Result<QOp>;
}

/// Ops whose float and quantized forms are the same value.
macro_rules! quantized_as_is {
    ($($name:ident: $ty:ty),* $(,)?) => {
        $(impl Quantize for $ty {
            fn quantize(&self, _: &QuantizeCx<'_>) -> Result<QOp> {
                Ok(QOp::$name(self.clone()))
            }
        })*
    };
}

quantized_as_is! {
    Input: input::Input,
    MatMul: linear::MatMul,
    AveragePool: pool::AveragePool,
    MaxPool: pool::MaxPool,
    Add: arith::Add,
    Sub: arith::Sub,
    Mul: arith::Mul,
    Div: arith::Div,
    Relu: extremum::Relu,
    ReduceMax: extremum::ReduceMax,
    Reduce: reduce::Reduce,
    Reshape: movement::Reshape,
    Logic: compare::LogicOp,
    ArgExtremum: extremum::ArgExtremum,
    TopK: topk::TopK,
    BitShift: integer::BitShift,
    Bitwise: integer::Bitwise,
}

/// The fixed-point scales a quantized model works at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scales {
    /// Scale (bits) of inputs, activations and outputs.
    pub input: u32,
    /// Scale (bits) of weights.
    pub param: u32,
    /// Signed width (bits) of range-checked activations.
    pub activation_bits: u32,
}

/// One tensor of parameters an op holds (weights, biases, constants).
pub struct Param<'a> {
    /// `weight`, `bias`, `constant` or `factor`: the tensor's name after the node's.
    pub suffix: &'static str,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// The quantized values.
    pub values: &'a [i64],
    /// Fixed-point scale (bits).
    pub scale: u32,
}

/// What a kernel's integer reference reads.
pub struct ExecCx<'a> {
    /// The node.
    pub node: &'a QNode,
    /// Its inputs' values.
    pub args: Vec<&'a [i128]>,
    /// Its inputs' shapes.
    pub shapes: Vec<&'a [usize]>,
    /// The model's scales.
    pub scales: Scales,
    /// The model's inputs (for [`QOp::Input`]).
    pub inputs: &'a [Vec<i64>],
}

/// A model input as laid out, waiting to be exposed: its index, name, shape and cells in offset
/// form.
pub type LaidInput = (usize, String, Vec<usize>, Vec<AssignedValue<Fr>>);

/// What a kernel's layout reads and writes.
pub struct LayoutCx<'a, 'p> {
    /// The region cells go to.
    pub ctx: &'a mut Context<Fr>,
    /// The range chip (and its gate).
    pub range: &'a RangeChip<Fr>,
    /// The node.
    pub node: &'a QNode,
    /// Its inputs' cells.
    pub args: Vec<&'a [AssignedValue<Fr>]>,
    /// Its inputs' shapes.
    pub shapes: Vec<&'a [usize]>,
    /// Its parameter tensors, in [`Kernel::params`] order.
    pub params: Vec<ParamCells<'p>>,
    /// The function tables and lookups gathered so far.
    pub lookups: &'a mut Lookups,
    /// The linear-layer gate's region, when the circuit has one.
    pub linear: &'a mut Option<LinearRegion>,
    /// The model's scales.
    pub scales: Scales,
    /// The model's inputs (for [`QOp::Input`]).
    pub inputs: &'a [Vec<i64>],
    /// Inputs laid out so far, to be exposed after the nodes.
    pub laid_inputs: &'a mut Vec<LaidInput>,
    /// For each input, its positions that are the constant zero (see [`Kernel::zeros`]).
    pub zeros: Vec<Option<&'a [bool]>>,
    /// Set (empty) when a Relu reads this node: a kernel that rescales its outputs may lay them
    /// out with their sign splits and leave those here, which makes that Relu one product per
    /// element (see [`SignSplit`]).
    pub split: Option<Vec<SignSplit>>,
    /// For each input, the sign splits its node left (see `split`).
    pub splits: Vec<Option<&'a [SignSplit]>>,
}

impl LayoutCx<'_, '_> {
    /// The activations' signed width.
    pub fn bits(&self) -> u32 {
        self.scales.activation_bits
    }
}

/// A quantized op: its parameters, its integer reference and its layout. The reference and the
/// layout compute the same integers: the witness the circuit constrains.
pub trait Kernel {
    /// The parameter tensors the op holds, in the order the layout receives them.
    fn params(&self, _node: &QNode, _scales: Scales) -> Vec<Param<'_>> {
        Vec::new()
    }

    /// Refuses what a hand-made `model.compiled` could hold that the layout cannot constrain.
    fn check(&self, _node: &QNode) -> Result<()> {
        Ok(())
    }

    /// The node's output values from its inputs'.
    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>>;

    /// Lays the node out and returns its output cells.
    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>>;

    /// The output positions that are the constant zero whatever the inputs, from the same of
    /// its inputs (`None`: none known): padding, ConvTranspose's spread input. A linear layer
    /// skips the products of such inputs (they add nothing). Structural, never read off cells,
    /// so key generation and proving lay out the same rows.
    fn zeros(&self, _inputs: &[Option<&[bool]>]) -> Option<Vec<bool>> {
        None
    }
}

/// For each input (of `shapes`), the position in it of every element of the output's `shape`
/// (numpy broadcasting).
pub fn broadcast_maps(shapes: &[&[usize]], shape: &[usize]) -> Vec<Vec<usize>> {
    shapes.iter().map(|s| broadcast_indices(s, shape)).collect()
}

/// Imports one ONNX node of the op type its row names.
pub(crate) type ImportFn = fn(&mut Importer<'_>, &tract_onnx::pb::NodeProto) -> Result<()>;

/// One row of the ONNX import table: an op type, how it imports, and what the supported-op list
/// says about it.
pub struct OnnxOp {
    /// The ONNX op type.
    pub op_type: &'static str,
    /// Its import.
    pub(crate) import: ImportFn,
    /// What is supported of it (empty: all of it), as the supported-op list says.
    pub note: &'static str,
}

/// The ONNX import table: every family's rows.
pub fn onnx_ops() -> impl Iterator<Item = &'static OnnxOp> {
    [
        linear::ONNX,
        norm::ONNX,
        recurrent::ONNX,
        pool::ONNX,
        arith::ONNX,
        extremum::ONNX,
        activation::ONNX,
        reduce::ONNX,
        movement::ONNX,
        resize::ONNX,
        topk::ONNX,
        integer::ONNX,
        compare::ONNX,
        constant::ONNX,
    ]
    .into_iter()
    .flatten()
}
