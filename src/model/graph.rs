//! Our graph IR: the operations zkinfer can prove ([`crate::ops`]), in float, as imported from
//! ONNX.

use serde::{Deserialize, Serialize};

pub use super::window::Window;
pub use crate::ops::movement::Source;
pub use crate::ops::Op;

/// A dense float tensor in row-major order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Values in row-major order; `data.len()` is the product of `shape`.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor from its shape and row-major data.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor { shape, data }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// A node of the graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The ONNX node name (or the input's name), used in messages.
    pub name: String,
    /// What it computes.
    pub op: Op,
    /// Indices of the nodes whose outputs it reads.
    pub inputs: Vec<usize>,
    /// Shape of its output.
    pub shape: Vec<usize>,
    /// The ONNX value this node computes (after folding: the last folded node's), by which the
    /// calibration report finds the float value in tract's execution.
    #[serde(default)]
    pub value: String,
}

/// A model as a list of nodes in topological order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    /// Nodes; a node only reads nodes before it.
    pub nodes: Vec<Node>,
    /// The nodes whose values are the model's outputs.
    pub outputs: Vec<usize>,
}

impl Graph {
    /// The input nodes' shapes, in input order.
    pub fn input_shapes(&self) -> Vec<Vec<usize>> {
        let mut inputs: Vec<(usize, Vec<usize>)> = self
            .nodes
            .iter()
            .filter_map(|n| match n.op {
                Op::Input(ref input) => Some((input.index, n.shape.clone())),
                _ => None,
            })
            .collect();
        inputs.sort_by_key(|(i, _)| *i);
        inputs.into_iter().map(|(_, s)| s).collect()
    }

    /// The output nodes' shapes, in output order.
    pub fn output_shapes(&self) -> Vec<Vec<usize>> {
        self.outputs.iter().map(|&o| self.nodes[o].shape.clone()).collect()
    }
}

/// The shape numpy broadcasting gives two shapes, or `None` when they do not broadcast.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| if i + s.len() < rank { 1 } else { s[i + s.len() - rank] };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// For each element of `out_shape` (row-major), the index of the element of a tensor of shape
/// `shape` that broadcasts to it. `shape` must broadcast to `out_shape`.
pub fn broadcast_indices(shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let total: usize = out_shape.iter().product();
    let rank = out_shape.len();
    let padded: Vec<usize> = std::iter::repeat_n(1, rank - shape.len()).chain(shape.iter().copied()).collect();
    let mut strides = vec![0usize; rank];
    let mut stride = 1;
    for i in (0..rank).rev() {
        strides[i] = if padded[i] == 1 { 0 } else { stride };
        stride *= padded[i];
    }
    (0..total)
        .map(|mut flat| {
            let mut idx = 0;
            for i in (0..rank).rev() {
                let coord = flat % out_shape[i];
                flat /= out_shape[i];
                idx += coord * strides[i];
            }
            idx
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shape(&[1, 4], &[4]), Some(vec![1, 4]));
        assert_eq!(broadcast_shape(&[2, 1], &[1, 3]), Some(vec![2, 3]));
        assert_eq!(broadcast_shape(&[2, 3], &[4]), None);
        assert_eq!(broadcast_indices(&[3], &[2, 3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(broadcast_indices(&[2, 1], &[2, 3]), vec![0, 0, 0, 1, 1, 1]);
    }
}
