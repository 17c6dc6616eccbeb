//! `zkinfer calibrate`: scales chosen from samples, a per-layer report against tract, settings
//! that keep their visibility, and a clear error for inputs beyond the calibrated range.

mod common;

use common::{example, fails, fixture, json, ok, work_with, write_json};
use serde_json::{json, Value};
use std::path::Path;

/// `n` deterministic samples around the example input: each value scaled by a factor in [0.5, 1.5].
fn samples_from(input: &Path, n: usize) -> Value {
    let base: Vec<f64> = json(input)["input_data"][0].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let mut all = Vec::new();
    for s in 0..n {
        for (i, v) in base.iter().enumerate() {
            let factor = 0.5 + ((s * 31 + i * 17) % 101) as f64 / 100.0;
            all.push(v * factor);
        }
    }
    json!({ "input_data": [all] })
}

fn max_layer_error(report: &Value, op: &str) -> f64 {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["op"] == op)
        .map(|l| l["max_abs_error"].as_f64().unwrap_or_else(|| panic!("no error for {l}")))
        .fold(0.0, f64::max)
}

/// Compiles, sets up, proves and verifies `input.json` in `dir` with its settings, then tries to
/// prove the input with every value mapped by `enlarge`: returns the error, after checking that
/// no proof was written.
fn proves_then_refuses(dir: &Path, enlarge: impl Fn(f64) -> f64) -> String {
    for step in ["compile", "setup", "prove", "verify"] {
        ok(dir, &[step]);
    }
    let mut big = json(&dir.join("input.json"));
    for v in big["input_data"][0].as_array_mut().unwrap() {
        *v = json!(enlarge(v.as_f64().unwrap()));
    }
    write_json(&dir.join("big.json"), &big);
    let error = fails(dir, &["prove", "-D", "big.json", "--proof", "big_proof.json"]);
    assert!(!dir.join("big_proof.json").exists());
    error
}

#[test]
fn calibration_chooses_scales_from_samples_and_reports_every_layer() {
    let cnn = example("cnn_small");
    let work = work_with(&[(&cnn.join("network.onnx"), "network.onnx"), (&cnn.join("input.json"), "input.json")]);
    let dir = work.path();
    write_json(&dir.join("samples.json"), &samples_from(&dir.join("input.json"), 4));
    // Settings made first keep their visibility through calibration.
    ok(dir, &["gen-settings", "--input-visibility", "hashed"]);

    let out = ok(dir, &["calibrate", "-D", "samples.json", "--target", "accuracy"]);
    assert!(out.contains("Conv") && out.contains("Dense") && out.contains("max abs err"), "{out}");
    let accurate = json(&dir.join("settings.json"));
    let accurate_report = json(&dir.join("settings.calibration.json"));
    assert_eq!(accurate["visibility"]["input"], "hashed");
    assert_eq!(accurate_report["samples"], 4);
    assert_eq!(accurate_report["candidates"].as_array().unwrap().len(), 121);
    let accurate_error = accurate_report["chosen"]["max_abs_error"].as_f64().unwrap();
    assert!(accurate_error < 0.02, "accuracy target error {accurate_error}");
    // Every computed layer is compared with tract's value of the same ONNX output; the last
    // layer's error is the model's output error.
    assert!(max_layer_error(&accurate_report, "Conv") < 0.05);
    assert!((max_layer_error(&accurate_report, "Dense") - accurate_error).abs() < 1e-9);

    ok(dir, &["calibrate", "-D", "samples.json", "--target", "resources"]);
    let cheap = json(&dir.join("settings.json"));
    let cheap_report = json(&dir.join("settings.calibration.json"));
    let cheap_error = cheap_report["chosen"]["max_abs_error"].as_f64().unwrap();
    assert!(cheap_error >= accurate_error);
    let bits = |s: &Value| s["activation_bits"].as_u64().unwrap();
    assert!(bits(&cheap) <= bits(&accurate), "{cheap} vs {accurate}");
    assert!(bits(&cheap) >= 16, "the range keeps the default headroom: {cheap}");
    // Fixed weights and no tables: the circuit grows with the range alone, so the smallest range
    // within the tolerance is the smallest circuit, and nothing was laid out to find it.
    let candidates = cheap_report["candidates"].as_array().unwrap();
    assert!(candidates.iter().all(|c| c.get("circuit").is_none()), "{cheap_report}");
    // (Every candidate as accurate as the chosen one is within the tolerance.)
    let fewest_bits =
        candidates.iter().filter(|c| c["max_abs_error"].as_f64().unwrap() <= cheap_error).map(bits).min().unwrap();
    assert_eq!(bits(&cheap), fewest_bits, "{cheap}");

    // The calibrated settings prove the samples' kind of input; an input far beyond them is
    // refused before proving, naming the layer and the value.
    let error = proves_then_refuses(dir, |v| v * 1e4 + 1e3);
    assert!(error.contains("does not fit the circuit's range") && error.contains("at node '"), "{error}");
}

#[test]
fn calibration_handles_lookups_and_refuses_malformed_samples() {
    let model = fixture("sigmoid_mlp.onnx");
    let input = fixture("sigmoid_mlp.input.json");
    let work = work_with(&[(&model, "network.onnx"), (&input, "input.json")]);
    let dir = work.path();
    write_json(&dir.join("samples.json"), &samples_from(&dir.join("input.json"), 3));
    // Without settings.json, calibration starts from the defaults.
    ok(dir, &["calibrate", "-D", "samples.json", "--target", "accuracy"]);
    let accurate = json(&dir.join("settings.calibration.json"))["chosen"].clone();
    ok(dir, &["calibrate", "-D", "samples.json"]);
    let report = json(&dir.join("settings.calibration.json"));
    assert!(max_layer_error(&report, "Sigmoid") < 0.05, "{report}");
    assert_eq!(json(&dir.join("settings.json"))["visibility"]["params"], "fixed");
    // The sigmoid's table grows as 2^scale: the resources target takes a smaller one.
    let cheap = &report["chosen"];
    let rows = |c: &Value| c["table_rows"].as_u64().unwrap();
    assert!(rows(cheap) < rows(&accurate), "{cheap} vs {accurate}");
    assert!(cheap["max_abs_error"].as_f64().unwrap() >= accurate["max_abs_error"].as_f64().unwrap());
    // Every candidate here needs the default range: the table's size alone decides, and nothing
    // was laid out to find the smallest circuit.
    assert!(report["candidates"].as_array().unwrap().iter().all(|c| c.get("circuit").is_none()), "{report}");

    // Samples beyond 64-bit fixed point at every scale are refused with the smallest scales' error.
    write_json(&dir.join("huge.json"), &json!({ "input_data": [vec![3.0e18; 8]] }));
    let error = fails(dir, &["calibrate", "-D", "huge.json"]);
    assert!(error.contains("no candidate scales (2 to 12 bits)") && error.contains("at 2/2 bits"), "{error}");
    write_json(&dir.join("odd.json"), &json!({ "input_data": [[0.5, 0.25, 0.125]] }));
    let error = fails(dir, &["calibrate", "-D", "odd.json"]);
    assert!(error.contains("a multiple of 8"), "{error}");
}

#[test]
fn calibration_chooses_the_lookup_range_and_refuses_inputs_beyond_it() {
    let model = fixture("lookup_ops.onnx");
    let input = fixture("lookup_ops.input.json");
    let work = work_with(&[(&model, "network.onnx"), (&input, "input.json")]);
    let dir = work.path();
    write_json(&dir.join("samples.json"), &samples_from(&dir.join("input.json"), 4));
    let out = ok(dir, &["calibrate", "-D", "samples.json"]);
    assert!(out.contains("Exp") && out.contains("Erf") && out.contains("Softplus"), "{out}");
    let settings = json(&dir.join("settings.json"));
    let range: Vec<f64> = settings["lookup_range"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(range[0] < -1.0 && range[1] > 1.0 && range[1] - range[0] < 20.0, "{settings}");
    let report = json(&dir.join("settings.calibration.json"));
    for op in ["Exp", "Softplus", "Erf", "Selu", "Softsign"] {
        assert!(max_layer_error(&report, op) < 0.05, "{op}: {report}");
    }

    // An input whose activations leave the tables is refused before proving, naming the layer,
    // the value and the table's range.
    let error = proves_then_refuses(dir, |v| v * 20.0);
    assert!(error.contains("outside its lookup table") && error.contains("zkinfer calibrate"), "{error}");
}

/// On a model whose output is its input, the error calibration reports is the error of what is
/// proven, against tract's float output of the real input (it once compared nothing and reported
/// 0 at input scale 2, where the proven outputs were all 0).
#[test]
fn calibration_reports_the_error_of_what_is_proven() {
    let work = work_with(&[(&fixture("identity.onnx"), "network.onnx")]);
    let dir = work.path();
    let samples: Vec<Vec<f64>> = vec![vec![0.0149, 0.0635], vec![-0.2718, 0.0031], vec![0.5, -0.0077]];
    write_json(&dir.join("samples.json"), &json!({ "input_data": [samples.concat()] }));
    write_json(&dir.join("input.json"), &json!({ "input_data": [samples[0]] }));
    for target in ["resources", "accuracy"] {
        ok(dir, &["calibrate", "-D", "samples.json", "--target", target]);
        let report = json(&dir.join("settings.calibration.json"));
        for candidate in report["candidates"].as_array().unwrap() {
            let one = (1u64 << candidate["input_scale"].as_u64().unwrap()) as f64;
            let expected = samples.iter().flatten().map(|&x| ((x * one).round() / one - x).abs()).fold(0.0, f64::max);
            let reported = candidate["max_abs_error"].as_f64().unwrap();
            assert!((reported - expected).abs() < 1e-6, "{target}: {candidate} should report {expected}");
        }
        let chosen = report["chosen"]["max_abs_error"].as_f64().unwrap();
        assert!(chosen > 0.0 && chosen < 0.01, "{target}: {}", report["chosen"]);
    }
    // What is proven is the input at the calibrated scale, within the reported error.
    for step in ["compile", "setup", "prove"] {
        ok(dir, &[step]);
    }
    let out = ok(dir, &["verify"]);
    let line = out.lines().find(|l| l.starts_with("proven output")).unwrap_or_else(|| panic!("{out}"));
    let proven: Vec<f64> = serde_json::from_str(line.rsplit(": ").next().unwrap()).unwrap();
    let chosen = json(&dir.join("settings.calibration.json"))["chosen"]["max_abs_error"].as_f64().unwrap();
    for (p, x) in proven.iter().zip(&samples[0]) {
        assert!((p - x).abs() <= chosen + 1e-9, "proven {p} for input {x}, reported error {chosen}");
    }
}
