//! `input.json`: the data to run the model on, in EZKL's shape (`{"input_data": [[...]]}`).

use std::path::Path;

use serde_json::Value;

use crate::error::ImportError;
use crate::error::{read_file, Error, Result};

/// Reads `input.json` and checks it against the model's input shapes. Returns one flat vector
/// per model input. Nested arrays are flattened in row-major order.
pub fn load_input(path: &Path, shapes: &[Vec<usize>]) -> Result<Vec<Vec<f32>>> {
    let mut samples = read_samples(path, shapes, false)?;
    Ok(samples.pop().expect("exactly one sample"))
}

/// Reads a file of calibration samples: `input.json`'s format where each input's list holds one
/// or more samples one after the other (or nested one level deeper). Returns the samples, each
/// as one flat vector per model input.
pub fn load_samples(path: &Path, shapes: &[Vec<usize>]) -> Result<Vec<Vec<Vec<f32>>>> {
    read_samples(path, shapes, true)
}

/// The number of values `input.json` holds for each input (nested lists flattened), whatever
/// the model's shapes: what sizes a batch dimension taken from the data.
pub fn input_lengths(path: &Path) -> Result<Vec<usize>> {
    let bad = |reason: String| Error::from(ImportError::BadInput { path: path.to_path_buf(), reason });
    let json: Value = serde_json::from_slice(&read_file(path)?).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let Some(Value::Array(items)) = json.get("input_data") else {
        return Err(bad("expected an object with an \"input_data\" list: {\"input_data\": [[...]]}".into()));
    };
    items
        .iter()
        .map(|item| {
            let mut values = Vec::new();
            flatten(item, &mut values).map_err(bad)?;
            Ok(values.len())
        })
        .collect()
}

/// The one sample `input.json`'s content holds, as one flat vector per model input, checked
/// against the model's input shapes; `source` names where the content came from in errors.
pub fn parse_input(json: &Value, shapes: &[Vec<usize>], source: &Path) -> Result<Vec<Vec<f32>>> {
    let mut samples = samples_of(json, shapes, false, source)?;
    Ok(samples.pop().expect("exactly one sample"))
}

fn read_samples(path: &Path, shapes: &[Vec<usize>], many: bool) -> Result<Vec<Vec<Vec<f32>>>> {
    let bad = |reason: String| Error::from(ImportError::BadInput { path: path.to_path_buf(), reason });
    let bytes = read_file(path)?;
    let json: Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    samples_of(&json, shapes, many, path)
}

fn samples_of(json: &Value, shapes: &[Vec<usize>], many: bool, path: &Path) -> Result<Vec<Vec<Vec<f32>>>> {
    let bad = |reason: String| Error::from(ImportError::BadInput { path: path.to_path_buf(), reason });
    let data = json
        .get("input_data")
        .ok_or_else(|| bad("expected an object with an \"input_data\" field: {\"input_data\": [[...]]}".into()))?;
    let Value::Array(items) = data else {
        return Err(bad("\"input_data\" must be a list with one list of numbers per model input".into()));
    };
    if items.len() != shapes.len() {
        return Err(bad(format!(
            "the model has {} input(s) but input_data holds {} list(s)",
            shapes.len(),
            items.len()
        )));
    }
    let mut count = None;
    let mut per_input = Vec::new();
    for (i, (item, shape)) in items.iter().zip(shapes).enumerate() {
        let mut flat = Vec::new();
        flatten(item, &mut flat).map_err(|what| bad(format!("input {i}: {what}")))?;
        let expected: usize = shape.iter().product();
        let n = flat.len() / expected.max(1);
        if flat.is_empty() || flat.len() % expected.max(1) != 0 || (!many && n != 1) {
            let what = if many { format!("a multiple of {expected}") } else { expected.to_string() };
            return Err(bad(format!(
                "input {i} has {} value(s) but the model expects {what} (shape {shape:?})",
                flat.len()
            )));
        }
        if *count.get_or_insert(n) != n {
            return Err(bad(format!("input {i} holds {n} sample(s) but input 0 holds {}", count.unwrap_or(0))));
        }
        per_input.push(flat);
    }
    // A model without inputs (constants only) runs on one sample of nothing.
    let count = count.unwrap_or(1);
    Ok((0..count)
        .map(|s| {
            per_input
                .iter()
                .zip(shapes)
                .map(|(flat, shape)| {
                    let len: usize = shape.iter().product();
                    flat[s * len..(s + 1) * len].to_vec()
                })
                .collect()
        })
        .collect())
}

fn flatten(value: &Value, out: &mut Vec<f32>) -> std::result::Result<(), String> {
    match value {
        Value::Number(n) => {
            let x = n.as_f64().ok_or_else(|| format!("{n} is not a finite number"))?;
            if !x.is_finite() {
                return Err(format!("{n} is not a finite number"));
            }
            out.push(x as f32);
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|v| flatten(v, out)),
        other => Err(format!("found {other}, expected a number")),
    }
}

/// Writes an `input.json` for the given flat inputs.
pub fn input_json(inputs: &[Vec<f32>]) -> Value {
    serde_json::json!({ "input_data": inputs })
}
