//! The score stage on synthetic frames (phantom stills through [`CapturedFrame::from_image`]),
//! without GStreamer pipelines, HTTP or sinks: what it forwards, under which key, and
//! what it counts.

use crossbeam_channel::{bounded, Receiver};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::job::{Job, Reason};
use super::preview::PreviewJob;
use super::score::{ScoreOutputs, ScoreStage};
use crate::capture::{CaptureStats, CapturedFrame};
use crate::config::{Config, FovMode, FovShape};
use crate::operator::{Command, Kept, Operator, OperatorError};
use crate::phantom::{Phantom, PhantomConfig};
use crate::score::Scorer;
use crate::spool::{Spool, SpoolConfig, SpoolHandle};
use crate::status::Status;

struct Rig {
    stage: ScoreStage,
    status: Arc<Status>,
    jobs: Receiver<Job>,
    _previews: Receiver<PreviewJob>,
    documents: Receiver<crate::spool::SpoolRecord>,
    phantom: Phantom,
    next_index: u64,
    _dir: tempfile::TempDir,
}

/// A stage whose selector passes every frame (thresholds 0, no rate limit, no duplicate
/// suppression) and closes a window only when flushed (a window of an hour of pts).
fn rig(encode_queue: usize) -> Rig {
    let phantom = Phantom::new(PhantomConfig {
        width: 320,
        height: 240,
        ..PhantomConfig::default()
    });
    let r = phantom.fov_rect();
    let mut cfg = Config::default();
    cfg.fov.mode = FovMode::Fixed;
    cfg.fov.rect = Some([r.x, r.y, r.width, r.height]);
    cfg.fov.shape = FovShape::Circle;
    cfg.select.threshold_high = 0.0;
    cfg.select.threshold_low = 0.0;
    cfg.select.window_ms = 3_600_000;
    cfg.select.max_per_second = 1000.0;
    cfg.select.duplicate_bits = 0;
    cfg.operator.mark_window_ms = 60_000;
    let dir = tempfile::tempdir().unwrap();
    cfg.spool.dir = dir.path().join("spool");
    let (spool, _) = Spool::open(SpoolConfig::from(&cfg)).unwrap();
    let (operator, _commands) = Operator::new(cfg.operator.clone(), "s-first".into());
    let status = Arc::new(Status::new(
        Arc::new(CaptureStats::default()),
        Arc::new(operator),
        None,
        (0.0, 0.0),
        Vec::new(),
        Arc::new(SpoolHandle::new(spool)),
    ));
    let (jobs_tx, jobs) = bounded(encode_queue);
    let (previews_tx, previews) = bounded(1);
    let (documents_tx, documents) = bounded(4);
    let cfg = Arc::new(cfg);
    let stage = ScoreStage::new(
        cfg.clone(),
        Scorer::new(cfg.scoring.clone(), None),
        status.clone(),
        ScoreOutputs {
            jobs: jobs_tx,
            previews: previews_tx,
            documents: documents_tx,
        },
    );
    Rig {
        stage,
        status,
        jobs,
        _previews: previews,
        documents,
        phantom,
        next_index: 0,
        _dir: dir,
    }
}

impl Rig {
    /// Score the next phantom frame (pts 1 ms apart); its quality.
    fn frame(&mut self) -> f32 {
        let i = self.next_index;
        self.next_index += 1;
        let img = self.phantom.render(i * 7);
        let f = CapturedFrame::from_image(&img, Some(i * 1_000_000), Some(i)).unwrap();
        self.stage.follow_session();
        self.stage.on_frame(f);
        let latest = (*self.status.latest.lock().unwrap()).expect("the frame was scored");
        latest.score.quality
    }

    fn mark(&mut self) -> Result<Kept, OperatorError> {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        self.stage.follow_session();
        self.stage.on_command(Command::Mark { reply: tx });
        rx.try_recv()
            .expect("a command is answered before on_command returns")
    }

    fn forwarded(&self) -> Vec<Job> {
        self.jobs.try_iter().collect()
    }

    fn kept(&self) -> u64 {
        self.status.operator.counters.kept.load(Ordering::Relaxed)
    }
}

#[test]
fn a_new_session_closes_the_pending_window_under_the_old_sessions_key() {
    let mut r = rig(16);
    let q: Vec<f32> = (0..4).map(|_| r.frame()).collect();
    assert!(r.forwarded().is_empty(), "the window is still open");
    let old = r.status.operator.procedure().session;
    let new = r.status.operator.rotate(true).unwrap().session;
    assert_ne!(old, new);
    // The next frame sees the new session first: the old window is flushed under the old key.
    let q_new = r.frame();
    let jobs = r.forwarded();
    assert_eq!(jobs.len(), 1, "the old session's window, flushed");
    let j = &jobs[0];
    assert_eq!(&*j.session, old.as_str());
    assert_eq!(j.seq, 0);
    assert_eq!(j.reason, Reason::BestInWindow);
    assert!(j.key.contains(&format!("/{old}/0000000000")), "{}", j.key);
    let best = q.iter().cloned().fold(f32::MIN, f32::max);
    assert_eq!(j.score.quality, best, "the best frame of the window: {q:?}");
    // The new session's own window starts with the frame after the rotation.
    let (n, _) = r.stage.finish();
    assert_eq!(n, 5);
    let jobs: Vec<Job> = r.jobs.try_iter().collect();
    assert_eq!(jobs.len(), 1);
    assert_eq!(&*jobs[0].session, new.as_str());
    assert_eq!(jobs[0].seq, 0, "keys restart from 0 in the new session");
    assert_eq!(jobs[0].score.quality, q_new);
    // Each session's procedure record: the old one when the new one started, the new
    // one at the stop; their own frames, forwarded frames and ends.
    let docs: Vec<serde_json::Value> = r
        .documents
        .try_iter()
        .map(|d| {
            assert!(d.jpeg.is_empty(), "a document has no image");
            serde_json::from_slice(&d.json).unwrap()
        })
        .collect();
    assert_eq!(docs.len(), 2, "{docs:#?}");
    for (d, session, scored, ended) in [
        (&docs[0], &old, 4, "operator_start"),
        (&docs[1], &new, 1, "agent_stop"),
    ] {
        assert_eq!(d["schema"], crate::procedure::SCHEMA);
        assert_eq!(d["session"], session.as_str());
        assert!(d["key"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{session}/procedure")));
        assert_eq!(d["ended_by"], ended);
        assert_eq!(d["frames"]["scored"], scored);
        assert_eq!(d["frames"]["captured"], scored);
        assert_eq!(d["kept"]["forwarded"], 1);
    }
    assert_eq!(docs[0]["started_by"], "agent");
    assert_eq!(docs[1]["started_by"], "operator");
}

#[test]
fn a_mark_takes_the_best_frame_of_the_mark_window_once() {
    let mut r = rig(16);
    let q: Vec<f32> = (0..6).map(|_| r.frame()).collect();
    let best = q.iter().cloned().fold(f32::MIN, f32::max);
    let kept = r.mark().expect("a frame was scored within the window");
    assert!(!kept.already_kept);
    assert_eq!(kept.quality, best, "{q:?}");
    let jobs = r.forwarded();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].reason, Reason::OperatorMarked);
    assert_eq!(jobs[0].key, kept.key);
    assert_eq!(jobs[0].score.quality, best);
    let op = jobs[0].operator.as_ref().expect("an operator part");
    assert_eq!(op.action, "keep");
    // A second mark within the window answers the same, and stores nothing.
    let again = r.mark().unwrap();
    assert!(again.already_kept);
    assert_eq!(again.key, kept.key);
    assert!(r.forwarded().is_empty());
    assert_eq!(r.status.operator.counters.marks.load(Ordering::Relaxed), 1);
}

#[test]
fn a_mark_before_any_frame_is_a_conflict_and_forwards_nothing() {
    let mut r = rig(16);
    match r.mark() {
        Err(OperatorError::Conflict(why)) => assert!(why.contains("no frame"), "{why}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(r.forwarded().is_empty());
    assert_eq!(r.kept(), 0);
}

#[test]
fn a_command_never_blocks_a_frame_even_with_the_encoder_backed_up() {
    // An encoder queue of one, never drained: the first forwarded frame fills it.
    let mut r = rig(1);
    r.frame();
    r.mark().expect("the first mark fills the queue");
    // The queue is full: the mark answers at once that the encoder is backed up...
    r.status.operator.rotate(true).unwrap();
    r.frame();
    match r.mark() {
        Err(OperatorError::Unavailable(why)) => assert!(why.contains("encoder"), "{why}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    // ...and the frames behind it are still scored.
    let scored = r.status.operator.counters.scored.load(Ordering::Relaxed);
    r.frame();
    r.frame();
    assert_eq!(
        r.status.operator.counters.scored.load(Ordering::Relaxed),
        scored + 2
    );
    assert_eq!(
        r.forwarded().len(),
        1,
        "only the first mark reached the queue"
    );
}

#[test]
fn the_counters_of_forwarded_frames_agree() {
    let mut r = rig(64);
    for _ in 0..3 {
        r.frame();
    }
    r.mark().unwrap();
    r.status.operator.rotate(true).unwrap(); // the next frame flushes the window
    for _ in 0..2 {
        r.frame();
    }
    r.mark().unwrap();
    let (n, latencies) = r.stage.finish(); // flushes the second window
    let jobs: Vec<Job> = r.jobs.try_iter().collect();
    assert_eq!(n, 5);
    assert!(latencies.quantile(0.5).is_some());
    assert_eq!(jobs.len(), 4, "2 marks + 2 windows");
    let doc = r.status.doc();
    assert_eq!(doc.frames_selected, 4, "forwarded since start");
    // The second session forwarded its mark and its window.
    assert_eq!(r.status.operator.counters.kept.load(Ordering::Relaxed), 2);
    assert_eq!(doc.procedure.counters.kept, 2);
    assert_eq!(doc.procedure.counters.scored, 2);
    assert_eq!(doc.procedure.counters.marks, 1);
    let per_session = |s: &str| jobs.iter().filter(|j| &*j.session == s).count();
    assert_eq!(per_session(&doc.session), 2);
}

#[test]
fn a_swapped_model_scores_from_the_next_frame_and_the_old_one_comes_back() {
    let mut r = rig(16);
    r.frame();
    r.mark().unwrap();
    let before = r.forwarded();
    assert_eq!(before.len(), 1);
    assert!(before[0].model.is_none(), "scored without a model");

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/quality-ref.onnx");
    let loaded = crate::score::LoadedModel::load(&path).unwrap();
    let want = crate::record::ModelInfo::of(&loaded.runner);
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    r.stage.on_command(Command::Model {
        model: Box::new(loaded),
        reply: tx,
    });
    let old = rx.try_recv().expect("answered at once");
    assert!(old.is_none(), "there was no model before");

    // The old session's pending window holds the frame scored before the swap; the new
    // session flushes it, and its own window holds frames of the new model.
    r.status.operator.rotate(true).unwrap();
    r.frame();
    r.frame();
    r.stage.finish();
    let after: Vec<Job> = r.jobs.try_iter().collect();
    assert_eq!(
        after.len(),
        2,
        "the old session's window, then the new one's"
    );
    assert!(
        after[0].model.is_none(),
        "scored before the swap: keeps its model"
    );
    assert_eq!(
        after[1].model.as_deref(),
        Some(&want),
        "scored by the new model"
    );
    assert!(after[1].score.model_quality().is_some());
}
