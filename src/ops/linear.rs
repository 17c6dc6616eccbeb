//! Linear layers: Gemm and MatMul by constant weights ([`Dense`]), convolutions ([`Conv`]:
//! Conv, ConvTranspose, and the per-channel scale BatchNormalization folds to), and the product
//! of two computed tensors ([`MatMul`], batched). Dense and Conv share one gadget: an inner product per
//! output element, then a rounding rescale.

use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::AssignedValue;
use serde::{Deserialize, Serialize};
use tract_onnx::pb;

use super::{arith, movement};
use super::{ExecCx, Kernel, LayoutCx, OnnxOp, Param, QOp, Quantize, QuantizeCx, Scales};
use crate::circuit::linear::{
    affine_base_cells, layout_affine, layout_affine_gate, layout_inner_product, AffineOutput, AffineParams, GatePlan,
    ParamCells, Rescaled,
};
use crate::error::Result;
use crate::model::graph::{broadcast_indices, broadcast_shape, Op, Tensor, Window};
use crate::model::onnx::{attr, attr_float, attr_int, transpose, Importer, Value};
use crate::model::quantize::{rescale, QNode};

/// The ONNX ops of this family.
pub const ONNX: &[OnnxOp] = &[
    OnnxOp { op_type: "Gemm", import: |i, n| i.import_gemm(n), note: "transA/transB/alpha/beta" },
    OnnxOp {
        op_type: "MatMul",
        import: |i, n| i.import_matmul(n),
        note: "by constant weights, or of two computed tensors with broadcast batch axes",
    },
    OnnxOp {
        op_type: "Conv",
        import: |i, n| i.import_conv(n),
        note: "1-D, 2-D, 3-D; strides, pads and auto_pad, dilations, groups and depthwise",
    },
    OnnxOp {
        op_type: "ConvTranspose",
        import: |i, n| i.import_conv_transpose(n),
        note: "pads, output_padding, groups, dilations",
    },
    OnnxOp {
        op_type: "Einsum",
        import: |i, n| i.import_einsum(n),
        note: "of one or two computed tensors, explicit output, no repeated index in one operand",
    },
];

/// `y[m, n] = Σ_k x[m, k] · weight[k, n] + bias[m, n]` over the last axis of the input (leading
/// axes are rows `m`); `bias` broadcasts to the output shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    /// Weights, shape `[K, N]`.
    pub weight: Tensor,
    /// Optional bias, broadcastable to `[M, N]`.
    pub bias: Option<Tensor>,
    /// True when the input holds `x` transposed (`[K, M]`), as Gemm's `transA` says.
    pub transpose_input: bool,
}

/// [`Dense`] quantized: `y[m, n] = round((Σ_k x[m, k] · w[k, n] + bias[m, n]) / 2^param_scale)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QDense {
    /// Weights `[K, N]`, row-major, at the param scale.
    pub weight: Vec<i64>,
    /// Rows of `weight` (input features).
    pub k: usize,
    /// Columns of `weight` (output features).
    pub n: usize,
    /// Bias for every output element (`[M, N]`), at input + param scale.
    pub bias: Vec<i64>,
    /// The input holds `x` transposed.
    pub transpose_input: bool,
}

impl Quantize for Dense {
    fn quantize(&self, cx: &QuantizeCx<'_>) -> Result<QOp> {
        let (is, ps) = (cx.settings.input_scale, cx.settings.param_scale);
        let bias = match &self.bias {
            Some(b) => cx.quantize_broadcast(b, is + ps),
            None => vec![0; cx.node.shape.iter().product()],
        };
        Ok(QOp::Dense(QDense {
            weight: cx.quantize(&self.weight, ps),
            k: self.weight.shape[0],
            n: self.weight.shape[1],
            bias,
            transpose_input: self.transpose_input,
        }))
    }
}

/// A convolution of an `[N, C, spatial...]` input (any number of spatial axes, grouped):
/// `y[n, m, o] = Σ_c Σ_tap x[n, g·C/G + c, in(o, tap)] · weight[m, c, tap] + bias[m]`, with
/// `g = m / (M/G)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv {
    /// `[M, C/group, kernel...]`.
    pub weight: Tensor,
    /// `[M]`.
    pub bias: Option<Tensor>,
    /// Number of groups `G` (C for a depthwise convolution).
    pub group: usize,
    /// The sliding window.
    pub window: Window,
}

/// [`Conv`] quantized: `round((Σ x · weight + bias[m]) / 2^param_scale)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QConv {
    /// `[M, C/G, kernel...]`, row-major, at the param scale.
    pub weight: Vec<i64>,
    /// The weight tensor's shape.
    pub weight_shape: Vec<usize>,
    /// One per output channel, at input + param scale.
    pub bias: Vec<i64>,
    /// Number of groups.
    pub group: usize,
    /// The sliding window.
    pub window: Window,
}

impl Quantize for Conv {
    fn quantize(&self, cx: &QuantizeCx<'_>) -> Result<QOp> {
        let (is, ps) = (cx.settings.input_scale, cx.settings.param_scale);
        let m = self.weight.shape[0];
        Ok(QOp::Conv(QConv {
            weight: cx.quantize(&self.weight, ps),
            weight_shape: self.weight.shape.clone(),
            bias: self.bias.as_ref().map(|b| cx.quantize(b, is + ps)).unwrap_or_else(|| vec![0; m]),
            group: self.group,
            window: self.window.clone(),
        }))
    }
}

/// The position of `x[m, i]` in a Dense input stored as `[M, K]`, or as `[K, M]` when
/// transposed.
pub fn dense_index(transposed: bool, rows: usize, k: usize, m: usize, i: usize) -> usize {
    if transposed {
        i * rows + m
    } else {
        m * k + i
    }
}

/// Where each output element of a linear layer takes its terms from: the integer reference sums
/// them as they come, the layout collects them into [`AffineOutput`]s, so both read one
/// definition.
trait AffineTerms {
    /// Number of output elements.
    fn outputs(&self) -> usize;
    /// The bias position of output `o`.
    fn bias(&self, o: usize) -> usize;
    /// The (input position, weight position) pairs of output `o`.
    fn terms(&self, o: usize) -> impl Iterator<Item = (usize, usize)> + '_;

    /// The outputs in groups of at most `k` that read the same inputs in the same order (the
    /// runs of the linear-layer gate), every output in one group.
    fn lanes(&self, k: usize) -> Vec<Vec<usize>>;

    /// Every output's terms, in output order.
    fn affine_outputs(&self) -> Vec<AffineOutput> {
        (0..self.outputs()).map(|o| AffineOutput { terms: self.terms(o).collect(), bias: self.bias(o) }).collect()
    }
}

/// A [`QDense`] on an input of a given shape.
struct DenseTerms {
    k: usize,
    n: usize,
    rows: usize,
    transposed: bool,
}

impl AffineTerms for DenseTerms {
    fn outputs(&self) -> usize {
        self.rows * self.n
    }

    fn bias(&self, o: usize) -> usize {
        o
    }

    fn terms(&self, o: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let (m, j) = (o / self.n, o % self.n);
        (0..self.k).map(move |i| (dense_index(self.transposed, self.rows, self.k, m, i), i * self.n + j))
    }

    fn lanes(&self, k: usize) -> Vec<Vec<usize>> {
        // The outputs of one input row, `k` columns at a time.
        (0..self.rows)
            .flat_map(|m| {
                (0..self.n).step_by(k.max(1)).map(move |j| (j..(j + k).min(self.n)).map(|j| m * self.n + j).collect())
            })
            .collect()
    }
}

impl QDense {
    fn geometry(&self, input_shape: &[usize]) -> DenseTerms {
        let rows = input_shape.iter().product::<usize>() / self.k.max(1);
        DenseTerms { k: self.k, n: self.n, rows, transposed: self.transpose_input }
    }
}

/// A [`QConv`] on an input of a given shape.
struct ConvTerms {
    channels: usize,
    m: usize,
    per_group_in: usize,
    per_group_out: usize,
    in_len: usize,
    kernel_len: usize,
    /// The taps of each output position, within a channel.
    taps: Vec<Vec<(usize, usize)>>,
    batch: usize,
}

impl AffineTerms for ConvTerms {
    fn outputs(&self) -> usize {
        self.batch * self.m * self.taps.len()
    }

    fn bias(&self, o: usize) -> usize {
        o / self.taps.len() % self.m
    }

    fn terms(&self, o: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let positions = self.taps.len();
        let (b, oc, position) = (o / (self.m * positions), o / positions % self.m, &self.taps[o % positions]);
        let first_in = oc / self.per_group_out * self.per_group_in;
        (0..self.per_group_in).flat_map(move |c| {
            let x_base = (b * self.channels + first_in + c) * self.in_len;
            let w_base = (oc * self.per_group_in + c) * self.kernel_len;
            position.iter().map(move |&(tap, at)| (x_base + at, w_base + tap))
        })
    }

    fn lanes(&self, k: usize) -> Vec<Vec<usize>> {
        // Output channels of one group at one (batch, position), `k` at a time.
        let positions = self.taps.len();
        let mut groups = Vec::new();
        for b in 0..self.batch {
            for first in (0..self.m).step_by(self.per_group_out.max(1)) {
                let end = first + self.per_group_out;
                for oc in (first..end).step_by(k.max(1)) {
                    for p in 0..positions {
                        groups.push((oc..(oc + k).min(end)).map(|oc| (b * self.m + oc) * positions + p).collect());
                    }
                }
            }
        }
        groups
    }
}

impl QConv {
    fn geometry(&self, input_shape: &[usize]) -> ConvTerms {
        let (channels, m) = (input_shape[1], self.weight_shape[0]);
        ConvTerms {
            channels,
            m,
            per_group_in: channels / self.group,
            per_group_out: m / self.group,
            in_len: self.window.input_len(),
            kernel_len: self.window.kernel_len(),
            taps: (0..self.window.output_len()).map(|o| self.window.taps(o)).collect(),
            batch: input_shape[0],
        }
    }
}

/// The integer reference of a linear layer: each output's inner product plus its bias, rescaled.
fn execute_affine(cx: &ExecCx<'_>, geometry: &impl AffineTerms, weight: &[i64], bias: &[i64]) -> Vec<i128> {
    let x = cx.args[0];
    // Inputs within 64 bits (all of them in a circuit's range) multiply as one widening product
    // each, several times faster than a full 128-bit product; calibration runs this per candidate.
    let narrow: Option<Vec<i64>> = x.iter().map(|&v| i64::try_from(v).ok()).collect();
    (0..geometry.outputs())
        .map(|o| {
            let dot: i128 = match &narrow {
                Some(x) => geometry.terms(o).map(|(i, j)| i128::from(x[i]) * i128::from(weight[j])).sum(),
                None => geometry.terms(o).map(|(i, j)| x[i] * i128::from(weight[j])).sum(),
            };
            rescale(dot + i128::from(bias[geometry.bias(o)]), cx.scales.param)
        })
        .collect()
}

/// Lays out a linear layer: through the linear-layer gate when the circuit has one for params
/// like this layer's (fixed, or cells) and the gate spends fewer cells; else with halo2-base's
/// inner products. When a Relu reads the layer (`cx.split` is set), its outputs' sign splits go
/// there.
fn layout_linear(cx: &mut LayoutCx<'_, '_>, geometry: &impl AffineTerms) -> Vec<AssignedValue<Fr>> {
    let (values, splits) = layout_linear_split(cx, geometry);
    if cx.split.is_some() {
        cx.split = Some(splits);
    }
    values
}

/// [`layout_linear`]'s outputs, and their sign splits when `cx.split` asks for them.
fn layout_linear_split(cx: &mut LayoutCx<'_, '_>, geometry: &impl AffineTerms) -> Rescaled {
    let mut outputs = geometry.affine_outputs();
    // Inputs that are the constant zero (ConvTranspose's spread, padding) add nothing: the
    // outputs of a run read the same inputs, so they lose the same terms.
    if let Some(zero) = cx.zeros[0] {
        for o in &mut outputs {
            o.terms.retain(|&(i, _)| !zero[i]);
        }
    }
    let rescale = (cx.bits(), cx.split.is_some());
    let params = AffineParams { weight: cx.params[0], bias: cx.params[1], shift: cx.scales.param };
    if let Some(region) = cx.linear.as_mut() {
        let (fixed, base_cells) = match (params.weight, params.bias) {
            (ParamCells::Fixed(weight), ParamCells::Fixed(_)) => (Some(weight), affine_base_cells(&outputs, weight)),
            // An input copied in, the weight's cell copied in and the sum per term, the bias
            // term and the start per output.
            (ParamCells::Loaded(_), ParamCells::Loaded(_)) => {
                (None, outputs.iter().map(|o| 3 * o.terms.len() + 5).sum())
            }
            _ => return layout_affine(cx.ctx, cx.range, cx.args[0], params, &outputs, rescale),
        };
        if region.geometry().advice_weights == fixed.is_none() {
            let lanes = geometry.lanes(region.geometry().outputs);
            let plan = GatePlan::new(&outputs, &lanes, fixed);
            if let Some(plan) = plan.filter(|p| p.cells(region) < base_cells) {
                let layer = (&outputs[..], &lanes[..], plan);
                return layout_affine_gate((cx.ctx, cx.range, region), cx.args[0], params, layer, rescale);
            }
        }
    }
    layout_affine(cx.ctx, cx.range, cx.args[0], params, &outputs, rescale)
}

impl Kernel for QDense {
    fn params(&self, node: &QNode, scales: Scales) -> Vec<Param<'_>> {
        vec![
            Param { suffix: "weight", shape: vec![self.k, self.n], values: &self.weight, scale: scales.param },
            Param { suffix: "bias", shape: node.shape.clone(), values: &self.bias, scale: scales.input + scales.param },
        ]
    }

    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        Ok(execute_affine(cx, &self.geometry(cx.shapes[0]), &self.weight, &self.bias))
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let geometry = self.geometry(cx.shapes[0]);
        Ok(layout_linear(cx, &geometry))
    }
}

impl Kernel for QConv {
    fn params(&self, _node: &QNode, scales: Scales) -> Vec<Param<'_>> {
        vec![
            Param { suffix: "weight", shape: self.weight_shape.clone(), values: &self.weight, scale: scales.param },
            Param {
                suffix: "bias",
                shape: vec![self.bias.len()],
                values: &self.bias,
                scale: scales.input + scales.param,
            },
        ]
    }

    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        Ok(execute_affine(cx, &self.geometry(cx.shapes[0]), &self.weight, &self.bias))
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let geometry = self.geometry(cx.shapes[0]);
        Ok(layout_linear(cx, &geometry))
    }
}

/// The matrix product of two computed tensors with ONNX's (numpy's) semantics: `a [..., M, K]`
/// times `b [..., K, N]` with the batch axes broadcast (a 1-D `a` is a row, a 1-D `b` a column),
/// rescaled by the input scale: attention's scores and values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatMul;

/// The `(batch, M, K)` and `(batch, K, N)` views of MatMul's operands, or `None` when they do
/// not multiply; with the output shape.
fn matmul_views(sa: &[usize], sb: &[usize]) -> Option<(Vec<usize>, Vec<usize>, Vec<usize>)> {
    if sa.is_empty() || sb.is_empty() {
        return None;
    }
    let a = if sa.len() == 1 { vec![1, sa[0]] } else { sa.to_vec() };
    let b = if sb.len() == 1 { vec![sb[0], 1] } else { sb.to_vec() };
    let (ra, rb) = (a.len(), b.len());
    if a[ra - 1] != b[rb - 2] {
        return None;
    }
    let batch = broadcast_shape(&a[..ra - 2], &b[..rb - 2])?;
    let mut out = batch.clone();
    if sa.len() > 1 {
        out.push(a[ra - 2]);
    }
    if sb.len() > 1 {
        out.push(b[rb - 1]);
    }
    Some((a, b, out))
}

/// The output shape of a MatMul of computed tensors of shapes `sa` and `sb`, or `None`.
pub fn matmul_shape(sa: &[usize], sb: &[usize]) -> Option<Vec<usize>> {
    matmul_views(sa, sb).map(|(_, _, out)| out)
}

/// For a MatMul of `a` by `b` (shapes that multiply): the (a position, b position) pairs summed
/// by each output element, in output order.
pub fn matmul_terms(sa: &[usize], sb: &[usize]) -> Vec<Vec<(usize, usize)>> {
    let Some((a, b, _)) = matmul_views(sa, sb) else { return Vec::new() };
    let (ra, rb) = (a.len(), b.len());
    let (m, k, n) = (a[ra - 2], a[ra - 1], b[rb - 1]);
    let (batch_a, batch_b) = (&a[..ra - 2], &b[..rb - 2]);
    let batch = broadcast_shape(batch_a, batch_b).expect("the views multiply");
    let (ia, ib) = (broadcast_indices(batch_a, &batch), broadcast_indices(batch_b, &batch));
    let mut terms = Vec::with_capacity(ia.len() * m * n);
    for (&ta, &tb) in ia.iter().zip(&ib) {
        let (base_a, base_b) = (ta * m * k, tb * k * n);
        for o in 0..m * n {
            terms.push((0..k).map(|i| (base_a + (o / n) * k + i, base_b + i * n + o % n)).collect());
        }
    }
    terms
}

impl Kernel for MatMul {
    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        let (a, b) = (cx.args[0], cx.args[1]);
        Ok(matmul_terms(cx.shapes[0], cx.shapes[1])
            .iter()
            .map(|terms| rescale(terms.iter().map(|&(i, j)| a[i] * b[j]).sum(), cx.scales.input))
            .collect())
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let (a, b) = (cx.args[0], cx.args[1]);
        let (shift, bits) = (cx.scales.input, cx.bits());
        Ok(matmul_terms(cx.shapes[0], cx.shapes[1])
            .iter()
            .map(|terms| {
                let pairs: Vec<_> = terms.iter().map(|&(i, j)| (a[i], b[j])).collect();
                layout_inner_product(cx.ctx, cx.range, &pairs, shift, bits)
            })
            .collect())
    }
}

impl Importer<'_> {
    fn import_gemm(&mut self, node: &pb::NodeProto) -> Result<()> {
        let alpha = attr_float(node, "alpha").unwrap_or(1.0);
        let beta = attr_float(node, "beta").unwrap_or(1.0);
        let trans_a = attr_int(node, "transA").unwrap_or(0) != 0;
        let trans_b = attr_int(node, "transB").unwrap_or(0) != 0;
        let Value::Node(a) = self.required_input(node, 0)? else {
            return Err(
                self.unsupported(node, "input A must be computed from the model input (a constant A is not supported)")
            );
        };
        let b = match self.required_input(node, 1)? {
            Value::Const(b) => b,
            Value::Node(b) => return self.import_gemm_computed(node, a, b, (trans_a, trans_b), (alpha, beta)),
        };
        let a_shape = self.nodes[a].shape.clone();
        if a_shape.len() != 2 || b.shape.len() != 2 {
            return Err(self.unsupported(node, format!("A {a_shape:?} and B {:?} must be matrices", b.shape)));
        }
        let (m, k) = if trans_a { (a_shape[1], a_shape[0]) } else { (a_shape[0], a_shape[1]) };
        let mut weight = if trans_b { transpose(&b) } else { b };
        if weight.shape[0] != k {
            return Err(self.unsupported(node, format!("A has {k} columns but B has {} rows", weight.shape[0])));
        }
        weight.data.iter_mut().for_each(|w| *w *= alpha);
        let n = weight.shape[1];
        let bias = match self.input(node, 2)? {
            None => None,
            Some(Value::Const(mut c)) => {
                if broadcast_shape(&c.shape, &[m, n]).as_deref() != Some(&[m, n][..]) {
                    return Err(self.unsupported(node, format!("C {:?} does not broadcast to [{m}, {n}]", c.shape)));
                }
                c.data.iter_mut().for_each(|v| *v *= beta);
                Some(c)
            }
            Some(Value::Node(_)) => return Err(self.unsupported(node, "input C must be a constant (bias)")),
        };
        self.add_node(node, Op::Dense(Dense { weight, bias, transpose_input: trans_a }), vec![a], vec![m, n])
    }

    /// Gemm of two computed matrices: `alpha · A' B' + beta · C`, with the transposes as data
    /// movement.
    fn import_gemm_computed(
        &mut self,
        node: &pb::NodeProto,
        a: usize,
        b: usize,
        (trans_a, trans_b): (bool, bool),
        (alpha, beta): (f32, f32),
    ) -> Result<()> {
        let mut operand = |id: usize, transposed: bool, part: &str| -> Result<usize> {
            let shape = self.nodes[id].shape.clone();
            if shape.len() != 2 {
                return Err(self.unsupported(node, format!("{part} {shape:?} must be a matrix")));
            }
            if !transposed {
                return Ok(id);
            }
            let (out, sources) = movement::transpose(&shape, None).map_err(|e| self.unsupported(node, e))?;
            Ok(self.intermediate(node, &format!("{part}T"), Op::Select(movement::Select { sources }), vec![id], out))
        };
        let (a, b) = (operand(a, trans_a, "A")?, operand(b, trans_b, "B")?);
        let (sa, sb) = (self.nodes[a].shape.clone(), self.nodes[b].shape.clone());
        if sa[1] != sb[0] {
            return Err(self.unsupported(node, format!("A has {} columns but B has {} rows", sa[1], sb[0])));
        }
        let shape = vec![sa[0], sb[1]];
        let c = self.input(node, 2)?;
        let mut steps: Vec<(&str, Op, Option<usize>)> = vec![("product", Op::MatMul(MatMul), Some(b))];
        if alpha != 1.0 {
            steps.push(("alpha", Op::MulConst(arith::MulConst { constant: Tensor::new(vec![], vec![alpha]) }), None));
        }
        match c {
            None => {}
            Some(Value::Const(mut c)) => {
                c.data.iter_mut().for_each(|v| *v *= beta);
                if broadcast_shape(&c.shape, &shape).as_deref() != Some(&shape[..]) {
                    return Err(self.unsupported(node, format!("C {:?} does not broadcast to {shape:?}", c.shape)));
                }
                steps.push(("bias", Op::AddConst(arith::AddConst { constant: c }), None));
            }
            Some(Value::Node(c)) if beta == 1.0 => steps.push(("bias", Op::Add(arith::Add), Some(c))),
            Some(Value::Node(_)) => return Err(self.unsupported(node, "a computed C with beta other than 1")),
        }
        let last = steps.len() - 1;
        let mut current = a;
        for (i, (part, op, other)) in steps.into_iter().enumerate() {
            let inputs = std::iter::once(current).chain(other).collect();
            if i == last {
                return self.add_node(node, op, inputs, shape);
            }
            current = self.intermediate(node, part, op, inputs, shape.clone());
        }
        unreachable!("the product is always a step")
    }

    fn import_matmul(&mut self, node: &pb::NodeProto) -> Result<()> {
        let a = self.required_input(node, 0)?;
        let b = self.required_input(node, 1)?;
        let (a, weight) = match (a, b) {
            (Value::Node(a), Value::Const(w)) => (a, w),
            (Value::Const(_), Value::Node(_)) => {
                return Err(self.unsupported(
                    node,
                    "a constant left operand is not supported; multiply by constant weights on the right",
                ))
            }
            (Value::Node(a), Value::Node(b)) => {
                let (sa, sb) = (&self.nodes[a].shape, &self.nodes[b].shape);
                let shape = matmul_shape(sa, sb)
                    .ok_or_else(|| self.unsupported(node, format!("cannot multiply {sa:?} by {sb:?}")))?;
                return self.add_node(node, Op::MatMul(MatMul), vec![a, b], shape);
            }
            (Value::Const(_), Value::Const(_)) => {
                return Err(self.unsupported(node, "products of two constants should be folded by the exporter"))
            }
        };
        let a_shape = self.nodes[a].shape.clone();
        let k = *a_shape.last().unwrap_or(&0);
        if weight.shape.len() != 2 || weight.shape[0] != k || a_shape.is_empty() {
            return Err(self.unsupported(node, format!("cannot multiply {a_shape:?} by weights {:?}", weight.shape)));
        }
        let mut shape = a_shape.clone();
        *shape.last_mut().expect("checked non-empty") = weight.shape[1];
        self.add_node(node, Op::Dense(Dense { weight, bias: None, transpose_input: false }), vec![a], shape)
    }

    fn import_conv(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (x, shape) = self.spatial_input(node)?;
        let Value::Const(weight) = self.required_input(node, 1)? else {
            return Err(self.unsupported(node, "the weights must be a constant"));
        };
        let group = attr_int(node, "group").unwrap_or(1).max(1) as usize;
        let (channels, m) = (shape[1], weight.shape[0]);
        if weight.shape.len() != shape.len()
            || channels % group != 0
            || m % group != 0
            || weight.shape[1] * group != channels
        {
            return Err(self.unsupported(
                node,
                format!("weights {:?} do not fit input {shape:?} in {group} groups", weight.shape),
            ));
        }
        let window = self.window(node, &shape[2..], &weight.shape[2..])?;
        self.add_conv(node, (x, shape[0]), weight, group, window)
    }

    /// ConvTranspose as the convolution it equals: the input spread out by the strides (zeros
    /// between its elements) and padded by `dilation · (kernel - 1) - pad` (plus the output
    /// padding at the end), convolved with stride 1 by the kernel flipped, with the input and
    /// output channels of each group exchanged.
    fn import_conv_transpose(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (x, shape) = self.spatial_input(node)?;
        let Value::Const(w) = self.required_input(node, 1)? else {
            return Err(self.unsupported(node, "the weights must be a constant"));
        };
        let group = attr_int(node, "group").unwrap_or(1).max(1) as usize;
        let (channels, d) = (shape[1], shape.len() - 2);
        if w.shape.len() != shape.len() || w.shape[0] != channels || channels % group != 0 {
            return Err(self.unsupported(node, format!("weights {:?} do not fit input {shape:?}", w.shape)));
        }
        if attr(node, "output_shape").is_some() {
            return Err(self.unsupported(node, "the output_shape attribute (give pads instead)"));
        }
        let auto_pad = attr(node, "auto_pad").map(|a| String::from_utf8_lossy(&a.s).into_owned()).unwrap_or_default();
        if !matches!(auto_pad.as_str(), "" | "NOTSET" | "VALID") {
            return Err(self.unsupported(node, format!("auto_pad {auto_pad}")));
        }
        let ints = |name: &str, len: usize, default: i64| {
            attr(node, name).map(|a| a.ints.clone()).filter(|v| v.len() == len).unwrap_or_else(|| vec![default; len])
        };
        let (strides, dilations) = (ints("strides", d, 1), ints("dilations", d, 1));
        let (pads, output_padding) = (ints("pads", 2 * d, 0), ints("output_padding", d, 0));
        if strides.iter().chain(&dilations).any(|&v| v < 1) || pads.iter().chain(&output_padding).any(|&v| v < 0) {
            return Err(self.unsupported(node, "strides, dilations, pads or output_padding out of range"));
        }
        let kernel: Vec<usize> = w.shape[2..].to_vec();
        let span = |a: usize| dilations[a] * (kernel[a] as i64 - 1);
        let begin: Vec<i64> = (0..d).map(|a| span(a) - pads[a]).collect();
        let end: Vec<i64> = (0..d).map(|a| span(a) - pads[d + a] + output_padding[a]).collect();
        let strides: Vec<usize> = strides.iter().map(|&s| s as usize).collect();
        let (spread_shape, sources) =
            movement::dilate_pad(&shape, &strides, &begin, &end).map_err(|e| self.unsupported(node, e))?;
        let spread =
            self.intermediate(node, "spread", Op::Select(movement::Select { sources }), vec![x], spread_shape.clone());
        // W [C, M/G, k...] -> W' [M, C/G, flipped k...].
        let (per_in, per_out) = (channels / group, w.shape[1]);
        let m = per_out * group;
        let kernel_len: usize = kernel.iter().product();
        let mut weight = vec![0.0; m * per_in * kernel_len];
        for g in 0..group {
            for o in 0..per_out {
                for i in 0..per_in {
                    for t in 0..kernel_len {
                        let from = ((g * per_in + i) * per_out + o) * kernel_len + t;
                        let to = ((g * per_out + o) * per_in + i) * kernel_len + (kernel_len - 1 - t);
                        weight[to] = w.data[from];
                    }
                }
            }
        }
        let weight = Tensor::new([vec![m, per_in], kernel.clone()].concat(), weight);
        let ones = vec![1; d];
        let zeros = vec![0; d];
        let dilations: Vec<usize> = dilations.iter().map(|&v| v as usize).collect();
        let window = Window::new(&spread_shape[2..], &kernel, &ones, &zeros, &zeros, &dilations)
            .map_err(|e| self.unsupported(node, e))?;
        self.add_conv(node, (spread, shape[0]), weight, group, window)
    }

    /// Adds a convolution of node `x` (batch `n`) with the node's bias input, if any.
    fn add_conv(
        &mut self,
        node: &pb::NodeProto,
        (x, n): (usize, usize),
        weight: Tensor,
        group: usize,
        window: Window,
    ) -> Result<()> {
        let m = weight.shape[0];
        let bias = match self.input(node, 2)? {
            None => None,
            Some(Value::Const(b)) if b.len() == m => Some(Tensor::new(vec![m], b.data)),
            Some(_) => return Err(self.unsupported(node, format!("the bias must be a constant of {m} values"))),
        };
        let out_shape = [vec![n, m], window.output.clone()].concat();
        self.add_node(node, Op::Conv(Conv { weight, bias, group, window }), vec![x], out_shape)
    }

    /// Einsum of one or two computed tensors (`"bhqd,bhkd->bhqk"`): indices only one operand has
    /// and the output lacks are summed first; then each operand is transposed to (batch, free,
    /// contracted) order, the two multiplied as batched matrices, and the product reshaped and
    /// transposed to the output's order. One operand: a sum and a transpose.
    fn import_einsum(&mut self, node: &pb::NodeProto) -> Result<()> {
        let equation =
            attr(node, "equation").map(|a| String::from_utf8_lossy(&a.s).replace(' ', "")).unwrap_or_default();
        let Some((lhs, out)) = equation.split_once("->") else {
            return Err(self.unsupported(node, format!("equation '{equation}' without an explicit output")));
        };
        let terms: Vec<Vec<char>> = lhs.split(',').map(|t| t.chars().collect()).collect();
        let out: Vec<char> = out.chars().collect();
        let values: Vec<Value> = (0..terms.len()).map(|i| self.required_input(node, i)).collect::<Result<_>>()?;
        let plain = |t: &[char]| {
            t.iter().all(|c| c.is_ascii_alphabetic()) && t.iter().enumerate().all(|(i, c)| !t[..i].contains(c))
        };
        if terms.len() > 2 || !terms.iter().all(|t| plain(t)) || !plain(&out) {
            return Err(
                self.unsupported(node, format!("equation '{equation}' (one or two operands, letters, no repeats)"))
            );
        }
        let mut ids = Vec::new();
        for (v, t) in values.iter().zip(&terms) {
            match v {
                Value::Node(id) if self.nodes[*id].shape.len() == t.len() => ids.push(*id),
                Value::Node(_) => return Err(self.unsupported(node, "an operand's rank differs from its subscripts")),
                Value::Const(_) => {
                    return Err(self.unsupported(node, "constant operands (the exporter folds MatMul by weights)"))
                }
            }
        }
        let mut dims = std::collections::HashMap::new();
        for (id, t) in ids.iter().zip(&terms) {
            for (c, &d) in t.iter().zip(&self.nodes[*id].shape) {
                if *dims.entry(*c).or_insert(d) != d {
                    return Err(self.unsupported(node, format!("index {c} has two sizes")));
                }
            }
        }
        if out.iter().any(|c| !dims.contains_key(c)) {
            return Err(self.unsupported(node, format!("output index of '{equation}' in no operand")));
        }
        // Sum away what only one operand has and the output lacks.
        let mut operands: Vec<(usize, Vec<char>)> = Vec::new();
        for (k, (&id, t)) in ids.iter().zip(&terms).enumerate() {
            let others: Vec<char> =
                terms.iter().enumerate().filter(|&(j, _)| j != k).flat_map(|(_, o)| o.clone()).collect();
            let summed: Vec<usize> =
                (0..t.len()).filter(|&a| !out.contains(&t[a]) && !others.contains(&t[a])).collect();
            if summed.is_empty() {
                operands.push((id, t.clone()));
                continue;
            }
            let shape = self.nodes[id].shape.clone();
            let (groups, _) = super::reduce::reduce_groups(&shape, &summed);
            let kept: Vec<char> = (0..t.len()).filter(|a| !summed.contains(a)).map(|a| t[a]).collect();
            let kept_shape: Vec<usize> = kept.iter().map(|c| dims[c]).collect();
            let sum = Op::Reduce(super::reduce::Reduce { groups, mean: false });
            operands.push((self.intermediate(node, &format!("sum{k}"), sum, vec![id], kept_shape), kept));
        }
        // Transposes every operand (and the result) into the order `to`.
        let arrange = |importer: &mut Self, id: usize, from: &[char], to: &[char], part: &str| -> Result<usize> {
            if from == to {
                return Ok(id);
            }
            let perm: Vec<i64> =
                to.iter().map(|c| from.iter().position(|f| f == c).expect("same letters") as i64).collect();
            let shape = importer.nodes[id].shape.clone();
            let (out_shape, sources) =
                movement::transpose(&shape, Some(&perm)).map_err(|e| importer.unsupported(node, e))?;
            Ok(importer.intermediate(node, part, Op::Select(movement::Select { sources }), vec![id], out_shape))
        };
        let size = |cs: &[char]| cs.iter().map(|c| dims[c]).product::<usize>();
        let (result, letters) = match &operands[..] {
            [(a, ta)] => (*a, ta.clone()),
            [(a, ta), (b, tb)] => {
                let batch: Vec<char> = ta.iter().filter(|c| tb.contains(c) && out.contains(c)).copied().collect();
                let contracted: Vec<char> = ta.iter().filter(|c| tb.contains(c) && !out.contains(c)).copied().collect();
                let left: Vec<char> = ta.iter().filter(|c| !tb.contains(c)).copied().collect();
                let right: Vec<char> = tb.iter().filter(|c| !ta.contains(c)).copied().collect();
                let a = arrange(self, *a, ta, &[batch.clone(), left.clone(), contracted.clone()].concat(), "a")?;
                let b = arrange(self, *b, tb, &[batch.clone(), contracted.clone(), right.clone()].concat(), "b")?;
                let (nb, nl, nk, nr) = (size(&batch), size(&left), size(&contracted), size(&right));
                let reshape = |importer: &mut Self, id: usize, shape: Vec<usize>, part: &str| {
                    importer.intermediate(node, part, Op::Reshape(movement::Reshape), vec![id], shape)
                };
                let a = reshape(self, a, vec![nb, nl, nk], "a3");
                let b = reshape(self, b, vec![nb, nk, nr], "b3");
                let product = self.intermediate(node, "product", Op::MatMul(MatMul), vec![a, b], vec![nb, nl, nr]);
                let letters = [batch, left, right].concat();
                let shape: Vec<usize> = letters.iter().map(|c| dims[c]).collect();
                (reshape(self, product, shape, "unflattened"), letters)
            }
            _ => unreachable!("one or two operands"),
        };
        let arranged = arrange(self, result, &letters, &out, "arranged")?;
        let shape: Vec<usize> = out.iter().map(|c| dims[c]).collect();
        self.add_node(node, Op::Reshape(movement::Reshape), vec![arranged], shape)
    }
}
