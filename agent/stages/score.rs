//! The score stage: one OS thread that takes captured frames and operator commands and
//! never waits on disk or network.
//!
//! For a frame: locate the field of view (nothing is scored until it is locked), score
//! it, publish the score (metrics, status, on-screen overlay), remember it as the mark
//! window's best and maybe as the web preview, and offer it to the selector; a selected
//! frame gets the session's next key and goes to the encoder. For a command (keep this
//! frame, annotate a frozen one): the same keys, the same encoder queue, an answer to the
//! HTTP handler — a key and a channel send, never I/O. Before either, a new procedure
//! session closes the selector's pending window, which belongs to the old one.

use chrono::{DateTime, Utc};
use crossbeam_channel::{Receiver, Sender};
use metrics::{counter, histogram, Counter, Histogram};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::job::{Job, JobFrame, Keys, Reason};
use super::preview::PreviewJob;
use crate::artifact::Artifact;
use crate::capture::CapturedFrame;
use crate::config::Config;
use crate::fov::{Fov, FovLocator, Locate};
use crate::light::Light;
use crate::metrics::DurationWindow;
use crate::operator::RecentFrame;
use crate::operator::{AnnotationContext, AnnotationRequest, Command, Kept, OperatorError};
use crate::procedure::{Ended, Tally};
use crate::record::{self, ModelInfo, OperatorInfo};
use crate::score::{LoadedModel, Score, Scorer, Timings};
use crate::select::{Rejection, Selector, Step};
use crate::spool::SpoolRecord;
use crate::status::{Latest, Status};

/// A scored frame as the selector and the mark window hold it, with the model that
/// scored it.
type Item = (Arc<CapturedFrame>, Arc<Fov>, Score, Option<Arc<ModelInfo>>);
/// Where an operator command's answer goes.
type Reply = tokio::sync::oneshot::Sender<Result<Kept, OperatorError>>;

/// The stage's metric handles, looked up once, not per frame.
pub struct ScoreMetrics {
    scored: Counter,
    fov_pending: Counter,
    fov_invalid: Counter,
    score_failed: Counter,
    quality: Histogram,
    latency: Histogram,
    classical: Histogram,
    preprocess: Histogram,
    inference: Histogram,
    rejected: [Counter; Rejection::ALL.len()],
    bad: [Counter; Artifact::ALL.len()],
    bad_unexplained: Counter,
    light: [Counter; Light::ALL.len()],
    selected: Counter,
    encode_queue_full: Counter,
    marks: Counter,
    annotations: Counter,
    annotation_shapes: Counter,
}

impl ScoreMetrics {
    fn new() -> ScoreMetrics {
        let dropped = |r: &'static str| counter!("endo_agent_frames_dropped_total", "reason" => r);
        let stage = |s: &'static str| histogram!("endo_agent_stage_duration_seconds", "stage" => s);
        ScoreMetrics {
            scored: counter!("endo_agent_frames_scored_total"),
            fov_pending: dropped("fov_pending"),
            fov_invalid: dropped("fov_invalid"),
            score_failed: dropped("score_failed"),
            quality: histogram!("endo_agent_quality_score"),
            latency: histogram!("endo_agent_capture_to_score_seconds"),
            classical: stage("classical"),
            preprocess: stage("preprocess"),
            inference: stage("inference"),
            rejected: Rejection::ALL
                .map(|r| counter!("endo_agent_frames_rejected_total", "reason" => r.as_str())),
            bad: Artifact::ALL
                .map(|a| counter!("endo_agent_frames_bad_total", "artifact" => a.as_str())),
            bad_unexplained: counter!("endo_agent_frames_bad_total", "artifact" => "none"),
            light: Light::ALL
                .map(|l| counter!("endo_agent_frames_light_total", "light" => l.as_str())),
            selected: counter!("endo_agent_frames_selected_total"),
            encode_queue_full: counter!("endo_agent_frames_evicted_total", "reason" => "encode_queue_full"),
            marks: counter!("endo_agent_operator_marks_total"),
            annotations: counter!("endo_agent_operator_annotations_total"),
            annotation_shapes: counter!("endo_agent_operator_annotation_shapes_total"),
        }
    }
}

/// Where the stage hands its work: the encoder (forwarded frames, and procedure records
/// ready for the spool) and the preview worker.
pub struct ScoreOutputs {
    pub jobs: Sender<Job>,
    pub previews: Sender<PreviewJob>,
    pub documents: Sender<SpoolRecord>,
}

/// The score thread's state: what today's frame needs from the frames before it.
pub struct ScoreStage {
    cfg: Arc<Config>,
    scorer: Scorer,
    /// The model in force: every frame scored from now on carries it to its record.
    model: Option<Arc<ModelInfo>>,
    locator: FovLocator,
    /// The locked field of view, shared by every job cut from it.
    fov: Option<Arc<Fov>>,
    selector: Selector<Item>,
    keys: Keys,
    /// The operator's session generation these keys belong to.
    generation: u64,
    /// The current procedure's tally, for its record.
    tally: Tally,
    /// "Keep this frame": the best frame of the last mark window.
    best: Option<Item>,
    mark_window: Duration,
    preview_every: Duration,
    last_preview: Option<Instant>,
    scored: u64,
    latencies: DurationWindow,
    epoch: Instant,
    watchdog_every: Option<Duration>,
    last_ping: Instant,
    m: ScoreMetrics,
    status: Arc<Status>,
    out: ScoreOutputs,
}

impl ScoreStage {
    pub fn new(cfg: Arc<Config>, scorer: Scorer, status: Arc<Status>, out: ScoreOutputs) -> Self {
        let op = &status.operator;
        let procedure = op.procedure();
        let keys = Keys::new(&cfg, &procedure.session);
        let tally = Tally::new(
            &cfg,
            &procedure.session,
            procedure.active,
            procedure.started,
        );
        let generation = op.generation();
        status.session_changed();
        let model = scorer.model().map(|m| Arc::new(ModelInfo::of(m)));
        *status.model.lock().expect("model lock") = model.clone();
        ScoreStage {
            model,
            scorer,
            locator: FovLocator::new(&cfg.fov),
            fov: None,
            selector: Selector::new(cfg.select.clone()),
            keys,
            generation,
            tally,
            best: None,
            mark_window: Duration::from_millis(cfg.operator.mark_window_ms),
            preview_every: Duration::from_secs_f32(1.0 / cfg.operator.preview_fps),
            last_preview: None,
            scored: 0,
            latencies: DurationWindow::default(),
            epoch: Instant::now(),
            watchdog_every: crate::notify::watchdog_interval(),
            last_ping: Instant::now(),
            m: ScoreMetrics::new(),
            cfg,
            status,
            out,
        }
    }

    /// Take frames and commands until capture hangs up; then flush the pending window.
    /// Returns the number of frames scored and their capture → score latencies.
    pub fn run(
        mut self,
        frames: Receiver<CapturedFrame>,
        commands: Receiver<Command>,
    ) -> (u64, DurationWindow) {
        loop {
            crossbeam_channel::select! {
                recv(frames) -> f => match f {
                    Ok(f) => {
                        self.follow_session();
                        self.on_frame(f);
                    }
                    Err(_) => break,
                },
                recv(commands) -> c => if let Ok(c) = c {
                    self.follow_session();
                    self.on_command(c);
                },
            }
        }
        self.finish()
    }

    /// Follow a new procedure session, if one started ([`run`](Self::run) checks before
    /// frames and commands alike, so a mark right after a start gets the new session).
    pub fn follow_session(&mut self) {
        let g = self.status.operator.generation();
        if g != self.generation {
            self.generation = g;
            self.on_new_session();
        }
    }

    /// The pending window belongs to the old session: flush it under the old keys, end
    /// the old procedure (its record), then start the new session's keys, tally and
    /// sharpness reference.
    pub fn on_new_session(&mut self) {
        let step = self.selector.flush();
        // The operator's counters are already the new procedure's: the old session's
        // last frame counts in the total (and the old procedure's record) only.
        self.take_step(step, false);
        let p = self.status.operator.procedure();
        let ended = if p.active {
            Ended::OperatorStart
        } else {
            Ended::OperatorEnd
        };
        let next = Tally::new(&self.cfg, &p.session, p.active, p.started);
        self.end_procedure(next, ended, p.started);
        // The new procedure's sharpness reference starts from its own frames.
        self.scorer.reset();
        self.keys.start(&p.session);
        self.status.session_changed();
    }

    /// Flush the selector's pending window and end the procedure; the stage's totals.
    pub fn finish(mut self) -> (u64, DurationWindow) {
        let step = self.selector.flush();
        self.take_step(step, true);
        let next = Tally::new(&self.cfg, "", false, Utc::now());
        self.end_procedure(next, Ended::AgentStop, Utc::now());
        (self.scored, self.latencies)
    }

    /// The procedure's record to the encoder (then the spool and every sink), the web
    /// page and the metrics; `next` tallies from now on. A session that saw no frame
    /// leaves no record.
    fn end_procedure(&mut self, next: Tally, ended: Ended, at: DateTime<Utc>) {
        let tally = std::mem::replace(&mut self.tally, next);
        if tally.frames_captured() == 0 {
            return;
        }
        let rec = tally.finish(ended, at);
        crate::procedure::export_metrics(&rec);
        let doc = crate::procedure::spool_record(&rec, at);
        tracing::info!(
            session = %rec.session,
            ended_by = ended.as_str(),
            scored = rec.frames.scored,
            good_share = rec.frames.good_share,
            "procedure ended: {}.json",
            rec.key
        );
        self.status.procedure_ended(rec);
        if self.out.documents.try_send(doc).is_err() {
            counter!("endo_agent_documents_lost_total", "reason" => "queue_full").increment(1);
            tracing::error!("the encoder is backed up: a procedure record was lost");
        }
    }

    pub fn on_frame(&mut self, frame: CapturedFrame) {
        self.tally.captured();
        let Some(fov) = self.locate(&frame) else {
            return;
        };
        let scored = self.scorer.score(&frame.view(), &fov);
        let (score, timings) = match scored {
            Ok(r) => r,
            Err(e) => {
                self.m.score_failed.increment(1);
                tracing::error!("{e}");
                return;
            }
        };
        self.publish(&frame, &score, &timings);
        let t_ns = frame
            .pts_ns
            .unwrap_or_else(|| (frame.arrived - self.epoch).as_nanos() as u64);
        self.tally.scored(t_ns, &score, self.model.as_ref());
        let frame = Arc::new(frame);
        let mark_window = self.mark_window;
        let model = self.model.clone();
        if self.best.as_ref().is_none_or(|(b, _, s, _)| {
            s.quality <= score.quality || b.arrived.elapsed() > mark_window
        }) {
            self.best = Some((frame.clone(), fov.clone(), score, model.clone()));
        }
        if self
            .last_preview
            .is_none_or(|l| l.elapsed() >= self.preview_every)
        {
            // The preview worker copies it out; when it is still busy, skip this one.
            let preview = (frame.clone(), fov.clone(), score, model.clone());
            if self.out.previews.try_send(preview).is_ok() {
                self.last_preview = Some(Instant::now());
            }
        }
        let step = self.selector.offer(
            t_ns,
            score.quality,
            score.dhash,
            score.light,
            (frame, fov, score, model),
        );
        self.take_step(step, true);
    }

    /// The locked field of view for this frame, or None (counted) while there is none.
    /// The locator logs, counts and sets the FOV gauges itself; a FOV it hands out always
    /// fits the frame.
    fn locate(&mut self, frame: &CapturedFrame) -> Option<Arc<Fov>> {
        let current = match self.locator.observe(&frame.view()) {
            Locate::Locked(f) => f,
            refused => {
                match refused {
                    Locate::Pending => self.m.fov_pending.increment(1),
                    _ => self.m.fov_invalid.increment(1),
                }
                self.status.fov_locked.store(false, Ordering::Relaxed);
                return None;
            }
        };
        // A new rectangle, shape or mask set: masks are never carried over from another.
        if self.fov.as_deref() != Some(current) {
            self.fov = Some(Arc::new(current.clone()));
            // Sharpness measured over another crop is no reference for this one.
            self.scorer.reset();
        }
        self.status.fov_locked.store(true, Ordering::Relaxed);
        self.fov.clone()
    }

    /// A scored frame into the metrics, the procedure's counters, the status and the
    /// on-screen overlay; the first one tells systemd the agent is ready.
    fn publish(&mut self, frame: &CapturedFrame, score: &Score, t: &Timings) {
        let status = &self.status;
        let (low, high) = (
            self.cfg.select.threshold_low,
            self.cfg.select.threshold_high,
        );
        self.scored += 1;
        status
            .last_scored_ns
            .store(status.capture.stamp(), Ordering::Relaxed);
        if self.scored == 1 {
            crate::notify::ready(&format!(
                "scoring; first frame quality {:.2}",
                score.quality
            ));
        }
        if self
            .watchdog_every
            .is_some_and(|w| self.last_ping.elapsed() >= w)
        {
            crate::notify::watchdog();
            self.last_ping = Instant::now();
        }
        let m = &self.m;
        m.scored.increment(1);
        m.light[score.light.index()].increment(1);
        let counters = &status.operator.counters;
        counters.scored.fetch_add(1, Ordering::Relaxed);
        if score.quality >= high {
            counters.good.fetch_add(1, Ordering::Relaxed);
        }
        m.quality.record(score.quality as f64);
        m.classical.record(t.classical.as_secs_f64());
        m.preprocess.record(t.preprocess.as_secs_f64());
        m.inference.record(t.inference.as_secs_f64());
        let latency = frame.arrived.elapsed();
        m.latency.record(latency.as_secs_f64());
        self.latencies.push(latency);
        let bad = score.quality < low;
        if bad {
            match score.primary_reason() {
                Some(a) => m.bad[a.index()].increment(1),
                None => m.bad_unexplained.increment(1),
            }
        }
        if let Some(o) = &status.overlay {
            o.set_score(
                score.quality,
                score.primary_reason().filter(|_| bad),
                frame.arrived,
            );
        }
        if let Ok(mut l) = status.latest.try_lock() {
            *l = Some(Latest {
                score: *score,
                at: frame.captured_at,
            });
        }
    }

    /// Count the selector's rejections; a selected frame gets the next key and goes on
    /// (counted in the current procedure when `current`).
    fn take_step(&mut self, step: Step<Item>, current: bool) {
        for r in step.rejections() {
            self.m.rejected[r as usize].increment(1);
        }
        if let Some(sel) = step.selected {
            let (frame, fov, score, model) = sel.item;
            self.m.selected.increment(1);
            let (key, seq) = self.keys.next(frame.captured_at);
            self.forward(
                Job {
                    frame: JobFrame::Live { frame, fov },
                    score,
                    key,
                    session: self.keys.session().clone(),
                    seq,
                    reason: Reason::BestInWindow,
                    model,
                    operator: None,
                    annotation: Vec::new(),
                },
                current,
            );
        }
    }

    /// Hand a forwarded frame to the encoder and count it (in the current procedure's
    /// counters too when `current`; always in the procedure it belongs to, whose tally
    /// is still this one); false when the encoder's queue is full.
    fn forward(&mut self, job: Job, current: bool) -> bool {
        let action = job.operator.as_ref().map(|o| o.action);
        if self.out.jobs.try_send(job).is_err() {
            self.m.encode_queue_full.increment(1);
            tracing::warn!("encoder backlog full: a forwarded frame was evicted");
            return false;
        }
        self.status.forwarded(current);
        self.tally.forwarded(action);
        true
    }

    /// Carry out an operator command; the answer goes to the HTTP handler.
    pub fn on_command(&mut self, c: Command) {
        let (action, outcome) = match c {
            Command::Mark { reply } => self.mark(reply),
            Command::Annotate {
                frame,
                request,
                reply,
            } => self.annotate(frame, request, reply),
            Command::Model { model, reply } => self.swap_model(model, reply),
        };
        if let Err(e) = outcome {
            tracing::info!("operator {action}: {e}");
        }
    }

    /// "Keep this frame": the best frame of the last mark window.
    fn mark(&mut self, reply: Reply) -> (&'static str, Result<(), OperatorError>) {
        let status = self.status.clone();
        let op = &status.operator;
        if let Some(kept) = op.kept_already(self.mark_window, self.keys.session()) {
            // Marked again within the window (a double click, a held key): the same
            // answer, nothing stored twice.
            let _ = reply.send(Ok(kept));
            return ("keep (already kept)", Ok(()));
        }
        let result = match self.best.clone() {
            Some((frame, fov, score, model)) if frame.arrived.elapsed() <= self.mark_window => {
                let live = JobFrame::Live { frame, fov };
                let (job, kept) = self.operator_job(live, (score, model), None, Utc::now());
                self.hand_over(job, kept)
            }
            _ => Err(OperatorError::Conflict(format!(
                "no frame was scored in the last {} ms (is the source running?)",
                self.mark_window.as_millis()
            ))),
        };
        if let Ok(kept) = &result {
            op.note_mark(kept);
            self.m.marks.increment(1);
            op.counters.marks.fetch_add(1, Ordering::Relaxed);
            tracing::info!(key = %kept.key, quality = kept.quality, "operator keep");
        }
        ("keep", answer(reply, result))
    }

    /// Regions drawn on a frozen frame: the frame, its record and the annotation record.
    fn annotate(
        &mut self,
        frame: Arc<RecentFrame>,
        request: AnnotationRequest,
        reply: Reply,
    ) -> (&'static str, Result<(), OperatorError>) {
        let now = Utc::now();
        let (width, height) = frame.crop_size();
        let scored = (frame.score, frame.model.clone());
        let captured_at = frame.captured_at;
        let label = Some(request.label.clone());
        let (mut job, kept) = self.operator_job(JobFrame::Recent(frame), scored, label, now);
        let cfg = &self.cfg;
        let doc = crate::operator::coco(
            &request,
            &cfg.operator.labels,
            &AnnotationContext {
                key: &job.key,
                site: &cfg.agent.site,
                device: &cfg.agent.device,
                session: &job.session,
                sequence: job.seq,
                captured_at,
                annotated_at: now,
                width,
                height,
            },
        );
        job.annotation = serde_json::to_vec(&doc).expect("annotations serialise");
        let result = self.hand_over(job, kept);
        if let Ok(kept) = &result {
            self.m.annotations.increment(1);
            self.m
                .annotation_shapes
                .increment(request.shapes.len() as u64);
            let counters = &self.status.operator.counters;
            counters.annotations.fetch_add(1, Ordering::Relaxed);
            tracing::info!(key = %kept.key, quality = kept.quality, "operator annotate");
        }
        ("annotate", answer(reply, result))
    }

    /// The frame under the session's next key, as a job for the encoder and the answer;
    /// a label makes it an annotation.
    fn operator_job(
        &mut self,
        frame: JobFrame,
        (score, model): (Score, Option<Arc<ModelInfo>>),
        label: Option<String>,
        now: DateTime<Utc>,
    ) -> (Job, Kept) {
        let captured_at = frame.captured_at();
        let (key, seq) = self.keys.next(captured_at);
        let annotation = label
            .is_some()
            .then(|| crate::uplink::annotation_name(&key));
        let session = self.keys.session().clone();
        let kept = Kept {
            key: key.clone(),
            session: session.to_string(),
            sequence: seq,
            quality: score.quality,
            captured_at: record::format_time(captured_at),
            annotation: annotation.clone(),
            already_kept: false,
        };
        let (reason, action) = match label {
            Some(_) => (Reason::OperatorAnnotated, "annotate"),
            None => (Reason::OperatorMarked, "keep"),
        };
        let job = Job {
            frame,
            score,
            key,
            session,
            seq,
            reason,
            model,
            operator: Some(OperatorInfo {
                marked: true,
                action,
                at: record::format_time(now),
                label,
                annotation,
            }),
            annotation: Vec::new(),
        };
        (job, kept)
    }

    /// A reloaded model scores from the next frame on; frames scored before keep the old
    /// one in their records. Two moves here: loading, hashing and the dry run were done
    /// off this thread, and the old model is dropped off it too (sent back).
    fn swap_model(
        &mut self,
        new: Box<LoadedModel>,
        reply: tokio::sync::oneshot::Sender<Option<Box<LoadedModel>>>,
    ) -> (&'static str, Result<(), OperatorError>) {
        let info = Arc::new(ModelInfo::of(&new.runner));
        let old = self.scorer.swap_model(*new);
        tracing::info!(name = %info.name, version = %info.version, sha256 = %info.sha256, "model in force");
        *self.status.model.lock().expect("model lock") = Some(info.clone());
        self.model = Some(info);
        let _ = reply.send(old.map(Box::new));
        ("model reload", Ok(()))
    }

    fn hand_over(&mut self, job: Job, kept: Kept) -> Result<Kept, OperatorError> {
        if self.forward(job, true) {
            Ok(kept)
        } else {
            Err(OperatorError::Unavailable(
                "the encoder is backed up; try again".into(),
            ))
        }
    }
}

/// Send the answer to the HTTP handler (gone when it timed out); the outcome for the log.
fn answer(reply: Reply, result: Result<Kept, OperatorError>) -> Result<(), OperatorError> {
    let outcome = result.as_ref().map(|_| ()).map_err(Clone::clone);
    let _ = reply.send(result);
    outcome
}
