//! Criterion bench: proving (witness generation included) the MNIST-sized MLP, 784→128→10.
//!
//!     cargo bench --bench prove
#![allow(missing_docs)]

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use zkinfer::pipeline;

fn prove_mnist_mlp(c: &mut Criterion) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join("mlp_mnist");
    let dir = tempfile::tempdir().expect("temporary folder");
    let file = |name: &str| dir.path().join(name);
    let model = example.join("network.onnx");
    pipeline::gen_settings(&model, &file("settings.json"), &Default::default()).expect("settings");
    pipeline::compile(&model, &file("settings.json"), &file("model.compiled")).expect("compile");
    pipeline::setup(&file("model.compiled"), None, &file("pk.bin"), &file("vk.bin")).expect("setup");

    let mut group = c.benchmark_group("prove");
    group.sample_size(10);
    group.bench_function("mlp_784_128_10", |b| {
        b.iter(|| {
            pipeline::prove(
                &file("model.compiled"),
                &file("pk.bin"),
                &example.join("input.json"),
                None,
                &file("witness.json"),
                &file("proof.json"),
                zkinfer::prove::TranscriptKind::Keccak,
                None,
            )
            .expect("prove")
        })
    });
    group.finish();
}

criterion_group!(benches, prove_mnist_mlp);
criterion_main!(benches);
