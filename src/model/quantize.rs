//! Fixed-point quantization of the IR and its integer reference execution: the exact values
//! the circuit constrains.

use serde::{Deserialize, Serialize};

use super::function::{domain, Domain, Function};
use super::graph::{broadcast_indices, Graph, Op, Tensor, Window};
use crate::error::{Error, Result};
use crate::settings::{Settings, Visibilities};

/// One quantized operation; every activation is at the input scale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum QOp {
    /// Model input number `index`, quantized at the input scale.
    Input {
        /// Position among the model inputs.
        index: usize,
    },
    /// `y[m, n] = round((sum_k x[m, k] · w[k, n] + bias[m, n]) / 2^shift)`.
    Dense {
        /// Weights `[K, N]`, row-major, at the param scale.
        weight: Vec<i64>,
        /// Rows of `weight` (input features).
        k: usize,
        /// Columns of `weight` (output features).
        n: usize,
        /// Bias for every output element (`[M, N]`), at input + param scale.
        bias: Vec<i64>,
        /// The input holds `x` transposed.
        transpose_input: bool,
        /// Bits to shift right (with rounding) to return to the input scale.
        shift: u32,
    },
    /// Convolution (see [`Op::Conv`]): `round((Σ x · weight + bias[m]) / 2^shift)`.
    Conv {
        /// `[M, C/G, kernel...]`, row-major, at the param scale.
        weight: Vec<i64>,
        /// The weight tensor's shape.
        weight_shape: Vec<usize>,
        /// One per output channel, at input + param scale.
        bias: Vec<i64>,
        /// Number of groups.
        group: usize,
        /// The sliding window.
        window: Window,
        /// Bits to shift right (with rounding) to return to the input scale.
        shift: u32,
    },
    /// `round(Σ window / count)`, halves up; `count` is the kernel's size with
    /// `count_include_pad`, else the taps inside the input.
    AveragePool {
        /// The sliding window.
        window: Window,
        /// Count the padding.
        count_include_pad: bool,
    },
    /// The maximum of each window.
    MaxPool {
        /// The sliding window.
        window: Window,
    },
    /// Element-wise sum of two activations (broadcast).
    Add,
    /// Element-wise sum with a constant, already broadcast to the output shape.
    AddConst {
        /// The constant at the input scale, one per output element.
        constant: Vec<i64>,
    },
    /// `max(x, 0)`.
    Relu,
    /// `round(f(x / 2^s) · 2^s)` for a function proven by table lookup, over the table's domain.
    Lookup {
        /// The function.
        func: Function,
        /// The inputs the table holds.
        domain: Domain,
    },
    /// Element-wise difference (broadcast).
    Sub,
    /// `round(a · b / 2^shift)`, element-wise (broadcast).
    Mul {
        /// The activations' scale.
        shift: u32,
    },
    /// `round(x · factor / 2^shift)`, element-wise.
    MulConst {
        /// One factor per output element, at the param scale.
        factor: Vec<i64>,
        /// The param scale.
        shift: u32,
    },
    /// Element-wise maximum (or minimum) of the computed inputs (broadcast) and constants.
    Extremum {
        /// Minimum instead of maximum.
        min: bool,
        /// Each constant operand, one value per output element, at the input scale.
        constants: Vec<Vec<i64>>,
    },
    /// The maximum (or minimum) of each group of input elements.
    ReduceMax {
        /// Flat input positions of each output element.
        groups: Vec<Vec<usize>>,
        /// Minimum instead of maximum.
        min: bool,
    },
    /// `round(Σ_k a[m, k] · b[k, n] / 2^shift)`: the product of two computed matrices.
    MatMul {
        /// The activations' scale.
        shift: u32,
    },
    /// `round(a · 2^shift / b)`, halves up, element-wise (broadcast), for `b > 0`.
    Div {
        /// The activations' scale.
        shift: u32,
    },
    /// The sum (or rounded mean) of each group of input elements.
    Reduce {
        /// Flat input positions of each output element.
        groups: Vec<Vec<usize>>,
        /// Divide by the group's size.
        mean: bool,
    },
    /// Copies of input elements and constants.
    Select {
        /// The source of each output element.
        sources: Vec<QSource>,
    },
    /// Same values, new shape.
    Reshape,
}

/// Where an element of a [`QOp::Select`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QSource {
    /// Element `index` of input `input`.
    Input {
        /// Which input.
        input: usize,
        /// Flat position.
        index: usize,
    },
    /// A constant at the input scale.
    Const(i64),
}

/// A quantized node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QNode {
    /// Name of the ONNX node, for messages.
    pub name: String,
    /// The operation.
    pub op: QOp,
    /// Nodes read.
    pub inputs: Vec<usize>,
    /// Output shape.
    pub shape: Vec<usize>,
    /// The ONNX value it computes (see [`crate::model::graph::Node::value`]).
    #[serde(default)]
    pub value: String,
}

/// The quantized graph, ready to be laid out as a circuit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizedModel {
    /// Nodes in topological order.
    pub nodes: Vec<QNode>,
    /// Output nodes.
    pub outputs: Vec<usize>,
    /// Scale (bits) of inputs, activations and outputs.
    pub input_scale: u32,
    /// Scale (bits) of weights.
    pub param_scale: u32,
    /// Signed width (bits) of range-checked activations.
    pub activation_bits: u32,
    /// Who sees the input, the params and the output.
    pub visibility: Visibilities,
}

/// One tensor of parameters (weights, biases, constants), as the circuit loads it when the
/// params are not fixed, and as commitments and public params pack it.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamTensor<'a> {
    /// Position of the node that holds it.
    pub node: usize,
    /// `<node name>.weight`, `.bias` or `.constant`.
    pub name: String,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// The quantized values.
    pub values: &'a [i64],
    /// Fixed-point scale (bits).
    pub scale: u32,
    /// Signed width the values are range-checked and packed to: the smallest that holds them.
    pub bits: u32,
}

/// The smallest signed width (at least 2 bits) that holds every value.
pub fn signed_bits(values: &[i64]) -> u32 {
    let needed = |v: i64| if v >= 0 { 65 - v.leading_zeros() } else { 65 - (!v).leading_zeros() };
    values.iter().map(|&v| needed(v)).max().unwrap_or(0).max(2)
}

fn quantize_value(x: f32, scale: u32) -> i64 {
    (x as f64 * (1u64 << scale) as f64).round() as i64
}

fn quantize_all(t: &Tensor, scale: u32) -> Vec<i64> {
    t.data.iter().map(|&x| quantize_value(x, scale)).collect()
}

/// Quantizes a constant at `scale` and broadcasts it to `shape`: one value per element.
fn quantize_broadcast(t: &Tensor, scale: u32, shape: &[usize]) -> Vec<i64> {
    let q = quantize_all(t, scale);
    broadcast_indices(&t.shape, shape).into_iter().map(|i| q[i]).collect()
}

/// Rounds `v / 2^shift` to nearest, halves up: the rescale the circuit checks.
pub fn rescale(v: i128, shift: u32) -> i128 {
    if shift == 0 {
        return v;
    }
    (v + (1i128 << (shift - 1))).div_euclid(1i128 << shift)
}

impl QuantizedModel {
    /// Quantizes a float graph with the scales of `settings`.
    pub fn quantize(graph: &Graph, settings: &Settings) -> Result<Self> {
        let (is, ps) = (settings.input_scale, settings.param_scale);
        let nodes = graph
            .nodes
            .iter()
            .map(|node| {
                let op = match &node.op {
                    Op::Input { index } => QOp::Input { index: *index },
                    Op::Dense { weight, bias, transpose_input } => {
                        let out_len: usize = node.shape.iter().product();
                        let bias = match bias {
                            Some(b) => quantize_broadcast(b, is + ps, &node.shape),
                            None => vec![0; out_len],
                        };
                        QOp::Dense {
                            weight: quantize_all(weight, ps),
                            k: weight.shape[0],
                            n: weight.shape[1],
                            bias,
                            transpose_input: *transpose_input,
                            shift: ps,
                        }
                    }
                    Op::Conv { weight, bias, group, window } => {
                        let m = weight.shape[0];
                        QOp::Conv {
                            weight: quantize_all(weight, ps),
                            weight_shape: weight.shape.clone(),
                            bias: bias.as_ref().map(|b| quantize_all(b, is + ps)).unwrap_or_else(|| vec![0; m]),
                            group: *group,
                            window: window.clone(),
                            shift: ps,
                        }
                    }
                    Op::AveragePool { window, count_include_pad } => {
                        QOp::AveragePool { window: window.clone(), count_include_pad: *count_include_pad }
                    }
                    Op::MaxPool { window } => QOp::MaxPool { window: window.clone() },
                    Op::Add => QOp::Add,
                    Op::AddConst { constant } => {
                        QOp::AddConst { constant: quantize_broadcast(constant, is, &node.shape) }
                    }
                    Op::Relu => QOp::Relu,
                    Op::Lookup { func } => {
                        let range = settings.lookup_range.map(|[lo, hi]| (lo, hi));
                        let domain = domain(*func, is, settings.activation_bits, range).map_err(|e| {
                            Error::UnsupportedModel(format!("node '{}' ({}): {e}", node.name, func.name()))
                        })?;
                        QOp::Lookup { func: *func, domain }
                    }
                    Op::Sub => QOp::Sub,
                    Op::Mul => QOp::Mul { shift: is },
                    Op::MulConst { constant } => {
                        QOp::MulConst { factor: quantize_broadcast(constant, ps, &node.shape), shift: ps }
                    }
                    Op::Extremum { min, constants } => QOp::Extremum {
                        min: *min,
                        constants: constants.iter().map(|c| quantize_broadcast(c, is, &node.shape)).collect(),
                    },
                    Op::Reduce { groups, mean } => QOp::Reduce { groups: groups.clone(), mean: *mean },
                    Op::ReduceMax { groups, min } => QOp::ReduceMax { groups: groups.clone(), min: *min },
                    Op::Div => QOp::Div { shift: is },
                    Op::MatMul => QOp::MatMul { shift: is },
                    Op::Select { sources } => QOp::Select {
                        sources: sources
                            .iter()
                            .map(|s| match *s {
                                super::movement::Source::Input { input, index } => QSource::Input { input, index },
                                super::movement::Source::Const(v) => QSource::Const(quantize_value(v, is)),
                            })
                            .collect(),
                    },
                    Op::Reshape => QOp::Reshape,
                };
                Ok(QNode {
                    name: node.name.clone(),
                    op,
                    inputs: node.inputs.clone(),
                    shape: node.shape.clone(),
                    value: node.value.clone(),
                })
            })
            .collect::<Result<_>>()?;
        let model = QuantizedModel {
            nodes,
            outputs: graph.outputs.clone(),
            input_scale: is,
            param_scale: ps,
            activation_bits: settings.activation_bits,
            visibility: settings.visibility.clone(),
        };
        model.check_windows()?;
        Ok(model)
    }

    /// Checks what a hand-made or damaged `model.compiled` could get wrong before anything is
    /// laid out: scales and widths in the circuit's range, the settings' values, each node
    /// reading only nodes before it, outputs that exist, no empty pooling window.
    pub fn check(&self, settings: &Settings) -> std::result::Result<(), String> {
        settings.validate()?;
        if (self.input_scale, self.param_scale, self.activation_bits)
            != (settings.input_scale, settings.param_scale, settings.activation_bits)
            || self.visibility != settings.visibility
        {
            return Err("the quantized model's scales, width or visibility differ from its settings".into());
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(&bad) = node.inputs.iter().find(|&&j| j >= i) {
                return Err(format!("node '{}' (#{i}) reads node #{bad}, which does not come before it", node.name));
            }
        }
        if self.outputs.is_empty() || self.outputs.iter().any(|&o| o >= self.nodes.len()) {
            return Err("the model's outputs are not among its nodes".into());
        }
        self.check_windows().map_err(|e| e.to_string())
    }

    /// Refuses a pooling node with a window over padding only: its maximum or average has no
    /// operand, and a gadget over no operand would constrain nothing.
    pub fn check_windows(&self) -> Result<()> {
        for node in &self.nodes {
            if let QOp::AveragePool { window, .. } | QOp::MaxPool { window } = &node.op {
                if window.first_empty_output().is_some() {
                    return Err(empty_window(node));
                }
            }
        }
        Ok(())
    }

    /// Every parameter tensor, in node order (weights before biases).
    pub fn param_tensors<'a>(&'a self) -> Vec<ParamTensor<'a>> {
        let mut out = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let mut push = |suffix: &str, shape: Vec<usize>, values: &'a [i64], scale: u32| {
                let bits = signed_bits(values);
                out.push(ParamTensor { node: i, name: format!("{}.{suffix}", node.name), shape, values, scale, bits });
            };
            match &node.op {
                QOp::Dense { weight, bias, k, n, .. } => {
                    push("weight", vec![*k, *n], weight, self.param_scale);
                    push("bias", node.shape.clone(), bias, self.input_scale + self.param_scale);
                }
                QOp::Conv { weight, weight_shape, bias, .. } => {
                    push("weight", weight_shape.clone(), weight, self.param_scale);
                    push("bias", vec![bias.len()], bias, self.input_scale + self.param_scale);
                }
                QOp::AddConst { constant } => push("constant", node.shape.clone(), constant, self.input_scale),
                QOp::MulConst { factor, .. } => push("factor", node.shape.clone(), factor, self.param_scale),
                QOp::Input { .. }
                | QOp::Lookup { .. }
                | QOp::Sub
                | QOp::Mul { .. }
                | QOp::Extremum { .. }
                | QOp::Reduce { .. }
                | QOp::ReduceMax { .. }
                | QOp::Div { .. }
                | QOp::MatMul { .. }
                | QOp::Select { .. }
                | QOp::Add
                | QOp::Relu
                | QOp::Reshape
                | QOp::AveragePool { .. }
                | QOp::MaxPool { .. } => {}
            }
        }
        out
    }

    /// Input shapes in input order.
    pub fn input_shapes(&self) -> Vec<Vec<usize>> {
        let mut inputs: Vec<_> = self
            .nodes
            .iter()
            .filter_map(|n| match n.op {
                QOp::Input { index } => Some((index, n.shape.clone())),
                _ => None,
            })
            .collect();
        inputs.sort_by_key(|(i, _)| *i);
        inputs.into_iter().map(|(_, s)| s).collect()
    }

    /// Quantizes float inputs (one flat vector per model input) at the input scale.
    pub fn quantize_inputs(&self, inputs: &[Vec<f32>]) -> Vec<Vec<i64>> {
        inputs.iter().map(|x| x.iter().map(|&v| quantize_value(v, self.input_scale)).collect()).collect()
    }

    /// Converts integers at the input scale back to floats.
    pub fn dequantize(&self, values: &[i64]) -> Vec<f64> {
        let scale = (1u64 << self.input_scale) as f64;
        values.iter().map(|&v| v as f64 / scale).collect()
    }

    /// Exclusive bound on the magnitude of a range-checked activation: 2^(activation_bits-1).
    pub fn activation_bound(&self) -> i128 {
        1i128 << (self.activation_bits - 1)
    }

    fn check_range(&self, node: &QNode, values: &[i128]) -> Result<()> {
        let bound = self.activation_bound();
        match values.iter().find(|&&v| v < -bound || v >= bound) {
            Some(&value) => {
                Err(Error::OutOfRange { node: node.name.clone(), value, bits: self.activation_bits, bound })
            }
            None => Ok(()),
        }
    }

    fn lookup_range_error(&self, node: &QNode, func: Function, domain: &Domain, x: i128) -> Error {
        let one = (1u64 << self.input_scale) as f64;
        Error::LookupRange {
            node: node.name.clone(),
            op: func.name().into(),
            value: x as f64 / one,
            low: domain.lo as f64 / one,
            high: domain.hi as f64 / one,
        }
    }

    /// For a MatMul node: the (a position, b position) pairs summed by each output element.
    pub fn matmul_terms(&self, node: &QNode) -> Vec<Vec<(usize, usize)>> {
        let (sa, sb) = (&self.nodes[node.inputs[0]].shape, &self.nodes[node.inputs[1]].shape);
        let (k, n) = (sb[0], sb[1]);
        let rows = sa.iter().product::<usize>() / k.max(1);
        (0..rows * n).map(|o| (0..k).map(|i| ((o / n) * k + i, i * n + o % n)).collect()).collect()
    }

    /// For a two-input element-wise node: the position in each input of every output element.
    pub fn broadcast_pair(&self, node: &QNode) -> (Vec<usize>, Vec<usize>) {
        let (sa, sb) = (&self.nodes[node.inputs[0]].shape, &self.nodes[node.inputs[1]].shape);
        (broadcast_indices(sa, &node.shape), broadcast_indices(sb, &node.shape))
    }

    /// For an Extremum node: the operands of every output element, computed ones first (from
    /// `values`, every node's output: integers when executing, cells when laying out), then the
    /// constants, each made an operand by `constant`.
    pub fn extremum_operands<T: Copy>(
        &self,
        node: &QNode,
        values: &[Vec<T>],
        constants: &[Vec<i64>],
        mut constant: impl FnMut(i64) -> T,
    ) -> Vec<Vec<T>> {
        let maps: Vec<Vec<usize>> =
            node.inputs.iter().map(|&i| broadcast_indices(&self.nodes[i].shape, &node.shape)).collect();
        (0..node.shape.iter().product())
            .map(|o| {
                let mut operands: Vec<T> = node.inputs.iter().zip(&maps).map(|(&i, m)| values[i][m[o]]).collect();
                operands.extend(constants.iter().map(|c| constant(c[o])));
                operands
            })
            .collect()
    }

    /// Runs the model on quantized inputs and returns every node's output: bit for bit the
    /// witness of the circuit. Fails if a value leaves the circuit's range.
    pub fn execute(&self, inputs: &[Vec<i64>]) -> Result<Vec<Vec<i64>>> {
        let mut values: Vec<Vec<i128>> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let arg = |i: usize| &values[node.inputs[i]];
            let out: Vec<i128> = match &node.op {
                QOp::Input { index } => inputs[*index].iter().map(|&v| v as i128).collect(),
                QOp::Dense { weight, bias, shift, .. } | QOp::Conv { weight, bias, shift, .. } => {
                    let x = arg(0);
                    let input_shape = &self.nodes[node.inputs[0]].shape;
                    node.op
                        .affine_outputs(input_shape)
                        .iter()
                        .map(|o| {
                            let dot: i128 = o.terms.iter().map(|&(i, j)| x[i] * weight[j] as i128).sum();
                            rescale(dot + bias[o.bias] as i128, *shift)
                        })
                        .collect()
                }
                QOp::AveragePool { window, count_include_pad } => {
                    let x = arg(0);
                    let windows = pool_windows(&self.nodes[node.inputs[0]].shape, window);
                    if windows.iter().any(Vec::is_empty) {
                        return Err(empty_window(node));
                    }
                    windows
                        .iter()
                        .map(|taps| {
                            let count = if *count_include_pad { window.kernel_len() } else { taps.len() } as i128;
                            let sum: i128 = taps.iter().map(|&i| x[i]).sum();
                            divide_rounding(sum, count)
                        })
                        .collect()
                }
                QOp::MaxPool { window } => {
                    let x = arg(0);
                    let windows = pool_windows(&self.nodes[node.inputs[0]].shape, window);
                    if windows.iter().any(Vec::is_empty) {
                        return Err(empty_window(node));
                    }
                    windows.iter().map(|taps| taps.iter().map(|&i| x[i]).max().expect("non-empty")).collect()
                }
                QOp::AddConst { constant } => {
                    let x = arg(0);
                    let ix = broadcast_indices(&self.nodes[node.inputs[0]].shape, &node.shape);
                    ix.iter().zip(constant).map(|(&i, &c)| x[i] + c as i128).collect()
                }
                QOp::Relu => arg(0).iter().map(|&v| v.max(0)).collect(),
                QOp::Lookup { func, domain } => arg(0)
                    .iter()
                    .map(|&x| {
                        let row = domain.row_input(x).ok_or_else(|| self.lookup_range_error(node, *func, domain, x))?;
                        Ok(func.quantized(row, self.input_scale).expect("the table's inputs have outputs"))
                    })
                    .collect::<Result<_>>()?,
                QOp::Add | QOp::Sub | QOp::Mul { .. } => {
                    let (a, b) = (arg(0), arg(1));
                    let (ia, ib) = self.broadcast_pair(node);
                    ia.iter()
                        .zip(&ib)
                        .map(|(&i, &j)| match node.op {
                            QOp::Mul { shift } => rescale(a[i] * b[j], shift),
                            QOp::Sub => a[i] - b[j],
                            _ => a[i] + b[j],
                        })
                        .collect()
                }
                QOp::MulConst { factor, shift } => {
                    arg(0).iter().zip(factor).map(|(&x, &f)| rescale(x * f as i128, *shift)).collect()
                }
                QOp::Extremum { min, constants } => self
                    .extremum_operands(node, &values, constants, i128::from)
                    .into_iter()
                    .map(|ops| if *min { ops.into_iter().min() } else { ops.into_iter().max() }.expect("operands"))
                    .collect(),
                QOp::ReduceMax { groups, min } => {
                    let x = arg(0);
                    let pick = |g: &Vec<usize>| {
                        let values = g.iter().map(|&i| x[i]);
                        if *min {
                            values.min()
                        } else {
                            values.max()
                        }
                    };
                    groups.iter().map(|g| pick(g).ok_or_else(|| empty_group(node))).collect::<Result<_>>()?
                }
                QOp::MatMul { shift } => {
                    let (a, b) = (arg(0), arg(1));
                    self.matmul_terms(node)
                        .iter()
                        .map(|terms| rescale(terms.iter().map(|&(i, j)| a[i] * b[j]).sum(), *shift))
                        .collect()
                }
                QOp::Div { shift } => {
                    let (a, b) = (arg(0), arg(1));
                    let (ia, ib) = self.broadcast_pair(node);
                    ia.iter()
                        .zip(&ib)
                        .map(|(&i, &j)| match b[j] {
                            d if d > 0 => Ok(divide_rounding(a[i] << shift, d)),
                            d => Err(Error::UnsupportedModel(format!(
                                "node '{}' divides by {}: zkinfer proves division by positive values only",
                                node.name,
                                d as f64 / (1u64 << shift) as f64
                            ))),
                        })
                        .collect::<Result<_>>()?
                }
                QOp::Reduce { groups, mean } => {
                    let x = arg(0);
                    groups
                        .iter()
                        .map(|g| {
                            let sum: i128 = g.iter().map(|&i| x[i]).sum();
                            if *mean {
                                divide_rounding(sum, g.len() as i128)
                            } else {
                                sum
                            }
                        })
                        .collect()
                }
                QOp::Select { sources } => sources
                    .iter()
                    .map(|s| match *s {
                        QSource::Input { input, index } => values[node.inputs[input]][index],
                        QSource::Const(c) => c as i128,
                    })
                    .collect(),
                QOp::Reshape => arg(0).clone(),
            };
            self.check_range(node, &out)?;
            values.push(out);
        }
        Ok(values.into_iter().map(|v| v.into_iter().map(|x| x as i64).collect()).collect())
    }
}

fn empty_group(node: &QNode) -> Error {
    Error::UnsupportedModel(format!("node '{}' reduces an empty group", node.name))
}

fn empty_window(node: &QNode) -> Error {
    Error::UnsupportedModel(format!(
        "pooling node '{}' has a window that lies entirely in the padding (no input element to pool); reduce its padding below the kernel size",
        node.name
    ))
}

/// `round(v / d)`, halves up, for `d > 0`: the division average pooling proves.
pub fn divide_rounding(v: i128, d: i128) -> i128 {
    (2 * v + d).div_euclid(2 * d)
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

/// One output element of a linear layer: `Σ x[i] · weight[j]` over `terms`, plus `bias[bias]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AffineOutput {
    /// (input position, weight position) pairs.
    pub terms: Vec<(usize, usize)>,
    /// The bias's position.
    pub bias: usize,
}

impl QOp {
    /// For a linear layer (Dense, Conv) reading an input of `input_shape`: the terms of each
    /// output element, in output order; empty for any other op. The integer reference and the
    /// circuit both sum exactly these.
    pub fn affine_outputs(&self, input_shape: &[usize]) -> Vec<AffineOutput> {
        match self {
            QOp::Dense { k, n, transpose_input, .. } => {
                let (k, n, t) = (*k, *n, *transpose_input);
                let rows = input_shape.iter().product::<usize>() / k;
                (0..rows * n)
                    .map(|o| {
                        let (m, j) = (o / n, o % n);
                        AffineOutput {
                            terms: (0..k).map(|i| (dense_index(t, rows, k, m, i), i * n + j)).collect(),
                            bias: o,
                        }
                    })
                    .collect()
            }
            QOp::Conv { weight_shape, group, window, .. } => {
                let (batch, channels, m) = (input_shape[0], input_shape[1], weight_shape[0]);
                let (per_group_in, per_group_out) = (channels / group, m / group);
                let (in_len, kernel_len) = (window.input_len(), window.kernel_len());
                let taps: Vec<Vec<(usize, usize)>> = (0..window.output_len()).map(|o| window.taps(o)).collect();
                let mut out = Vec::with_capacity(batch * m * taps.len());
                for b in 0..batch {
                    for oc in 0..m {
                        let first_in = oc / per_group_out * per_group_in;
                        for position in &taps {
                            let terms = (0..per_group_in)
                                .flat_map(|c| {
                                    let x_base = (b * channels + first_in + c) * in_len;
                                    let w_base = (oc * per_group_in + c) * kernel_len;
                                    position.iter().map(move |&(tap, at)| (x_base + at, w_base + tap))
                                })
                                .collect();
                            out.push(AffineOutput { terms, bias: oc });
                        }
                    }
                }
                out
            }
            _ => Vec::new(),
        }
    }
}

/// For pooling an `[N, C, spatial...]` input: the input positions of each output element's
/// window, in output order.
pub fn pool_windows(input_shape: &[usize], window: &Window) -> Vec<Vec<usize>> {
    let planes: usize = input_shape[..2].iter().product();
    let in_len = window.input_len();
    let taps: Vec<Vec<(usize, usize)>> = (0..window.output_len()).map(|o| window.taps(o)).collect();
    (0..planes).flat_map(|p| taps.iter().map(move |t| t.iter().map(|&(_, at)| p * in_len + at).collect())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_rounds_half_up() {
        assert_eq!(rescale(5, 1), 3);
        assert_eq!(rescale(-5, 1), -2);
        assert_eq!(rescale(-6, 2), -1);
        assert_eq!(rescale(7, 0), 7);
    }

    #[test]
    fn signed_bits_is_the_smallest_width() {
        assert_eq!(signed_bits(&[]), 2);
        assert_eq!(signed_bits(&[1, -2]), 2);
        assert_eq!(signed_bits(&[2]), 3);
        assert_eq!(signed_bits(&[127, -128]), 8);
        assert_eq!(signed_bits(&[128]), 9);
        assert_eq!(signed_bits(&[-129]), 9);
    }
}
