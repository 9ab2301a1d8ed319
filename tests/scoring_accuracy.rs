//! The scorer against the phantom's ground truth: every degraded segment of the schedule
//! is recognised with the right primary reason, and good segments pass the threshold.
//! Includes mild defocus (σ = 1.5 px at 1080p), which only the native-resolution
//! sharpness measure can see.

#[path = "common/root.rs"]
mod root;

use endo_agent::config::{Config, FovConfig};
use endo_agent::fov::{FovLocator, Locate};
use endo_agent::phantom::{Phantom, PhantomConfig, Schedule};
use endo_agent::score::model::ModelRunner;
use endo_agent::score::Scorer;

/// `models/<file>`: the hand-weighted reference model (`quality-ref.onnx`) or the shipped
/// one (`quality-int8.onnx`).
fn model(file: &str) -> ModelRunner {
    ModelRunner::load(&root::repo().join("models").join(file)).unwrap()
}

const REFERENCE: &str = "quality-ref.onnx";
const SHIPPED: &str = "quality-int8.onnx";

struct SegmentResult {
    name: String,
    expected: Option<&'static str>,
    frames: usize,
    right: usize,
    qualities: Vec<f32>,
    sharpness: Vec<f32>,
    isotropy: Vec<f32>,
}

fn evaluate(
    width: u32,
    height: u32,
    schedule: &str,
    step: u64,
    model_file: &str,
) -> Vec<SegmentResult> {
    let phantom = Phantom::new(PhantomConfig {
        width,
        height,
        fps: 30,
        seed: 11,
        schedule: Schedule::parse(schedule).unwrap(),
        ..PhantomConfig::default()
    });
    let cfg = Config::default();
    let mut locator = FovLocator::new(&FovConfig::default());
    let mut fov = None;
    for i in 0..cfg.fov.auto_frames as u64 {
        if let Locate::Locked(f) = locator.observe(&phantom.render(i).view()) {
            fov = Some(f.clone());
        }
    }
    let fov = fov.expect("the phantom's field of view is found");
    let truth = phantom.fov_rect();
    assert!(
        truth.intersect(&fov.rect) == fov.rect,
        "locked FOV {:?} lies inside the true one {truth:?}",
        fov.rect
    );
    let mut scorer = Scorer::new(cfg.scoring.clone(), Some(model(model_file)));
    let threshold = cfg.select.threshold_high;
    let mut out = Vec::new();
    for (si, seg) in phantom.config().schedule.segments.iter().enumerate() {
        let range = phantom.segment_frames(si);
        let expected = phantom.label(range.start).expected.map(|a| a.as_str());
        let mut r = SegmentResult {
            name: seg.to_string(),
            expected,
            frames: 0,
            right: 0,
            qualities: vec![],
            sharpness: vec![],
            isotropy: vec![],
        };
        // Skip the first frames of a segment: the schedule switches instantly, that is fine,
        // but keep the count honest by sampling the whole segment evenly.
        for i in range.step_by(step as usize) {
            let img = phantom.render(i);
            let (s, _) = scorer.score(&img.view(), &fov).unwrap();
            r.frames += 1;
            r.qualities.push(s.quality);
            r.sharpness.push(s.measures.sharpness);
            r.isotropy.push(s.measures.isotropy);
            let ok = match expected {
                None => s.quality >= threshold,
                Some(a) => {
                    s.quality < cfg.select.threshold_low
                        && s.primary_reason().map(|x| x.as_str()) == Some(a)
                }
            };
            r.right += ok as usize;
        }
        out.push(r);
    }
    for r in &out {
        let (qmin, qmax) = r
            .qualities
            .iter()
            .fold((1f32, 0f32), |(a, b), &q| (a.min(q), b.max(q)));
        let (smin, smax) = r
            .sharpness
            .iter()
            .fold((9f32, 0f32), |(a, b), &q| (a.min(q), b.max(q)));
        let (imin, imax) = r
            .isotropy
            .iter()
            .fold((9f32, 0f32), |(a, b), &q| (a.min(q), b.max(q)));
        eprintln!(
            "{model_file} {width}x{height} {:<42} expected {:<12} right {:>3}/{:<3} quality {qmin:.2}..{qmax:.2} sharpness {smin:.3}..{smax:.3} isotropy {imin:.3}..{imax:.3}",
            r.name,
            r.expected.unwrap_or("good"),
            r.right,
            r.frames
        );
    }
    out
}

fn assert_all_right(results: &[SegmentResult]) {
    for r in results {
        assert!(
            r.right as f32 >= 0.9 * r.frames as f32,
            "segment {} (expected {:?}): only {}/{} frames scored right",
            r.name,
            r.expected,
            r.right,
            r.frames
        );
    }
}

#[test]
fn every_degradation_of_the_demo_schedule_is_recognised_at_1080p() {
    let schedule = Schedule::default().to_string();
    assert_all_right(&evaluate(1920, 1080, &schedule, 3, REFERENCE));
}

#[test]
fn mild_defocus_is_caught_at_native_resolution() {
    let r = evaluate(1920, 1080, MILD, 3, REFERENCE);
    assert_all_right(&r);
}

const MILD: &str = "good 1s; defocus 1s sigma=1.5; good 1s; defocus 1s sigma=1.0; good 1s; motion 1s len=12 angle=90";

/// In a stream the session's sharpness reference catches mild defocus whatever the model
/// says; in stills (no reference) it is the model's catch alone, and with
/// `scoring.model_weight` 0.5 the shipped model misses part of it there (docs/scoring.md).
/// Not caught yet: σ = 1.0 px at 720p. Its sharpness is 0.84 of the session's reference,
/// where the relative ramp (0.65–0.85) has barely begun, and the shipped model rates it
/// 0.4–0.7, so its quality stays at 0.65–0.82.
#[test]
fn the_shipped_model_in_a_stream_catches_mild_defocus_at_1080p_and_720p() {
    assert_all_right(&evaluate(1920, 1080, MILD, 3, SHIPPED));
    let mild_720 = "good 1s; defocus 1s sigma=1.5; good 1s; motion 1s len=12 angle=90";
    assert_all_right(&evaluate(1280, 720, mild_720, 3, SHIPPED));
}

#[test]
fn degradations_are_recognised_at_720p_and_with_an_octagonal_field() {
    let phantom_cfg = "good 2s; motion 1s len=24 angle=0; good 2s; defocus 1s sigma=2; good 2s; dark 1s gain=0.3; good 2s; glare 1s area=0.05; good 2s; outside 1s";
    assert_all_right(&evaluate(1280, 720, phantom_cfg, 4, REFERENCE));
}
