//! Fixed-point quantization of the IR and its integer reference execution: the exact values
//! the circuit constrains.

use serde::{Deserialize, Serialize};

use super::graph::{broadcast_indices, Graph, Op, Tensor};
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
    /// Element-wise sum of two activations (broadcast).
    Add,
    /// Element-wise sum with a constant, already broadcast to the output shape.
    AddConst {
        /// The constant at the input scale, one per output element.
        constant: Vec<i64>,
    },
    /// `max(x, 0)`.
    Relu,
    /// `round(sigmoid(x / 2^s) · 2^s)` at the input scale `s`, as a step function: the output is
    /// the number of `thresholds` that `x` reaches (see [`sigmoid_thresholds`]).
    Sigmoid {
        /// Ascending: output level `i + 1` starts at `x = thresholds[i]`.
        thresholds: Vec<i64>,
    },
    /// Same values, new shape.
    Reshape,
}

/// The steps of a quantized sigmoid at scale `s`: level `i` (of `2^s`) is reached where
/// `sigmoid(x / 2^s) · 2^s ≥ i - 1/2`, i.e. from `x = ⌈2^s · logit((i - 1/2) / 2^s)⌉`, so that
/// counting the thresholds `x` reaches gives `round(sigmoid(x / 2^s) · 2^s)`. Computed once,
/// when the model is quantized, and stored with it: prover and verifier share the same table.
pub fn sigmoid_thresholds(scale: u32) -> Vec<i64> {
    let one = (1u64 << scale) as f64;
    (1..=1u64 << scale)
        .map(|i| {
            let p = (i as f64 - 0.5) / one;
            (one * (p / (1.0 - p)).ln()).ceil() as i64
        })
        .collect()
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
                            Some(b) => {
                                let q = quantize_all(b, is + ps);
                                broadcast_indices(&b.shape, &node.shape).into_iter().map(|i| q[i]).collect()
                            }
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
                    Op::Add => QOp::Add,
                    Op::AddConst { constant } => {
                        let q = quantize_all(constant, is);
                        QOp::AddConst {
                            constant: broadcast_indices(&constant.shape, &node.shape)
                                .into_iter()
                                .map(|i| q[i])
                                .collect(),
                        }
                    }
                    Op::Relu => QOp::Relu,
                    Op::Sigmoid => QOp::Sigmoid { thresholds: sigmoid_thresholds(is) },
                    Op::Reshape => QOp::Reshape,
                };
                QNode { name: node.name.clone(), op, inputs: node.inputs.clone(), shape: node.shape.clone() }
            })
            .collect();
        Ok(QuantizedModel {
            nodes,
            outputs: graph.outputs.clone(),
            input_scale: is,
            param_scale: ps,
            activation_bits: settings.activation_bits,
            visibility: settings.visibility.clone(),
        })
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
                QOp::AddConst { constant } => push("constant", node.shape.clone(), constant, self.input_scale),
                QOp::Input { .. } | QOp::Add | QOp::Relu | QOp::Sigmoid { .. } | QOp::Reshape => {}
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

    /// Runs the model on quantized inputs and returns every node's output: bit for bit the
    /// witness of the circuit. Fails if a value leaves the circuit's range.
    pub fn execute(&self, inputs: &[Vec<i64>]) -> Result<Vec<Vec<i64>>> {
        let mut values: Vec<Vec<i128>> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let arg = |i: usize| &values[node.inputs[i]];
            let out: Vec<i128> = match &node.op {
                QOp::Input { index } => inputs[*index].iter().map(|&v| v as i128).collect(),
                QOp::Dense { weight, k, n, bias, transpose_input, shift } => {
                    let x = arg(0);
                    let rows = x.len() / k;
                    let mut out = Vec::with_capacity(rows * n);
                    for m in 0..rows {
                        for j in 0..*n {
                            let dot: i128 = (0..*k)
                                .map(|i| dense_input(x, *transpose_input, rows, *k, m, i) * weight[i * n + j] as i128)
                                .sum();
                            out.push(rescale(dot + bias[m * n + j] as i128, *shift));
                        }
                    }
                    out
                }
                QOp::Add => {
                    let (a, b) = (arg(0), arg(1));
                    let (sa, sb) = (&self.nodes[node.inputs[0]].shape, &self.nodes[node.inputs[1]].shape);
                    let (ia, ib) = (broadcast_indices(sa, &node.shape), broadcast_indices(sb, &node.shape));
                    ia.iter().zip(&ib).map(|(&i, &j)| a[i] + b[j]).collect()
                }
                QOp::AddConst { constant } => {
                    let x = arg(0);
                    let ix = broadcast_indices(&self.nodes[node.inputs[0]].shape, &node.shape);
                    ix.iter().zip(constant).map(|(&i, &c)| x[i] + c as i128).collect()
                }
                QOp::Relu => arg(0).iter().map(|&v| v.max(0)).collect(),
                QOp::Sigmoid { thresholds } => {
                    arg(0).iter().map(|&v| thresholds.iter().filter(|&&t| v >= t as i128).count() as i128).collect()
                }
                QOp::Reshape => arg(0).clone(),
            };
            self.check_range(node, &out)?;
            values.push(out);
        }
        Ok(values.into_iter().map(|v| v.into_iter().map(|x| x as i64).collect()).collect())
    }
}

/// `x[m, i]` of a Dense input stored as `[M, K]`, or as `[K, M]` when transposed.
pub fn dense_input<T: Copy>(x: &[T], transposed: bool, rows: usize, k: usize, m: usize, i: usize) -> T {
    if transposed {
        x[i * rows + m]
    } else {
        x[m * k + i]
    }
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
