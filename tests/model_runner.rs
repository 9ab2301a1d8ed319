//! The model runner with the shipped reference model: tract's output matches an
//! independent computation of the model's closed-form definition
//! (models/tools/make_reference_model.py), and bad models are refused with their path
//! and the reason.

#[path = "common/root.rs"]
mod root;

use endo_agent::frame::{I420Image, Rect};
use endo_agent::phantom::{Degradation, Phantom, PhantomConfig, Schedule};
use endo_agent::score::model::{manifest_path, ModelRunner};
use endo_agent::score::preprocess::Preprocessor;
use std::path::{Path, PathBuf};

fn shipped() -> PathBuf {
    root::repo().join("models/quality-ref.onnx")
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The reference model, computed directly from its definition (constants from the script).
fn reference(input: &[f32], size: usize) -> (f64, [f64; 5]) {
    let n = size * size;
    let px = |c: usize, y: usize, x: usize| input[c * n + y * size + x] as f64;
    let gray = |y: usize, x: usize| 0.299 * px(0, y, x) + 0.587 * px(1, y, x) + 0.114 * px(2, y, x);
    let (mut lap, mut gx, mut gy) = (0.0, 0.0, 0.0);
    for y in 1..size - 1 {
        for x in 1..size - 1 {
            let c = gray(y, x);
            lap +=
                (gray(y - 1, x) + gray(y + 1, x) + gray(y, x - 1) + gray(y, x + 1) - 4.0 * c).abs();
            gx += (gray(y, x + 1) - c).abs();
            gy += (gray(y + 1, x) - c).abs();
        }
    }
    let valid = ((size - 2) * (size - 2)) as f64;
    let (l, g) = (lap / valid, gx / valid + gy / valid);
    let blur = sigmoid(12.0 * (0.35 - l / (g + 1e-6)));
    let (mut mean, mut bright, mut spec, mut mr, mut mb) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for y in 0..size {
        for x in 0..size {
            let g = gray(y, x);
            mean += g;
            bright += sigmoid(60.0 * (g - 0.92));
            let mn = px(0, y, x).min(px(1, y, x)).min(px(2, y, x));
            spec += sigmoid(80.0 * (mn - 0.88));
            mr += px(0, y, x);
            mb += px(2, y, x);
        }
    }
    let nf = n as f64;
    let dark = sigmoid(40.0 * (0.10 - mean / nf));
    let over = sigmoid(25.0 * (bright / nf - 0.35));
    let glare = sigmoid(250.0 * (spec / nf - 0.02)) * (1.0 - over);
    let outside = sigmoid(25.0 * ((mb - mr) / nf - 0.05));
    let a = [blur, dark, over, glare, outside];
    (a.iter().map(|v| 1.0 - v).product(), a)
}

fn phantom_frames() -> Vec<I420Image> {
    let schedule = [
        Degradation::None,
        Degradation::Defocus { sigma_px: 6.0 },
        Degradation::UnderExposure { gain: 0.1 },
        Degradation::Glare { area: 0.08 },
        Degradation::Outside,
    ];
    schedule
        .iter()
        .map(|d| {
            let p = Phantom::new(PhantomConfig {
                width: 640,
                height: 360,
                schedule: Schedule::single(*d, 1.0),
                ..PhantomConfig::default()
            });
            p.render(3)
        })
        .collect()
}

#[test]
fn tract_matches_the_reference_definition_within_1e4() {
    let mut runner = ModelRunner::load(&shipped()).unwrap();
    let spec = runner.manifest().input.clone();
    let mut pre = Preprocessor::new(&spec);
    for img in phantom_frames() {
        pre.run(&img.view(), Rect::new(200, 20, 320, 320));
        let got = runner.run(&pre.input).unwrap();
        let (q, a) = reference(&pre.input, 224);
        assert!(
            (got.quality as f64 - q).abs() < 1e-4,
            "quality tract {} reference {q}",
            got.quality
        );
        for (i, (t, r)) in got.artifacts.iter().zip(a).enumerate() {
            assert!(
                (*t as f64 - r).abs() < 1e-4,
                "artifact {i}: tract {t} reference {r}"
            );
        }
    }
}

#[test]
fn the_reference_model_ranks_a_sharp_frame_above_its_degraded_copies() {
    let mut runner = ModelRunner::load(&shipped()).unwrap();
    let mut pre = Preprocessor::new(&runner.manifest().input);
    let q: Vec<f32> = phantom_frames()
        .iter()
        .map(|img| {
            pre.run(&img.view(), Rect::new(200, 20, 320, 320));
            runner.run(&pre.input).unwrap().quality
        })
        .collect();
    for (i, qi) in q.iter().enumerate().skip(1) {
        assert!(q[0] > *qi, "sharp {} should beat degraded #{i} {qi}", q[0]);
    }
}

/// Copy the shipped model and manifest into a temp dir, letting the test spoil one.
fn copy_model(dir: &Path) -> PathBuf {
    let m = dir.join("quality-ref.onnx");
    std::fs::copy(shipped(), &m).unwrap();
    std::fs::copy(manifest_path(&shipped()), manifest_path(&m)).unwrap();
    m
}

fn refuse(model: &Path) -> String {
    match ModelRunner::load(model) {
        Ok(_) => panic!("model {} was accepted", model.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_model_whose_hash_differs_from_its_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = copy_model(dir.path());
    let mut bytes = std::fs::read(&m).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&m, bytes).unwrap();
    let e = refuse(&m);
    assert!(
        e.contains(&m.display().to_string()) && e.contains("sha256"),
        "{e}"
    );
}

#[test]
fn a_corrupt_model_with_a_matching_hash_is_refused_as_not_loadable() {
    let dir = tempfile::tempdir().unwrap();
    let m = copy_model(dir.path());
    let garbage = b"this is not an onnx protobuf".to_vec();
    std::fs::write(&m, &garbage).unwrap();
    let mp = manifest_path(&m);
    let text = std::fs::read_to_string(&mp).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["sha256"] = endo_agent::score::model::sha256_hex(&garbage).into();
    std::fs::write(&mp, v.to_string()).unwrap();
    let e = refuse(&m);
    assert!(
        e.contains(&m.display().to_string()) && e.contains("not a loadable ONNX model"),
        "{e}"
    );
}

#[test]
fn a_manifest_that_misdescribes_the_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = copy_model(dir.path());
    let mp = manifest_path(&m);
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mp).unwrap()).unwrap();
    let cases: [(&str, serde_json::Value, &str); 7] = [
        (
            "/input/shape",
            serde_json::json!([1, 3, 256, 256]),
            "input shape",
        ),
        // Issue 12 item 9: sizes no model can mean, and a manifest of another file.
        (
            "/input/shape",
            serde_json::json!([1, 3, 100000, 100000]),
            "every dimension must be within 1..=4096",
        ),
        (
            "/input/shape",
            serde_json::json!([1, 3, 0, 0]),
            "every dimension must be within 1..=4096",
        ),
        (
            "/file",
            serde_json::json!("other.onnx"),
            "is not this model",
        ),
        ("/input/name", serde_json::json!("pixels"), "model input is"),
        (
            "/outputs/quality",
            serde_json::json!("score"),
            "not among the model's outputs",
        ),
        (
            "/outputs/labels",
            serde_json::json!(["blur", "dark", "overexposed", "glare", "smoke"]),
            "not a known artifact",
        ),
    ];
    for (pointer, value, expect) in cases {
        let mut v = original.clone();
        *v.pointer_mut(pointer).unwrap() = value;
        std::fs::write(&mp, v.to_string()).unwrap();
        let e = refuse(&m);
        assert!(e.contains(expect), "{pointer}: {e}");
    }
}

#[test]
fn a_missing_model_or_manifest_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let e = refuse(&dir.path().join("nope.onnx"));
    assert!(e.contains("nope.manifest.json"), "{e}");
    let m = copy_model(dir.path());
    std::fs::remove_file(&m).unwrap();
    let e = refuse(&m);
    assert!(e.contains(&m.display().to_string()), "{e}");
}
