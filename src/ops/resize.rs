//! Resize and Upsample of the spatial axes, lowered at import: `nearest` is data movement (each
//! output element a copy of the input element its coordinate maps to); `linear` (bilinear,
//! trilinear) is a linear layer with constant weights over the flattened spatial axes (the
//! interpolation weights, most of them zero, which cost nothing), between two reshapes. The
//! coordinate transformations and nearest modes are ONNX's.

use tract_onnx::pb;

use super::movement::{self, Source};
use super::{linear, OnnxOp};
use crate::error::Result;
use crate::model::graph::{Op, Tensor};
use crate::model::onnx::{attr, Importer, Value};

/// The ONNX ops of this family.
pub const ONNX: &[OnnxOp] = &[
    OnnxOp {
        op_type: "Resize",
        import: |i, n| i.import_resize(n),
        note: "nearest and linear, constant scales or sizes",
    },
    OnnxOp { op_type: "Upsample", import: |i, n| i.import_resize(n), note: "nearest and linear" },
];

/// How an output coordinate maps to an input one (ONNX's `coordinate_transformation_mode`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Transform {
    HalfPixel,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNn,
}

impl Transform {
    fn parse(mode: &str) -> Option<Transform> {
        Some(match mode {
            "half_pixel" => Transform::HalfPixel,
            "pytorch_half_pixel" => Transform::PytorchHalfPixel,
            "align_corners" => Transform::AlignCorners,
            "asymmetric" => Transform::Asymmetric,
            "tf_half_pixel_for_nn" => Transform::TfHalfPixelForNn,
            _ => return None,
        })
    }

    /// The input coordinate of output coordinate `x` on an axis resized from `length` to `out`.
    fn map(self, x: usize, length: usize, out: usize, scale: f64) -> f64 {
        let x = x as f64;
        match self {
            Transform::HalfPixel => (x + 0.5) / scale - 0.5,
            Transform::PytorchHalfPixel if out > 1 => (x + 0.5) / scale - 0.5,
            Transform::PytorchHalfPixel => 0.0,
            Transform::AlignCorners if out > 1 => x * (length as f64 - 1.0) / (out as f64 - 1.0),
            Transform::AlignCorners => 0.0,
            Transform::Asymmetric => x / scale,
            Transform::TfHalfPixelForNn => (x + 0.5) / scale,
        }
    }
}

/// How `nearest` rounds (ONNX's `nearest_mode`).
fn round(mode: &str, x: f64) -> Option<f64> {
    Some(match mode {
        "round_prefer_floor" if x.fract().abs() == 0.5 => x.floor(),
        "round_prefer_ceil" if x.fract().abs() == 0.5 => x.ceil(),
        "round_prefer_floor" | "round_prefer_ceil" => x.round(),
        "floor" => x.floor(),
        "ceil" => x.ceil(),
        _ => return None,
    })
}

/// Per axis: the input positions and weights that make each output position (one position of
/// weight 1 for `nearest`; two for `linear`).
fn axis_weights(
    length: usize,
    out: usize,
    scale: f64,
    transform: Transform,
    nearest: Option<&str>,
) -> Option<Vec<Vec<(usize, f32)>>> {
    let clamp = |v: f64| v.clamp(0.0, length as f64 - 1.0);
    (0..out)
        .map(|x| {
            let at = transform.map(x, length, out, scale);
            match nearest {
                Some(mode) => Some(vec![(clamp(round(mode, at)?) as usize, 1.0)]),
                None => {
                    let at = clamp(at);
                    let (lo, frac) = (at.floor(), at - at.floor());
                    let hi = (lo + 1.0).min(length as f64 - 1.0);
                    Some(if frac == 0.0 || hi == lo {
                        vec![(lo as usize, 1.0)]
                    } else {
                        vec![(lo as usize, (1.0 - frac) as f32), (hi as usize, frac as f32)]
                    })
                }
            }
        })
        .collect()
}

impl Importer<'_> {
    /// Resize (opset 11 on: X, roi, scales, sizes) and Upsample (X, scales).
    fn import_resize(&mut self, node: &pb::NodeProto) -> Result<()> {
        let Value::Node(x) = self.required_input(node, 0)? else {
            return Err(self.unsupported(node, "the input must be computed"));
        };
        let shape = self.nodes[x].shape.clone();
        let text = |name: &str, default: &str| {
            attr(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned()).unwrap_or_else(|| default.into())
        };
        let mode = text("mode", "nearest");
        let upsample = node.op_type == "Upsample";
        let transform_name =
            if upsample { "asymmetric".into() } else { text("coordinate_transformation_mode", "half_pixel") };
        let nearest_mode = if upsample { "floor".into() } else { text("nearest_mode", "round_prefer_floor") };
        let Some(transform) = Transform::parse(&transform_name) else {
            return Err(self.unsupported(node, format!("coordinate_transformation_mode {transform_name}")));
        };
        if !matches!(mode.as_str(), "nearest" | "linear") {
            return Err(self.unsupported(node, format!("mode {mode}")));
        }
        if attr(node, "antialias").is_some_and(|a| a.i != 0) || attr(node, "axes").is_some() {
            return Err(self.unsupported(node, "antialias or axes"));
        }
        let rank = shape.len();
        let constant = |importer: &Self, i: usize| -> Result<Option<Vec<f32>>> {
            match importer.input(node, i)? {
                None => Ok(None),
                Some(Value::Const(t)) if t.is_empty() => Ok(None),
                Some(Value::Const(t)) => Ok(Some(t.data)),
                Some(Value::Node(_)) => Err(importer.unsupported(node, "scales and sizes must be constants")),
            }
        };
        let (scales, sizes) = if upsample {
            (constant(self, 1)?.or_else(|| attr(node, "scales").map(|a| a.floats.clone())), None)
        } else {
            (constant(self, 2)?, constant(self, 3)?)
        };
        let (out, scales): (Vec<usize>, Vec<f64>) = match (sizes, scales) {
            (Some(sizes), _) if sizes.len() == rank => {
                let out: Vec<usize> = sizes.iter().map(|&v| v as usize).collect();
                let scales = out.iter().zip(&shape).map(|(&o, &i)| o as f64 / i as f64).collect();
                (out, scales)
            }
            (None, Some(scales)) if scales.len() == rank => {
                let out =
                    shape.iter().zip(&scales).map(|(&i, &s)| (i as f64 * f64::from(s)).floor() as usize).collect();
                (out, scales.iter().map(|&s| f64::from(s)).collect())
            }
            _ => return Err(self.unsupported(node, format!("scales or sizes for the {rank} axes of {shape:?}"))),
        };
        if rank < 2 || out[..2] != shape[..2] || out.contains(&0) {
            return Err(self.unsupported(node, format!("resizing {shape:?} to {out:?} (only the spatial axes)")));
        }
        let nearest = (mode == "nearest").then_some(nearest_mode.as_str());
        let mut per_axis = Vec::new();
        for a in 2..rank {
            match axis_weights(shape[a], out[a], scales[a], transform, nearest) {
                Some(w) => per_axis.push(w),
                None => return Err(self.unsupported(node, format!("nearest_mode {nearest_mode}"))),
            }
        }
        // The weights of each output spatial position: the product of its axes' weights.
        let (spatial_in, spatial_out): (usize, usize) = (shape[2..].iter().product(), out[2..].iter().product());
        let mut terms: Vec<Vec<(usize, f32)>> = vec![vec![(0, 1.0)]];
        for (a, axis) in per_axis.iter().enumerate() {
            let stride: usize = shape[a + 3..].iter().product();
            terms = terms
                .iter()
                .flat_map(|t| {
                    axis.iter().map(move |w| {
                        t.iter().flat_map(|&(i, tw)| w.iter().map(move |&(j, ww)| (i + j * stride, tw * ww))).collect()
                    })
                })
                .collect();
        }
        let planes = shape[0] * shape[1];
        if nearest.is_some() {
            let sources = (0..planes)
                .flat_map(|p| terms.iter().map(move |t| Source::Input { input: 0, index: p * spatial_in + t[0].0 }))
                .collect();
            return self.add_node(node, Op::Select(movement::Select { sources }), vec![x], out);
        }
        let mut weight = vec![0.0f32; spatial_in * spatial_out];
        for (o, t) in terms.iter().enumerate() {
            for &(i, w) in t {
                weight[i * spatial_out + o] += w;
            }
        }
        let rows = self.intermediate(node, "planes", Op::Reshape(movement::Reshape), vec![x], vec![planes, spatial_in]);
        let dense = Op::Dense(linear::Dense {
            weight: Tensor::new(vec![spatial_in, spatial_out], weight),
            bias: None,
            transpose_input: false,
        });
        let resized = self.intermediate(node, "interpolated", dense, vec![rows], vec![planes, spatial_out]);
        self.add_node(node, Op::Reshape(movement::Reshape), vec![resized], out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_follow_onnx() {
        // Nearest, asymmetric, floor (Upsample, PyTorch's nearest): each input twice.
        let w = axis_weights(2, 4, 2.0, Transform::Asymmetric, Some("floor")).unwrap();
        assert_eq!(w.iter().map(|t| t[0].0).collect::<Vec<_>>(), vec![0, 0, 1, 1]);
        // Linear, half_pixel: 0.75·x0 + 0.25·x1 at the second output of a doubling.
        let w = axis_weights(2, 4, 2.0, Transform::HalfPixel, None).unwrap();
        assert_eq!(w[0], vec![(0, 1.0)]);
        assert_eq!(w[1], vec![(0, 0.75), (1, 0.25)]);
        assert_eq!(w[3], vec![(1, 1.0)], "clamped at the edge");
        // align_corners maps the ends onto the ends.
        let w = axis_weights(3, 5, 5.0 / 3.0, Transform::AlignCorners, None).unwrap();
        assert_eq!((w[0].clone(), w[4].clone()), (vec![(0, 1.0)], vec![(2, 1.0)]));
        assert_eq!(round("round_prefer_floor", 1.5), Some(1.0));
        assert_eq!(round("round_prefer_ceil", 1.5), Some(2.0));
        assert!(round("stochastic", 1.5).is_none());
    }
}
