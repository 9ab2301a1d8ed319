//! The training hand-off: `endo-agent phantom --model-input` and `endo-agent model-input`
//! write exactly the input the scorer builds, so models/train never re-implements
//! preprocessing. Both paths, for the same frames, give the same tensors (up to the PNG
//! round trip of RGB ↔ I420) in the shipped model's input shape.

mod common;

use common::{bin, repo};
use std::process::Command;

fn run(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{args:?}: {text}");
    text
}

fn floats(path: &std::path::Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn phantom_and_still_model_inputs_agree_and_have_the_manifest_shape() {
    let d = tempfile::tempdir().unwrap();
    let manifest = repo().join("models/quality-int8.manifest.json");
    let m = manifest.to_str().unwrap();
    let (ph, st) = (d.path().join("ph"), d.path().join("st"));
    let common = [
        "phantom",
        "--width",
        "1280",
        "--height",
        "720",
        "--seed",
        "5",
        "--palette",
        "white-light",
        "--schedule",
        "good 1s; defocus 1s sigma=2",
        "--fps",
        "2",
    ];
    let mut a: Vec<&str> = common.to_vec();
    a.extend(["--stills", ph.to_str().unwrap(), "--model-input", m]);
    run(&a);
    let mut b: Vec<&str> = common.to_vec();
    b.extend(["--stills", st.to_str().unwrap()]);
    run(&b);
    let labels = std::fs::read_to_string(ph.join("labels.csv")).unwrap();
    assert_eq!(labels.lines().count(), 1 + 4, "{labels}");
    assert!(
        labels.contains("input_000003,3,1,defocus sigma=2,blur"),
        "{labels}"
    );

    let pngs: Vec<String> = (0..4)
        .map(|i| st.join(format!("frame_{i:06}.png")).display().to_string())
        .collect();
    let out = d.path().join("stills.f32");
    let mut c = vec![
        "model-input",
        "--manifest",
        m,
        "--out",
        out.to_str().unwrap(),
    ];
    c.extend(pngs.iter().map(String::as_str));
    run(&c);

    let (x, y) = (floats(&ph.join("inputs.f32")), floats(&out));
    let per = 4 * 224 * 224;
    assert_eq!(x.len(), 4 * per);
    assert_eq!(y.len(), 4 * per);
    let mean_diff = x.iter().zip(&y).map(|(p, q)| (p - q).abs()).sum::<f32>() / x.len() as f32;
    assert!(mean_diff < 0.01, "mean |phantom - still| = {mean_diff}");
}
