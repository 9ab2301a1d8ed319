//! Operator marks, annotations and procedure sessions: what the people beside the
//! endoscope can tell the agent, through the web overlay ([`crate::http`]).
//!
//! - **Keep this frame**: the best recent frame (a running best, at most
//!   `operator.mark_window_ms` old) is forwarded
//!   even if below threshold, flagged as operator-marked (`selection.reason =
//!   "operator_marked"`).
//! - **Annotate**: one of the recent preview frames (held at full resolution, see
//!   [`Recent`]) is frozen in the web view; the operator draws rectangles or polygons and
//!   picks a label. The frame goes to the datalake as usual (`selection.reason =
//!   "operator_annotated"`) with a COCO-style annotation record beside its record,
//!   `{key}.annotation.json` ([`coco`]); geometry is in pixels of the cropped frame, the
//!   JPEG the datalake holds.
//! - **Procedure sessions**: start and end rotate the session id used in datalake keys and
//!   reset the procedure's counters.
//!
//! Keys are assigned by the score thread only (it owns the sequence), so marks and
//! annotations reach it as [`Command`]s on a small channel; the HTTP handlers never touch
//! the hot path.

use chrono::{DateTime, Utc};
use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::OperatorConfig;
use crate::fov::Fov;
use crate::frame::{I420Image, I420View};
use crate::record;
use crate::score::Score;

/// Frames frozen by operators and not yet annotated, kept beyond the recent ring.
const PINNED: usize = 4;
/// Most points in one polygon.
pub const MAX_POINTS: usize = 256;

/// A recent frame, owned (the capture buffer went back to its pool): what the web view
/// previews and what an operator can freeze and annotate.
pub struct RecentFrame {
    /// Preview id, increasing.
    pub id: u64,
    /// The field of view's rectangle of the source frame (I420), not the whole frame:
    /// nothing outside it is ever encoded, and a 1080p frame's FOV is about half of it
    /// (issue 14: memory).
    pub image: I420Image,
    /// The field of view in the source frame's coordinates (what the record says);
    /// [`Fov::at_origin`] of it is the same in `image`'s.
    pub fov: Arc<Fov>,
    /// The source frame's size.
    pub source_size: (u32, u32),
    pub score: Score,
    /// The model that scored it.
    pub model: Option<Arc<crate::record::ModelInfo>>,
    pub captured_at: DateTime<Utc>,
    pub pts_ns: Option<u64>,
    pub offset: Option<u64>,
    /// JPEG of the cropped, masked field of view at `preview_size`: encoded by the preview
    /// worker while a web page is connected, else on first request ([`RecentFrame::preview_jpeg`]).
    pub preview: std::sync::OnceLock<Vec<u8>>,
    /// The preview's size: the field of view scaled to `operator.preview_width`.
    pub preview_size: (u32, u32),
}

impl RecentFrame {
    /// Keep `frame`'s field of view `fov` as recent frame `id`: only the FOV's rectangle
    /// is copied. `stamps`: capture time, buffer timestamp, source frame number.
    pub fn keep(
        id: u64,
        frame: &I420View,
        fov: Arc<Fov>,
        (score, model): (Score, Option<Arc<crate::record::ModelInfo>>),
        (captured_at, pts_ns, offset): (DateTime<Utc>, Option<u64>, Option<u64>),
        preview_width: u32,
    ) -> RecentFrame {
        RecentFrame {
            id,
            image: frame.crop(fov.rect).to_owned_image(),
            source_size: (frame.width, frame.height),
            preview_size: crate::encode::preview_size(&fov, preview_width),
            fov,
            score,
            model,
            captured_at,
            pts_ns,
            offset,
            preview: std::sync::OnceLock::new(),
        }
    }

    /// The preview JPEG, encoding it now if nobody has yet (some milliseconds: call it off
    /// the async runtime's threads); `when` labels the encoding in
    /// `endo_agent_previews_encoded_total` ("live" or "on_request").
    pub fn preview_jpeg(&self, when: &'static str) -> Result<&[u8], crate::encode::EncodeError> {
        if let Some(j) = self.preview.get() {
            return Ok(j);
        }
        let (j, _) = crate::encode::preview_jpeg(
            &self.image.view(),
            &self.fov.at_origin(),
            self.preview_size.0,
        )?;
        metrics::counter!("endo_agent_previews_encoded_total", "when" => when).increment(1);
        Ok(self.preview.get_or_init(|| j))
    }

    /// The datalake JPEG of this frame (redacted field of view).
    pub fn encode_jpeg(&self, quality: u8) -> Result<Vec<u8>, crate::encode::EncodeError> {
        crate::encode::encode_jpeg(&self.image.view(), &self.fov.at_origin(), quality)
    }

    /// Size of the cropped frame (the datalake JPEG): annotation coordinates are in it.
    pub fn crop_size(&self) -> (u32, u32) {
        (self.fov.rect.width, self.fov.rect.height)
    }
}

/// The last `operator.recent_frames` previews plus the frozen ones.
#[derive(Default)]
pub struct Recent {
    ring: VecDeque<Arc<RecentFrame>>,
    pinned: VecDeque<Arc<RecentFrame>>,
}

impl Recent {
    pub fn push(&mut self, f: Arc<RecentFrame>, cap: usize) {
        while self.ring.len() >= cap {
            self.ring.pop_front();
        }
        self.ring.push_back(f);
    }
    pub fn latest(&self) -> Option<Arc<RecentFrame>> {
        self.ring.back().cloned()
    }
    pub fn get(&self, id: u64) -> Option<Arc<RecentFrame>> {
        self.ring
            .iter()
            .chain(self.pinned.iter())
            .find(|f| f.id == id)
            .cloned()
    }
    /// Keep a frame beyond the ring until it is annotated (at most [`PINNED`] frozen frames).
    pub fn pin(&mut self, id: u64) -> Option<Arc<RecentFrame>> {
        let f = self.get(id)?;
        if !self.pinned.iter().any(|p| p.id == id) {
            if self.pinned.len() >= PINNED {
                self.pinned.pop_front();
            }
            self.pinned.push_back(f.clone());
        }
        Some(f)
    }
    pub fn unpin(&mut self, id: u64) {
        self.pinned.retain(|p| p.id != id);
    }
}

/// The current procedure session and its counters.
#[derive(Debug, Clone, Serialize)]
pub struct Procedure {
    pub session: String,
    /// Started by an operator (true) or the agent's own session between procedures.
    pub active: bool,
    pub started_at: String,
    /// `started_at` as a time, for the procedure record.
    #[serde(skip)]
    pub started: DateTime<Utc>,
}

/// Counters of the current procedure, reset when the session rotates.
#[derive(Default)]
pub struct Counters {
    pub scored: AtomicU64,
    pub good: AtomicU64,
    /// Frames forwarded in this procedure (selected, marked and annotated).
    pub kept: AtomicU64,
    pub marks: AtomicU64,
    pub annotations: AtomicU64,
}

impl Counters {
    fn reset(&self) {
        for c in [
            &self.scored,
            &self.good,
            &self.kept,
            &self.marks,
            &self.annotations,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// A request to the score thread, which owns the sequence numbers of datalake keys.
pub enum Command {
    /// Forward the best recent frame.
    Mark {
        reply: tokio::sync::oneshot::Sender<Result<Kept, OperatorError>>,
    },
    /// Forward a frozen frame with its annotation.
    Annotate {
        frame: Arc<RecentFrame>,
        request: AnnotationRequest,
        reply: tokio::sync::oneshot::Sender<Result<Kept, OperatorError>>,
    },
    /// Score with this model from the next frame on (see [`crate::reload`]); the old one
    /// comes back, to be dropped off the score thread.
    Model {
        model: Box<crate::score::LoadedModel>,
        reply: tokio::sync::oneshot::Sender<Option<Box<crate::score::LoadedModel>>>,
    },
}

/// What an operator action forwarded.
#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub key: String,
    pub session: String,
    pub sequence: u64,
    pub quality: f32,
    pub captured_at: String,
    /// `{key}.annotation.json` for an annotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotation: Option<String>,
    /// A mark within `mark_window_ms` of the previous one: this is the frame that one
    /// kept, nothing new was stored (HTTP 200 instead of 201).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub already_kept: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum OperatorError {
    /// The request is malformed (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// The frame is no longer held (HTTP 404).
    #[error("frame {0} is no longer held (only the last recent frames and frozen ones are)")]
    UnknownFrame(u64),
    /// Nothing to act on right now (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// The agent did not answer in time or is stopping (HTTP 503).
    #[error("{0}")]
    Unavailable(String),
}

/// The operator side of the agent, shared by the score thread, the preview worker and
/// the HTTP handlers.
pub struct Operator {
    pub cfg: OperatorConfig,
    procedure: Mutex<Procedure>,
    /// Bumped on every session change; the score thread compares it per frame.
    generation: AtomicU64,
    pub counters: Counters,
    pub recent: Mutex<Recent>,
    commands: Sender<Command>,
    /// Open web pages (event streams): while there are none, the preview worker keeps
    /// recent frames without encoding their previews.
    pub web_clients: std::sync::atomic::AtomicUsize,
    /// When the last mark kept a frame, and what it answered: a mark within
    /// `mark_window_ms` of it (a double click, a held key) answers with the same frame
    /// instead of storing another. Only the score thread uses it.
    last_mark: Mutex<Option<(std::time::Instant, Kept)>>,
}

impl Operator {
    pub fn new(cfg: OperatorConfig, session: String) -> (Operator, Receiver<Command>) {
        let (tx, rx) = crossbeam_channel::bounded(16);
        for event in ["start", "end"] {
            metrics::counter!("endo_agent_operator_sessions_total", "event" => event).increment(0);
        }
        metrics::counter!("endo_agent_operator_marks_total").increment(0);
        for when in ["live", "on_request"] {
            metrics::counter!("endo_agent_previews_encoded_total", "when" => when).increment(0);
        }
        metrics::counter!("endo_agent_operator_annotations_total").increment(0);
        metrics::counter!("endo_agent_operator_annotation_shapes_total").increment(0);
        let op = Operator {
            cfg,
            procedure: Mutex::new({
                let now = Utc::now();
                Procedure {
                    session,
                    active: false,
                    started_at: record::format_time(now),
                    started: now,
                }
            }),
            generation: AtomicU64::new(0),
            counters: Counters::default(),
            recent: Mutex::new(Recent::default()),
            commands: tx,
            web_clients: Default::default(),
            last_mark: Mutex::new(None),
        };
        (op, rx)
    }

    pub fn procedure(&self) -> Procedure {
        self.procedure.lock().expect("procedure lock").clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Start (`active`) or end a procedure: a new session id, counters at 0.
    pub fn rotate(&self, active: bool) -> Result<Procedure, OperatorError> {
        let mut p = self.procedure.lock().expect("procedure lock");
        if !active && !p.active {
            return Err(OperatorError::Conflict(
                "no procedure is running (start one first)".into(),
            ));
        }
        let now = Utc::now();
        let mut id = record::new_session_id(now);
        while id == p.session {
            id = record::new_session_id(now);
        }
        let previous = std::mem::replace(
            &mut *p,
            Procedure {
                session: id,
                active,
                started_at: record::format_time(now),
                started: now,
            },
        );
        self.counters.reset();
        self.generation.fetch_add(1, Ordering::AcqRel);
        let event = if active { "start" } else { "end" };
        metrics::counter!("endo_agent_operator_sessions_total", "event" => event).increment(1);
        metrics::gauge!("endo_agent_session_frames_selected").set(0.0);
        tracing::info!(previous = %previous.session, session = %p.session, "procedure {event}");
        Ok(p.clone())
    }

    /// What the last mark kept, when it was less than `window` ago in this `session`.
    pub fn kept_already(&self, window: std::time::Duration, session: &str) -> Option<Kept> {
        let last = self.last_mark.lock().expect("mark lock");
        let (at, kept) = last.as_ref()?;
        (at.elapsed() < window && kept.session == session).then(|| Kept {
            already_kept: true,
            ..kept.clone()
        })
    }

    /// Remember what a mark kept, now.
    pub fn note_mark(&self, kept: &Kept) {
        *self.last_mark.lock().expect("mark lock") =
            Some((std::time::Instant::now(), kept.clone()));
    }

    /// Hand a command to the score thread (fails at once when its queue is full).
    pub fn send(&self, c: Command) -> Result<(), OperatorError> {
        self.commands
            .try_send(c)
            .map_err(|_| OperatorError::Unavailable("the agent is busy or stopping".into()))
    }
}

/// One drawn region, in pixels of the cropped frame.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Shape {
    Rect {
        x: f64,
        y: f64,
        width: f64,
        height: f64,
    },
    Polygon {
        points: Vec<[f64; 2]>,
    },
}

/// What the web page sends to annotate a frozen frame.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnotationRequest {
    /// The preview id of the frozen frame.
    pub frame: u64,
    pub label: String,
    pub shapes: Vec<Shape>,
    /// Free text, optional (kept short).
    #[serde(default)]
    pub note: String,
}

impl AnnotationRequest {
    /// Check the label and every shape against the frame's size (`w` × `h` cropped pixels).
    pub fn validate(&self, cfg: &OperatorConfig, w: u32, h: u32) -> Result<(), OperatorError> {
        let bad = |m: String| Err(OperatorError::Invalid(m));
        if !cfg.labels.contains(&self.label) {
            return bad(format!(
                "label {:?} is not one of the configured labels ({})",
                self.label,
                cfg.labels.join(", ")
            ));
        }
        if self.shapes.is_empty() || self.shapes.len() > cfg.max_shapes {
            return bad(format!(
                "{} shapes: draw 1 to {} regions",
                self.shapes.len(),
                cfg.max_shapes
            ));
        }
        if self.note.len() > 1000 {
            return bad("note: at most 1000 bytes".into());
        }
        let (w, h) = (w as f64, h as f64);
        let inside = |x: f64, y: f64| {
            x.is_finite() && y.is_finite() && (0.0..=w).contains(&x) && (0.0..=h).contains(&y)
        };
        for (i, s) in self.shapes.iter().enumerate() {
            match s {
                Shape::Rect {
                    x,
                    y,
                    width,
                    height,
                } => {
                    let fits = *width >= 1.0
                        && *height >= 1.0
                        && inside(*x, *y)
                        && inside(x + width, y + height);
                    if !fits {
                        return bad(format!(
                            "shape {i}: rectangle {x},{y} {width}x{height} must be at least 1x1 and inside the {w}x{h} frame"
                        ));
                    }
                }
                Shape::Polygon { points } => {
                    if points.len() < 3 || points.len() > MAX_POINTS {
                        return bad(format!(
                            "shape {i}: a polygon needs 3 to {MAX_POINTS} points, not {}",
                            points.len()
                        ));
                    }
                    if let Some(p) = points.iter().find(|p| !inside(p[0], p[1])) {
                        return bad(format!(
                            "shape {i}: point {},{} is outside the {w}x{h} frame",
                            p[0], p[1]
                        ));
                    }
                    if polygon_area(points) < 1.0 {
                        return bad(format!("shape {i}: the polygon has no area"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Shoelace area.
fn polygon_area(points: &[[f64; 2]]) -> f64 {
    let n = points.len();
    (0..n)
        .map(|i| {
            let (a, b) = (points[i], points[(i + 1) % n]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum::<f64>()
        .abs()
        / 2.0
}

/// Round to 0.01 px: the annotation stays readable and exact enough.
fn r2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Who and what the annotation is about, for [`coco`].
pub struct AnnotationContext<'a> {
    pub key: &'a str,
    pub site: &'a str,
    pub device: &'a str,
    pub session: &'a str,
    pub sequence: u64,
    pub captured_at: DateTime<Utc>,
    pub annotated_at: DateTime<Utc>,
    pub width: u32,
    pub height: u32,
}

/// The annotation record: a COCO-style document with one image (the frame's JPEG) and one
/// annotation per shape. Rectangles are also given as a 4-point segmentation, polygons
/// also get their bounding box, so a COCO reader needs no endo-agent knowledge.
pub fn coco(
    req: &AnnotationRequest,
    labels: &[String],
    ctx: &AnnotationContext,
) -> serde_json::Value {
    let category = labels.iter().position(|l| *l == req.label).unwrap_or(0) + 1;
    let file_name = ctx.key.rsplit('/').next().unwrap_or(ctx.key);
    let annotations: Vec<serde_json::Value> = req
        .shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (kind, poly): (&str, Vec<[f64; 2]>) = match s {
                Shape::Rect {
                    x,
                    y,
                    width,
                    height,
                } => (
                    "rect",
                    vec![
                        [*x, *y],
                        [x + width, *y],
                        [x + width, y + height],
                        [*x, y + height],
                    ],
                ),
                Shape::Polygon { points } => ("polygon", points.clone()),
            };
            let (x0, y0) = poly.iter().fold((f64::MAX, f64::MAX), |(a, b), p| {
                (a.min(p[0]), b.min(p[1]))
            });
            let (x1, y1) = poly.iter().fold((f64::MIN, f64::MIN), |(a, b), p| {
                (a.max(p[0]), b.max(p[1]))
            });
            serde_json::json!({
                "id": i + 1,
                "image_id": 1,
                "category_id": category,
                "bbox": [r2(x0), r2(y0), r2(x1 - x0), r2(y1 - y0)],
                "area": r2(polygon_area(&poly)),
                "segmentation": [poly.iter().flat_map(|p| [r2(p[0]), r2(p[1])]).collect::<Vec<_>>()],
                "iscrowd": 0,
                "shape": kind,
            })
        })
        .collect();
    serde_json::json!({
        "schema": "endo-agent/annotation/v1",
        "info": {
            "description": "endo-agent operator annotation",
            "version": crate::VERSION,
            "date_created": record::format_time(ctx.annotated_at),
        },
        "key": ctx.key,
        "site": ctx.site,
        "device": ctx.device,
        "session": ctx.session,
        "sequence": ctx.sequence,
        "label": req.label,
        "note": req.note,
        "operator_marked": true,
        "annotated_at": record::format_time(ctx.annotated_at),
        "images": [{
            "id": 1,
            "file_name": format!("{file_name}.jpg"),
            "width": ctx.width,
            "height": ctx.height,
            "date_captured": record::format_time(ctx.captured_at),
        }],
        "categories": labels.iter().enumerate().map(|(i, l)| serde_json::json!({
            "id": i + 1, "name": l, "supercategory": "finding",
        })).collect::<Vec<_>>(),
        "annotations": annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> OperatorConfig {
        OperatorConfig::default()
    }

    /// A recent frame holds only its FOV's rectangle, and encodes exactly what the live
    /// frame would: the same datalake JPEG (masked, round FOV, off the frame's origin) and
    /// the same preview, with the record's FOV and source size those of the source frame.
    #[test]
    fn a_recent_frame_keeps_only_its_fov_and_encodes_as_the_live_frame_does() {
        use crate::config::{FovShape, ScoringConfig};
        use crate::frame::Rect;
        let (w, h) = (320u32, 240u32);
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                [
                    (x * 7 % 251) as u8,
                    (y * 5 % 241) as u8,
                    ((x + y) % 256) as u8,
                ]
            })
            .collect();
        let img = I420Image::from_rgb(w, h, &rgb);
        let view = img.view();
        let masks = [Rect::new(60, 40, 30, 20)];
        let fov = Arc::new(Fov::new(
            Rect::new(50, 30, 200, 180),
            FovShape::Circle,
            &masks,
            w,
            h,
        ));
        let (score, _) = crate::score::Scorer::new(ScoringConfig::default(), None)
            .score(&view, &fov)
            .unwrap();
        let stamps = (Utc::now(), Some(5), Some(7));
        let f = RecentFrame::keep(3, &view, fov.clone(), (score, None), stamps, 120);
        assert_eq!((f.image.width, f.image.height), (200, 180));
        assert_eq!(
            (f.source_size, f.crop_size(), &*f.fov),
            ((w, h), (200, 180), &*fov)
        );
        let live = crate::encode::encode_jpeg(&view, &fov, 90).unwrap();
        assert_eq!(f.encode_jpeg(90).unwrap(), live);
        let (preview, size) = crate::encode::preview_jpeg(&view, &fov, 120).unwrap();
        assert_eq!(
            (f.preview_jpeg("live").unwrap(), f.preview_size),
            (&preview[..], size)
        );
    }

    fn req(shapes: Vec<Shape>) -> AnnotationRequest {
        AnnotationRequest {
            frame: 1,
            label: "ulcer".into(),
            shapes,
            note: String::new(),
        }
    }

    #[test]
    fn shapes_outside_the_frame_or_unknown_labels_are_refused_with_the_reason() {
        let rect = |x, y, w, h| Shape::Rect {
            x,
            y,
            width: w,
            height: h,
        };
        assert!(req(vec![rect(10.0, 10.0, 50.0, 40.0)])
            .validate(&cfg(), 100, 100)
            .is_ok());
        let e = req(vec![rect(60.0, 10.0, 50.0, 40.0)])
            .validate(&cfg(), 100, 100)
            .unwrap_err();
        assert!(e.to_string().contains("inside the 100x100 frame"), "{e}");
        let e = req(vec![]).validate(&cfg(), 100, 100).unwrap_err();
        assert!(e.to_string().contains("0 shapes"), "{e}");
        let mut r = req(vec![rect(1.0, 1.0, 5.0, 5.0)]);
        r.label = "tumour".into();
        let e = r.validate(&cfg(), 100, 100).unwrap_err();
        assert!(e.to_string().contains("\"tumour\""), "{e}");
        let line = Shape::Polygon {
            points: vec![[0.0, 0.0], [5.0, 5.0], [10.0, 10.0]],
        };
        assert!(req(vec![line]).validate(&cfg(), 100, 100).is_err());
        let nan = rect(f64::NAN, 1.0, 5.0, 5.0);
        assert!(req(vec![nan]).validate(&cfg(), 100, 100).is_err());
    }

    #[test]
    fn coco_record_has_boxes_polygons_and_areas() {
        let r = req(vec![
            Shape::Rect {
                x: 10.0,
                y: 20.0,
                width: 30.0,
                height: 40.0,
            },
            Shape::Polygon {
                points: vec![[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]],
            },
        ]);
        let t = Utc::now();
        let doc = coco(
            &r,
            &cfg().labels,
            &AnnotationContext {
                key: "frames/s/d/2026/11/21/sess/0000000003",
                site: "s",
                device: "d",
                session: "sess",
                sequence: 3,
                captured_at: t,
                annotated_at: t,
                width: 200,
                height: 100,
            },
        );
        assert_eq!(doc["images"][0]["file_name"], "0000000003.jpg");
        assert_eq!(doc["images"][0]["width"], 200);
        let a = &doc["annotations"];
        assert_eq!(a[0]["bbox"], serde_json::json!([10.0, 20.0, 30.0, 40.0]));
        assert_eq!(a[0]["area"], 1200.0);
        assert_eq!(a[1]["bbox"], serde_json::json!([0.0, 0.0, 10.0, 10.0]));
        assert_eq!(a[1]["area"], 50.0);
        // "ulcer" is the second default label.
        assert_eq!(a[0]["category_id"], 2);
        assert_eq!(doc["categories"][1]["name"], "ulcer");
        assert_eq!(doc["operator_marked"], true);
    }

    #[test]
    fn rotating_resets_counters_and_changes_the_session() {
        let (op, _rx) = Operator::new(cfg(), "first".into());
        op.counters.kept.store(5, Ordering::Relaxed);
        assert!(matches!(op.rotate(false), Err(OperatorError::Conflict(_))));
        let p = op.rotate(true).unwrap();
        assert!(p.active);
        assert_ne!(p.session, "first");
        assert_eq!(op.counters.kept.load(Ordering::Relaxed), 0);
        assert_eq!(op.generation(), 1);
        let q = op.rotate(false).unwrap();
        assert!(!q.active);
        assert_ne!(q.session, p.session);
    }
}
