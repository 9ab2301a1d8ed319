//! Scoring: one frame's field of view in, one [`Score`] out. Runs on a dedicated OS
//! thread; nothing here blocks or does I/O, and buffers are reused between frames.
//!
//! # Combination rule
//!
//! * Classical measures ([`classical`]) give one value in 0..1 per artifact;
//!   `classical_quality = Π (1 − artifact)`. Their ramps are soft where the measure
//!   depends on what the scope looks at (sharpness: an absolute ramp that only flags
//!   frames smooth whatever the content, plus a ramp relative to the session's own recent
//!   best, [`SharpnessReference`]); where it is physics (dark, clipped and specular
//!   pixel shares, mean luma, noise σ, compression blocks) they are soft curves set so
//!   that an artifact reads about as the degradation's severity, and never saturate: two
//!   clearly bad frames still rank (`classical::soft`).
//! * The model ([`model`]) gives `model_quality` and its own artifact values.
//! * `quality = classical_quality × model_quality ^ scoring.model_weight` (a weighted
//!   geometric mean; weight 0.5 by default, 1 = the plain product, 0 = classical only):
//!   both judges rank, neither gates alone. A frame both judge slightly worse ranks below
//!   one either judges slightly worse, and a frame either judge calls unusable (≈ 0) is
//!   unusable; but the model, which has seen far less real content than the measures
//!   were checked on, needs a lower score than the measures to fail a frame by itself
//!   (model 0.36 for `threshold_high` 0.6 at weight 0.5, 0.13 at 0.25). Each artifact
//!   value is the maximum of the two sources.
//! * Every artifact at or above `scoring.reason_threshold` is a reason code; reasons are
//!   ordered by value, the first is the primary reason shown to the operator.
//!
//! With the model disabled, `quality = classical_quality`.

pub use crate::artifact;
pub mod classical;
pub mod model;
pub mod preprocess;

use std::time::{Duration, Instant};

use crate::config::ScoringConfig;
use crate::fov::Fov;
use crate::frame::I420View;
use crate::light::{Light, LightTracker};
use artifact::Artifact;
use classical::Measures;
use model::{InputSpec, Layout, ModelError, ModelRunner};
use preprocess::Preprocessor;

/// Why a frame could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Never cut out of a frame a FOV that does not fit it (an empty or outside rect).
    #[error("field of view {rect:?} does not fit the {width}x{height} frame")]
    Geometry {
        rect: crate::frame::Rect,
        width: u32,
        height: u32,
    },
}

/// The verdict on one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Overall quality, 0 (unusable) .. 1 (perfect).
    pub quality: f32,
    pub classical_quality: f32,
    /// What the model said (quality and its own artifact values), if one is loaded.
    pub model: Option<model::ModelOutput>,
    /// Per artifact, indexed by [`Artifact::index`].
    pub artifacts: [f32; Artifact::COUNT],
    /// Bit i set = `Artifact::ALL[i]` is a reason.
    reason_mask: u8,
    pub measures: Measures,
    /// 64-bit difference hash of the downscaled frame.
    pub dhash: u64,
    /// White light or narrow-band imaging ([`crate::light`]).
    pub light: Light,
}

impl Score {
    /// Reasons, strongest first.
    pub fn reasons(&self) -> impl Iterator<Item = Artifact> + '_ {
        // Ties go to the artifact that explains the others: a frame outside the body or
        // washed out also looks unsharp, not the other way round.
        let mut order = [
            Artifact::Outside,
            Artifact::Overexposed,
            Artifact::Dark,
            Artifact::Glare,
            Artifact::Noise,
            Artifact::Blur,
        ];
        order.sort_by(|a, b| self.artifacts[b.index()].total_cmp(&self.artifacts[a.index()]));
        order
            .into_iter()
            .filter(|a| self.reason_mask & (1 << a.index()) != 0)
    }

    /// The strongest reason, if any.
    pub fn primary_reason(&self) -> Option<Artifact> {
        self.reasons().next()
    }

    /// The model's overall quality, if a model is loaded.
    pub fn model_quality(&self) -> Option<f32> {
        self.model.map(|m| m.quality)
    }

    pub fn artifact(&self, a: Artifact) -> f32 {
        self.artifacts[a.index()]
    }
}

/// How long each part of scoring took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub preprocess: Duration,
    pub classical: Duration,
    pub inference: Duration,
}

/// The model input used for the dhash when no model is loaded.
fn default_spec() -> InputSpec {
    InputSpec {
        name: "image".into(),
        shape: [1, 3, 224, 224],
        layout: Layout::Nchw,
        color: "RGB".into(),
        scale: 1.0 / 255.0,
        mean: [0.0; 3],
        std: [1.0; 3],
        detail: None,
    }
}

pub struct Scorer {
    cfg: ScoringConfig,
    model: Option<ModelRunner>,
    pre: Preprocessor,
    reference: SharpnessReference,
    light: LightTracker,
}

/// The session's own sharpness reference: a high percentile of the sharpness of its
/// recent well-exposed frames. Absolute sharpness depends on what the scope looks at (a
/// mucosa's texture, a processor's sharpening); a frame much less sharp than the same
/// procedure's recent best is defocused or smeared whatever the texture. Pure state, no
/// allocation after construction.
#[derive(Debug, Clone)]
pub struct SharpnessReference {
    ring: Vec<f32>,
    scratch: Vec<f32>,
    len: usize,
    next: usize,
    min_frames: usize,
    percentile: f32,
}

impl SharpnessReference {
    pub fn new(window: usize, min_frames: usize, percentile: f32) -> SharpnessReference {
        let window = window.max(1);
        SharpnessReference {
            ring: vec![0.0; window],
            scratch: vec![0.0; window],
            len: 0,
            next: 0,
            min_frames: min_frames.clamp(1, window),
            percentile: percentile.clamp(0.0, 1.0),
        }
    }

    /// Forget every frame (a new procedure, a new field of view, an unrelated still).
    pub fn reset(&mut self) {
        self.len = 0;
        self.next = 0;
    }

    pub fn push(&mut self, sharpness: f32) {
        if !sharpness.is_finite() {
            return;
        }
        self.ring[self.next] = sharpness;
        self.next = (self.next + 1) % self.ring.len();
        self.len = (self.len + 1).min(self.ring.len());
    }

    /// The reference, once at least `min_frames` frames were seen.
    pub fn reference(&mut self) -> Option<f32> {
        if self.len < self.min_frames {
            return None;
        }
        let v = &mut self.scratch[..self.len];
        v.copy_from_slice(&self.ring[..self.len]);
        let k = ((self.len - 1) as f32 * self.percentile).round() as usize;
        let (_, x, _) = v.select_nth_unstable_by(k, f32::total_cmp);
        Some(*x)
    }
}

/// A model ready to score with: loaded, hash-checked and dry-run, with the
/// preprocessing buffers its input needs.
pub struct LoadedModel {
    pub runner: ModelRunner,
    pre: Preprocessor,
}

impl LoadedModel {
    /// [`ModelRunner::load`] (manifest, sha256, a dry run) plus its preprocessing buffers.
    pub fn load(path: &std::path::Path) -> Result<LoadedModel, model::ModelError> {
        let runner = ModelRunner::load(path)?;
        let pre = Preprocessor::new(&runner.manifest().input);
        Ok(LoadedModel { runner, pre })
    }
}

impl Scorer {
    pub fn new(cfg: ScoringConfig, model: Option<ModelRunner>) -> Scorer {
        let spec = model
            .as_ref()
            .map(|m| m.manifest().input.clone())
            .unwrap_or_else(default_spec);
        Scorer {
            reference: SharpnessReference::new(
                cfg.reference_frames as usize,
                cfg.reference_min_frames as usize,
                cfg.reference_percentile,
            ),
            cfg,
            pre: Preprocessor::new(&spec),
            model,
            light: LightTracker::default(),
        }
    }

    /// The loaded model, if any.
    pub fn model(&self) -> Option<&ModelRunner> {
        self.model.as_ref()
    }

    /// Put `new` in place of the model between two frames: two moves, no allocation (the
    /// model and its preprocessing buffers were built by [`LoadedModel::load`] off the
    /// score thread). The old model comes back, to be dropped off the score thread too.
    pub fn swap_model(&mut self, new: LoadedModel) -> Option<LoadedModel> {
        let old_pre = std::mem::replace(&mut self.pre, new.pre);
        let old = self.model.replace(new.runner);
        old.map(|runner| LoadedModel {
            runner,
            pre: old_pre,
        })
    }

    /// Start a new sharpness reference: a new procedure session or field of view, or
    /// (for stills) an image unrelated to the previous one.
    pub fn reset(&mut self) {
        self.reference.reset();
        self.light.reset();
    }

    /// Score the part of `frame` inside `fov`.
    pub fn score(&mut self, frame: &I420View, fov: &Fov) -> Result<(Score, Timings), ScoreError> {
        if !fov.usable(frame.width, frame.height) {
            return Err(ScoreError::Geometry {
                rect: fov.rect,
                width: frame.width,
                height: frame.height,
            });
        }
        let mut t = Timings::default();
        let t0 = Instant::now();
        let crop = frame.crop(fov.rect);
        let mut measures = classical::measure(&crop, fov, &self.cfg);
        let reference = self.reference.reference();
        measures.sharpness_reference = reference.unwrap_or(0.0);
        let classical_artifacts = classical::artifacts(&measures, &self.cfg, reference);
        let well_exposed = classical::well_exposed(&classical_artifacts);
        if well_exposed {
            self.reference.push(measures.sharpness);
        }
        let t1 = Instant::now();
        t.classical = t1 - t0;
        // With a model, the preprocessing writes straight into its input tensor.
        let mut t2 = t1;
        let model_out = match &mut self.model {
            Some(m) => Some(m.run_with(|input| {
                self.pre.run_into(frame, fov.rect, input);
                t2 = Instant::now();
            })?),
            None => {
                self.pre.hash_only(frame, fov.rect);
                t2 = Instant::now();
                None
            }
        };
        t.preprocess = t2 - t1;
        t.inference = t2.elapsed();
        let mut score = combine(
            &self.cfg,
            measures,
            classical_artifacts,
            model_out,
            self.pre.dhash,
        );
        // A dark, washed-out or glaring view has lost its colour, and a scope outside the
        // body sees the room's light: none tells the processor's mode.
        score.light = self
            .light
            .observe(measures.mean_cb, measures.mean_cr, well_exposed);
        Ok((score, t))
    }
}

/// Apply the combination rule in the module header.
pub fn combine(
    cfg: &ScoringConfig,
    measures: Measures,
    classical: [f32; Artifact::COUNT],
    model: Option<model::ModelOutput>,
    dhash: u64,
) -> Score {
    let classical_quality = classical.iter().map(|a| 1.0 - a).product::<f32>();
    let mut artifacts = classical;
    let mut quality = classical_quality;
    if let Some(m) = model {
        quality *= m.quality.clamp(0.0, 1.0).powf(cfg.model_weight);
        for (a, b) in artifacts.iter_mut().zip(m.artifacts) {
            *a = a.max(b);
        }
    }
    let mut reason_mask = 0u8;
    for (i, a) in artifacts.iter().enumerate() {
        if *a >= cfg.reason_threshold {
            reason_mask |= 1 << i;
        }
    }
    Score {
        quality,
        classical_quality,
        model,
        artifacts,
        reason_mask,
        measures,
        dhash,
        light: Light::classify(measures.mean_cb, measures.mean_cr).unwrap_or(Light::White),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ModelOutput;

    #[test]
    fn both_judges_rank_and_reasons_are_ordered() {
        let cfg = ScoringConfig::default();
        let mut classical = [0.0; Artifact::COUNT];
        classical[Artifact::Dark.index()] = 0.6;
        let mut m = [0.0; Artifact::COUNT];
        m[Artifact::Blur.index()] = 0.9;
        let s = combine(
            &cfg,
            Measures::default(),
            classical,
            Some(ModelOutput {
                quality: 0.2,
                artifacts: m,
            }),
            0,
        );
        assert!((s.classical_quality - 0.4).abs() < 1e-6);
        let expected = 0.4 * 0.2f32.powf(cfg.model_weight);
        assert!((s.quality - expected).abs() < 1e-6, "{}", s.quality);
        assert_eq!(
            s.reasons().collect::<Vec<_>>(),
            vec![Artifact::Blur, Artifact::Dark]
        );
        assert_eq!(s.primary_reason(), Some(Artifact::Blur));
    }

    #[test]
    fn the_model_weight_sets_how_far_the_model_alone_can_lower_a_frame() {
        let at = |w: f32, model: f32| {
            let cfg = ScoringConfig {
                model_weight: w,
                ..ScoringConfig::default()
            };
            let out = ModelOutput {
                quality: model,
                artifacts: [0.0; Artifact::COUNT],
            };
            combine(
                &cfg,
                Measures::default(),
                [0.0; Artifact::COUNT],
                Some(out),
                0,
            )
            .quality
        };
        assert!(
            (at(1.0, 0.36) - 0.36).abs() < 1e-6,
            "weight 1: the plain product"
        );
        assert!(
            (at(0.5, 0.36) - 0.6).abs() < 1e-6,
            "weight 0.5: the square root"
        );
        assert_eq!(at(0.0, 0.01), 1.0, "weight 0: classical only");
        assert_eq!(
            at(0.5, 0.0),
            0.0,
            "a frame the model calls unusable stays unusable"
        );
        // Ranking is the model's at every weight.
        assert!(at(0.5, 0.5) > at(0.5, 0.4));
    }

    #[test]
    fn a_clean_frame_has_no_reasons() {
        let s = combine(
            &ScoringConfig::default(),
            Measures::default(),
            [0.1; Artifact::COUNT],
            None,
            0,
        );
        assert!(s.primary_reason().is_none());
        assert!((s.quality - 0.9f32.powi(Artifact::COUNT as i32)).abs() < 1e-6);
    }

    #[test]
    fn the_sharpness_reference_is_a_high_percentile_of_recent_frames_and_resets() {
        let mut r = SharpnessReference::new(10, 4, 0.9);
        for s in [0.5, 0.6, 0.7] {
            r.push(s);
        }
        assert_eq!(r.reference(), None, "fewer than min_frames");
        r.push(0.4);
        assert_eq!(r.reference(), Some(0.7));
        // A long blurred stretch: the reference follows once sharp frames leave the window.
        for _ in 0..9 {
            r.push(0.3);
        }
        assert_eq!(r.reference(), Some(0.3), "window of 10: 0.4 and nine 0.3");
        r.push(0.9);
        assert_eq!(
            r.reference(),
            Some(0.3),
            "one sharp frame in ten is not the 90th percentile"
        );
        r.push(0.9);
        assert_eq!(r.reference(), Some(0.9), "two in ten are");
        r.push(f32::NAN);
        assert_eq!(r.reference(), Some(0.9), "NaN ignored");
        r.reset();
        assert_eq!(r.reference(), None);
    }

    #[test]
    fn a_frame_much_less_sharp_than_the_reference_is_blurred_whatever_its_texture() {
        let cfg = ScoringConfig::default();
        // Absolutely sharp enough, but far below what this session has shown.
        let m = Measures {
            sharpness: cfg.sharpness_good + 0.01,
            isotropy: 1.0,
            mean_luma: 110.0,
            ..Measures::default()
        };
        let none = classical::artifacts(&m, &cfg, None);
        assert_eq!(none[Artifact::Blur.index()], 0.0);
        let reference = m.sharpness / (cfg.relative_sharpness[0] - 0.01);
        let rel = classical::artifacts(&m, &cfg, Some(reference));
        assert_eq!(rel[Artifact::Blur.index()], 1.0);
        let same = classical::artifacts(&m, &cfg, Some(m.sharpness));
        assert_eq!(same[Artifact::Blur.index()], 0.0);
    }
}
