//! The float reference: tract runs the original ONNX model on the same input.

use std::path::Path;

use tract_onnx::prelude::*;

use crate::error::{Error, Result};

/// Runs the ONNX model at `path` in f32 with tract and returns each output, flattened.
pub fn run_float(path: &Path, input_shapes: &[Vec<usize>], inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
    let fail = |e: TractError| Error::MalformedOnnx {
        path: path.to_path_buf(),
        reason: format!("tract cannot run it: {e:#}"),
    };
    let mut model = tract_onnx::onnx().model_for_path(path).map_err(fail)?;
    for (i, shape) in input_shapes.iter().enumerate() {
        model = model.with_input_fact(i, f32::fact(shape).into()).map_err(fail)?;
    }
    let runnable = model.into_optimized().map_err(fail)?.into_runnable().map_err(fail)?;
    let tensors: TVec<TValue> = input_shapes
        .iter()
        .zip(inputs)
        .map(|(shape, data)| {
            tract_ndarray::ArrayD::from_shape_vec(shape.clone(), data.clone())
                .map(|a| Tensor::from(a).into())
                .map_err(|e| Error::UnsupportedModel(format!("input of shape {shape:?}: {e}")))
        })
        .collect::<Result<_>>()?;
    let outputs = runnable.run(tensors).map_err(fail)?;
    outputs
        .iter()
        .map(|t| {
            let t = t.cast_to::<f32>().map_err(fail)?;
            Ok(t.to_plain_array_view::<f32>().map_err(fail)?.iter().copied().collect())
        })
        .collect()
}
