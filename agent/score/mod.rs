//! Scoring: one frame's field of view in, one [`Score`] out. Runs on a dedicated OS
//! thread; nothing here blocks or does I/O, and buffers are reused between frames.
//!
//! # Combination rule
//!
//! * Classical measures ([`classical`]) give one value in 0..1 per artifact;
//!   `classical_quality = Π (1 − artifact)`.
//! * The model ([`model`]) gives `model_quality` and its own artifact values.
//! * `quality = min(classical_quality, model_quality)`: a frame is only as good as the more
//!   sceptical judge says. Each artifact value is the maximum of the two sources.
//! * Every artifact at or above `scoring.reason_threshold` is a reason code; reasons are
//!   ordered by value, the first is the primary reason shown to the operator.
//!
//! With the model disabled, `quality = classical_quality`.

pub mod artifact;
pub mod classical;
pub mod model;
pub mod preprocess;

use std::time::{Duration, Instant};

use crate::config::ScoringConfig;
use crate::fov::Fov;
use crate::frame::I420View;
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
    pub model_quality: Option<f32>,
    /// Per artifact, indexed by [`Artifact::index`].
    pub artifacts: [f32; 5],
    /// Bit i set = `Artifact::ALL[i]` is a reason.
    reason_mask: u8,
    pub measures: Measures,
    /// 64-bit difference hash of the downscaled frame.
    pub dhash: u64,
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
}

impl Scorer {
    pub fn new(cfg: ScoringConfig, model: Option<ModelRunner>) -> Scorer {
        let spec = model
            .as_ref()
            .map(|m| m.manifest().input.clone())
            .unwrap_or_else(default_spec);
        Scorer {
            cfg,
            pre: Preprocessor::new(&spec),
            model,
        }
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
        let measures = classical::measure(&crop, fov, &self.cfg);
        let classical_artifacts = classical::artifacts(&measures, &self.cfg);
        let t1 = Instant::now();
        t.classical = t1 - t0;
        self.pre.run(frame, fov.rect);
        let t2 = Instant::now();
        t.preprocess = t2 - t1;
        let model_out = match &self.model {
            Some(m) => Some(m.run(&self.pre.input)?),
            None => None,
        };
        t.inference = t2.elapsed();
        Ok((
            combine(
                &self.cfg,
                measures,
                classical_artifacts,
                model_out,
                self.pre.dhash,
            ),
            t,
        ))
    }
}

/// Apply the combination rule in the module header.
pub fn combine(
    cfg: &ScoringConfig,
    measures: Measures,
    classical: [f32; 5],
    model: Option<model::ModelOutput>,
    dhash: u64,
) -> Score {
    let classical_quality = classical.iter().map(|a| 1.0 - a).product::<f32>();
    let mut artifacts = classical;
    let mut quality = classical_quality;
    if let Some(m) = model {
        quality = quality.min(m.quality);
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
        model_quality: model.map(|m| m.quality),
        artifacts,
        reason_mask,
        measures,
        dhash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ModelOutput;

    #[test]
    fn the_more_sceptical_judge_wins_and_reasons_are_ordered() {
        let cfg = ScoringConfig::default();
        let mut classical = [0.0; 5];
        classical[Artifact::Dark.index()] = 0.6;
        let mut m = [0.0; 5];
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
        assert_eq!(s.quality, 0.2);
        assert_eq!(
            s.reasons().collect::<Vec<_>>(),
            vec![Artifact::Blur, Artifact::Dark]
        );
        assert_eq!(s.primary_reason(), Some(Artifact::Blur));
    }

    #[test]
    fn a_clean_frame_has_no_reasons() {
        let s = combine(
            &ScoringConfig::default(),
            Measures::default(),
            [0.1; 5],
            None,
            0,
        );
        assert!(s.primary_reason().is_none());
        assert!((s.quality - 0.9f32.powi(5)).abs() < 1e-6);
    }
}
