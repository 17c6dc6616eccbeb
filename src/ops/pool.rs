//! Pooling: the mean ([`AveragePool`]) and the maximum ([`MaxPool`]) of each window of each
//! channel, and their global forms. An average is an exact division by the window's count
//! (quotient and remainder range-checked); a maximum is the max gadget over the window.

use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::AssignedValue;
use serde::{Deserialize, Serialize};
use tract_onnx::pb;

use super::{ExecCx, Kernel, LayoutCx, OnnxOp};
use crate::circuit::pool::{layout_max, layout_mean};
use crate::error::ImportError;
use crate::error::{Error, Result};
use crate::model::function::Function;
use crate::model::graph::{Op, Window};
use crate::model::onnx::{attr, attr_int, node_name, Importer};
use crate::model::quantize::{divide_rounding, QNode};

/// The ONNX ops of this family.
pub const ONNX: &[OnnxOp] = &[
    OnnxOp { op_type: "AveragePool", import: |i, n| i.import_pool(n), note: "strides, pads, count_include_pad" },
    OnnxOp { op_type: "MaxPool", import: |i, n| i.import_pool(n), note: "" },
    OnnxOp { op_type: "GlobalAveragePool", import: |i, n| i.import_pool(n), note: "" },
    OnnxOp { op_type: "LpPool", import: |i, n| i.import_lp_pool(n), note: "any p ≥ 1; strides, pads, dilations" },
    OnnxOp { op_type: "GlobalLpPool", import: |i, n| i.import_lp_pool(n), note: "any p ≥ 1" },
    OnnxOp { op_type: "GlobalMaxPool", import: |i, n| i.import_pool(n), note: "" },
];

/// The mean of each window of each channel; the padding counts only with
/// `count_include_pad`: `round(Σ window / count)`, halves up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AveragePool {
    /// The sliding window.
    pub window: Window,
    /// Divide by the kernel's size even where the window overlaps the padding.
    pub count_include_pad: bool,
}

/// The maximum of each window of each channel (the padding never wins).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaxPool {
    /// The sliding window.
    pub window: Window,
}

/// For pooling an `[N, C, spatial...]` input: the input positions of each output element's
/// window, in output order.
pub fn pool_windows(input_shape: &[usize], window: &Window) -> Vec<Vec<usize>> {
    let planes: usize = input_shape[..2].iter().product();
    let in_len = window.input_len();
    let taps: Vec<Vec<(usize, usize)>> = (0..window.output_len()).map(|o| window.taps(o)).collect();
    (0..planes).flat_map(|p| taps.iter().map(move |t| t.iter().map(|&(_, at)| p * in_len + at).collect())).collect()
}

/// Refuses a window over padding only: its maximum or average has no operand, and a gadget over
/// no operand would constrain nothing.
fn check_window(node: &QNode, window: &Window) -> Result<()> {
    match window.first_empty_output() {
        Some(_) => Err(empty_window(node)),
        None => Ok(()),
    }
}

/// The windows of the node's input, refused if one is empty.
fn windows(node: &QNode, shape: &[usize], window: &Window) -> Result<Vec<Vec<usize>>> {
    let windows = pool_windows(shape, window);
    if windows.iter().any(Vec::is_empty) {
        return Err(empty_window(node));
    }
    Ok(windows)
}

fn empty_window(node: &QNode) -> Error {
    ImportError::UnsupportedModel(format!(
        "pooling node '{}' has a window that lies entirely in the padding (no input element to pool); reduce its padding below the kernel size",
        node.name
    ))
    .into()
}

impl AveragePool {
    fn count(&self, taps: &[usize]) -> usize {
        if self.count_include_pad {
            self.window.kernel_len()
        } else {
            taps.len()
        }
    }
}

/// Applies `f` to each window's taps and operands (`x` at the taps), in output order.
fn over_windows<T: Copy, O>(
    (node, shape, window): (&QNode, &[usize], &Window),
    x: &[T],
    mut f: impl FnMut(&[usize], Vec<T>) -> O,
) -> Result<Vec<O>> {
    Ok(windows(node, shape, window)?.iter().map(|taps| f(taps, taps.iter().map(|&i| x[i]).collect())).collect())
}

impl Kernel for AveragePool {
    fn check(&self, node: &QNode) -> Result<()> {
        check_window(node, &self.window)
    }

    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        over_windows((cx.node, cx.shapes[0], &self.window), cx.args[0], |taps, v| {
            divide_rounding(v.iter().sum(), self.count(taps) as i128)
        })
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let (node, shape, x, bits) = (cx.node, cx.shapes[0], cx.args[0], cx.bits());
        over_windows((node, shape, &self.window), x, |taps, cells| {
            layout_mean(cx.ctx, cx.range, &cells, self.count(taps) as u64, bits, None)
        })
    }
}

impl Kernel for MaxPool {
    fn check(&self, node: &QNode) -> Result<()> {
        check_window(node, &self.window)
    }

    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        over_windows((cx.node, cx.shapes[0], &self.window), cx.args[0], |_, v| {
            v.into_iter().max().expect("windows are not empty")
        })
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let (node, shape, x, bits) = (cx.node, cx.shapes[0], cx.args[0], cx.bits());
        over_windows((node, shape, &self.window), x, |_, cells| layout_max(cx.ctx, cx.range, &cells, bits, false, None))
    }
}

impl Importer<'_> {
    /// The window of a pooling node (the whole plane for a Global one).
    fn pool_window(&self, node: &pb::NodeProto, spatial: &[usize]) -> Result<Window> {
        if node.op_type.starts_with("Global") {
            let ones = vec![1; spatial.len()];
            let zeros = vec![0; spatial.len()];
            return Ok(Window::new(spatial, spatial, &ones, &zeros, &zeros, &ones).expect("a global window fits"));
        }
        let kernel: Vec<usize> =
            attr(node, "kernel_shape").map(|a| a.ints.iter().map(|&v| v.max(0) as usize).collect()).ok_or_else(
                || self.malformed(format!("{} node '{}' has no kernel_shape", node.op_type, node_name(node))),
            )?;
        self.window(node, spatial, &kernel)
    }

    pub(crate) fn import_pool(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (x, shape) = self.spatial_input(node)?;
        if node.output.len() > 1 && node.output[1..].iter().any(|o| !o.is_empty()) {
            return Err(self.unsupported(node, "the Indices output"));
        }
        let window = self.pool_window(node, &shape[2..])?;
        // An output whose window reads only padding has no maximum, and no average over the
        // taps inside the input: refused here, before any key exists.
        if let Some(o) = window.first_empty_output() {
            return Err(self.unsupported(
                node,
                format!(
                    "output position {o} of its window (kernel {:?}, pads {:?}) lies entirely in the padding; \
                     reduce the padding below the kernel size",
                    window.kernel, window.pads_begin
                ),
            ));
        }
        let out_shape = [shape[..2].to_vec(), window.output.clone()].concat();
        let op = if node.op_type.ends_with("AveragePool") {
            Op::AveragePool(AveragePool {
                window,
                count_include_pad: attr_int(node, "count_include_pad").unwrap_or(0) != 0,
            })
        } else {
            Op::MaxPool(MaxPool { window })
        };
        self.add_node(node, op, vec![x], out_shape)
    }

    /// LpPool and GlobalLpPool: `(Σ |x|^p)^(1/p)` over each window (the padding adds nothing),
    /// as the sum of a window's terms and lookups: `|x|` for p = 1, `x · x` then `√` for p = 2,
    /// and `|x|^p` then `^(1/p)` from the tables otherwise.
    pub(crate) fn import_lp_pool(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (x, shape) = self.spatial_input(node)?;
        let window = self.pool_window(node, &shape[2..])?;
        let p = attr_int(node, "p").unwrap_or(2);
        if p < 1 {
            return Err(self.unsupported(node, format!("p = {p}")));
        }
        let groups = pool_windows(&shape, &window);
        let out_shape = [shape[..2].to_vec(), window.output.clone()].concat();
        let lookup = |func| Op::Lookup(super::activation::Lookup { func });
        let abs = |importer: &mut Self| {
            let (max, inputs) = importer.abs_of(node, x);
            importer.intermediate(node, "abs", max, inputs, shape.clone())
        };
        let terms = match p {
            1 => abs(self),
            2 => self.intermediate(node, "square", Op::Mul(super::arith::Mul), vec![x, x], shape.clone()),
            p => {
                let magnitude = abs(self);
                let power = lookup(Function::Pow { exponent: p as f64 });
                self.intermediate(node, "power", power, vec![magnitude], shape.clone())
            }
        };
        let sum = Op::Reduce(super::reduce::Reduce { groups, mean: false });
        if p == 1 {
            return self.add_node(node, sum, vec![terms], out_shape);
        }
        let total = self.intermediate(node, "sum", sum, vec![terms], out_shape.clone());
        let root = if p == 2 { Function::Sqrt } else { Function::Pow { exponent: 1.0 / p as f64 } };
        self.add_node(node, lookup(root), vec![total], out_shape)
    }
}
