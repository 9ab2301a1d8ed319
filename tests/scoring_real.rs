//! The agent's own scorer (classical measures + the shipped int8 model, the defaults) on a
//! small committed subset of the real-image test split (models/realset/subset/: real
//! photographs composed into endoscope frames by models/realset/make.py, never seen in
//! training or tuning). Each composition is scored clean and degraded, with its true field
//! of view fixed as a live stream locks it. What holds today, and is asserted:
//!
//! * no clearly bad frame (severity ≥ 0.6) passes `select.threshold_high`, whatever the
//!   degradation — defocus, motion, dark, over-exposure, glare, sensor noise, JPEG,
//!   outside. (On the full test split 7 of 450 still pass with model 2.1.0: 4
//!   motion-blurred, 1 defocused, 2 over-exposed; none of the dark, glare, noise, JPEG or
//!   outside ones, since the soft curves of docs/scoring.md; 13 with model 2.0.0, 15
//!   before isotropy was measured relative to its coarse scale.)
//! * clean frames rank above their degraded variants in ≥ 85 % of pairs;
//! * at least half the clean frames pass `select.threshold_high`.
//!
//! **Not working yet** (docs/scoring.md, "Real-image evaluation"; printed below, not
//! asserted): on the full test split 13 of 18 clean frames pass with model 2.1.0 (the
//! issue's target is ≥ 90 %; 14 with 2.0.0) and SROCC is 0.797 (target 0.85). The
//! classical side alone passes all 18; four of the five that fail are the model's (it rates
//! them 0.06–0.35). Here (JPEG q95 copies) the clean Kleiber-0 frame fails (0.22):
//! classical 0.46 — its texture's sharpness sits at the edge of the absolute ramp — and
//! model 0.24: both judge this smooth texture as slightly defocused.
//! (`model_weight` 0.25 would pass more, but then a stream blurred from its start is
//! forwarded: tests/web_overlay.rs.)
//!
//! The full evaluation (all 684 test frames, every scorer side by side) is
//! `models/realset/evaluate.py`.

#[path = "common/root.rs"]
mod root;

use endo_agent::config::{Config, FovShape};
use endo_agent::fov::Fov;
use endo_agent::frame::{I420Image, Rect};
use endo_agent::score::model::ModelRunner;
use endo_agent::score::Scorer;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

struct Frame {
    file: String,
    group: String,
    kind: String,
    severity: f32,
    clearly_bad: bool,
    fov: Rect,
}

fn subset_dir() -> PathBuf {
    root::repo().join("models/realset/subset")
}

fn read_labels() -> Vec<Frame> {
    let text = std::fs::read_to_string(subset_dir().join("labels.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (file, group, kind, sev, bad) = (
        col("file"),
        col("group"),
        col("kind"),
        col("severity"),
        col("clearly_bad"),
    );
    let fov: Vec<usize> = ["fov_x", "fov_y", "fov_w", "fov_h"]
        .iter()
        .map(|c| col(c))
        .collect();
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let n = |i: usize| f[fov[i]].parse::<u32>().unwrap();
            Frame {
                file: f[file].into(),
                group: f[group].into(),
                kind: f[kind].into(),
                severity: f[sev].parse().unwrap(),
                clearly_bad: f[bad] == "1",
                fov: Rect::new(n(0), n(1), n(2), n(3)),
            }
        })
        .collect()
}

fn load(path: &Path) -> I420Image {
    let img = image::open(path).unwrap().to_rgb8();
    let (w, h) = (img.width() & !1, img.height() & !1);
    let img = image::imageops::crop_imm(&img, 0, 0, w, h).to_image();
    I420Image::from_rgb(w, h, img.as_raw())
}

#[test]
fn real_frames_clearly_degraded_in_a_known_way_are_rejected_and_rank_below_clean() {
    let cfg = Config::default();
    // The shipped model (the default `model.path` is where packages install it).
    let model = ModelRunner::load(&root::repo().join("models/quality-int8.onnx")).unwrap();
    let mut scorer = Scorer::new(cfg.scoring.clone(), Some(model));
    let threshold = cfg.select.threshold_high;
    let frames = read_labels();
    assert!(frames.len() >= 20, "subset has {} frames", frames.len());
    let mut quality = BTreeMap::new();
    for f in &frames {
        let img = load(&subset_dir().join(&f.file));
        let fov = Fov::new(f.fov, FovShape::Circle, &[], img.width, img.height);
        scorer.reset();
        let (s, _) = scorer.score(&img.view(), &fov).unwrap();
        eprintln!(
            "{:<44} severity {:.2} quality {:.3} (classical {:.3}, model {:.3}) reason {:?}",
            f.file,
            f.severity,
            s.quality,
            s.classical_quality,
            s.model_quality().unwrap_or(f32::NAN),
            s.primary_reason().map(|a| a.as_str())
        );
        quality.insert(f.file.clone(), s.quality);
    }
    let mut pairs = (0usize, 0usize);
    let mut failures = Vec::new();
    let mut not_yet = Vec::new();
    let cleans: Vec<&Frame> = frames.iter().filter(|f| f.kind == "clean").collect();
    let mut clean_pass = 0;
    for clean in &cleans {
        let qc = quality[&clean.file];
        if qc >= threshold {
            clean_pass += 1;
        } else {
            not_yet.push(format!("clean {} scored {qc:.3} < {threshold}", clean.file));
        }
        for v in frames
            .iter()
            .filter(|v| v.group == clean.group && v.kind != "clean")
        {
            let qv = quality[&v.file];
            if qv >= qc {
                not_yet.push(format!(
                    "{} scored {qv:.3} >= its clean frame {qc:.3}",
                    v.file
                ));
            }
            pairs.0 += 1;
            pairs.1 += (qc > qv) as usize;
            if v.clearly_bad && qv >= threshold {
                failures.push(format!(
                    "{} (severity {:.2}) scored {qv:.3} >= threshold_high {threshold}",
                    v.file, v.severity
                ));
            }
        }
    }
    eprintln!("not working yet:\n  {}", not_yet.join("\n  "));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        pairs.1 as f32 >= 0.85 * pairs.0 as f32,
        "clean above its variant in only {}/{} pairs",
        pairs.1,
        pairs.0
    );
    assert!(
        2 * clean_pass >= cleans.len(),
        "only {clean_pass} of {} clean frames pass threshold_high",
        cleans.len()
    );
}
