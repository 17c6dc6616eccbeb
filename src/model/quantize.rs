//! Fixed-point quantization of the IR and its integer reference execution: the exact values
//! the circuit constrains.

use serde::{Deserialize, Serialize};

use super::graph::Graph;
use crate::error::QuantizeError;
use crate::error::Result;
pub use crate::ops::movement::QSource;
pub use crate::ops::QOp;
use crate::ops::{quantize_value, ExecCx, QuantizeCx, Scales};
use crate::settings::{Settings, Visibilities};

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
                let op = node.op.quantizer().quantize(&QuantizeCx { node, settings })?;
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

    /// Refuses what no layout can constrain (a pooling window over padding only, a reduction
    /// of no element): each op's own check.
    pub fn check_windows(&self) -> Result<()> {
        self.nodes.iter().try_for_each(|node| node.op.kernel().check(node))
    }

    /// The model's fixed-point scales.
    pub fn scales(&self) -> Scales {
        Scales { input: self.input_scale, param: self.param_scale, activation_bits: self.activation_bits }
    }

    /// Every parameter tensor, in node order (each node's in its kernel's order: weights before
    /// biases).
    pub fn param_tensors(&self) -> Vec<ParamTensor<'_>> {
        let scales = self.scales();
        let mut out = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for p in node.op.kernel().params(node, scales) {
                let bits = signed_bits(p.values);
                let name = format!("{}.{}", node.name, p.suffix);
                out.push(ParamTensor { node: i, name, shape: p.shape, values: p.values, scale: p.scale, bits });
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
                QOp::Input(ref input) => Some((input.index, n.shape.clone())),
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
                Err(QuantizeError::OutOfRange { node: node.name.clone(), value, bits: self.activation_bits, bound }
                    .into())
            }
            None => Ok(()),
        }
    }

    /// Runs the model on quantized inputs and returns every node's output: bit for bit the
    /// witness of the circuit. Fails if a value leaves the circuit's range.
    pub fn execute(&self, inputs: &[Vec<i64>]) -> Result<Vec<Vec<i64>>> {
        let mut values: Vec<Vec<i128>> = Vec::with_capacity(self.nodes.len());
        let scales = self.scales();
        for node in &self.nodes {
            let cx = ExecCx {
                node,
                args: node.inputs.iter().map(|&i| &values[i][..]).collect(),
                shapes: node.inputs.iter().map(|&i| &self.nodes[i].shape[..]).collect(),
                scales,
                inputs,
            };
            let out = node.op.kernel().execute(&cx)?;
            self.check_range(node, &out)?;
            values.push(out);
        }
        Ok(values.into_iter().map(|v| v.into_iter().map(|x| x as i64).collect()).collect())
    }
}

/// `round(v / d)`, halves up, for `d > 0`: the division average pooling proves.
pub fn divide_rounding(v: i128, d: i128) -> i128 {
    (2 * v + d).div_euclid(2 * d)
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
