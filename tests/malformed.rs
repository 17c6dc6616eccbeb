//! Every parser of a file a user or a prover supplies (settings.json, model.compiled,
//! input.json, proof.json, vk.bin's header, deployment.json, the ONNX model) answers a damaged
//! or hostile file with an error, never a panic: property tests over random mutations of real
//! artifacts, each mutation a JSON value replaced deep inside the file (or, for binary files,
//! bytes changed).

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use proptest::prelude::*;
use serde_json::Value;

/// One run of the 16→32→8 MLP with public input and params, hashed output: every kind of span
/// in its files.
fn prepared() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = mlp_small_workdir();
        let args = ["run", "-M", "network.onnx", "-D", "input.json", "--dir", "."];
        let visibility = ["--param-visibility", "public", "--output-visibility", "hashed"];
        ok(dir.path(), &[&args[..], &visibility].concat());
        ok(dir.path(), &["deploy", "--registry", "--model", "m"]);
        dir
    })
    .path()
}

/// Values a hostile file puts where another was expected.
fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(Value::Bool(true)),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        Just(Value::from(0)),
        Just(Value::from(64)),
        Just(Value::from(253)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        Just(Value::from("")),
        Just(Value::from("0x")),
        Just(Value::from(format!("0x{}", "ff".repeat(32)))),
        Just(Value::from(format!("0x{}", "00".repeat(32)))),
        Just(Value::Array(Vec::new())),
        Just(Value::Object(Default::default())),
        Just(Value::Array(vec![Value::from(1); 3])),
    ]
}

/// Every place in a JSON tree, as a path of keys and indices.
fn places(value: &Value, at: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                at.push(Value::from(k.as_str()));
                places(v, at, out);
                at.pop();
            }
        }
        Value::Array(items) => {
            // The first and last few elements stand for the rest of a long array.
            let n = items.len();
            for i in (0..n).filter(|&i| i < 3 || i + 3 >= n) {
                at.push(Value::from(i));
                places(&items[i], at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'a>(value: &'a mut Value, path: &[Value]) -> &'a mut Value {
    path.iter().fold(value, |v, step| match step {
        Value::String(k) => &mut v[k.as_str()],
        Value::Number(i) => &mut v[i.as_u64().unwrap() as usize],
        _ => unreachable!(),
    })
}

/// `file` with the place chosen by `pick` (a fraction of the places) replaced by `new`.
fn mutated(file: &Value, pick: f64, new: Value) -> Value {
    let mut all = Vec::new();
    places(file, &mut Vec::new(), &mut all);
    let path = &all[((all.len() - 1) as f64 * pick) as usize];
    let mut out = file.clone();
    *at_mut(&mut out, path) = new;
    out
}

/// Runs `f`, failing the property if it panics.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| TestCaseError::fail(format!("{what} panicked")))
}

fn scratch(name: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path().join(format!("{name}-{:?}", std::thread::current().id()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_mutated_proof_file_is_an_error_never_a_panic(pick in 0.0..1.0f64, new in hostile_value()) {
        let w = prepared();
        let path = scratch("proof.json");
        write_json(&path, &mutated(&json(&w.join("proof.json")), pick, new));
        let verified = no_panic("verify", || {
            zkinfer::pipeline::verify(&w.join("vk.bin"), &path, None, &Default::default())
        })?;
        // A mutation of a field verify reads never verifies; one of a field it ignores (the
        // zkinfer version, the published outputs) leaves the same proof.
        if let Ok(verified) = verified {
            let honest = zkinfer::pipeline::verify(&w.join("vk.bin"), &w.join("proof.json"), None, &Default::default());
            prop_assert_eq!(format!("{:?}", verified.instances), format!("{:?}", honest.unwrap().instances));
        }
    }

    #[test]
    fn a_mutated_settings_file_is_an_error_never_a_panic(pick in 0.0..1.0f64, new in hostile_value()) {
        let w = prepared();
        let path = scratch("settings.json");
        write_json(&path, &mutated(&json(&w.join("settings.json")), pick, new));
        let _ = no_panic("compile", || {
            zkinfer::pipeline::compile(&w.join("network.onnx"), &path, &scratch("model.compiled"))
        })?;
    }

    #[test]
    fn a_mutated_compiled_model_is_an_error_never_a_panic(pick in 0.0..1.0f64, new in hostile_value()) {
        let w = prepared();
        let path = scratch("model.compiled");
        // As a hostile author would write it: the digest recomputed over the mutation.
        let mut compiled = mutated(&json(&w.join("model.compiled")), pick, new);
        let parsed: Result<zkinfer::artifacts::CompiledModel, _> = serde_json::from_value(compiled.clone());
        if let Ok(c) = parsed {
            compiled["circuit_digest"] = Value::from(zkinfer::artifacts::circuit_digest(&c.model, &c.shape, &c.settings));
        }
        write_json(&path, &compiled);
        let _ = no_panic("prove", || {
            zkinfer::pipeline::prove(
                &path,
                &w.join("pk.bin"),
                &w.join("input.json"),
                None,
                &scratch("witness.json"),
                &scratch("proof-out.json"),
                zkinfer::prove::TranscriptKind::Keccak,
                None,
            )
        })?;
    }

    #[test]
    fn mutated_input_data_is_an_error_never_a_panic(pick in 0.0..1.0f64, new in hostile_value()) {
        let w = prepared();
        let path = scratch("input.json");
        write_json(&path, &mutated(&json(&w.join("input.json")), pick, new));
        let _ = no_panic("commit", || {
            zkinfer::pipeline::commit(zkinfer::pipeline::ModelSource::Compiled(&w.join("model.compiled")), Some(&path), &[])
        })?;
    }

    #[test]
    fn a_mutated_key_header_is_an_error_never_a_panic(pick in 0.0..1.0f64, new in hostile_value()) {
        let w = prepared();
        let path = scratch("vk.bin");
        std::fs::copy(w.join("vk.bin"), &path).unwrap();
        edit_key_header(&path, |header| *header = mutated(header, pick, new));
        let read = no_panic("read_vk_checked", || zkinfer::prove::keys::read_vk_checked(&path, None))?;
        if read.is_ok() {
            // Only an edit the binding does not cover (the writing version, the break points
            // of a verifying key) may pass; the key then says exactly what the original says.
            let (edited, _, _) = read.unwrap();
            let (original, _, _) = zkinfer::prove::keys::read_vk_checked(&w.join("vk.bin"), None).unwrap();
            prop_assert_eq!(edited.binding(), original.binding());
        }
    }

    #[test]
    fn a_mutated_deployment_file_is_an_error_never_a_panic(pick in 0.0..1.0f64, new in hostile_value()) {
        let w = prepared();
        let path = scratch("deployment.json");
        write_json(&path, &mutated(&json(&w.join("deployment.json")), pick, new));
        let _ = no_panic("deployment", || zkinfer::onchain::DeploymentFile::load(&path))?;
    }

    #[test]
    fn a_damaged_onnx_model_is_an_error_never_a_panic(at in 0.0..1.0f64, byte in any::<u8>(), cut in any::<bool>()) {
        let w = prepared();
        let mut bytes = std::fs::read(w.join("network.onnx")).unwrap();
        let i = ((bytes.len() - 1) as f64 * at) as usize;
        if cut { bytes.truncate(i) } else { bytes[i] = byte }
        let path = scratch("network.onnx");
        std::fs::write(&path, bytes).unwrap();
        let _ = no_panic("import", || zkinfer::model::import_onnx(&path))?;
    }
}
