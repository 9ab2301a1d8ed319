//! Criterion bench of model inference alone, tract single thread (the agent's runner, which
//! runs tract's plan on the calling thread): the shipped float32 parent against the shipped
//! int8 model, on the normalised input of a 1080p phantom frame; then the shipped model's
//! preprocessing (with its native-resolution detail channel) and the whole scorer with it.
//! `cargo bench --bench model`. Extra candidate files (each with its manifest beside it) can
//! be added with `ENDO_BENCH_MODELS=a.onnx,b.onnx` — models/train/run.sh uses that to time
//! the static-QDQ candidate it does not ship.

#[path = "../tests/common/root.rs"]
mod root;

use criterion::{criterion_group, criterion_main, Criterion};
use endo_agent::config::{FovConfig, ScoringConfig};
use endo_agent::fov::{FovLocator, Locate};
use endo_agent::phantom::{Phantom, PhantomConfig};
use endo_agent::score::model::ModelRunner;
use endo_agent::score::preprocess::Preprocessor;
use endo_agent::score::Scorer;
use std::hint::black_box;
use std::path::PathBuf;

fn models() -> Vec<PathBuf> {
    let dir = root::repo().join("models");
    let mut v = vec![dir.join("quality.onnx"), dir.join("quality-int8.onnx")];
    if let Ok(extra) = std::env::var("ENDO_BENCH_MODELS") {
        v.extend(
            extra
                .split(',')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        );
    }
    v
}

fn benches(c: &mut Criterion) {
    let p = Phantom::new(PhantomConfig {
        width: 1920,
        height: 1080,
        ..PhantomConfig::default()
    });
    let frame = p.render(30);
    let mut g = c.benchmark_group("model_inference_tract_1thread");
    for path in models() {
        let mut m = ModelRunner::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut pre = Preprocessor::new(&m.manifest().input);
        pre.run(&frame.view(), p.fov_rect());
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        g.bench_function(name, |b| b.iter(|| m.run(black_box(&pre.input)).unwrap()));
    }
    g.finish();

    let shipped = models()[1].clone();
    let m = ModelRunner::load(&shipped).unwrap();
    let mut pre = Preprocessor::new(&m.manifest().input);
    let view = frame.view();
    c.bench_function("preprocess_1080p_shipped_contract", |b| {
        b.iter(|| pre.run(black_box(&view), p.fov_rect()))
    });
    // The same without the detail channel: what the native-resolution tiles cost.
    let mut overview_only = m.manifest().input.clone();
    overview_only.detail = None;
    overview_only.shape[1] = 3;
    let mut pre3 = Preprocessor::new(&overview_only);
    c.bench_function("preprocess_1080p_shipped_contract_without_detail", |b| {
        b.iter(|| pre3.run(black_box(&view), p.fov_rect()))
    });
    let fov = match FovLocator::new(&FovConfig {
        auto_frames: 1,
        ..FovConfig::default()
    })
    .observe(&view)
    {
        Locate::Locked(f) => f.clone(),
        Locate::Pending | Locate::Refused => panic!("no field of view in the phantom frame"),
    };
    let mut scorer = Scorer::new(ScoringConfig::default(), Some(m));
    c.bench_function("scorer_total_1080p_shipped_model", |b| {
        b.iter(|| scorer.score(black_box(&view), &fov).unwrap())
    });
}

criterion_group!(benches_group, benches);
criterion_main!(benches_group);
