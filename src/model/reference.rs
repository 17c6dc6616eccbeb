//! The float reference: tract runs the original ONNX model on the same input.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::error::ImportError;
use crate::error::{Error, Result};

type Runnable = std::sync::Arc<TypedRunnableModel>;

fn tract_failure(path: &Path) -> impl Fn(TractError) -> Error + '_ {
    move |e| {
        ImportError::FloatReference {
            path: path.to_path_buf(),
            reason: "it returned an error".into(),
            source: Some(e.into()),
        }
        .into()
    }
}

/// Optimises `model` for the given input shapes, each input keeping the element type the model
/// declares (float when it declares none).
fn runnable(path: &Path, mut model: InferenceModel, input_shapes: &[Vec<usize>]) -> Result<(Runnable, Vec<DatumType>)> {
    let fail = tract_failure(path);
    let mut types = Vec::with_capacity(input_shapes.len());
    for (i, shape) in input_shapes.iter().enumerate() {
        let declared = model.input_fact(i).ok().and_then(|f| f.datum_type.concretize()).unwrap_or(DatumType::F32);
        model = model.with_input_fact(i, declared.fact(shape).into()).map_err(&fail)?;
        types.push(declared);
    }
    let runnable = model.into_optimized().map_err(&fail)?.into_runnable().map_err(&fail)?;
    Ok((runnable, types))
}

/// Runs `model` on one sample and returns every output, flattened.
fn run_once(
    path: &Path,
    (model, types): &(Runnable, Vec<DatumType>),
    input_shapes: &[Vec<usize>],
    inputs: &[Vec<f32>],
) -> Result<Vec<Vec<f32>>> {
    let fail = tract_failure(path);
    let tensors: TVec<TValue> = input_shapes
        .iter()
        .zip(inputs)
        .zip(types)
        .map(|((shape, data), &dt)| {
            let floats = tract_ndarray::ArrayD::from_shape_vec(shape.clone(), data.clone())
                .map(Tensor::from)
                .map_err(|e| ImportError::UnsupportedModel(format!("input of shape {shape:?}: {e}")))?;
            // An integer or boolean input: its values as that type (they are whole numbers).
            Ok(floats.cast_to_dt(dt).map_err(&fail)?.into_owned().into())
        })
        .collect::<Result<_>>()?;
    let outputs = model.run(tensors).map_err(&fail)?;
    outputs
        .iter()
        .map(|t| {
            let t = t.cast_to::<f32>().map_err(&fail)?;
            Ok(t.to_plain_array_view::<f32>().map_err(&fail)?.iter().copied().collect())
        })
        .collect()
}

/// Runs the ONNX model at `path` in f32 with tract and returns each output, flattened.
pub fn run_float(path: &Path, input_shapes: &[Vec<usize>], inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
    unpanicked(path, || {
        let model = tract_onnx::onnx().model_for_path(path).map_err(tract_failure(path))?;
        run_once(path, &runnable(path, model, input_shapes)?, input_shapes, inputs)
    })
}

/// Runs `work`, turning a panic inside tract (a model it mishandles) into an error that names the
/// model, instead of taking zkinfer down.
fn unpanicked<T>(path: &Path, work: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        Err(ImportError::FloatReference {
            path: path.to_path_buf(),
            reason: format!("it panicked ({what})"),
            source: None,
        }
        .into())
    })
}

/// What tract computes on one sample: the model's outputs, and the named values.
#[derive(Clone, Debug)]
pub struct FloatRun {
    /// Each output of the model, flattened, in the graph's output order.
    pub outputs: Vec<Vec<f32>>,
    /// The value of each name asked for (flattened), or `None` for a name no node computes.
    pub values: Vec<Option<Vec<f32>>>,
}

/// Runs the ONNX model at `path` in f32 with tract on each sample and returns, per sample, its
/// outputs and the value of each ONNX value in `names`. The named values are made outputs of
/// the graph so that tract keeps them.
pub fn run_float_values(
    path: &Path,
    input_shapes: &[Vec<usize>],
    samples: &[Vec<Vec<f32>>],
    names: &[String],
) -> Result<Vec<FloatRun>> {
    unpanicked(path, || run_float_values_unguarded(path, input_shapes, samples, names))
}

fn run_float_values_unguarded(
    path: &Path,
    input_shapes: &[Vec<usize>],
    samples: &[Vec<Vec<f32>>],
    names: &[String],
) -> Result<Vec<FloatRun>> {
    let onnx = tract_onnx::onnx();
    let mut proto = onnx.proto_model_for_path(path).map_err(tract_failure(path))?;
    let graph = proto.graph.as_mut().ok_or_else(|| ImportError::MalformedOnnx {
        path: path.to_path_buf(),
        reason: "the file holds no graph".into(),
        source: None,
    })?;
    let computed: HashSet<&str> = graph.node.iter().flat_map(|n| n.output.iter().map(String::as_str)).collect();
    let mut outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let model_outputs = outputs.len();
    let extra: Vec<String> =
        names.iter().filter(|n| computed.contains(n.as_str()) && !outputs.contains(n)).cloned().collect();
    graph.output.extend(extra.iter().map(|name| pb::ValueInfoProto { name: name.clone(), ..Default::default() }));
    outputs.extend(extra);
    let model = onnx.model_for_proto_model(&proto).map_err(tract_failure(path))?;
    let model = runnable(path, model, input_shapes)?;
    samples
        .iter()
        .map(|inputs| {
            let values = run_once(path, &model, input_shapes, inputs)?;
            let by_name: HashMap<&str, &Vec<f32>> = outputs.iter().map(String::as_str).zip(&values).collect();
            let named = names.iter().map(|n| by_name.get(n.as_str()).map(|v| v.to_vec())).collect();
            Ok(FloatRun { outputs: values[..model_outputs].to_vec(), values: named })
        })
        .collect()
}
