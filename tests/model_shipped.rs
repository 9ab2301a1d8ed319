//! The shipped quality model (models/quality-int8.onnx, the agent's default, and its
//! float32 parent models/quality.onnx): loaded through the agent's runner with the
//! manifest's hash checked, tract's outputs match onnxruntime's on the committed reference
//! inputs (models/reference/, written by models/train/package.py) within [`TOLERANCE`] (1e-5), and
//! it ranks a sharp 1080p phantom frame above the same frame mildly defocused, darkened and
//! glared. Training never runs here: only committed files are used.

#[path = "common/root.rs"]
mod root;

use endo_agent::phantom::{Degradation, Phantom, PhantomConfig, Schedule};
use endo_agent::score::model::{manifest_path, sha256_hex, Manifest, ModelRunner};
use endo_agent::score::preprocess::Preprocessor;
use std::path::{Path, PathBuf};

/// Largest allowed |tract − onnxruntime| on any output (values are 0..1). Both run the same
/// float32 arithmetic in a different order; the measured difference is ≤ 2.4e-7 (printed
/// with `--nocapture`), so this leaves room for other CPUs' SIMD paths.
const TOLERANCE: f32 = 1e-5;

fn models() -> PathBuf {
    root::repo().join("models")
}

fn shipped() -> PathBuf {
    models().join("quality-int8.onnx")
}

#[test]
fn the_shipped_model_is_int8_and_its_manifest_hash_matches_the_file() {
    for file in ["quality-int8.onnx", "quality.onnx"] {
        let path = models().join(file);
        let text = std::fs::read_to_string(manifest_path(&path)).unwrap();
        let m: Manifest = serde_json::from_str(&text).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(sha256_hex(&bytes), m.sha256, "{file}");
        assert!(bytes.len() <= 1 << 20, "{file} is {} bytes", bytes.len());
        ModelRunner::load(&path).unwrap_or_else(|e| panic!("{e}"));
    }
    let runner = ModelRunner::load(&shipped()).unwrap();
    assert_eq!(runner.manifest().quantization, "int8-weight-only");
    assert!(runner.manifest().input.detail.is_some());
}

#[derive(serde::Deserialize)]
struct References {
    references: Vec<Reference>,
}

#[derive(serde::Deserialize)]
struct Reference {
    file: String,
    label: String,
    onnxruntime: std::collections::HashMap<String, Outputs>,
}

#[derive(serde::Deserialize)]
struct Outputs {
    quality: f32,
    artifacts: Vec<f32>,
}

/// A reference PNG (RGBA: channels 0..3 of the input as bytes) as the model's input.
fn reference_input(path: &Path, scale: f32) -> Vec<f32> {
    let img = image::open(path).unwrap().to_rgba8();
    let (w, h) = img.dimensions();
    let n = (w * h) as usize;
    let mut input = vec![0.0; 4 * n];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..4 {
            input[c * n + i] = px.0[c] as f32 * scale;
        }
    }
    input
}

#[test]
fn tract_matches_onnxruntime_on_the_reference_inputs() {
    let dir = models().join("reference");
    let refs: References =
        serde_json::from_str(&std::fs::read_to_string(dir.join("outputs.json")).unwrap()).unwrap();
    assert!(refs.references.len() >= 5);
    for file in ["quality-int8.onnx", "quality.onnx"] {
        let mut runner = ModelRunner::load(&models().join(file)).unwrap();
        let spec = runner.manifest().input.clone();
        assert_eq!(spec.scale, spec.detail.as_ref().unwrap().scale);
        for r in &refs.references {
            let input = reference_input(&dir.join(&r.file), spec.scale);
            let got = runner.run(&input).unwrap();
            let want = &r.onnxruntime[file];
            let mut worst = (got.quality - want.quality).abs();
            // The manifest lists artifacts in Artifact::ALL order, as ModelOutput does.
            for (g, w) in got.artifacts.iter().zip(&want.artifacts) {
                worst = worst.max((g - w).abs());
            }
            eprintln!(
                "{file} on {}: max |tract - onnxruntime| = {worst:.1e}",
                r.file
            );
            assert!(
                worst <= TOLERANCE,
                "{file} on {} ({}): tract {got:?} onnxruntime quality {} artifacts {:?}",
                r.file,
                r.label,
                want.quality,
                want.artifacts
            );
        }
    }
}

#[test]
fn the_shipped_model_ranks_a_sharp_frame_above_the_same_frame_blurred_darkened_and_glared() {
    let mut runner = ModelRunner::load(&shipped()).unwrap();
    let mut pre = Preprocessor::new(&runner.manifest().input);
    // Same seed and frame index: the same view of the same mucosa, degraded or not.
    let cases = [
        ("sharp", Degradation::None),
        (
            "defocus sigma 1.5 px",
            Degradation::Defocus { sigma_px: 1.5 },
        ),
        ("dark gain 0.3", Degradation::UnderExposure { gain: 0.3 }),
        ("glare 6 %", Degradation::Glare { area: 0.06 }),
    ];
    let q: Vec<(&str, f32)> = cases
        .iter()
        .map(|(name, d)| {
            let p = Phantom::new(PhantomConfig {
                width: 1920,
                height: 1080,
                seed: 77,
                schedule: Schedule::single(*d, 1.0),
                ..PhantomConfig::default()
            });
            let frame = p.render(12);
            pre.run(&frame.view(), p.fov_rect());
            (*name, runner.run(&pre.input).unwrap().quality)
        })
        .collect();
    let sharp = q[0].1;
    assert!(
        sharp >= 0.6,
        "sharp frame scored {sharp}, below threshold_high"
    );
    for (name, qi) in &q[1..] {
        assert!(*qi < 0.5, "{name} scored {qi}: not bad ({q:?})");
        assert!(sharp > *qi, "sharp {sharp} should beat {name} {qi}");
    }
}

/// The score thread's way (the preprocessor writing straight into the runner's own input
/// tensor, which the runner keeps with tract's run state between frames) gives the same
/// bits as a copied input and as a freshly loaded runner, whatever ran before.
#[test]
fn preprocessing_into_the_runners_input_gives_the_copied_inputs_bits_in_any_order() {
    let frames: Vec<_> = [Degradation::None, Degradation::Defocus { sigma_px: 3.0 }]
        .iter()
        .map(|d| {
            let p = Phantom::new(PhantomConfig {
                width: 1280,
                height: 720,
                seed: 5,
                schedule: Schedule::single(*d, 1.0),
                ..PhantomConfig::default()
            });
            (p.render(4), p.fov_rect())
        })
        .collect();
    let mut direct = ModelRunner::load(&shipped()).unwrap();
    let mut pre = Preprocessor::new(&direct.manifest().input);
    let fresh = |i: usize, pre: &mut Preprocessor| {
        let (img, fov) = &frames[i];
        pre.run(&img.view(), *fov);
        let mut runner = ModelRunner::load(&shipped()).unwrap();
        runner.run(&pre.input).unwrap()
    };
    let want = [fresh(0, &mut pre), fresh(1, &mut pre)];
    assert_ne!(want[0], want[1], "two different frames");
    for i in [0, 1, 0, 0, 1] {
        let (img, fov) = &frames[i];
        let got = direct
            .run_with(|input| pre.run_into(&img.view(), *fov, input))
            .unwrap();
        assert_eq!(got, want[i], "frame {i} written into the runner's input");
        pre.run(&img.view(), *fov);
        assert_eq!(direct.run(&pre.input).unwrap(), want[i], "frame {i} copied");
    }
}
