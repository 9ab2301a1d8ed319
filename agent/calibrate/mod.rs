//! `endo-agent calibrate`: adapt the thresholds to a site's own scope without retraining.
//!
//! A recording (a video file through `pipelines/file.pipeline`, or the configured live
//! source for its first minutes) runs through the agent's own capture ([`crate::capture`]),
//! field-of-view locator ([`crate::fov`]) and [`Scorer`] — the code `run` uses — and every
//! scored frame is kept as its [`Score`] plus the model's own output. [`analyse`] turns them
//! into distributions of every measure and applies the suggestion rule in [`suggest`];
//! [`write_report`] writes for the integrator:
//!
//! * `calibration.json` — frame counts, the locked field of view, per series and frame set
//!   the percentiles, the suggestions (current, suggested, why, how many frames) and the
//!   TOML snippet;
//! * `calibration.png` — one histogram per series with the current (blue) and suggested
//!   (orange) thresholds ([`plot`]);
//! * `frames.jsonl` — one line per scored frame (timestamp, source frame, the datalake
//!   record's `score` object, classical and model artifacts, the re-scored quality).
//!
//! Series are named after the datalake record's `score` object (`quality`,
//! `measures.sharpness`, …; read from [`ScoreInfo`], so a new measure shows up by itself)
//! plus `classical.<artifact>` and `model.<artifact>`. Calibration refuses (an error, no
//! report) when fewer than `min_frames` frames are scored or well exposed: a black
//! recording, a scope never inserted, a field of view never found.

pub mod plot;
pub mod suggest;

use crossbeam_channel::{bounded, RecvTimeoutError};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::artifact::Artifact;
use crate::capture::{self, CaptureError, CaptureStats, CapturedFrame};
use crate::config::{Config, OnEos, ScoringConfig, SourceKind};
use crate::fov::{FovLocator, Locate};
use crate::frame::Rect;
use crate::record::ScoreInfo;
use crate::score::model::{ModelError, ModelRunner};
use crate::score::{self, classical, Score, Scorer};
use crate::shutdown::Shutdown;
use suggest::{Distribution, Dists, Frames, Params, Suggestion};

pub const SCHEMA: &str = "endo-agent/calibration/v1";

/// A live source with neither `--seconds` nor `--frames` is recorded this long.
pub const DEFAULT_LIVE_SECONDS: f64 = 120.0;

/// No frame from the source in this long: give up (a missing device, a file that is not video).
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("loading the model for calibration: {0}")]
    Model(#[from] ModelError),
    #[error("calibrate --input {path}: {reason}")]
    Input { path: PathBuf, reason: String },
    #[error(
        "no frame arrived from the source ({source_desc}) within {0:?}; see the log above",
        FIRST_FRAME_TIMEOUT
    )]
    NoFrames { source_desc: String },
    #[error("refusing to suggest thresholds: {0}")]
    TooFew(String),
    #[error("writing {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// What to record and how to judge it.
#[derive(Debug, Clone)]
pub struct Options {
    /// A video file to replay instead of the configured source.
    pub input: Option<PathBuf>,
    /// Stop after this many seconds of frames (default for a live source: [`DEFAULT_LIVE_SECONDS`]).
    pub seconds: Option<f64>,
    /// Stop after this many frames from the source.
    pub frames: Option<u64>,
    pub params: Params,
    /// Fewer scored or well-exposed frames than this: refuse.
    pub min_frames: usize,
}

/// One scored frame.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub pts_ns: Option<u64>,
    pub source_frame: Option<u64>,
    /// Index into [`Recording::fovs`].
    pub fov: usize,
    pub score: Score,
}

/// What came out of the source.
#[derive(Debug, Clone)]
pub struct Recording {
    /// e.g. `file /data/site.mkv` or `live v4l2 (pipelines/v4l2.pipeline (built in))`.
    pub source: String,
    pub received: u64,
    /// Frames the capture saw (more than `received` when the scorer fell behind).
    pub captured: u64,
    /// Frames before the field of view locked (not scored, as in `run`).
    pub fov_pending: u64,
    pub score_failed: u64,
    /// Every field of view the locator locked, with the frames scored under it.
    pub fovs: Vec<(Rect, usize)>,
    pub samples: Vec<Sample>,
    pub model: Option<Value>,
    pub seconds: f64,
}

/// The config a recording runs with: the input file as the source (when given), no
/// display branch, and the source's end is the recording's end.
fn recording_config(cfg: &Config, opts: &Options) -> Result<Config, CalibrateError> {
    let mut cfg = cfg.clone();
    if let Some(p) = &opts.input {
        if !p.is_file() {
            return Err(CalibrateError::Input {
                path: p.clone(),
                reason: "no such file".into(),
            });
        }
        cfg.source.kind = SourceKind::File;
        cfg.source.path = p.clone();
        cfg.capture.template = None;
    }
    cfg.display.enabled = false;
    cfg.capture.on_eos = OnEos::Stop;
    Ok(cfg)
}

/// Record and score frames from the source `opts` names, through the agent's own pipeline.
pub fn record(cfg: &Config, opts: &Options) -> Result<Recording, CalibrateError> {
    let cfg = recording_config(cfg, opts)?;
    let (origin, _) = capture::launch_description(&cfg)?;
    let source = match &opts.input {
        Some(p) => format!("file {}", p.display()),
        None => format!("live {} ({origin})", cfg.source.kind.as_str()),
    };
    let seconds = opts.seconds.or_else(|| {
        (cfg.source.kind.is_live() && opts.frames.is_none()).then_some(DEFAULT_LIVE_SECONDS)
    });

    let mut scorer = scorer(&cfg)?;
    let model = scorer.model().map(|m| {
        let man = m.manifest();
        json!({"name": man.name, "version": man.version, "sha256": man.sha256})
    });
    capture::check_pipeline(&cfg)?;

    let (tx, rx) = bounded(cfg.capture.queue_frames.max(1));
    let stats = Arc::new(CaptureStats::default());
    let stop = Shutdown::new();
    let capture_thread = {
        let (cfg, rx, stats, stop) = (cfg.clone(), rx.clone(), stats.clone(), stop.clone());
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || capture::run_supervised(&cfg, tx, rx, stats, stop, None))
            .map_err(|e| CalibrateError::Write {
                path: "capture thread".into(),
                reason: e.to_string(),
            })?
    };

    let mut rec = Recording::new(source, model);
    let mut locator = FovLocator::new(&cfg.fov);
    let started = Instant::now();
    let mut first: Option<Instant> = None;
    let mut no_frames = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(frame) if !stop.is_stopped() => {
                rec.received += 1;
                first.get_or_insert_with(Instant::now);
                if opts.frames.is_some_and(|n| rec.received >= n) {
                    stop.stop();
                }
                rec.take(&frame, &mut locator, &mut scorer);
            }
            // Stopping: let the capture wind down.
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let over_time = match (first, seconds) {
            (Some(t), Some(s)) => t.elapsed().as_secs_f64() >= s,
            _ => false,
        };
        if first.is_none() && started.elapsed() >= FIRST_FRAME_TIMEOUT {
            no_frames = true;
        }
        if over_time || no_frames {
            stop.stop();
        }
    }
    capture_thread.join().expect("capture thread panicked")?;
    rec.captured = stats.captured.load(Ordering::Relaxed);
    rec.seconds = first.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0);
    if no_frames {
        return Err(CalibrateError::NoFrames {
            source_desc: rec.source,
        });
    }
    Ok(rec)
}

/// The agent's scorer, with the model when the config enables it.
fn scorer(cfg: &Config) -> Result<Scorer, CalibrateError> {
    let runner = if cfg.model.enabled {
        Some(ModelRunner::load(&cfg.model.path)?)
    } else {
        None
    };
    Ok(Scorer::new(cfg.scoring.clone(), runner))
}

impl Recording {
    fn new(source: String, model: Option<Value>) -> Recording {
        Recording {
            source,
            received: 0,
            captured: 0,
            fov_pending: 0,
            score_failed: 0,
            fovs: Vec::new(),
            samples: Vec::new(),
            model,
            seconds: 0.0,
        }
    }

    /// Score one frame into the recording (counted when no field of view is locked yet or
    /// scoring fails).
    fn take(&mut self, frame: &CapturedFrame, locator: &mut FovLocator, scorer: &mut Scorer) {
        let view = frame.view();
        let fov = match locator.observe(&view) {
            Locate::Pending | Locate::Refused => {
                self.fov_pending += 1;
                return;
            }
            Locate::Locked(f) => f,
        };
        let score = match scorer.score(&view, fov) {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::error!("{e}");
                self.score_failed += 1;
                return;
            }
        };
        if self.fovs.last().is_none_or(|(r, _)| *r != fov.rect) {
            self.fovs.push((fov.rect, 0));
        }
        self.fovs.last_mut().expect("pushed above").1 += 1;
        self.samples.push(Sample {
            pts_ns: frame.pts_ns,
            source_frame: frame.offset,
            fov: self.fovs.len() - 1,
            score,
        });
    }
}

/// The named values of one frame (see the module header for the names).
pub fn series(s: &Sample, scoring: &ScoringConfig) -> Vec<(String, f32)> {
    let mut out = Vec::new();
    let info = serde_json::to_value(ScoreInfo::from_score(&s.score)).expect("serialisable");
    flatten("", &info, &mut out);
    let classical = classical::artifacts(
        &s.score.measures,
        scoring,
        Some(s.score.measures.sharpness_reference),
    );
    for a in Artifact::ALL {
        out.push((format!("classical.{a}"), classical[a.index()]));
    }
    if let Some(m) = &s.score.model {
        for a in Artifact::ALL {
            out.push((format!("model.{a}"), m.artifacts[a.index()]));
        }
    }
    out
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, f32)>) {
    match v {
        Value::Number(n) => out.push((prefix.to_string(), n.as_f64().unwrap_or(f64::NAN) as f32)),
        Value::Object(m) => {
            for (k, v) in m {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, v, out);
            }
        }
        _ => {}
    }
}

/// The distributions and the suggestions.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Series names, in report order.
    pub names: Vec<String>,
    pub dists: Dists,
    /// Per sample: no exposure, glare or outside artifact (under the suggested exposure keys).
    pub well_exposed: Vec<bool>,
    /// Per sample: the quality under the suggested `[scoring]` keys.
    pub rescored: Vec<f32>,
    pub suggestions: Vec<Suggestion>,
    pub notes: Vec<String>,
}

/// The artifacts that make a frame not well exposed.
const EXPOSURE_ARTIFACTS: [Artifact; 4] = [
    Artifact::Dark,
    Artifact::Overexposed,
    Artifact::Glare,
    Artifact::Outside,
];

/// Distributions of every series and the suggestion rule of [`suggest`], in its three steps.
pub fn analyse(rec: &Recording, cfg: &Config, opts: &Options) -> Result<Analysis, CalibrateError> {
    let n = enough_frames(rec, opts)?;
    let rows: Vec<Vec<(String, f32)>> = rec
        .samples
        .iter()
        .map(|s| series(s, &cfg.scoring))
        .collect();
    let mut names: Vec<String> = Vec::new();
    for (name, _) in rows.iter().flatten() {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names.sort_by_key(|n| report_rank(n));
    let collect = |name: &str, keep: &dyn Fn(usize) -> bool| {
        Distribution::new(
            rows.iter()
                .enumerate()
                .filter(|(i, _)| keep(*i))
                .filter_map(|(_, r)| r.iter().find(|(k, _)| k == name).map(|(_, v)| *v))
                .collect(),
        )
    };
    let mut dists = Dists::new();
    for name in &names {
        dists.insert((name.clone(), Frames::All), collect(name, &|_| true));
    }
    let current = suggest::tidy(&json!({"scoring": cfg.scoring, "select": cfg.select}));
    let mut notes = Vec::new();

    // 1. Exposure keys, from every frame.
    let exposure = suggest::suggest(suggest::EXPOSURE, &dists, &current, &opts.params);
    let mut proposed = current.clone();
    suggest::apply(&mut proposed, &exposure);
    let scoring1 = scoring_of(&proposed, cfg);

    // 2. Focus keys, from the well-exposed frames.
    let well_exposed = well_exposed(rec, &scoring1);
    let n_well = well_exposed.iter().filter(|w| **w).count();
    if n_well < opts.min_frames {
        return Err(CalibrateError::TooFew(format!(
            "only {n_well} of {n} scored frames are well exposed (no dark, overexposed, glare or \
             outside artifact); at least {} are needed — is the recording black, washed out or \
             taken outside the body?",
            opts.min_frames
        )));
    }
    for name in &names {
        let d = collect(name, &|i| well_exposed[i]);
        dists.insert((name.clone(), Frames::WellExposed), d);
    }
    let focus = suggest::suggest(suggest::FOCUS, &dists, &proposed, &opts.params);
    suggest::apply(&mut proposed, &focus);
    let scoring2 = scoring_of(&proposed, cfg);

    // 3. Select keys, from every frame's quality under the suggested [scoring].
    let rescored = rescore(rec, &cfg.scoring, &scoring2, &mut notes);
    dists.insert(
        ("quality".into(), Frames::Rescored),
        Distribution::new(rescored.clone()),
    );
    let select = suggest::suggest(suggest::SELECT, &dists, &proposed, &opts.params);

    let suggestions: Vec<Suggestion> = exposure.into_iter().chain(focus).chain(select).collect();
    if rec.fovs.len() > 1 {
        notes.push(format!(
            "the field of view changed {} times during the recording",
            rec.fovs.len() - 1
        ));
    }
    Ok(Analysis {
        names,
        dists,
        well_exposed,
        rescored,
        suggestions,
        notes,
    })
}

/// The number of scored frames, when there are at least `opts.min_frames`.
fn enough_frames(rec: &Recording, opts: &Options) -> Result<usize, CalibrateError> {
    let n = rec.samples.len();
    if n >= opts.min_frames {
        return Ok(n);
    }
    let why = if rec.fovs.is_empty() {
        format!(
            "the field of view was never found in {} frames (is the recording black, or the scope not lit?)",
            rec.received
        )
    } else {
        format!("only {n} of {} frames could be scored", rec.received)
    };
    Err(CalibrateError::TooFew(format!(
        "{why}; at least {} are needed",
        opts.min_frames
    )))
}

/// Per frame: no exposure artifact (dark, overexposed, glare, outside) under `scoring`.
fn well_exposed(rec: &Recording, scoring: &ScoringConfig) -> Vec<bool> {
    rec.samples
        .iter()
        .map(|s| {
            let a = classical::artifacts(
                &s.score.measures,
                scoring,
                Some(s.score.measures.sharpness_reference),
            );
            EXPOSURE_ARTIFACTS
                .iter()
                .all(|x| a[x.index()] < scoring.reason_threshold)
        })
        .collect()
}

/// Every frame's quality under `proposed`, replayed from its measures — when replaying
/// under `current` reproduces the scorer's own quality; otherwise the recorded quality,
/// with a note saying so.
fn rescore(
    rec: &Recording,
    current: &ScoringConfig,
    proposed: &ScoringConfig,
    notes: &mut Vec<String>,
) -> Vec<f32> {
    let replay = |s: &Sample, sc: &ScoringConfig| {
        let m = s.score.measures;
        score::combine(
            sc,
            m,
            classical::artifacts(&m, sc, Some(m.sharpness_reference)),
            s.score.model,
            s.score.dhash,
        )
        .quality
    };
    let faithful = rec
        .samples
        .iter()
        .all(|s| (replay(s, current) - s.score.quality).abs() < 1e-5);
    if faithful {
        return rec.samples.iter().map(|s| replay(s, proposed)).collect();
    }
    notes.push(
        "re-scoring from the measures does not reproduce the scorer's quality (the scoring \
         rule keeps state calibrate cannot replay): the select thresholds are derived from \
         the quality under the current [scoring] keys"
            .into(),
    );
    rec.samples.iter().map(|s| s.score.quality).collect()
}

/// The `[scoring]` section of a proposed config JSON; the current one if it does not parse.
fn scoring_of(proposed: &Value, cfg: &Config) -> ScoringConfig {
    serde_json::from_value(proposed["scoring"].clone()).unwrap_or_else(|_| cfg.scoring.clone())
}

/// Report order: raw measures, classical, model, final.
fn report_rank(name: &str) -> (u8, String) {
    let rank = match name {
        n if n.starts_with("measures.") => 0,
        n if n.starts_with("classical.") => 1,
        "classical_quality" => 2,
        "model_quality" => 3,
        n if n.starts_with("model.") => 4,
        n if n.starts_with("artifacts.") => 5,
        "quality" => 6,
        _ => 7,
    };
    // Keep each group in the order the structs declare (stable sort on the group alone).
    (rank, String::new())
}

/// The series drawn in the PNG (the final artifacts, max of classical and model, are in the JSON only).
pub fn plotted(name: &str) -> bool {
    !name.starts_with("artifacts.")
}

/// `calibration.json`.
pub fn report_json(rec: &Recording, an: &Analysis, cfg: &Config, opts: &Options) -> Value {
    let mut distributions = serde_json::Map::new();
    for name in &an.names {
        let mut by = serde_json::Map::new();
        for ((n, f), d) in &an.dists {
            if n == name {
                by.insert(f.as_str().into(), d.summary());
            }
        }
        distributions.insert(name.clone(), Value::Object(by));
    }
    json!({
        "schema": SCHEMA,
        "agent_version": crate::VERSION,
        "source": rec.source,
        "model": rec.model,
        "seconds": suggest::round(rec.seconds as f32, 2),
        "frames": {
            "captured": rec.captured,
            "received": rec.received,
            "fov_pending": rec.fov_pending,
            "score_failed": rec.score_failed,
            "scored": rec.samples.len(),
            "well_exposed": an.well_exposed.iter().filter(|w| **w).count(),
        },
        "fov": rec.fovs.iter().map(|(r, n)| json!({"rect": r, "frames": n})).collect::<Vec<_>>(),
        "params": {"pass_share": opts.params.pass_share, "min_frames": opts.min_frames},
        "current": suggest::tidy(&json!({"scoring": cfg.scoring, "select": cfg.select})),
        "distributions": distributions,
        "suggestions": an.suggestions,
        "toml": suggest::toml_snippet(&an.suggestions),
        "notes": an.notes,
    })
}

/// One line of `frames.jsonl`.
fn frame_json(s: &Sample, well_exposed: bool, rescored: f32, cfg: &Config) -> Value {
    let classical = classical::artifacts(
        &s.score.measures,
        &cfg.scoring,
        Some(s.score.measures.sharpness_reference),
    );
    let by_name = |a: &[f32; crate::artifact::Artifact::COUNT]| -> BTreeMap<&'static str, f32> {
        Artifact::ALL
            .iter()
            .map(|x| (x.as_str(), a[x.index()]))
            .collect()
    };
    json!({
        "pts_ns": s.pts_ns,
        "source_frame": s.source_frame,
        "fov": s.fov,
        "well_exposed": well_exposed,
        "score": ScoreInfo::from_score(&s.score),
        "classical": by_name(&classical),
        "model": s.score.model.map(|m| json!({"quality": m.quality, "artifacts": by_name(&m.artifacts)})),
        "rescored_quality": rescored,
    })
}

/// Write `calibration.json`, `calibration.png` and `frames.jsonl` into `out`.
pub fn write_report(
    out: &Path,
    rec: &Recording,
    an: &Analysis,
    cfg: &Config,
    opts: &Options,
) -> Result<Vec<PathBuf>, CalibrateError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| CalibrateError::Write {
            path,
            reason: e.to_string(),
        }
    };
    std::fs::create_dir_all(out).map_err(err(out))?;
    let json_path = out.join("calibration.json");
    let report = report_json(rec, an, cfg, opts);
    let text = serde_json::to_string_pretty(&report).expect("serialisable");
    std::fs::write(&json_path, text + "\n").map_err(err(&json_path))?;

    let frames_path = out.join("frames.jsonl");
    let mut lines = String::new();
    for (i, s) in rec.samples.iter().enumerate() {
        lines.push_str(&frame_json(s, an.well_exposed[i], an.rescored[i], cfg).to_string());
        lines.push('\n');
    }
    std::fs::write(&frames_path, lines).map_err(err(&frames_path))?;

    let png_path = out.join("calibration.png");
    let img = plot::render(&plot::panels(an), &header_lines(rec, an));
    img.save(&png_path).map_err(|e| CalibrateError::Write {
        path: png_path.clone(),
        reason: e.to_string(),
    })?;
    Ok(vec![json_path, png_path, frames_path])
}

fn fov_text(rec: &Recording) -> String {
    rec.fovs
        .iter()
        .map(|(r, n)| {
            format!(
                "{}x{} at ({}, {}) for {n} frames",
                r.width, r.height, r.x, r.y
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn header_lines(rec: &Recording, an: &Analysis) -> Vec<String> {
    vec![
        format!("endo-agent calibrate: {}", rec.source),
        format!(
            "{} frames scored, {} well exposed; field of view {}",
            rec.samples.len(),
            an.well_exposed.iter().filter(|w| **w).count(),
            fov_text(rec)
        ),
    ]
}

/// The readable summary printed on stdout.
pub fn summary_text(rec: &Recording, an: &Analysis, written: &[PathBuf]) -> String {
    let mut s = String::new();
    let n_well = an.well_exposed.iter().filter(|w| **w).count();
    s.push_str(&format!(
        "calibrate: {} frames in {:.1} s from {}\n",
        rec.received, rec.seconds, rec.source
    ));
    s.push_str(&format!(
        "  {} scored ({} before the field of view locked, {} dropped while scoring); field of view {}\n",
        rec.samples.len(),
        rec.fov_pending,
        rec.captured.saturating_sub(rec.received),
        fov_text(rec)
    ));
    s.push_str(&format!(
        "  suggestions from: exposure {} frames (all scored), sharpness/isotropy {n_well} well-exposed frames, select {} frames (re-scored)\n\n",
        rec.samples.len(),
        an.rescored.len()
    ));
    s.push_str(&format!("{:<28} {:<12} {:>6}", "series", "frames", "n"));
    for p in suggest::PERCENTILES {
        s.push_str(&format!(" {:>8}", format!("p{p}")));
    }
    s.push('\n');
    for ((name, frames), d) in an
        .names
        .iter()
        .flat_map(|n| an.dists.iter().filter(move |((m, _), _)| m == n))
    {
        s.push_str(&format!(
            "{name:<28} {:<12} {:>6}",
            frames.as_str(),
            d.len()
        ));
        for p in suggest::PERCENTILES {
            match d.percentile(p as f32) {
                Some(v) => s.push_str(&format!(" {v:>8.3}")),
                None => s.push_str(&format!(" {:>8}", "-")),
            }
        }
        s.push('\n');
    }
    for note in &an.notes {
        s.push_str(&format!("\nnote: {note}\n"));
    }
    s.push_str("\nsuggested config (paste into the config file):\n\n");
    s.push_str(&suggest::toml_snippet(&an.suggestions));
    s.push('\n');
    for p in written {
        s.push_str(&format!("wrote {}\n", p.display()));
    }
    s
}
