//! `calibrate`: chooses the fixed-point scales and the activation range from sample inputs, by
//! running the quantized model (the circuit's exact integer arithmetic) against tract's float
//! execution for every candidate, and reports the accuracy of the choice layer by layer.

use std::collections::hash_map::{Entry, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::artifacts::file_digest;
use crate::circuit::layout::choose_shape;
use rayon::prelude::*;

use crate::error::ImportError;
use crate::error::{read_file, write_json, Error, Result};
use crate::model::function::{domain, Function};
use crate::model::input::load_samples;
use crate::model::onnx::import_onnx_with_shapes;
use crate::model::quantize::signed_bits;
use crate::model::reference::{run_float_values, FloatRun};
use crate::model::{import_onnx, Graph, QOp, QuantizedModel};
use crate::settings::{gen_settings_for, SettingsOptions};
use crate::settings::{Settings, DEFAULT_ACTIVATION_BITS};

/// What the calibration optimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The smallest output error the candidate scales reach.
    Accuracy,
    /// The smallest circuit (k, then advice cells, as `compile` lays it out) among the
    /// candidates whose output error is within twice the best one or within 1% of the largest
    /// output magnitude; the most accurate of those.
    Resources,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Target::Accuracy => "accuracy",
            Target::Resources => "resources",
        })
    }
}

/// Candidate scales (bits) for inputs/activations and weights.
pub const CANDIDATE_SCALES: std::ops::RangeInclusive<u32> = 2..=12;

/// Bits of headroom added above the widest activation the samples produce, so that inputs a
/// little beyond the samples still fit. The range never goes below the default
/// ([`DEFAULT_ACTIVATION_BITS`]), which costs little and leaves room for unseen inputs.
pub const HEADROOM_BITS: u32 = 1;

/// One candidate's measured accuracy and cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Input/activation scale.
    pub input_scale: u32,
    /// Weight scale.
    pub param_scale: u32,
    /// The range the samples need, with headroom.
    pub activation_bits: u32,
    /// Rows of the lookup tables (Sigmoid, Exp, ...), which grow as 2^input_scale.
    #[serde(default)]
    pub table_rows: usize,
    /// The circuit's k and advice cells at these scales, where the resources target laid it out
    /// (only where no candidate's circuit is known to be the smallest without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit: Option<(u32, usize)>,
    /// Largest absolute output error over all samples.
    pub max_abs_error: f64,
    /// Mean absolute output error over all samples.
    pub mean_abs_error: f64,
}

/// Running absolute errors of dequantized values against float ones.
#[derive(Clone, Copy, Debug, Default)]
struct Errors {
    max: f64,
    sum: f64,
    count: usize,
}

impl Errors {
    fn add(&mut self, quantized: &[f64], float: &[f32]) {
        for (q, f) in quantized.iter().zip(float) {
            let err = (q - f64::from(*f)).abs();
            self.max = self.max.max(err);
            self.sum += err;
            self.count += 1;
        }
    }

    fn mean(&self) -> f64 {
        self.sum / self.count.max(1) as f64
    }
}

/// `base` with the scales and range of a candidate.
fn with_scales(base: &Settings, input_scale: u32, param_scale: u32, activation_bits: u32) -> Settings {
    Settings { input_scale, param_scale, activation_bits, ..base.clone() }
}

/// The error of one layer's dequantized output against tract's float value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerError {
    /// The ONNX node.
    pub node: String,
    /// What the circuit computes there.
    pub op: String,
    /// The ONNX value compared.
    pub value: String,
    /// Largest absolute error over the samples; `None` where tract does not expose the value.
    pub max_abs_error: Option<f64>,
    /// Mean absolute error over the samples.
    pub mean_abs_error: Option<f64>,
}

/// What `calibrate` chose and measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The target.
    pub target: Target,
    /// Number of samples.
    pub samples: usize,
    /// The chosen candidate.
    pub chosen: Candidate,
    /// Every candidate that ran, for inspection.
    pub candidates: Vec<Candidate>,
    /// Per-layer errors of the chosen candidate.
    pub layers: Vec<LayerError>,
}

/// `calibrate`: updates (or creates) `settings.json` with the scales and activation range chosen
/// from `samples`, keeping the visibility and k of an existing settings file for the same model.
/// Writes the full report beside it (`<settings>.calibration.json`).
pub fn calibrate(
    model: &Path,
    samples_path: &Path,
    settings_path: &Path,
    target: Target,
) -> Result<(Settings, Calibration)> {
    let digest = file_digest(&read_file(model)?);
    // Settings made for this model keep their shapes (a batch sized by `gen-settings -D`).
    let (graph, base) = match Settings::load(settings_path) {
        Ok(s) if s.model_digest == digest => (import_onnx_with_shapes(model, Some(&s.input_shapes))?, s),
        _ => {
            let graph = import_onnx(model)?;
            let settings = gen_settings_for(&graph, &digest, &SettingsOptions::default());
            (graph, settings)
        }
    };
    let samples = load_samples(samples_path, &base.input_shapes)?;
    let base = Settings { lookup_range: lookup_range(&graph, &base, &samples)?.or(base.lookup_range), ..base };
    let names: Vec<String> = graph.nodes.iter().map(|n| n.value.clone()).collect();
    let float = run_float_values(model, &base.input_shapes, &samples, &names)?;
    // The error of what is proven is measured against the model's own outputs as tract computes
    // them (not against intermediate values: an output may be an input passed through).
    let float_outputs: Vec<Vec<f32>> = float.iter().map(|run| run.outputs.concat()).collect();
    let magnitude = float_outputs.iter().flatten().fold(0f64, |m, &v| m.max(f64::from(v).abs()));

    // Every scale pair, evaluated in parallel (each runs the integer reference on every sample),
    // with a progress bar; results in grid order.
    let grid: Vec<(u32, u32)> = CANDIDATE_SCALES.flat_map(|i| CANDIDATE_SCALES.map(move |p| (i, p))).collect();
    let bar = crate::progress::counter("calibrating scale pairs", grid.len());
    let results: Vec<Result<Candidate>> = grid
        .par_iter()
        .map(|&(input_scale, param_scale)| {
            let result = evaluate(&graph, &base, input_scale, param_scale, &samples, &float_outputs);
            bar.inc(1);
            result
        })
        .collect();
    bar.finish_and_clear();
    let mut candidates = Vec::new();
    let mut first_error = None;
    for result in results {
        match result {
            Ok(c) => candidates.push(c),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if candidates.is_empty() {
        // The smallest scales fail last of all: their error says how far the samples are out.
        let (lo, hi) = (CANDIDATE_SCALES.start(), CANDIDATE_SCALES.end());
        let reason = first_error.map(|e| e.to_string()).unwrap_or_default();
        return Err(ImportError::UnsupportedModel(format!(
            "no candidate scales ({lo} to {hi} bits) hold these samples in the circuit's range; at {lo}/{lo} bits: \
             {reason}"
        ))
        .into());
    }
    let best = candidates.iter().map(|c| c.max_abs_error).fold(f64::INFINITY, f64::min);
    let chosen = match target {
        Target::Accuracy => candidates
            .iter()
            .min_by(|a, b| a.max_abs_error.total_cmp(&b.max_abs_error).then(a.activation_bits.cmp(&b.activation_bits)))
            .expect("at least one candidate")
            .clone(),
        Target::Resources => {
            let tolerance = (2.0 * best).max(0.01 * magnitude);
            cheapest(&graph, &base, &mut candidates, tolerance)?
        }
    };

    let settings = with_scales(&base, chosen.input_scale, chosen.param_scale, chosen.activation_bits);
    settings.validate().map_err(|reason| Error::artifact(settings_path, reason))?;
    let quantized = QuantizedModel::quantize(&graph, &settings)?;
    let layers = layer_errors(&quantized, &samples, &float)?;
    let calibration = Calibration { target, samples: samples.len(), chosen, candidates, layers };
    write_json(settings_path, &settings)?;
    write_json(&report_path(settings_path), &calibration)?;
    Ok((settings, calibration))
}

/// Where `calibrate` writes its report for a settings file.
pub fn report_path(settings_path: &Path) -> std::path::PathBuf {
    settings_path.with_extension("calibration.json")
}

/// Scale (bits) at which the samples' lookup inputs are measured.
const RANGE_SCALE: u32 = 12;

/// The float inputs the lookup tables must cover, from the samples: the span of every lookup
/// function's inputs, widened on each side by half the span (at least 0.5), as for inputs a
/// little beyond the samples. `None` when the model has no lookup.
fn lookup_range(graph: &Graph, base: &Settings, samples: &[Vec<Vec<f32>>]) -> Result<Option<[f64; 2]>> {
    let settings = Settings { lookup_range: None, ..with_scales(base, RANGE_SCALE, RANGE_SCALE, 64) };
    let quantized = QuantizedModel::quantize(graph, &settings)?;
    let inputs: Vec<usize> =
        quantized.nodes.iter().filter(|n| matches!(n.op, QOp::Lookup(_))).map(|n| n.inputs[0]).collect();
    if inputs.is_empty() {
        return Ok(None);
    }
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for sample in samples {
        let values = quantized.execute(&quantized.quantize_inputs(sample))?;
        for v in inputs.iter().flat_map(|&i| quantized.dequantize(&values[i])) {
            (lo, hi) = (lo.min(v), hi.max(v));
        }
    }
    let margin = ((hi - lo) / 2.0).max(0.5);
    Ok(Some([lo - margin, hi + margin]))
}

/// Runs the model quantized at the given scales on every sample, with the widest range the
/// circuit supports, and measures the range it needs and its output error.
fn evaluate(
    graph: &Graph,
    base: &Settings,
    input_scale: u32,
    param_scale: u32,
    samples: &[Vec<Vec<f32>>],
    float_outputs: &[Vec<f32>],
) -> Result<Candidate> {
    let quantized = QuantizedModel::quantize(graph, &with_scales(base, input_scale, param_scale, 64))?;
    let mut bits = DEFAULT_ACTIVATION_BITS.max(input_scale + 1);
    let mut errors = Errors::default();
    for (sample, expected) in samples.iter().zip(float_outputs) {
        let values = quantized.execute(&quantized.quantize_inputs(sample))?;
        bits = bits.max(values.iter().map(|v| signed_bits(v)).max().unwrap_or(0) + HEADROOM_BITS);
        if bits > 64 {
            break;
        }
        let outputs: Vec<f64> = quantized.outputs.iter().flat_map(|&o| quantized.dequantize(&values[o])).collect();
        if outputs.len() != expected.len() {
            return Err(ImportError::UnsupportedModel(format!(
                "the imported model has {} output values but tract computes {}: their errors cannot be measured",
                outputs.len(),
                expected.len()
            ))
            .into());
        }
        errors.add(&outputs, expected);
    }
    if bits > 64 {
        return Err(ImportError::UnsupportedModel(format!(
            "scales {input_scale}/{param_scale} need {bits}-bit activations, above the circuit's 64"
        ))
        .into());
    }
    // One table per function: the rows at this scale and range.
    let mut functions: Vec<Function> = Vec::new();
    for node in &graph.nodes {
        if let crate::model::Op::Lookup(crate::ops::activation::Lookup { func }) = node.op {
            if !functions.contains(&func) {
                functions.push(func);
            }
        }
    }
    let range = base.lookup_range.map(|[lo, hi]| (lo, hi));
    let table_rows = functions.iter().filter_map(|&f| domain(f, input_scale, bits, range).ok()).map(|d| d.rows()).sum();
    Ok(Candidate {
        input_scale,
        param_scale,
        activation_bits: bits,
        table_rows,
        circuit: None,
        max_abs_error: errors.max,
        mean_abs_error: errors.mean(),
    })
}

/// The candidate within `tolerance` whose circuit is smallest (k, then advice cells), the most
/// accurate among equals. When one candidate's key is at most every other's, nothing is laid out;
/// otherwise circuits are laid out once per distinct range, scale of the lookup
/// tables and, for parameters that are not fixed, weight scale: what their size depends on.
fn cheapest(graph: &Graph, base: &Settings, candidates: &mut [Candidate], tolerance: f64) -> Result<Candidate> {
    // Lookup tables grow with the input scale.
    let tables = graph.nodes.iter().any(|n| matches!(n.op, crate::model::Op::Lookup { .. }));
    let params_loaded = base.visibility.params != crate::settings::Visibility::Fixed;
    let key_of = |c: &Candidate| {
        (c.activation_bits, if tables { c.input_scale } else { 0 }, if params_loaded { c.param_scale } else { 0 })
    };
    // The circuit grows with each part of the key (wider range checks, larger tables, wider
    // packed params): only keys that no other key within the tolerance is at most everywhere
    // can be the smallest, and only those are laid out.
    let minimal = minimal_keys(candidates.iter().filter(|c| c.max_abs_error <= tolerance).map(key_of).collect());
    if let [only] = minimal[..] {
        // One key is at most every other: its circuit is the smallest without laying any out
        // (on a large model each layout costs as much as `compile`).
        return Ok(candidates
            .iter()
            .filter(|c| c.max_abs_error <= tolerance && key_of(c) == only)
            .min_by(|a, b| a.max_abs_error.total_cmp(&b.max_abs_error))
            .expect("the minimal key comes from a candidate within the tolerance")
            .clone());
    }
    let mut sizes: HashMap<SizeKey, (u32, usize)> = HashMap::new();
    for c in candidates.iter_mut().filter(|c| c.max_abs_error <= tolerance && minimal.contains(&key_of(c))) {
        let key = key_of(c);
        let size = match sizes.entry(key) {
            Entry::Occupied(known) => *known.get(),
            Entry::Vacant(slot) => {
                let settings = with_scales(base, c.input_scale, c.param_scale, c.activation_bits);
                let quantized = QuantizedModel::quantize(graph, &settings)?;
                // Without our gates: the sizes only rank candidates, and each geometry would lay
                // the model out once more.
                use crate::circuit::layout::{LinearGate, PoseidonGate, ShapeOptions};
                let options = ShapeOptions {
                    linear_gate: LinearGate::Off,
                    poseidon_gate: PoseidonGate::Off,
                    max_gas: None,
                    ..ShapeOptions::from(base)
                };
                let shape = choose_shape(&quantized, &options)?;
                *slot.insert((shape.k, shape.advice_cells))
            }
        };
        c.circuit = Some(size);
    }
    Ok(candidates
        .iter()
        .filter_map(|c| c.circuit.map(|size| (size, c)))
        .min_by(|(sa, a), (sb, b)| sa.cmp(sb).then(a.max_abs_error.total_cmp(&b.max_abs_error)))
        .map(|(_, c)| c.clone())
        .expect("the most accurate candidate is within the tolerance"))
}

/// What a circuit's size grows with: (range bits, table scale, packed-weight scale).
type SizeKey = (u32, u32, u32);

/// The keys no other key is at most in every part: only their circuits can be the smallest.
fn minimal_keys(mut keys: Vec<SizeKey>) -> Vec<SizeKey> {
    keys.sort_unstable();
    keys.dedup();
    let dominated = |k: &SizeKey| keys.iter().any(|o| o != k && o.0 <= k.0 && o.1 <= k.1 && o.2 <= k.2);
    keys.iter().copied().filter(|k| !dominated(k)).collect()
}

/// Each computed layer's error against tract's float value of the same ONNX value.
fn layer_errors(quantized: &QuantizedModel, samples: &[Vec<Vec<f32>>], float: &[FloatRun]) -> Result<Vec<LayerError>> {
    // `None` for a layer whose float value tract does not expose (or exposes in another size).
    let mut stats: Vec<Option<Errors>> = vec![Some(Errors::default()); quantized.nodes.len()];
    for (sample, run) in samples.iter().zip(float) {
        let per_node = &run.values;
        let values = quantized.execute(&quantized.quantize_inputs(sample))?;
        for (i, stat) in stats.iter_mut().enumerate() {
            match (stat.as_mut(), per_node[i].as_ref().filter(|f| f.len() == values[i].len())) {
                (Some(errors), Some(reference)) => errors.add(&quantized.dequantize(&values[i]), reference),
                _ => *stat = None,
            }
        }
    }
    Ok(quantized
        .nodes
        .iter()
        .zip(stats)
        .filter(|(node, _)| !matches!(node.op, QOp::Input(_)))
        .map(|(node, stat)| LayerError {
            node: node.name.clone(),
            op: op_name(&node.op),
            value: node.value.clone(),
            max_abs_error: stat.map(|e| e.max),
            mean_abs_error: stat.map(|e| e.mean()),
        })
        .collect())
}

/// The name of an operation's variant ("Dense", "Relu", ...).
fn op_name(op: &QOp) -> String {
    match op {
        QOp::Lookup(lookup) => lookup.func.name().into(),
        op => op.name().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::minimal_keys;

    #[test]
    fn only_keys_no_other_key_bounds_are_laid_out() {
        // A chain: one key is at most every other, and nothing needs laying out to know it.
        assert_eq!(minimal_keys(vec![(18, 8, 0), (16, 8, 0), (16, 9, 0), (16, 8, 0)]), vec![(16, 8, 0)]);
        // A narrower range against a smaller table: both may be the smallest circuit.
        assert_eq!(minimal_keys(vec![(16, 9, 0), (17, 7, 0), (17, 9, 0)]), vec![(16, 9, 0), (17, 7, 0)]);
        assert_eq!(minimal_keys(vec![(16, 0, 8), (16, 0, 6), (20, 0, 2)]), vec![(16, 0, 6), (20, 0, 2)]);
    }
}
