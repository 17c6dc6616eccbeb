//! Data movement (Transpose, Slice, Concat, Gather with constant indices, Pad, Split, Expand, Tile):
//! every output element is a copy of one input element or a constant. Constant inputs fold at
//! import; otherwise the circuit only wires cells, which costs no constraint.

use serde::{Deserialize, Serialize};

use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::AssignedValue;
use tract_onnx::pb;

use super::{quantize_value, ExecCx, Kernel, LayoutCx, OnnxOp, QOp, Quantize, QuantizeCx};
use crate::circuit::field::fe;
use crate::error::Result;
use crate::model::graph::{broadcast_indices, broadcast_shape, Op, Tensor};
use crate::model::onnx::{attr, attr_float, attr_int, node_name, Importer, Value};

/// Where one output element of a data-movement op comes from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Source {
    /// Element `index` (flat, row-major) of the op's input number `input`.
    Input {
        /// Which input.
        input: usize,
        /// Flat position in it.
        index: usize,
    },
    /// A constant (padding).
    Const(f32),
}

/// An output shape and the source of each of its elements.
pub type Moved = (Vec<usize>, Vec<Source>);

fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for a in (0..shape.len().saturating_sub(1)).rev() {
        strides[a] = strides[a + 1] * shape[a + 1];
    }
    strides
}

/// Calls `source` with the coordinates of every element of `shape`, in row-major order.
pub(crate) fn build(shape: &[usize], mut source: impl FnMut(&[usize]) -> Source) -> Vec<Source> {
    let total: usize = shape.iter().product();
    let mut coords = vec![0; shape.len()];
    let mut out = Vec::with_capacity(total);
    for _ in 0..total {
        out.push(source(&coords));
        for a in (0..shape.len()).rev() {
            coords[a] += 1;
            if coords[a] < shape[a] {
                break;
            }
            coords[a] = 0;
        }
    }
    out
}

fn flat(coords: &[usize], strides: &[usize]) -> usize {
    coords.iter().zip(strides).map(|(c, s)| c * s).sum()
}

/// An axis in `[-rank, rank)` as a position.
pub fn axis(axis: i64, rank: usize) -> Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if (0..rank as i64).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!("axis {axis} is out of range for rank {rank}"))
    }
}

/// Transpose by `perm` (default: reversed axes).
pub fn transpose(shape: &[usize], perm: Option<&[i64]>) -> Result<Moved, String> {
    let rank = shape.len();
    let perm: Vec<usize> = match perm {
        None => (0..rank).rev().collect(),
        Some(p) => p.iter().map(|&a| axis(a, rank)).collect::<Result<_, _>>()?,
    };
    let mut seen = perm.clone();
    seen.sort_unstable();
    if seen != (0..rank).collect::<Vec<_>>() {
        return Err(format!("perm {perm:?} is not a permutation of {rank} axes"));
    }
    let out_shape: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
    let st = strides_of(shape);
    let sources = build(&out_shape, |c| Source::Input {
        input: 0,
        index: perm.iter().enumerate().map(|(i, &a)| c[i] * st[a]).sum(),
    });
    Ok((out_shape, sources))
}

/// Concatenation along `axis`.
pub fn concat(shapes: &[Vec<usize>], axis_: i64) -> Result<Moved, String> {
    let first = shapes.first().ok_or("Concat of nothing")?;
    let a = axis(axis_, first.len())?;
    for s in shapes {
        if s.len() != first.len() || s.iter().enumerate().any(|(i, &d)| i != a && d != first[i]) {
            return Err(format!("shapes {shapes:?} do not concatenate along axis {a}"));
        }
    }
    let mut out_shape = first.clone();
    out_shape[a] = shapes.iter().map(|s| s[a]).sum();
    let starts: Vec<usize> = shapes.iter().scan(0, |acc, s| Some(std::mem::replace(acc, *acc + s[a]))).collect();
    let all_strides: Vec<Vec<usize>> = shapes.iter().map(|s| strides_of(s)).collect();
    let sources = build(&out_shape, |c| {
        let input = starts.partition_point(|&s| s <= c[a]) - 1;
        let mut local = c.to_vec();
        local[a] -= starts[input];
        Source::Input { input, index: flat(&local, &all_strides[input]) }
    });
    Ok((out_shape, sources))
}

/// Slice with ONNX's semantics (negative and clamped bounds, negative steps).
pub fn slice(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<Moved, String> {
    let rank = shape.len();
    let axes: Vec<usize> = match axes {
        None => (0..starts.len()).collect(),
        Some(a) => a.iter().map(|&x| axis(x, rank)).collect::<Result<_, _>>()?,
    };
    if ends.len() != starts.len() || axes.len() != starts.len() {
        return Err("starts, ends and axes differ in length".into());
    }
    let mut begin = vec![0i64; rank];
    let mut step = vec![1i64; rank];
    let mut out_shape = shape.to_vec();
    for (i, &a) in axes.iter().enumerate() {
        let dim = shape[a] as i64;
        let s = steps.and_then(|s| s.get(i).copied()).unwrap_or(1);
        if s == 0 {
            return Err("a slice step of 0".into());
        }
        let clamp = |v: i64, lo: i64, hi: i64| v.clamp(lo, hi);
        let norm = |v: i64| if v < 0 { v + dim } else { v };
        let (b, e) = if s > 0 {
            (clamp(norm(starts[i]), 0, dim), clamp(norm(ends[i]), 0, dim))
        } else {
            (clamp(norm(starts[i]), 0, dim - 1), clamp(norm(ends[i]), -1, dim - 1))
        };
        let len = if s > 0 { (e - b + s - 1).div_euclid(s) } else { (b - e + (-s) - 1).div_euclid(-s) };
        begin[a] = b;
        step[a] = s;
        out_shape[a] = len.max(0) as usize;
    }
    let st = strides_of(shape);
    let sources = build(&out_shape, |c| Source::Input {
        input: 0,
        index: (0..rank).map(|a| (begin[a] + c[a] as i64 * step[a]) as usize * st[a]).sum(),
    });
    Ok((out_shape, sources))
}

/// Gather along `axis` with constant `indices` of shape `indices_shape` (negative counts from
/// the end).
pub fn gather(shape: &[usize], axis_: i64, indices: &[i64], indices_shape: &[usize]) -> Result<Moved, String> {
    let a = axis(axis_, shape.len())?;
    let dim = shape[a] as i64;
    let indices: Vec<usize> = indices
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + dim } else { i };
            if (0..dim).contains(&j) {
                Ok(j as usize)
            } else {
                Err(format!("index {i} is out of range for an axis of {dim}"))
            }
        })
        .collect::<Result<_, _>>()?;
    let out_shape: Vec<usize> = [&shape[..a], indices_shape, &shape[a + 1..]].concat();
    let st = strides_of(shape);
    let ist = strides_of(indices_shape);
    let q = indices_shape.len();
    let sources = build(&out_shape, |c| {
        let which = indices[flat(&c[a..a + q], &ist)];
        let index = (0..a).map(|i| c[i] * st[i]).sum::<usize>()
            + which * st[a]
            + (a + 1..shape.len()).map(|i| c[i + q - 1] * st[i]).sum::<usize>();
        Source::Input { input: 0, index }
    });
    Ok((out_shape, sources))
}

/// `index` (negative from the end) as a position on an axis of `dim`.
fn position(index: i64, dim: usize) -> Result<usize, String> {
    let j = if index < 0 { index + dim as i64 } else { index };
    if (0..dim as i64).contains(&j) {
        Ok(j as usize)
    } else {
        Err(format!("index {index} is out of range for an axis of {dim}"))
    }
}

/// GatherElements: `out[c] = data[c with c[axis] = indices[c]]`, of the indices' shape.
pub fn gather_elements(shape: &[usize], axis_: i64, indices: &[i64], indices_shape: &[usize]) -> Result<Moved, String> {
    let a = axis(axis_, shape.len())?;
    if indices_shape.len() != shape.len() {
        return Err(format!("indices {indices_shape:?} of another rank than {shape:?}"));
    }
    let st = strides_of(shape);
    let ist = strides_of(indices_shape);
    let mut sources = Vec::with_capacity(indices.len());
    for (o, &i) in indices.iter().enumerate() {
        let mut index = 0;
        for d in 0..shape.len() {
            let c = o / ist[d] % indices_shape[d];
            let c = if d == a { position(i, shape[a])? } else { c };
            if c >= shape[d] {
                return Err(format!("indices {indices_shape:?} exceed {shape:?}"));
            }
            index += c * st[d];
        }
        sources.push(Source::Input { input: 0, index });
    }
    Ok((indices_shape.to_vec(), sources))
}

/// GatherND (batch_dims 0): each index tuple (the indices' last axis) picks an element or a slice
/// of `data`.
pub fn gather_nd(shape: &[usize], indices: &[i64], indices_shape: &[usize]) -> Result<Moved, String> {
    let Some((&q, outer)) = indices_shape.split_last() else { return Err("scalar indices".into()) };
    if q == 0 || q > shape.len() {
        return Err(format!("index tuples of {q} for {shape:?}"));
    }
    let st = strides_of(shape);
    let slice: usize = shape[q..].iter().product();
    let out_shape = [outer, &shape[q..]].concat();
    let mut sources = Vec::with_capacity(out_shape.iter().product());
    for tuple in indices.chunks(q) {
        let mut base = 0;
        for (d, &i) in tuple.iter().enumerate() {
            base += position(i, shape[d])? * st[d];
        }
        sources.extend((0..slice).map(|j| Source::Input { input: 0, index: base + j }));
    }
    Ok((out_shape, sources))
}

/// ScatterElements (no reduction): `data` with `updates[c]` written at `c with c[axis] =
/// indices[c]` (input 0 is data, input 1 the updates).
pub fn scatter_elements(
    shape: &[usize],
    axis_: i64,
    indices: &[i64],
    indices_shape: &[usize],
) -> Result<Moved, String> {
    let (_, targets) = gather_elements(shape, axis_, indices, indices_shape)?;
    Ok((shape.to_vec(), overwrite(shape, &targets)))
}

/// Every element of input 0 (of `shape`), but those at `targets`, which take input 1's in order.
fn overwrite(shape: &[usize], targets: &[Source]) -> Vec<Source> {
    let mut sources: Vec<Source> = (0..shape.iter().product()).map(|index| Source::Input { input: 0, index }).collect();
    for (u, t) in targets.iter().enumerate() {
        if let Source::Input { index, .. } = *t {
            sources[index] = Source::Input { input: 1, index: u };
        }
    }
    sources
}

/// ScatterND (no reduction): `data` with each update slice written where its index tuple
/// points (input 0 is data, input 1 the updates).
pub fn scatter_nd(
    shape: &[usize],
    indices: &[i64],
    indices_shape: &[usize],
    update_shape: &[usize],
) -> Result<Moved, String> {
    let (slices, targets) = gather_nd(shape, indices, indices_shape)?;
    if slices != update_shape {
        return Err(format!("updates {update_shape:?} where {slices:?} are written"));
    }
    Ok((shape.to_vec(), overwrite(shape, &targets)))
}

/// How Pad fills the border.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// With a constant.
    Constant(f32),
    /// With the mirror image, the edge excluded.
    Reflect,
    /// With the edge's value.
    Edge,
}

/// Padding: `pads` is ONNX's `[begin..., end...]` (non-negative).
pub fn pad(shape: &[usize], pads: &[i64], mode: PadMode) -> Result<Moved, String> {
    let rank = shape.len();
    if pads.len() != 2 * rank || pads.iter().any(|&p| p < 0) {
        return Err(format!("pads {pads:?} for rank {rank} (only non-negative pads are supported)"));
    }
    if mode == PadMode::Reflect && (0..rank).any(|a| pads[a].max(pads[a + rank]) >= shape[a] as i64) {
        return Err(format!("reflect pads {pads:?} must be smaller than the dimensions {shape:?}"));
    }
    let out_shape: Vec<usize> = (0..rank).map(|a| shape[a] + (pads[a] + pads[a + rank]) as usize).collect();
    let st = strides_of(shape);
    let sources = build(&out_shape, |c| {
        let mut index = 0;
        for a in 0..rank {
            let n = shape[a] as i64;
            let mut i = c[a] as i64 - pads[a];
            if i < 0 || i >= n {
                match mode {
                    PadMode::Constant(value) => return Source::Const(value),
                    PadMode::Reflect => i = if i < 0 { -i } else { 2 * (n - 1) - i },
                    PadMode::Edge => i = i.clamp(0, n - 1),
                }
            }
            index += i as usize * st[a];
        }
        Source::Input { input: 0, index }
    });
    Ok((out_shape, sources))
}

/// Broadcast to `target` (numpy rules, either side may be larger).
pub fn expand(shape: &[usize], target: &[usize]) -> Result<Moved, String> {
    let out_shape = broadcast_shape(shape, target).ok_or_else(|| format!("{shape:?} does not expand to {target:?}"))?;
    let sources =
        broadcast_indices(shape, &out_shape).into_iter().map(|index| Source::Input { input: 0, index }).collect();
    Ok((out_shape, sources))
}

/// Tile: `repeats[a]` copies of the input along every axis `a`.
pub fn tile(shape: &[usize], repeats: &[i64]) -> Result<Moved, String> {
    if repeats.len() != shape.len() || repeats.iter().any(|&r| r < 0) {
        return Err(format!("repeats {repeats:?} do not match a tensor of rank {}", shape.len()));
    }
    let out_shape: Vec<usize> = shape.iter().zip(repeats).map(|(&d, &r)| d * r as usize).collect();
    let st = strides_of(shape);
    let sources = build(&out_shape, |c| Source::Input {
        input: 0,
        index: c.iter().zip(shape).zip(&st).map(|((&c, &d), &s)| (c % d) * s).sum(),
    });
    Ok((out_shape, sources))
}

/// The spatial axes (from axis 2) of an `[N, C, spatial...]` tensor with `strides[a] - 1` zeros
/// between neighbours and `begin[a]` / `end[a]` zeros before / after (negative: that many
/// elements cropped): the input of the convolution a transposed convolution reduces to.
pub fn dilate_pad(shape: &[usize], strides: &[usize], begin: &[i64], end: &[i64]) -> Result<Moved, String> {
    let d = shape.len().saturating_sub(2);
    if strides.len() != d || begin.len() != d || end.len() != d || strides.contains(&0) {
        return Err(format!("strides {strides:?} and pads do not fit {d} spatial axes"));
    }
    let mut out_shape = shape.to_vec();
    for a in 0..d {
        let stretched = ((shape[a + 2] as i64 - 1) * strides[a] as i64 + 1 + begin[a] + end[a]).max(0);
        out_shape[a + 2] = stretched as usize;
    }
    if out_shape.contains(&0) {
        return Err(format!("the padded input {out_shape:?} is empty"));
    }
    let st = strides_of(shape);
    let sources = build(&out_shape, |c| {
        let mut index = c[0] * st[0] + c[1] * st[1];
        for a in 0..d {
            let u = c[a + 2] as i64 - begin[a];
            let s = strides[a] as i64;
            if u < 0 || u % s != 0 || u / s >= shape[a + 2] as i64 {
                return Source::Const(0.0);
            }
            index += (u / s) as usize * st[a + 2];
        }
        Source::Input { input: 0, index }
    });
    Ok((out_shape, sources))
}

/// Split along `axis` into pieces of `sizes`.
pub fn split(shape: &[usize], axis_: i64, sizes: &[usize]) -> Result<Vec<Moved>, String> {
    let a = axis(axis_, shape.len())?;
    if sizes.iter().sum::<usize>() != shape[a] {
        return Err(format!("split sizes {sizes:?} do not add up to {}", shape[a]));
    }
    let mut start = 0;
    sizes
        .iter()
        .map(|&n| {
            let piece = slice(shape, &[start as i64], &[(start + n) as i64], Some(&[a as i64]), None);
            start += n;
            piece
        })
        .collect()
}

/// Trilu: the upper (`upper`) or lower triangle of the last two axes from diagonal `k` on, the
/// rest zero.
pub fn trilu(shape: &[usize], k: i64, upper: bool) -> Result<Moved, String> {
    if shape.len() < 2 {
        return Err(format!("Trilu of {shape:?} (needs two axes)"));
    }
    let (rows, cols) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    let total: usize = shape.iter().product();
    let sources = (0..total)
        .map(|index| {
            let (i, j) = ((index / cols % rows) as i64, (index % cols) as i64);
            let keep = if upper { j - i >= k } else { j - i <= k };
            if keep {
                Source::Input { input: 0, index }
            } else {
                Source::Const(0.0)
            }
        })
        .collect();
    Ok((shape.to_vec(), sources))
}

/// DepthToSpace of `[N, C, H, W]` by `block` (DCR order, or CRD): `[N, C/b², H·b, W·b]`.
pub fn depth_to_space(shape: &[usize], block: usize, crd: bool) -> Result<Moved, String> {
    let &[n, c, h, w] = shape else { return Err(format!("DepthToSpace of {shape:?} (needs [N, C, H, W])")) };
    if block == 0 || c % (block * block) != 0 {
        return Err(format!("blocksize {block} does not divide the {c} channels"));
    }
    let out_c = c / (block * block);
    let out = vec![n, out_c, h * block, w * block];
    let sources = build(&out, |o| {
        let (b, oc, y, x) = (o[0], o[1], o[2], o[3]);
        let (i, j, hh, ww) = (y % block, x % block, y / block, x / block);
        let ic = if crd { oc * block * block + i * block + j } else { (i * block + j) * out_c + oc };
        Source::Input { input: 0, index: ((b * c + ic) * h + hh) * w + ww }
    });
    Ok((out, sources))
}

/// SpaceToDepth of `[N, C, H, W]` by `block`: `[N, C·b², H/b, W/b]`.
pub fn space_to_depth(shape: &[usize], block: usize) -> Result<Moved, String> {
    let &[n, c, h, w] = shape else { return Err(format!("SpaceToDepth of {shape:?} (needs [N, C, H, W])")) };
    if block == 0 || h % block != 0 || w % block != 0 {
        return Err(format!("blocksize {block} does not divide {h}x{w}"));
    }
    let out = vec![n, c * block * block, h / block, w / block];
    let sources = build(&out, |o| {
        let (b, oc, y, x) = (o[0], o[1], o[2], o[3]);
        let (ij, ic) = (oc / c, oc % c);
        let (i, j) = (ij / block, ij % block);
        Source::Input { input: 0, index: ((b * c + ic) * h + y * block + i) * w + x * block + j }
    });
    Ok((out, sources))
}

/// Applies `sources` to constant inputs.
pub fn apply(sources: &[Source], inputs: &[&[f32]]) -> Vec<f32> {
    sources
        .iter()
        .map(|s| match *s {
            Source::Input { input, index } => inputs[input][index],
            Source::Const(v) => v,
        })
        .collect()
}

/// The ONNX ops of this family.
pub const ONNX: &[OnnxOp] = &[
    OnnxOp { op_type: "Transpose", import: |i, n| i.import_movement(n), note: "" },
    OnnxOp { op_type: "Concat", import: |i, n| i.import_movement(n), note: "" },
    OnnxOp { op_type: "Slice", import: |i, n| i.import_movement(n), note: "" },
    OnnxOp {
        op_type: "Gather",
        import: |i, n| i.import_movement(n),
        note: "constant indices; computed ones into a constant table along axis 0, an embedding lookup",
    },
    OnnxOp { op_type: "Pad", import: |i, n| i.import_movement(n), note: "constant, reflect, edge" },
    OnnxOp { op_type: "Split", import: |i, n| i.import_movement(n), note: "" },
    OnnxOp { op_type: "Expand", import: |i, n| i.import_movement(n), note: "" },
    OnnxOp { op_type: "Tile", import: |i, n| i.import_movement(n), note: "" },
    OnnxOp { op_type: "GatherElements", import: |i, n| i.import_movement(n), note: "constant indices" },
    OnnxOp { op_type: "GatherND", import: |i, n| i.import_movement(n), note: "constant indices, batch_dims 0" },
    OnnxOp { op_type: "ScatterElements", import: |i, n| i.import_movement(n), note: "constant indices, no reduction" },
    OnnxOp { op_type: "ScatterND", import: |i, n| i.import_movement(n), note: "constant indices, no reduction" },
    OnnxOp { op_type: "Trilu", import: |i, n| i.import_movement(n), note: "" },
    OnnxOp { op_type: "DepthToSpace", import: |i, n| i.import_movement(n), note: "DCR, CRD" },
    OnnxOp { op_type: "SpaceToDepth", import: |i, n| i.import_movement(n), note: "" },
    OnnxOp { op_type: "Squeeze", import: |i, n| i.import_squeeze(n), note: "" },
    OnnxOp { op_type: "Unsqueeze", import: |i, n| i.import_squeeze(n), note: "" },
    OnnxOp { op_type: "Flatten", import: |i, n| i.import_flatten(n), note: "" },
    OnnxOp { op_type: "Reshape", import: |i, n| i.import_reshape(n), note: "" },
    OnnxOp { op_type: "Identity", import: |i, n| i.import_identity(n), note: "" },
    OnnxOp { op_type: "Dropout", import: |i, n| i.import_identity(n), note: "" },
];

/// Copies of input elements and constants (Transpose, Slice, Concat, Gather, Pad, Split, Expand,
/// Tile).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Select {
    /// The source of each output element.
    pub sources: Vec<Source>,
}

/// A node of the constants of `t` (fixed in the circuit): a constant operand where an op needs a
/// computed one.
pub fn constants(t: &Tensor) -> Op {
    Op::Select(Select { sources: t.data.iter().map(|&v| Source::Const(v)).collect() })
}

/// [`Select`] quantized: its constants at the input scale.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QSelect {
    /// The source of each output element.
    pub sources: Vec<QSource>,
}

/// Where an element of a [`QSelect`] comes from.
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

impl Quantize for Select {
    fn quantize(&self, cx: &QuantizeCx<'_>) -> Result<QOp> {
        let is = cx.settings.input_scale;
        let sources = self
            .sources
            .iter()
            .map(|s| match *s {
                Source::Input { input, index } => QSource::Input { input, index },
                Source::Const(v) => QSource::Const(quantize_value(v, is)),
            })
            .collect();
        Ok(QOp::Select(QSelect { sources }))
    }
}

impl Kernel for QSelect {
    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        Ok(self
            .sources
            .iter()
            .map(|s| match *s {
                QSource::Input { input, index } => cx.args[input][index],
                QSource::Const(c) => c as i128,
            })
            .collect())
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        Ok(self
            .sources
            .iter()
            .map(|s| match *s {
                QSource::Input { input, index } => cx.args[input][index],
                // One cell for every zero (padding is mostly zeros).
                QSource::Const(0) => cx.ctx.load_zero(),
                QSource::Const(c) => cx.ctx.load_constant(fe(c as i128)),
            })
            .collect())
    }

    fn zeros(&self, inputs: &[Option<&[bool]>]) -> Option<Vec<bool>> {
        let zeros: Vec<bool> = self
            .sources
            .iter()
            .map(|s| match *s {
                QSource::Input { input, index } => inputs[input].is_some_and(|z| z[index]),
                QSource::Const(c) => c == 0,
            })
            .collect();
        zeros.contains(&true).then_some(zeros)
    }
}

/// Same values, new shape (Reshape, Flatten, Squeeze, Unsqueeze; Identity where a node is
/// needed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reshape;

impl Kernel for Reshape {
    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        Ok(cx.args[0].to_vec())
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        Ok(cx.args[0].to_vec())
    }

    fn zeros(&self, inputs: &[Option<&[bool]>]) -> Option<Vec<bool>> {
        inputs[0].map(<[bool]>::to_vec)
    }
}

impl Importer<'_> {
    /// Gather of computed indices: rows of a constant table along axis 0 (an embedding lookup).
    fn import_embedding(&mut self, node: &pb::NodeProto, data: Value, ids: usize) -> Result<()> {
        let Value::Const(table) = data else {
            return Err(self.unsupported(node, "computed indices into a computed tensor (only a constant table)"));
        };
        let rank = table.shape.len();
        if movement_axis(attr_int(node, "axis").unwrap_or(0), rank) != Some(0) || table.is_empty() {
            return Err(self.unsupported(node, "computed indices select along axis 0 of a constant table only"));
        }
        let shape = [self.nodes[ids].shape.clone(), table.shape[1..].to_vec()].concat();
        self.add_node(node, Op::Embedding(super::gather::Embedding { table }), vec![ids], shape)
    }

    fn import_identity(&mut self, node: &pb::NodeProto) -> Result<()> {
        let value = self.required_input(node, 0)?;
        self.set_output(node, value)
    }

    fn import_flatten(&mut self, node: &pb::NodeProto) -> Result<()> {
        let value = self.required_input(node, 0)?;
        let shape = self.shape_of(&value);
        let axis = attr_int(node, "axis").unwrap_or(1);
        let axis =
            normalize_axis(axis, shape.len() + 1).ok_or_else(|| self.unsupported(node, format!("axis {axis}")))?;
        let new_shape = vec![shape[..axis].iter().product(), shape[axis..].iter().product()];
        self.reshape(node, value, new_shape)
    }

    fn import_reshape(&mut self, node: &pb::NodeProto) -> Result<()> {
        let value = self.required_input(node, 0)?;
        let Some(Value::Const(target)) = self.input(node, 1)? else {
            return Err(self.unsupported(node, "the target shape must be a constant"));
        };
        let shape = self.shape_of(&value);
        let new_shape = reshape_target(&shape, &target.data)
            .ok_or_else(|| self.unsupported(node, format!("cannot reshape {shape:?} to {:?}", target.data)))?;
        self.reshape(node, value, new_shape)
    }

    fn reshape(&mut self, node: &pb::NodeProto, value: Value, shape: Vec<usize>) -> Result<()> {
        match value {
            Value::Const(t) => self.set_output(node, Value::Const(Tensor::new(shape, t.data))),
            Value::Node(id) => self.add_node(node, Op::Reshape(Reshape), vec![id], shape),
        }
    }

    /// Outputs a data-movement result: folded when every input is a constant, else a Select
    /// node whose inputs are the computed ones (constant inputs' elements become constants).
    pub(crate) fn emit_moved(
        &mut self,
        node: &pb::NodeProto,
        inputs: &[Value],
        moved: Moved,
        output: String,
    ) -> Result<()> {
        let (shape, sources) = moved;
        let mut node_inputs = Vec::new();
        let mut position = vec![None; inputs.len()];
        for (k, v) in inputs.iter().enumerate() {
            if let Value::Node(id) = v {
                position[k] = Some(node_inputs.len());
                node_inputs.push(*id);
            }
        }
        let sources: Vec<Source> = sources
            .into_iter()
            .map(|s| match s {
                Source::Input { input, index } => match (&inputs[input], position[input]) {
                    (_, Some(p)) => Source::Input { input: p, index },
                    (Value::Const(t), None) => Source::Const(t.data[index]),
                    (Value::Node(_), None) => unreachable!("computed inputs have a position"),
                },
                c => c,
            })
            .collect();
        if node_inputs.is_empty() {
            let data = apply(&sources, &[]);
            self.values.insert(output, Value::Const(Tensor::new(shape, data)));
        } else {
            let name = if output == self.output_name(node)? {
                node_name(node)
            } else {
                format!("{}:{output}", node_name(node))
            };
            self.push(name, output, Op::Select(Select { sources }), node_inputs, shape);
        }
        Ok(())
    }

    fn import_movement(&mut self, node: &pb::NodeProto) -> Result<()> {
        let data = self.required_input(node, 0)?;
        let shape = self.shape_of(&data);
        let refuse = |e: String| self.unsupported(node, e);
        let (inputs, moved) = match node.op_type.as_str() {
            "Transpose" => {
                (vec![data], transpose(&shape, attr(node, "perm").map(|a| a.ints.as_slice())).map_err(refuse)?)
            }
            "Concat" => {
                let inputs = self.all_inputs(node)?;
                let shapes: Vec<Vec<usize>> = inputs.iter().map(|v| self.shape_of(v)).collect();
                let axis = attr_int(node, "axis").unwrap_or(0);
                (inputs, concat(&shapes, axis).map_err(refuse)?)
            }
            "Slice" => {
                let starts = self.ints_input_or_attr(node, 1, "starts")?.unwrap_or_default();
                let ends = self.ints_input_or_attr(node, 2, "ends")?.unwrap_or_default();
                let axes = self.ints_input_or_attr(node, 3, "axes")?;
                let steps = self.ints_input_or_attr(node, 4, "steps")?;
                let moved = slice(&shape, &starts, &ends, axes.as_deref(), steps.as_deref()).map_err(refuse)?;
                (vec![data], moved)
            }
            "Gather" => {
                let indices = match self.required_input(node, 1)? {
                    Value::Const(indices) => indices,
                    Value::Node(ids) => return self.import_embedding(node, data, ids),
                };
                let ints: Vec<i64> = indices.data.iter().map(|&v| v as i64).collect();
                let axis = attr_int(node, "axis").unwrap_or(0);
                (vec![data], gather(&shape, axis, &ints, &indices.shape).map_err(refuse)?)
            }
            "Pad" => {
                let mode = attr(node, "mode").map(|a| String::from_utf8_lossy(&a.s).into_owned()).unwrap_or_default();
                if self.input(node, 3)?.is_some() {
                    return Err(self.unsupported(node, "the axes input"));
                }
                let pads = self.ints_input_or_attr(node, 1, "pads")?.unwrap_or_default();
                let value = match self.input(node, 2)? {
                    Some(Value::Const(t)) => t.data.first().copied().unwrap_or(0.0),
                    Some(Value::Node(_)) => return Err(self.unsupported(node, "the padding value must be a constant")),
                    None => attr_float(node, "value").unwrap_or(0.0),
                };
                let mode = match mode.as_str() {
                    "" | "constant" => PadMode::Constant(value),
                    "reflect" => PadMode::Reflect,
                    "edge" => PadMode::Edge,
                    other => return Err(self.unsupported(node, format!("mode {other}"))),
                };
                (vec![data], pad(&shape, &pads, mode).map_err(refuse)?)
            }
            "Tile" => {
                let repeats = self.const_ints(node, 1)?;
                (vec![data], tile(&shape, &repeats).map_err(refuse)?)
            }
            "GatherElements" | "GatherND" | "ScatterElements" | "ScatterND" => {
                let Value::Const(indices) = self.required_input(node, 1)? else {
                    return Err(self.unsupported(node, "the indices must be constants"));
                };
                let ints: Vec<i64> = indices.data.iter().map(|&v| v as i64).collect();
                let axis = attr_int(node, "axis").unwrap_or(0);
                if attr(node, "reduction").is_some_and(|a| !a.s.is_empty() && a.s != b"none")
                    || attr_int(node, "batch_dims").unwrap_or(0) != 0
                {
                    return Err(self.unsupported(node, "reduction or batch_dims"));
                }
                match node.op_type.as_str() {
                    "GatherElements" => {
                        (vec![data], gather_elements(&shape, axis, &ints, &indices.shape).map_err(refuse)?)
                    }
                    "GatherND" => (vec![data], gather_nd(&shape, &ints, &indices.shape).map_err(refuse)?),
                    op => {
                        let updates = self.required_input(node, 2)?;
                        let update_shape = self.shape_of(&updates);
                        let moved = if op == "ScatterND" {
                            scatter_nd(&shape, &ints, &indices.shape, &update_shape)
                        } else {
                            scatter_elements(&shape, axis, &ints, &indices.shape)
                        };
                        (vec![data, updates], moved.map_err(refuse)?)
                    }
                }
            }
            "Trilu" => {
                let k = match self.input(node, 1)? {
                    None => 0,
                    Some(_) => self.const_ints(node, 1)?.first().copied().unwrap_or(0),
                };
                let upper = attr_int(node, "upper").unwrap_or(1) != 0;
                (vec![data], trilu(&shape, k, upper).map_err(refuse)?)
            }
            "DepthToSpace" | "SpaceToDepth" => {
                let block = attr_int(node, "blocksize").filter(|&b| b > 0).unwrap_or(0) as usize;
                let crd = attr(node, "mode").is_some_and(|a| a.s == b"CRD");
                let moved = if node.op_type == "DepthToSpace" {
                    depth_to_space(&shape, block, crd)
                } else {
                    space_to_depth(&shape, block)
                };
                (vec![data], moved.map_err(refuse)?)
            }
            "Expand" => {
                let target: Vec<usize> = self.const_ints(node, 1)?.iter().map(|&d| d.max(0) as usize).collect();
                (vec![data], expand(&shape, &target).map_err(refuse)?)
            }
            _ => return self.import_split(node, data, &shape),
        };
        let output = self.output_name(node)?;
        self.emit_moved(node, &inputs, moved, output)
    }

    fn import_split(&mut self, node: &pb::NodeProto, data: Value, shape: &[usize]) -> Result<()> {
        let axis = attr_int(node, "axis").unwrap_or(0);
        let a = self::axis(axis, shape.len()).map_err(|e| self.unsupported(node, e))?;
        let outputs = node.output.len().max(1);
        let sizes: Vec<usize> = match self.ints_input_or_attr(node, 1, "split")? {
            Some(s) => s.iter().map(|&v| v.max(0) as usize).collect(),
            None => {
                let each = shape[a].div_ceil(outputs);
                (0..outputs).map(|i| each.min(shape[a].saturating_sub(i * each))).collect()
            }
        };
        let pieces = split(shape, axis, &sizes).map_err(|e| self.unsupported(node, e))?;
        for (piece, output) in pieces.into_iter().zip(node.output.clone()) {
            if !output.is_empty() {
                self.emit_moved(node, std::slice::from_ref(&data), piece, output)?;
            }
        }
        Ok(())
    }

    fn import_squeeze(&mut self, node: &pb::NodeProto) -> Result<()> {
        let value = self.required_input(node, 0)?;
        let shape = self.shape_of(&value);
        let axes = self.ints_input_or_attr(node, 1, "axes")?;
        let new_shape = if node.op_type == "Squeeze" {
            let rank = shape.len();
            let axes: Vec<usize> = match axes {
                Some(a) => self.axes(node, &a, rank)?,
                None => (0..rank).filter(|&i| shape[i] == 1).collect(),
            };
            if axes.iter().any(|&a| shape[a] != 1) {
                return Err(self.unsupported(node, format!("squeezing axes {axes:?} of {shape:?}")));
            }
            shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect()
        } else {
            let axes = axes.ok_or_else(|| self.malformed(format!("Unsqueeze '{}' has no axes", node_name(node))))?;
            let rank = shape.len() + axes.len();
            let mut axes = self.axes(node, &axes, rank)?;
            axes.sort_unstable();
            let mut out = shape.clone();
            for a in axes {
                out.insert(a.min(out.len()), 1);
            }
            out
        };
        self.reshape(node, value, new_shape)
    }
}

/// `axis` in `[-rank, rank)` as a position.
fn movement_axis(axis: i64, rank: usize) -> Option<usize> {
    self::axis(axis, rank).ok()
}

fn normalize_axis(axis: i64, rank: usize) -> Option<usize> {
    let axis = if axis < 0 { axis + rank as i64 - 1 } else { axis };
    (0..rank as i64).contains(&axis).then_some(axis as usize)
}

fn reshape_target(shape: &[usize], target: &[f32]) -> Option<Vec<usize>> {
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        let t = t as i64;
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 => out.push(*shape.get(i)?),
            t if t > 0 => out.push(t as usize),
            _ => return None,
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return None;
        }
        out[i] = total / known;
    }
    (out.iter().product::<usize>() == total).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_targets_resolve_zero_and_minus_one() {
        assert_eq!(reshape_target(&[1, 4, 4], &[1.0, -1.0]), Some(vec![1, 16]));
        assert_eq!(reshape_target(&[2, 8], &[0.0, 2.0, 4.0]), Some(vec![2, 2, 4]));
        assert_eq!(reshape_target(&[2, 8], &[3.0, -1.0]), None);
    }

    #[test]
    fn depth_and_space_moves_invert_each_other_and_trilu_keeps_a_triangle() {
        let data: Vec<f32> = (0..32).map(|v| v as f32).collect();
        let (shape, to_space) = depth_to_space(&[1, 8, 2, 2], 2, false).unwrap();
        assert_eq!(shape, vec![1, 2, 4, 4]);
        let spread = apply(&to_space, &[&data]);
        // DCR: out[0, 0, 0, 1] is channel (0·2 + 1)·2 + 0 = 2 at (0, 0), element 8.
        assert_eq!(spread[1], 8.0);
        let (back_shape, to_depth) = space_to_depth(&shape, 2).unwrap();
        assert_eq!(back_shape, vec![1, 8, 2, 2]);
        assert_eq!(apply(&to_depth, &[&spread]), data, "SpaceToDepth undoes DepthToSpace (DCR)");
        let (_, crd) = depth_to_space(&[1, 8, 2, 2], 2, true).unwrap();
        // CRD: out[0, 0, 0, 1] is channel 0·4 + 0·2 + 1 = 1 at (0, 0), element 4.
        assert_eq!(apply(&crd, &[&data])[1], 4.0);
        assert!(depth_to_space(&[1, 6, 2, 2], 2, false).is_err());
        let square: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let (_, upper) = trilu(&[3, 3], 0, true).unwrap();
        assert_eq!(apply(&upper, &[&square]), vec![1.0, 2.0, 3.0, 0.0, 5.0, 6.0, 0.0, 0.0, 9.0]);
        let (_, lower) = trilu(&[3, 3], -1, false).unwrap();
        assert_eq!(apply(&lower, &[&square]), vec![0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 7.0, 8.0, 0.0]);
    }

    fn values(moved: &Moved, data: &[&[f32]]) -> Vec<f32> {
        apply(&moved.1, data)
    }

    #[test]
    fn transpose_concat_slice_gather_pad_follow_numpy() {
        let x: Vec<f32> = (0..6).map(|v| v as f32).collect(); // [[0 1 2] [3 4 5]]
        let t = transpose(&[2, 3], None).unwrap();
        assert_eq!(t.0, vec![3, 2]);
        assert_eq!(values(&t, &[&x]), vec![0., 3., 1., 4., 2., 5.]);

        let c = concat(&[vec![2, 3], vec![2, 1]], -1).unwrap();
        assert_eq!(c.0, vec![2, 4]);
        assert_eq!(values(&c, &[&x, &[9., 8.]]), vec![0., 1., 2., 9., 3., 4., 5., 8.]);

        let s = slice(&[2, 3], &[0, -1], &[2, -4], Some(&[0, 1]), Some(&[1, -2])).unwrap();
        assert_eq!(s.0, vec![2, 2]);
        assert_eq!(values(&s, &[&x]), vec![2., 0., 5., 3.]);
        let s = slice(&[2, 3], &[1], &[i64::MAX], Some(&[1]), None).unwrap();
        assert_eq!(values(&s, &[&x]), vec![1., 2., 4., 5.]);

        let g = gather(&[2, 3], 1, &[2, -3], &[2]).unwrap();
        assert_eq!(g.0, vec![2, 2]);
        assert_eq!(values(&g, &[&x]), vec![2., 0., 5., 3.]);
        let g = gather(&[2, 3], 0, &[1], &[]).unwrap();
        assert_eq!(g.0, vec![3]);
        assert_eq!(values(&g, &[&x]), vec![3., 4., 5.]);

        let p = pad(&[2, 3], &[0, 1, 1, 0], PadMode::Constant(-1.0)).unwrap();
        assert_eq!(p.0, vec![3, 4]);
        assert_eq!(values(&p, &[&x]), vec![-1., 0., 1., 2., -1., 3., 4., 5., -1., -1., -1., -1.]);
        let r = pad(&[2, 3], &[0, 2, 1, 0], PadMode::Reflect).unwrap();
        assert_eq!(values(&r, &[&x]), vec![2., 1., 0., 1., 2., 5., 4., 3., 4., 5., 2., 1., 0., 1., 2.]);
        let e = pad(&[2, 3], &[0, 1, 0, 1], PadMode::Edge).unwrap();
        assert_eq!(values(&e, &[&x]), vec![0., 0., 1., 2., 2., 3., 3., 4., 5., 5.]);

        let parts = split(&[2, 3], 1, &[1, 2]).unwrap();
        assert_eq!(values(&parts[1], &[&x]), vec![1., 2., 4., 5.]);
        assert_eq!(values(&expand(&[3], &[2, 1]).unwrap(), &[&[7., 8., 9.]]), vec![7., 8., 9., 7., 8., 9.]);
        let t = tile(&[2, 3], &[2, 1]).unwrap();
        assert_eq!(t.0, vec![4, 3]);
        assert_eq!(values(&t, &[&x]), vec![0., 1., 2., 3., 4., 5., 0., 1., 2., 3., 4., 5.]);
        assert_eq!(values(&tile(&[2, 1], &[1, 3]).unwrap(), &[&[7., 8.]]), vec![7., 7., 7., 8., 8., 8.]);
        assert!(tile(&[2, 3], &[2]).is_err());
        // [1, 1, 3] with stride 2, one zero before and none after: 0 a 0 b 0 c; cropping one: b 0 c.
        let d = dilate_pad(&[1, 1, 3], &[2], &[1], &[0]).unwrap();
        assert_eq!(d.0, vec![1, 1, 6]);
        assert_eq!(values(&d, &[&[7., 8., 9.]]), vec![0., 7., 0., 8., 0., 9.]);
        assert_eq!(values(&dilate_pad(&[1, 1, 3], &[2], &[-2], &[0]).unwrap(), &[&[7., 8., 9.]]), vec![8., 0., 9.]);
        assert!(gather(&[2, 3], 1, &[3], &[1]).is_err());
        assert!(transpose(&[2, 3], Some(&[0, 0])).is_err());
    }
}
