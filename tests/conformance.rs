//! The conformance runner (`conformance/run.py`) on part of the suite of PyTorch-exported models
//! the `onnx` package ships: the runner makes its own virtual environment (onnx and numpy from
//! PyPI) on first use, then proves every model and compares with the suite's outputs.

mod common;

use std::process::Command;

#[test]
fn softmax_models_of_the_onnx_suite_prove_and_match_the_expected_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("rows.json");
    let runner = common::root().join("conformance").join("run.py");
    let out = Command::new("python3")
        .arg(&runner)
        .args(["--filter", "oftmax", "--zkinfer", env!("CARGO_BIN_EXE_zkinfer"), "--json"])
        .arg(&report)
        .output()
        .expect("the conformance runner needs python3 (with its venv module) on PATH");
    let log = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{log}");
    let rows = common::json(&report)["rows"].as_array().unwrap().clone();
    let mut names: Vec<&str> = rows.iter().map(|r| r["model"].as_str().unwrap()).collect();
    names.sort_unstable();
    // Softmax and LogSoftmax over the last, a middle and the legacy (opset < 13) axes.
    let expected = [
        "test_LogSoftmax",
        "test_Softmax",
        "test_log_softmax_dim3",
        "test_log_softmax_lastdim",
        "test_softmax_functional_dim3",
        "test_softmax_lastdim",
    ];
    assert_eq!(names, expected, "{log}");
    for row in &rows {
        assert_eq!(row["status"], "pass", "{row}\n{log}");
        assert_eq!(row["verified"], true, "{row}");
    }
    assert!(log.contains("6 of 6 inference models pass"), "{log}");
}
