//! The procedure record: what one procedure session was like, tallied on the score thread
//! frame by frame and written to the datalake when it ends (the operator's "End
//! procedure", a new one started, or the agent stopping) as
//! `{prefix}/{site}/{device}/{yyyy}/{mm}/{dd}/{session}/procedure.json` beside the
//! session's frames, through the spool and every sink like a frame. Schema:
//! `docs/datalake.md`, "The procedure record".
//!
//! Time is the frames' own (buffer timestamps): each scored frame stands for the time
//! until the next scored one (at most [`MAX_GAP_NS`], so a source outage is not counted
//! as the last frame's), the last one for the interval before it. A frame is **good** at
//! quality ≥ `select.threshold_high` and **bad** below `threshold_low`; a bad frame's
//! time goes to its primary reason ([`crate::score::Score::primary_reason`]), as the
//! `endo_agent_frames_bad_total` counter counts it. The longest bad stretch is the
//! longest run of consecutive bad frames. The score timeline is the mean and minimum
//! quality per bucket of stream time, at most [`MAX_POINTS`] buckets (1 s each, doubled
//! as the procedure grows).

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::artifact::Artifact;
use crate::config::{Config, SelectConfig};
use crate::light::Light;
use crate::record::{self, ModelInfo};
use crate::score::Score;

pub const SCHEMA: &str = "endo-agent/procedure-record/v1";
/// The record's name in the session's directory (the key stem is `…/{session}/procedure`).
pub const NAME: &str = "procedure";
/// The longest time one frame stands for.
pub const MAX_GAP_NS: u64 = 1_000_000_000;
/// The most points of the score timeline.
pub const MAX_POINTS: usize = 300;

/// How a procedure ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ended {
    /// The operator's "End procedure".
    OperatorEnd,
    /// The operator started a new procedure.
    OperatorStart,
    /// The agent stopped, or its source ended.
    AgentStop,
}

impl Ended {
    pub const ALL: [Ended; 3] = [Ended::OperatorEnd, Ended::OperatorStart, Ended::AgentStop];

    pub fn as_str(self) -> &'static str {
        match self {
            Ended::OperatorEnd => "operator_end",
            Ended::OperatorStart => "operator_start",
            Ended::AgentStop => "agent_stop",
        }
    }
}

/// The procedure's score timeline: mean and minimum quality per bucket of stream time.
#[derive(Debug, Clone, Default)]
struct Timeline {
    bucket_ns: u64,
    /// (sum of quality, frames, minimum) per bucket.
    buckets: Vec<(f64, u32, f32)>,
}

impl Timeline {
    fn new() -> Timeline {
        Timeline {
            bucket_ns: 1_000_000_000,
            buckets: Vec::new(),
        }
    }

    /// A frame `offset_ns` after the procedure's first scored frame.
    fn push(&mut self, offset_ns: u64, quality: f32) {
        let mut i = (offset_ns / self.bucket_ns) as usize;
        while i >= 2 * MAX_POINTS {
            self.halve();
            i = (offset_ns / self.bucket_ns) as usize;
        }
        if self.buckets.len() <= i {
            self.buckets.resize(i + 1, (0.0, 0, f32::INFINITY));
        }
        let b = &mut self.buckets[i];
        b.0 += quality as f64;
        b.1 += 1;
        b.2 = b.2.min(quality);
    }

    /// Buckets twice as long: pairs merged.
    fn halve(&mut self) {
        self.bucket_ns *= 2;
        self.buckets = self
            .buckets
            .chunks(2)
            .map(|c| {
                c.iter().fold((0.0, 0, f32::INFINITY), |a, b| {
                    (a.0 + b.0, a.1 + b.1, a.2.min(b.2))
                })
            })
            .collect();
    }

    /// At most [`MAX_POINTS`] points; an empty bucket (no frame scored) is null.
    fn doc(&self) -> TimelineDoc {
        let mut t = self.clone();
        while t.buckets.len() > MAX_POINTS {
            t.halve();
        }
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        TimelineDoc {
            bucket_s: t.bucket_ns as f64 / 1e9,
            quality_mean: t
                .buckets
                .iter()
                .map(|b| (b.1 > 0).then(|| round(b.0 / b.1 as f64)))
                .collect(),
            quality_min: t
                .buckets
                .iter()
                .map(|b| (b.1 > 0).then(|| round(b.2 as f64)))
                .collect(),
        }
    }
}

/// Whether a scored frame was good, in between, or bad (and why).
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Good,
    Fair,
    Bad(Option<Artifact>),
}

/// One procedure's running tally, owned by the score thread.
#[derive(Debug, Clone)]
pub struct Tally {
    key: String,
    site: String,
    device: String,
    session: String,
    operator_started: bool,
    started_at: DateTime<Utc>,
    select: SelectConfig,
    /// `scoring.reason_threshold` and `scoring.model_weight`.
    scoring: (f32, f32),
    captured: u64,
    scored: u64,
    good: u64,
    bad: u64,
    forwarded: u64,
    marked: u64,
    annotated: u64,
    light: [u64; Light::ALL.len()],
    /// The timeline's origin: stream time `.0` is offset `.1` from the first scored frame
    /// (it moves when the source restarts and its timestamps start again).
    origin: Option<(u64, u64)>,
    /// The last scored frame's time and state, and the interval before it.
    last: Option<(u64, State)>,
    last_dt: u64,
    time_ns: TimeNs,
    timeline: Timeline,
    models: Vec<(Arc<ModelInfo>, u64)>,
}

/// Stream time per state, and the bad stretches.
#[derive(Debug, Clone, Copy, Default)]
struct TimeNs {
    scored: u64,
    good: u64,
    bad: u64,
    by_artifact: [u64; Artifact::COUNT],
    unexplained: u64,
    stretch: u64,
    longest: u64,
}

impl TimeNs {
    /// `dt` of a frame in `state`; `next_bad` says whether the stretch goes on.
    fn credit(&mut self, state: State, dt: u64) {
        self.scored += dt;
        match state {
            State::Good => self.good += dt,
            State::Fair => {}
            State::Bad(reason) => {
                self.bad += dt;
                match reason {
                    Some(a) => self.by_artifact[a.index()] += dt,
                    None => self.unexplained += dt,
                }
                self.stretch += dt;
                self.longest = self.longest.max(self.stretch);
            }
        }
        if !matches!(state, State::Bad(_)) {
            self.stretch = 0;
        }
    }
}

impl Tally {
    /// A procedure that started at `started_at` under `cfg`'s thresholds.
    pub fn new(
        cfg: &Config,
        session: &str,
        operator_started: bool,
        started_at: DateTime<Utc>,
    ) -> Tally {
        Tally {
            key: key_stem(cfg, started_at, session),
            site: cfg.agent.site.clone(),
            device: cfg.agent.device.clone(),
            session: session.to_string(),
            operator_started,
            started_at,
            select: cfg.select.clone(),
            scoring: (cfg.scoring.reason_threshold, cfg.scoring.model_weight),
            captured: 0,
            scored: 0,
            good: 0,
            bad: 0,
            forwarded: 0,
            marked: 0,
            annotated: 0,
            light: [0; Light::ALL.len()],
            origin: None,
            last: None,
            last_dt: 0,
            time_ns: TimeNs::default(),
            timeline: Timeline::new(),
            models: Vec::new(),
        }
    }

    pub fn session(&self) -> &str {
        &self.session
    }

    pub fn frames_captured(&self) -> u64 {
        self.captured
    }

    /// A frame reached the score thread (scored or not).
    pub fn captured(&mut self) {
        self.captured += 1;
    }

    /// A frame scored at stream time `t_ns` by `model`.
    pub fn scored(&mut self, t_ns: u64, score: &Score, model: Option<&Arc<ModelInfo>>) {
        let (low, high) = (self.select.threshold_low, self.select.threshold_high);
        let state = if score.quality >= high {
            State::Good
        } else if score.quality < low {
            State::Bad(score.primary_reason())
        } else {
            State::Fair
        };
        self.scored += 1;
        self.good += u64::from(state == State::Good);
        self.bad += u64::from(matches!(state, State::Bad(_)));
        self.light[score.light.index()] += 1;
        if let Some((t0, s0)) = self.last {
            let went_back = t_ns < t0;
            // A restarted source starts its timestamps again: the frame before stands for
            // the interval before it, and the timeline goes on from there.
            let dt = if went_back {
                self.last_dt
            } else {
                (t_ns - t0).min(MAX_GAP_NS)
            };
            self.time_ns.credit(s0, dt);
            self.last_dt = dt;
            if went_back {
                let (o, off) = self.origin.expect("set with the first frame");
                self.origin = Some((t_ns, off + (t0 - o) + dt));
            }
        }
        let (o, off) = *self.origin.get_or_insert((t_ns, 0));
        self.timeline.push(off + (t_ns - o), score.quality);
        self.last = Some((t_ns, state));
        if let Some(m) = model {
            match self.models.last_mut() {
                Some((last, n)) if last == m => *n += 1,
                _ => self.models.push((m.clone(), 1)),
            }
        }
    }

    /// A frame of this procedure was forwarded (selected, marked or annotated); `action`
    /// is the operator's part, `keep` or `annotate`, if any.
    pub fn forwarded(&mut self, action: Option<&str>) {
        self.forwarded += 1;
        match action {
            Some("keep") => self.marked += 1,
            Some("annotate") => self.annotated += 1,
            _ => {}
        }
    }

    /// The record of the procedure, ended at `ended_at` by `ended`.
    pub fn finish(mut self, ended: Ended, ended_at: DateTime<Utc>) -> ProcedureRecord {
        if let Some((_, s)) = self.last.take() {
            // The last frame stands for the interval before it.
            self.time_ns.credit(s, self.last_dt);
        }
        let t = self.time_ns;
        let s = |ns: u64| (ns as f64 / 1e6).round() / 1e3;
        let share = |n: u64| {
            if self.scored == 0 {
                0.0
            } else {
                n as f64 / self.scored as f64
            }
        };
        let mut bad_s: BTreeMap<&'static str, f64> = Artifact::ALL
            .iter()
            .map(|a| (a.as_str(), s(t.by_artifact[a.index()])))
            .collect();
        bad_s.insert("none", s(t.unexplained));
        ProcedureRecord {
            schema: SCHEMA,
            key: self.key,
            site: self.site,
            device: self.device,
            session: self.session,
            started_by: if self.operator_started {
                "operator"
            } else {
                "agent"
            },
            ended_by: ended,
            started_at: record::format_time(self.started_at),
            ended_at: record::format_time(ended_at),
            duration_s: s((ended_at - self.started_at)
                .num_nanoseconds()
                .unwrap_or(0)
                .max(0) as u64),
            frames: FramesDoc {
                captured: self.captured,
                scored: self.scored,
                good: self.good,
                bad: self.bad,
                good_share: (share(self.good) * 1e4).round() / 1e4,
            },
            time: TimeDoc {
                scored_s: s(t.scored),
                good_s: s(t.good),
                bad_s: s(t.bad),
                bad_by_reason_s: bad_s,
                longest_bad_s: s(t.longest),
            },
            light: Light::ALL
                .iter()
                .map(|l| (l.as_str(), self.light[l.index()]))
                .collect(),
            kept: KeptDoc {
                forwarded: self.forwarded,
                marked: self.marked,
                annotated: self.annotated,
            },
            models: self
                .models
                .into_iter()
                .map(|(m, frames)| ModelUse {
                    model: (*m).clone(),
                    frames,
                })
                .collect(),
            thresholds: ThresholdsDoc {
                select: self.select,
                reason_threshold: self.scoring.0,
                model_weight: self.scoring.1,
            },
            timeline: self.timeline.doc(),
        }
    }
}

/// `procedure.json` (schema [`SCHEMA`]).
#[derive(Debug, Clone, Serialize)]
pub struct ProcedureRecord {
    pub schema: &'static str,
    /// Key stem; the record is `{key}.json`.
    pub key: String,
    pub site: String,
    pub device: String,
    pub session: String,
    /// `operator` (started with "Start procedure") or `agent` (the agent's own session,
    /// from its start or an "End procedure" to the next start).
    pub started_by: &'static str,
    pub ended_by: Ended,
    pub started_at: String,
    pub ended_at: String,
    /// Wall-clock time from start to end.
    pub duration_s: f64,
    pub frames: FramesDoc,
    pub time: TimeDoc,
    /// Scored frames per light (`nbi`, `white`).
    pub light: BTreeMap<&'static str, u64>,
    pub kept: KeptDoc,
    /// The models that scored the procedure's frames, in order, with their frame counts
    /// (more than one when a model was reloaded during it).
    pub models: Vec<ModelUse>,
    pub thresholds: ThresholdsDoc,
    pub timeline: TimelineDoc,
}

#[derive(Debug, Clone, Serialize)]
pub struct FramesDoc {
    /// Frames that reached the score thread (scored, or waiting for a field of view).
    pub captured: u64,
    pub scored: u64,
    /// Quality ≥ `select.threshold_high`.
    pub good: u64,
    /// Quality < `select.threshold_low`.
    pub bad: u64,
    /// good ÷ scored.
    pub good_share: f64,
}

/// Stream time, seconds.
#[derive(Debug, Clone, Serialize)]
pub struct TimeDoc {
    pub scored_s: f64,
    pub good_s: f64,
    pub bad_s: f64,
    /// Bad time by primary reason (`none`: bad without a reason over the threshold).
    pub bad_by_reason_s: BTreeMap<&'static str, f64>,
    pub longest_bad_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeptDoc {
    /// Frames of this procedure forwarded to the datalake, all reasons.
    pub forwarded: u64,
    /// Of those, kept by the operator ("Keep this frame").
    pub marked: u64,
    /// Of those, annotated by the operator.
    pub annotated: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelUse {
    #[serde(flatten)]
    pub model: ModelInfo,
    pub frames: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThresholdsDoc {
    pub select: SelectConfig,
    pub reason_threshold: f32,
    pub model_weight: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineDoc {
    /// Stream time per point, seconds; point i covers [i, i + 1) × bucket_s after the
    /// first scored frame.
    pub bucket_s: f64,
    pub quality_mean: Vec<Option<f64>>,
    pub quality_min: Vec<Option<f64>>,
}

/// The key stem of a session's procedure record.
pub fn key_stem(cfg: &Config, started_at: DateTime<Utc>, session: &str) -> String {
    let frame = record::key_stem(
        &cfg.datalake.prefix,
        &cfg.agent.site,
        &cfg.agent.device,
        started_at,
        session,
        0,
    );
    let dir = frame.rsplit_once('/').map_or(frame.as_str(), |(d, _)| d);
    format!("{dir}/{NAME}")
}

/// Where a procedure record sorts in the spool's eviction order: above every frame
/// (frames are 0..1), so a full spool drops frames before it.
pub const SPOOL_QUALITY: f32 = 2.0;

/// The record as a spool entry: no image, `{key}.json` only.
pub fn spool_record(rec: &ProcedureRecord, at: DateTime<Utc>) -> crate::spool::SpoolRecord {
    crate::spool::SpoolRecord {
        key: rec.key.clone(),
        quality: SPOOL_QUALITY,
        created_ms: at.timestamp_millis().max(0) as u64,
        jpeg: Vec::new(),
        json: serde_json::to_vec(rec).expect("procedure records serialise"),
        annotation: Vec::new(),
    }
}

/// Register the per-procedure metrics: gauges NaN until a procedure ends.
pub fn register_metrics() {
    for reason in ["queue_full", "spool_full", "spool_write_failed"] {
        metrics::counter!("endo_agent_documents_lost_total", "reason" => reason).increment(0);
    }
    for e in Ended::ALL {
        metrics::counter!("endo_agent_procedures_total", "ended_by" => e.as_str()).increment(0);
    }
    for name in LAST_GAUGES {
        metrics::gauge!(name).set(f64::NAN);
    }
    for a in Artifact::ALL {
        metrics::gauge!("endo_agent_procedure_last_bad_seconds", "reason" => a.as_str())
            .set(f64::NAN);
    }
}

const LAST_GAUGES: [&str; 5] = [
    "endo_agent_procedure_last_good_ratio",
    "endo_agent_procedure_last_duration_seconds",
    "endo_agent_procedure_last_scored_seconds",
    "endo_agent_procedure_last_longest_bad_seconds",
    "endo_agent_procedure_last_end_timestamp_seconds",
];

/// The figures of the procedure that just ended, as metrics.
pub fn export_metrics(rec: &ProcedureRecord) {
    metrics::counter!("endo_agent_procedures_total", "ended_by" => rec.ended_by.as_str())
        .increment(1);
    let ended = chrono::DateTime::parse_from_rfc3339(&rec.ended_at)
        .map(|t| t.timestamp_millis() as f64 / 1e3)
        .unwrap_or(f64::NAN);
    let values = [
        rec.frames.good_share,
        rec.duration_s,
        rec.time.scored_s,
        rec.time.longest_bad_s,
        ended,
    ];
    for (name, v) in LAST_GAUGES.iter().zip(values) {
        metrics::gauge!(*name).set(v);
    }
    for a in Artifact::ALL {
        let v = rec
            .time
            .bad_by_reason_s
            .get(a.as_str())
            .copied()
            .unwrap_or(0.0);
        metrics::gauge!("endo_agent_procedure_last_bad_seconds", "reason" => a.as_str()).set(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::classical::Measures;

    /// A score of `quality` whose primary reason is `reason` (none when `None`).
    fn score(quality: f32, reason: Option<Artifact>) -> Score {
        let cfg = Config::default();
        let mut a = [0.0; Artifact::COUNT];
        let mut q = quality;
        if let Some(r) = reason {
            a[r.index()] = 1.0 - quality;
        } else if quality < 1.0 {
            // Below the reason threshold, split over two artifacts: no reason.
            let each = 1.0 - quality.sqrt();
            a[Artifact::Blur.index()] = each;
            a[Artifact::Noise.index()] = each;
            q = (1.0 - each) * (1.0 - each);
        }
        let s = crate::score::combine(&cfg.scoring, Measures::default(), a, None, 0);
        assert!((s.quality - q).abs() < 1e-5);
        s
    }

    /// 25 fps: a frame interval that is a whole number of nanoseconds.
    const FRAME: u64 = 40_000_000;

    /// (frames, quality, reason) segments at 25 fps from t = 0.
    fn tally(segments: &[(u64, f32, Option<Artifact>)]) -> ProcedureRecord {
        let cfg = Config::default();
        let t0 = Utc::now();
        let mut t = Tally::new(&cfg, "s1", true, t0);
        let mut i = 0;
        for &(n, q, r) in segments {
            let s = score(q, r);
            for _ in 0..n {
                t.captured();
                t.scored(i * FRAME, &s, None);
                i += 1;
            }
        }
        t.finish(Ended::OperatorEnd, t0 + chrono::Duration::seconds(7))
    }

    #[test]
    fn time_per_state_and_reason_and_the_longest_bad_stretch_follow_the_frames() {
        let r = tally(&[
            (50, 1.0, None),
            (25, 0.1, Some(Artifact::Dark)),
            (15, 1.0, None),
            (35, 0.2, Some(Artifact::Blur)),
            (25, 0.55, None),
        ]);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-3;
        assert_eq!((r.frames.captured, r.frames.scored), (150, 150));
        assert_eq!((r.frames.good, r.frames.bad), (65, 60));
        assert!(
            close(r.frames.good_share, 65.0 / 150.0),
            "{}",
            r.frames.good_share
        );
        assert!(close(r.time.scored_s, 6.0), "{:?}", r.time);
        assert!(close(r.time.good_s, 2.6), "{:?}", r.time);
        assert!(close(r.time.bad_s, 2.4), "{:?}", r.time);
        assert!(close(r.time.bad_by_reason_s["dark"], 1.0), "{:?}", r.time);
        assert!(close(r.time.bad_by_reason_s["blur"], 1.4), "{:?}", r.time);
        assert!(close(r.time.longest_bad_s, 1.4), "{:?}", r.time);
        assert!(close(r.duration_s, 7.0));
        assert_eq!(r.ended_by, Ended::OperatorEnd);
        assert_eq!(r.started_by, "operator");
        assert!(r.key.ends_with("/s1/procedure"), "{}", r.key);
        // Timeline: 1 s buckets; the fourth second is 15 good frames and 10 blurred.
        assert_eq!(r.timeline.bucket_s, 1.0);
        let mean: Vec<f64> = r.timeline.quality_mean.iter().map(|v| v.unwrap()).collect();
        assert_eq!(mean, [1.0, 1.0, 0.1, 0.68, 0.2, 0.55]);
        assert_eq!(r.timeline.quality_min[3], Some(0.2));
    }

    #[test]
    fn a_gap_counts_at_most_a_second_and_a_long_procedure_keeps_300_points() {
        let cfg = Config::default();
        let t0 = Utc::now();
        let mut t = Tally::new(&cfg, "s2", false, t0);
        let good = score(1.0, None);
        let bad = score(0.1, Some(Artifact::Outside));
        // 2 frames 10 s apart: the first stands for 1 s, the last for as long.
        t.scored(0, &bad, None);
        t.scored(10_000_000_000, &bad, None);
        // Then 1000 s at 1 frame per second, good.
        for i in 0..1000u64 {
            t.scored(11_000_000_000 + i * 1_000_000_000, &good, None);
        }
        let r = t.finish(Ended::AgentStop, t0);
        assert_eq!(r.time.bad_by_reason_s["outside"], 2.0);
        assert_eq!(r.time.longest_bad_s, 2.0);
        assert_eq!(r.time.good_s, 1000.0);
        assert!(r.timeline.quality_mean.len() <= MAX_POINTS);
        assert_eq!(r.timeline.bucket_s, 4.0);
        assert_eq!(r.timeline.quality_mean[0], Some(0.1));
        assert_eq!(r.timeline.quality_mean[10], Some(1.0));
        assert_eq!(r.started_by, "agent");
    }

    #[test]
    fn a_restarted_source_continues_the_procedure_time_and_timeline() {
        let cfg = Config::default();
        let mut t = Tally::new(&cfg, "s4", true, Utc::now());
        let bad = score(0.1, Some(Artifact::Dark));
        // 2 s of frames, then the source restarts at pts 0 for 2 s more.
        for i in 0..50u64 {
            t.scored(i * FRAME, &bad, None);
        }
        for i in 0..50u64 {
            t.scored(i * FRAME, &bad, None);
        }
        let r = t.finish(Ended::AgentStop, Utc::now());
        assert!(
            (r.time.bad_by_reason_s["dark"] - 4.0).abs() < 1e-3,
            "{:?}",
            r.time
        );
        assert!((r.time.longest_bad_s - 4.0).abs() < 1e-3, "{:?}", r.time);
        assert_eq!(r.timeline.quality_mean.len(), 4, "{:?}", r.timeline);
    }

    #[test]
    fn models_in_force_are_listed_in_order_with_their_frames() {
        let cfg = Config::default();
        let mut t = Tally::new(&cfg, "s3", true, Utc::now());
        let m = |v: &str| {
            Arc::new(ModelInfo {
                name: "q".into(),
                version: v.into(),
                sha256: v.repeat(4),
            })
        };
        let (a, b) = (m("1"), m("2"));
        let s = score(1.0, None);
        for (i, model) in [&a, &a, &b, &b, &b, &a].into_iter().enumerate() {
            t.scored(i as u64 * FRAME, &s, Some(model));
        }
        let r = t.finish(Ended::OperatorStart, Utc::now());
        let got: Vec<(String, u64)> = r
            .models
            .iter()
            .map(|u| (u.model.version.clone(), u.frames))
            .collect();
        assert_eq!(got, [("1".into(), 2), ("2".into(), 3), ("1".into(), 1)]);
    }
}
