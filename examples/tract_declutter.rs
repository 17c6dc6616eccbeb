//! Measures what importing through tract's normalised (typed, decluttered) model would give
//! against zkinfer's own importer, model by model: whether tract declutters the model, the op
//! types its decluttered graph holds, and whether zkinfer imports the model.
//!
//!     cargo run --release --example tract_declutter -- MODEL.onnx...
//!
//! Prints one line per model and a summary: how many zkinfer imports, how many tract
//! declutters, and the op types of the decluttered graphs of the models zkinfer refuses (what an
//! import from tract's graph would have to prove instead).

use std::collections::BTreeMap;
use std::path::PathBuf;

use tract_onnx::prelude::*;

fn decluttered_ops(path: &std::path::Path) -> TractResult<Vec<String>> {
    let model = tract_onnx::onnx().model_for_path(path)?.into_typed()?.into_decluttered()?;
    let mut ops: Vec<String> = model.nodes().iter().map(|n| n.op().name().to_string()).collect();
    ops.sort();
    ops.dedup();
    Ok(ops)
}

fn main() {
    let paths: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let (mut ours, mut theirs) = (0, 0);
    let mut refused_ops: BTreeMap<String, usize> = BTreeMap::new();
    for path in &paths {
        let imported = zkinfer::model::import_onnx(path);
        let tract = decluttered_ops(path);
        ours += imported.is_ok() as usize;
        theirs += tract.is_ok() as usize;
        let ours_text = match &imported {
            Ok(graph) => format!("zkinfer: {} nodes", graph.nodes.len()),
            Err(e) => format!("zkinfer refuses: {e}").chars().take(120).collect(),
        };
        let tract_text = match &tract {
            Ok(ops) => format!("tract: {}", ops.join(" ")),
            Err(e) => format!("tract fails: {e}"),
        };
        if let (Err(_), Ok(ops)) = (&imported, &tract) {
            for op in ops {
                *refused_ops.entry(op.clone()).or_default() += 1;
            }
        }
        println!("{}\n    {ours_text}\n    {tract_text}", path.display());
    }
    println!(
        "\n{} models: zkinfer imports {ours}, tract declutters {theirs}; ops of tract's graphs for the models zkinfer refuses: {refused_ops:?}",
        paths.len()
    );
}
