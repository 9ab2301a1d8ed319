//! The running agent's live status: what the stages publish (capture statistics, the
//! latest score, frames forwarded, each sink's deliveries, the spool) and the documents
//! built from it — `/readyz`'s answer, `/api/status`, the web view's event stream, the
//! MQTT summary and the line `systemctl status` shows.
//!
//! The stages write it; [`crate::http`] and the MQTT sink only read it. It holds no
//! exporter and no I/O, so the HTTP server depends on it and not on the daemon.

use chrono::Utc;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::capture::CaptureStats;
use crate::operator::{Counters, Operator};
use crate::overlay::OverlayState;
use crate::procedure::ProcedureRecord;
use crate::record::{self, ModelInfo};
use crate::score::Score;
use crate::spool::SpoolHandle;
use crate::uplink::worker::SinkStatus;

/// What the HTTP server, the MQTT summary and the operator see of the running agent.
pub struct Status {
    pub capture: Arc<CaptureStats>,
    /// Procedure sessions, marks, annotations and the recent frames of the web view.
    pub operator: Arc<Operator>,
    /// What the on-screen overlay shows (when `display.enabled`).
    pub overlay: Option<Arc<OverlayState>>,
    pub fov_locked: AtomicBool,
    /// When the score thread last scored a frame ([`CaptureStats::stamp`]; 0 = never).
    pub last_scored_ns: AtomicU64,
    /// `select.threshold_low` and `threshold_high`, for the overlay's colours.
    pub thresholds: (f32, f32),
    /// Frames forwarded (selected, kept or annotated) since start: the one counter of
    /// forwarded frames; the procedure's count, its gauge and the overlay follow it in
    /// [`Status::forwarded`].
    forwarded: AtomicU64,
    /// Each configured sink's deliveries and state, in `uplink.sinks` order.
    pub sinks: Vec<SinkStatus>,
    pub fps_milli: AtomicU64,
    pub latest: Mutex<Option<Latest>>,
    /// The source ended and every selected frame went through the encoder (on_eos = idle).
    pub drained: AtomicBool,
    pub spool: Arc<SpoolHandle>,
    /// The model in force (set by the score thread at start and on a reload).
    pub model: Mutex<Option<Arc<ModelInfo>>>,
    /// The record of the last procedure that ended, for the web page.
    pub last_procedure: Mutex<Option<Arc<ProcedureRecord>>>,
}

/// The latest score, for the overlay and `/api/status`.
#[derive(Debug, Clone, Copy)]
pub struct Latest {
    pub score: Score,
    pub at: chrono::DateTime<Utc>,
}

/// `GET /api/status` and the MQTT summary.
#[derive(Debug, Serialize)]
pub struct StatusDoc {
    /// The procedure's session (also under `procedure`; kept for older readers).
    pub session: String,
    pub procedure: ProcedureDoc,
    pub ready: bool,
    pub source_up: bool,
    pub fps: f64,
    pub fov_locked: bool,
    pub frames_captured: u64,
    pub frames_selected: u64,
    pub frames_delivered: u64,
    pub delivered_by_sink: BTreeMap<String, u64>,
    pub spool_frames: usize,
    pub drained: bool,
    pub latest: Option<LatestDoc>,
}

#[derive(Debug, Serialize)]
pub struct ProcedureDoc {
    pub session: String,
    pub active: bool,
    pub started_at: String,
    pub counters: CountersDoc,
}

/// The current procedure's counters.
#[derive(Debug, Serialize, PartialEq)]
pub struct CountersDoc {
    pub scored: u64,
    pub good: u64,
    pub kept: u64,
    pub marks: u64,
    pub annotations: u64,
}

impl CountersDoc {
    pub fn of(c: &Counters) -> CountersDoc {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CountersDoc {
            scored: l(&c.scored),
            good: l(&c.good),
            kept: l(&c.kept),
            marks: l(&c.marks),
            annotations: l(&c.annotations),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LatestDoc {
    pub at: String,
    pub quality: f64,
    pub reasons: Vec<&'static str>,
    pub light: crate::light::Light,
    pub artifacts: BTreeMap<&'static str, f64>,
}

/// One event of the web view's stream (`GET /api/events`): score, counters, newest preview.
#[derive(Debug, Serialize)]
pub struct LiveDoc {
    pub score: Option<LiveScore>,
    pub source: &'static str,
    /// Frames per second, one decimal.
    pub fps: f64,
    pub procedure: ProcedureDoc,
    pub spool_frames: usize,
    pub delivered: u64,
    pub preview: Option<PreviewDoc>,
    /// The model in force: name and version.
    pub model: Option<ModelDoc>,
    /// The last procedure that ended (its whole record: `GET /api/procedures/last`).
    pub last_procedure: Option<EndedDoc>,
}

#[derive(Debug, Serialize)]
pub struct ModelDoc {
    pub name: String,
    pub version: String,
}

/// A procedure that ended, as the live view announces it.
#[derive(Debug, Serialize)]
pub struct EndedDoc {
    pub session: String,
    pub ended_at: String,
    pub good_share: f64,
}

#[derive(Debug, Serialize)]
pub struct LiveScore {
    pub quality: f64,
    /// `good` (≥ threshold_high), `fair` or `bad` (< threshold_low).
    pub level: &'static str,
    pub reasons: Vec<&'static str>,
    /// `white` or `nbi` ([`crate::light`]).
    pub light: crate::light::Light,
    pub at: String,
    pub t_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct PreviewDoc {
    pub id: u64,
    pub width: u32,
    pub height: u32,
    pub crop_width: u32,
    pub crop_height: u32,
    pub quality: f64,
    pub captured_at: String,
}

impl Status {
    pub fn new(
        capture: Arc<CaptureStats>,
        operator: Arc<Operator>,
        overlay: Option<Arc<OverlayState>>,
        thresholds: (f32, f32),
        sinks: Vec<SinkStatus>,
        spool: Arc<SpoolHandle>,
    ) -> Status {
        Status {
            capture,
            operator,
            overlay,
            fov_locked: AtomicBool::new(false),
            last_scored_ns: AtomicU64::new(0),
            thresholds,
            forwarded: AtomicU64::new(0),
            sinks,
            fps_milli: AtomicU64::new(0),
            latest: Mutex::new(None),
            drained: AtomicBool::new(false),
            spool,
            model: Mutex::new(None),
            last_procedure: Mutex::new(None),
        }
    }

    /// Count one forwarded frame: the total and, when it belongs to the `current`
    /// procedure (not the last window of one that just ended), the procedure's count and
    /// what shows it (the session gauge, the on-screen overlay).
    pub fn forwarded(&self, current: bool) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        if current {
            let kept = self.operator.counters.kept.fetch_add(1, Ordering::Relaxed) + 1;
            self.show_kept(kept);
        }
    }

    /// A new session started: the overlay shows its count (0, or what it kept already).
    pub fn session_changed(&self) {
        self.show_kept(self.operator.counters.kept.load(Ordering::Relaxed));
    }

    fn show_kept(&self, kept: u64) {
        metrics::gauge!("endo_agent_session_frames_selected").set(kept as f64);
        if let Some(o) = &self.overlay {
            o.set_kept(kept);
        }
    }

    /// A procedure ended: its record is the web page's summary from now on.
    pub fn procedure_ended(&self, rec: ProcedureRecord) {
        *self.last_procedure.lock().expect("procedure lock") = Some(Arc::new(rec));
    }

    /// Frames forwarded since start.
    pub fn forwarded_total(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }

    /// Why `/readyz` says no: readiness follows the whole hot path, capture *and* scoring.
    /// The model needs no check here: `run` fails before the HTTP listener starts when the
    /// model cannot be loaded. A frame that arrives but is not scored (the field of view
    /// not located yet or refused, scoring failing) is not ready either: the agent is not
    /// doing its job, whatever its source does.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        const RECENT: Duration = Duration::from_secs(2);
        if !self.capture.up.load(Ordering::Relaxed) {
            return Some("source not running");
        }
        match self.capture.since_last_frame() {
            Some(d) if d < RECENT => {}
            _ => return Some("no frame in the last 2 s"),
        }
        match self
            .capture
            .since(self.last_scored_ns.load(Ordering::Relaxed))
        {
            Some(d) if d < RECENT && self.spool.disk_low() => Some(
                "the spool's disk is full: frames are dropped to keep spool.min_free_mib free",
            ),
            Some(d) if d < RECENT => None,
            _ if !self.fov_locked.load(Ordering::Relaxed) => Some(
                "frames arrive but none was scored in the last 2 s: no field of view located (or it was refused)",
            ),
            _ => Some("frames arrive but none was scored in the last 2 s"),
        }
    }

    /// One line for `systemctl status`.
    pub fn status_line(&self) -> String {
        let sinks: Vec<String> = self
            .sinks
            .iter()
            .map(|s| {
                let up = s.up.load(Ordering::Relaxed);
                format!("{} {}", s.name, if up { "up" } else { "down" })
            })
            .collect();
        format!(
            "{:.1} fps; {} selected, {} delivered; spool {}; source {}; sinks {}",
            self.fps(),
            self.forwarded_total(),
            self.delivered_everywhere(),
            self.spool.len().0,
            self.capture.state(),
            sinks.join(", ")
        )
    }

    fn fps(&self) -> f64 {
        self.fps_milli.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Frames stored by every sink (the smallest per-sink count).
    pub fn delivered_everywhere(&self) -> u64 {
        self.sinks
            .iter()
            .map(|s| s.delivered.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    fn procedure_doc(&self) -> ProcedureDoc {
        let p = self.operator.procedure();
        ProcedureDoc {
            session: p.session,
            active: p.active,
            started_at: p.started_at,
            counters: CountersDoc::of(&self.operator.counters),
        }
    }

    /// `GET /api/status` and the MQTT summary.
    pub fn doc(&self) -> StatusDoc {
        let latest = *self.latest.lock().expect("status lock");
        let procedure = self.procedure_doc();
        StatusDoc {
            session: procedure.session.clone(),
            procedure,
            ready: self.not_ready_reason().is_none(),
            source_up: self.capture.up.load(Ordering::Relaxed),
            fps: self.fps(),
            fov_locked: self.fov_locked.load(Ordering::Relaxed),
            frames_captured: self.capture.captured.load(Ordering::Relaxed),
            frames_selected: self.forwarded_total(),
            frames_delivered: self.delivered_everywhere(),
            delivered_by_sink: self
                .sinks
                .iter()
                .map(|s| (s.name.to_string(), s.delivered.load(Ordering::Relaxed)))
                .collect(),
            spool_frames: self.spool.len().0,
            drained: self.drained.load(Ordering::Relaxed),
            latest: latest.map(|l| LatestDoc {
                at: record::format_time(l.at),
                quality: l.score.quality as f64,
                reasons: l.score.reasons().map(|a| a.as_str()).collect(),
                light: l.score.light,
                artifacts: record::ScoreInfo::from_score(&l.score)
                    .artifacts
                    .into_iter()
                    .map(|(k, v)| (k, v as f64))
                    .collect(),
            }),
        }
    }

    /// The web view's live state: score, reasons, counters and the newest preview.
    pub fn live(&self) -> LiveDoc {
        let latest = *self.latest.lock().expect("status lock");
        let (low, high) = self.thresholds;
        let preview = self.operator.recent.lock().expect("recent lock").latest();
        LiveDoc {
            score: latest.map(|l| LiveScore {
                quality: l.score.quality as f64,
                level: if l.score.quality >= high {
                    "good"
                } else if l.score.quality >= low {
                    "fair"
                } else {
                    "bad"
                },
                reasons: l.score.reasons().map(|a| a.as_str()).collect(),
                light: l.score.light,
                at: record::format_time(l.at),
                t_ms: l.at.timestamp_millis(),
            }),
            source: self.capture.state(),
            fps: (self.fps_milli.load(Ordering::Relaxed) as f64 / 100.0).round() / 10.0,
            procedure: self.procedure_doc(),
            spool_frames: self.spool.len().0,
            delivered: self.delivered_everywhere(),
            model: self
                .model
                .lock()
                .expect("model lock")
                .as_ref()
                .map(|m| ModelDoc {
                    name: m.name.clone(),
                    version: m.version.clone(),
                }),
            last_procedure: self
                .last_procedure
                .lock()
                .expect("procedure lock")
                .as_ref()
                .map(|p| EndedDoc {
                    session: p.session.clone(),
                    ended_at: p.ended_at.clone(),
                    good_share: p.frames.good_share,
                }),
            preview: preview.map(|f| PreviewDoc {
                id: f.id,
                width: f.preview_size.0,
                height: f.preview_size.1,
                crop_width: f.crop_size().0,
                crop_height: f.crop_size().1,
                quality: f.score.quality as f64,
                captured_at: record::format_time(f.captured_at),
            }),
        }
    }
}
