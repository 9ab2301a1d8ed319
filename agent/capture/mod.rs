//! Capture: a GStreamer pipeline that delivers 4:2:0 frames to the scorer.
//!
//! The pipeline is the source part from a template ([`template`]) plus the agent's tail
//! (queue → videoconvert → I420 or NV12 → appsink). Both formats are read in place
//! ([`reader`]; `videoconvert` passes them through untouched); others (YUY2, UYVY, RGB…)
//! are converted by it to one of them. The appsink callback runs on a GStreamer
//! streaming thread and never blocks: it maps the buffer (a refcount, no copy) and puts
//! it in a bounded hand-off channel. When the channel is full the *oldest* waiting frame
//! is dropped, so the scorer always works on recent frames; every drop is counted in
//! `endo_agent_frames_dropped_total{reason="scorer_busy"}`. Drops by the leaky queue in
//! front of `videoconvert` are counted as `reason="convert_busy"`.
//!
//! [`run_supervised`] owns the pipeline's life: it starts it, watches the bus, and on an
//! error, an end of stream or a stall (no frame for `STALL`) tears it down and starts it
//! again after a [`crate::backoff::Backoff`] delay — the process does not exit. The state is
//! in `endo_agent_source_state` / `endo_agent_source_up` and in the logs.
//!
//! With `[display] enabled = true` a `tee` after the source feeds a second, display branch
//! (its own leaky queue → `overlaycomposition` → the configured video sink) that draws the
//! quality overlay ([`crate::overlay`]); the scoring branch is unchanged and never waits for
//! it. When the display branch fails (e.g. no display on a headless tower), the supervisor
//! logs that the display sink failed and rebuilds the pipeline without the display branch
//! until the agent is restarted, so capture and scoring go on.

pub mod devices;
pub mod reader;
pub mod template;

pub use reader::{SampleReader, APPSINK_CAPS, NATIVE_FORMATS};

use chrono::{DateTime, Utc};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::config::{Config, OnEos, SourceKind};
use crate::frame::{Colour, I420View, Matrix};
use crate::overlay::{self, OverlayState};
use crate::phantom::{self, Phantom};
use crate::shutdown::Shutdown;

/// A live source that delivers nothing for this long is restarted.
const STALL: Duration = Duration::from_secs(5);

pub const SOURCE_STATES: [&str; 4] = ["starting", "running", "backoff", "stopped"];

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error("pipeline template {origin} does not parse: {reason}\n  pipeline: {launch}")]
    Parse {
        origin: String,
        launch: String,
        reason: String,
    },
    #[error("GStreamer could not be initialised: {0}")]
    Init(String),
    #[error("display.sink = {sink:?} cannot be used for the on-screen overlay: {reason}")]
    Display { sink: String, reason: String },
}

/// A frame handed from capture to the scorer: a mapped, refcounted GStreamer buffer.
pub struct CapturedFrame {
    frame: gst_video::VideoFrame<gst_video::video_frame::Readable>,
    /// Buffer timestamp (running time for live sources, stream time for files).
    pub pts_ns: Option<u64>,
    /// The source's frame number (GStreamer buffer offset), when it sets one.
    pub offset: Option<u64>,
    /// When the appsink saw it (monotonic).
    pub arrived: Instant,
    /// When the appsink saw it (wall clock, for the record and the key).
    pub captured_at: DateTime<Utc>,
}

impl CapturedFrame {
    /// A frame copied from an owned image into a GStreamer buffer of the default I420
    /// layout, arriving now: stills and tests meet the stages the way capture does.
    pub fn from_image(
        img: &crate::frame::I420Image,
        pts_ns: Option<u64>,
        offset: Option<u64>,
    ) -> Result<CapturedFrame, CaptureError> {
        let fail = |e: &dyn std::fmt::Display| CaptureError::Init(e.to_string());
        gst::init().map_err(|e| fail(&e))?;
        let info =
            gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, img.width, img.height)
                .colorimetry(&colorimetry(img.colour))
                .build()
                .map_err(|e| fail(&e))?;
        let mut data = vec![0u8; info.size()];
        let (w, h) = (img.width as usize, img.height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        for (plane, src, pw, ph) in [(0, &img.y, w, h), (1, &img.u, cw, ch), (2, &img.v, cw, ch)] {
            let (off, stride) = (info.offset()[plane], info.stride()[plane] as usize);
            for r in 0..ph {
                let at = off + r * stride;
                data[at..at + pw].copy_from_slice(&src[r * pw..(r + 1) * pw]);
            }
        }
        let mut buffer = gst::Buffer::from_mut_slice(data);
        if let Some(p) = pts_ns {
            let b = buffer.get_mut().expect("a new buffer is writable");
            b.set_pts(gst::ClockTime::from_nseconds(p));
        }
        let frame = gst_video::VideoFrame::from_buffer_readable(buffer, &info)
            .map_err(|_| fail(&"the image does not map as an I420 frame"))?;
        Ok(CapturedFrame {
            frame,
            pts_ns,
            offset,
            arrived: Instant::now(),
            captured_at: Utc::now(),
        })
    }

    /// The frame of an appsink buffer with the caps' `info` (format I420 or NV12), which
    /// arrived at `arrived`; None for another format or a buffer that does not map.
    pub fn from_buffer(
        buffer: gst::Buffer,
        info: &gst_video::VideoInfo,
        arrived: Instant,
    ) -> Option<CapturedFrame> {
        if !NATIVE_FORMATS.contains(&info.format()) {
            return None;
        }
        let pts_ns = buffer.pts().map(|t| t.nseconds());
        // GST_BUFFER_OFFSET_NONE is u64::MAX.
        let offset = Some(buffer.offset()).filter(|o| *o != u64::MAX);
        let frame = gst_video::VideoFrame::from_buffer_readable(buffer, info).ok()?;
        Some(CapturedFrame {
            frame,
            pts_ns,
            offset,
            arrived,
            captured_at: Utc::now(),
        })
    }

    /// The frame in place: I420's three planes, or NV12's luma and interleaved chroma.
    pub fn view(&self) -> I420View<'_> {
        let strides = self.frame.plane_stride();
        let y = self.frame.plane_data(0).expect("4:2:0 has plane 0");
        let chroma = self.frame.plane_data(1).expect("4:2:0 has plane 1");
        let (u, v, uv_step) = match self.frame.format() {
            gst_video::VideoFormat::Nv12 => (chroma, &chroma[1..], 2),
            _ => (
                chroma,
                self.frame.plane_data(2).expect("I420 has plane 2"),
                1,
            ),
        };
        I420View {
            colour: colour(&self.frame.info().colorimetry()),
            width: self.frame.width(),
            height: self.frame.height(),
            y,
            u,
            v,
            y_stride: strides[0] as usize,
            uv_stride: strides[1] as usize,
            uv_step,
        }
    }
}

/// The frame colour GStreamer's colorimetry describes. Matrices the agent does not know
/// (FCC, SMPTE 240M, unknown) convert as BT.601; an unknown range as limited, the
/// default of raw video (`jpegdec` and full-range cards say so in their caps).
pub fn colour(c: &gst_video::VideoColorimetry) -> Colour {
    use gst_video::VideoColorMatrix as M;
    Colour {
        matrix: match c.matrix() {
            M::Bt709 => Matrix::Bt709,
            M::Bt2020 => Matrix::Bt2020,
            _ => Matrix::Bt601,
        },
        full_range: c.range() == gst_video::VideoColorRange::Range0_255,
    }
}

/// The GStreamer colorimetry of a frame colour (transfer and primaries of the matrix's
/// standard; the agent reads only the matrix and the range).
pub fn colorimetry(c: Colour) -> gst_video::VideoColorimetry {
    use gst_video::{VideoColorMatrix as M, VideoColorPrimaries as P, VideoTransferFunction as T};
    let (matrix, transfer, primaries) = match c.matrix {
        Matrix::Bt601 => (M::Bt601, T::Bt709, P::Smpte170m),
        Matrix::Bt709 => (M::Bt709, T::Bt709, P::Bt709),
        Matrix::Bt2020 => (M::Bt2020, T::Bt202012, P::Bt2020),
    };
    let range = if c.full_range {
        gst_video::VideoColorRange::Range0_255
    } else {
        gst_video::VideoColorRange::Range16_235
    };
    gst_video::VideoColorimetry::new(range, matrix, transfer, primaries)
}

/// Counters shared between the streaming thread, the supervisor and the HTTP server.
#[derive(Default)]
pub struct CaptureStats {
    pub captured: AtomicU64,
    /// Monotonic nanoseconds since `epoch` of the last frame (0 = none yet).
    pub last_frame_ns: AtomicU64,
    pub up: AtomicBool,
    /// Index into [`SOURCE_STATES`] of the supervisor's current state.
    pub state: std::sync::atomic::AtomicUsize,
    pub epoch: std::sync::OnceLock<Instant>,
    /// Phantom source only: CPU time spent rendering frames (ns) and frame slots the
    /// generator skipped because it ran late — so a benchmark can tell the generator's
    /// cost and shortfalls from the agent's.
    pub generator_cpu_ns: AtomicU64,
    pub generator_skipped: AtomicU64,
}

impl CaptureStats {
    /// The supervisor's current state: starting, running, backoff or stopped.
    pub fn state(&self) -> &'static str {
        SOURCE_STATES[self
            .state
            .load(Ordering::Relaxed)
            .min(SOURCE_STATES.len() - 1)]
    }

    fn epoch(&self) -> Instant {
        *self.epoch.get_or_init(Instant::now)
    }
    /// Now, in nanoseconds since the epoch of `last_frame_ns` (never 0): for another stage
    /// to stamp its own progress on the same clock.
    pub fn stamp(&self) -> u64 {
        self.epoch().elapsed().as_nanos().max(1) as u64
    }

    /// Time since the last frame, if any frame arrived.
    pub fn since_last_frame(&self) -> Option<Duration> {
        self.since(self.last_frame_ns.load(Ordering::Relaxed))
    }

    /// Time since `stamp` (a value of [`CaptureStats::stamp`]; 0 = never).
    pub fn since(&self, stamp: u64) -> Option<Duration> {
        match stamp {
            0 => None,
            ns => Some(
                self.epoch()
                    .elapsed()
                    .saturating_sub(Duration::from_nanos(ns)),
            ),
        }
    }
}

/// How the supervised capture ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// `stop` was set.
    Stopped,
    /// The source reached its end and `capture.on_eos = "stop"`.
    EndOfStream,
}

/// The full pipeline description: the source from the template plus the agent's tail,
/// and the display branch when `display.enabled`.
pub fn launch_description(cfg: &Config) -> Result<(String, String), CaptureError> {
    describe(cfg, cfg.display.enabled)
}

fn describe(cfg: &Config, display: bool) -> Result<(String, String), CaptureError> {
    let src = template::render_source(cfg)?;
    let live = cfg.source.kind.is_live();
    let tail = format!(
        " ! queue name=agent_queue max-size-buffers=3 max-size-bytes=0 max-size-time=0 leaky={} \
         ! videoconvert ! {APPSINK_CAPS} ! appsink name=agent_sink sync={} max-buffers=2 drop=true",
        if live { "downstream" } else { "no" },
        if live { "false" } else { "true" },
    );
    if display {
        // The tee sits right after the source: the display shows the source's own frames
        // (no conversion to I420 on its way) and the scoring branch is unchanged.
        return Ok((
            src.origin,
            format!(
                "{} ! tee name=agent_tee{tail}  {}",
                src.launch,
                overlay::branch_description(&cfg.display)
            ),
        ));
    }
    Ok((src.origin, format!("{}{tail}", src.launch)))
}

/// Parse the pipeline without starting it (no device is opened). Used by `check-config`.
pub fn check_pipeline(cfg: &Config) -> Result<(), CaptureError> {
    gst::init().map_err(|e| CaptureError::Init(e.to_string()))?;
    let p = build(cfg, cfg.display.enabled)?;
    let _ = p.set_state(gst::State::Null);
    Ok(())
}

/// The display branch's elements exist: the overlay plugin and the configured sink
/// (created, not started: no display is opened).
fn check_display(cfg: &Config) -> Result<(), CaptureError> {
    let bad = |reason: String| CaptureError::Display {
        sink: cfg.display.sink.clone(),
        reason,
    };
    if gst::ElementFactory::find("overlaycomposition").is_none() {
        return Err(bad(
            "the overlaycomposition element is missing (GStreamer plugins base >= 1.20)".into(),
        ));
    }
    let sink = gst::parse::launch(&cfg.display.sink).map_err(|e| bad(e.to_string()))?;
    let _ = sink.set_state(gst::State::Null);
    Ok(())
}

fn build(cfg: &Config, display: bool) -> Result<gst::Pipeline, CaptureError> {
    if display {
        check_display(cfg)?;
    }
    let (origin, launch) = describe(cfg, display)?;
    let parse_err = |reason: String| CaptureError::Parse {
        origin: origin.clone(),
        launch: launch.clone(),
        reason,
    };
    let element = gst::parse::launch(&launch).map_err(|e| parse_err(e.to_string()))?;
    let pipeline = element
        .downcast::<gst::Pipeline>()
        .map_err(|_| parse_err("the description is a single element, not a pipeline".into()))?;
    if pipeline.by_name("agent_sink").is_none() {
        return Err(parse_err(
            "the agent's appsink is missing (does the template end in a `!`?)".into(),
        ));
    }
    if cfg.source.kind == SourceKind::Phantom && pipeline.by_name("phantom").is_none() {
        return Err(parse_err(
            "a phantom template needs an `appsrc name=phantom`".into(),
        ));
    }
    if display && pipeline.by_name(overlay::OVERLAY_ELEMENT).is_none() {
        return Err(parse_err("the display branch's overlay is missing".into()));
    }
    Ok(pipeline)
}

/// Connect the appsink to the hand-off channel. `rx` is a second receiver of the same
/// channel, used only to drop the oldest frame when the channel is full.
fn attach_sink(
    pipeline: &gst::Pipeline,
    tx: Sender<CapturedFrame>,
    rx: Receiver<CapturedFrame>,
    stats: Arc<CaptureStats>,
) {
    let sink = pipeline
        .by_name("agent_sink")
        .expect("checked in build")
        .downcast::<gst_app::AppSink>()
        .expect("agent_sink is an appsink");
    let captured = metrics::counter!("endo_agent_frames_captured_total");
    let scorer_busy =
        metrics::counter!("endo_agent_frames_dropped_total", "reason" => "scorer_busy");
    let map_failed = metrics::counter!("endo_agent_frames_dropped_total", "reason" => "map_failed");
    let mut reader = SampleReader::default();
    let epoch = stats.epoch();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let arrived = Instant::now();
                captured.increment(1);
                stats.captured.fetch_add(1, Ordering::Relaxed);
                stats.last_frame_ns.store(
                    (arrived - epoch).as_nanos().max(1) as u64,
                    Ordering::Relaxed,
                );
                let Some(item) = reader.read(&sample, arrived) else {
                    map_failed.increment(1);
                    return Ok(gst::FlowSuccess::Ok);
                };
                hand_off(&tx, &rx, item, &scorer_busy)
            })
            .build(),
    );
    if let Some(queue) = pipeline.by_name("agent_queue") {
        let convert_busy =
            metrics::counter!("endo_agent_frames_dropped_total", "reason" => "convert_busy");
        queue.connect("overrun", false, move |_| {
            convert_busy.increment(1);
            None
        });
    }
}

/// The leaky hand-off to the scorer: when its queue is full, the oldest waiting frame is
/// dropped (counted) and the newest kept; the streaming thread never waits.
fn hand_off(
    tx: &Sender<CapturedFrame>,
    rx: &Receiver<CapturedFrame>,
    item: CapturedFrame,
    scorer_busy: &metrics::Counter,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    match tx.try_send(item) {
        Ok(()) => {}
        Err(TrySendError::Full(item)) => {
            if rx.try_recv().is_ok() {
                scorer_busy.increment(1);
            }
            if tx.try_send(item).is_err() {
                scorer_busy.increment(1);
            }
        }
        Err(TrySendError::Disconnected(_)) => return Err(gst::FlowError::Flushing),
    }
    Ok(gst::FlowSuccess::Ok)
}

fn set_source_state(state: &str, stats: &CaptureStats) {
    crate::metrics::set_state("endo_agent_source_state", &SOURCE_STATES, state);
    if let Some(i) = SOURCE_STATES.iter().position(|s| *s == state) {
        stats.state.store(i, Ordering::Relaxed);
    }
    let up = state == "running";
    stats.up.store(up, Ordering::Relaxed);
    metrics::gauge!("endo_agent_source_up").set(if up { 1.0 } else { 0.0 });
}

/// Run the capture pipeline until `stop` is set (or the source ends and the config says
/// stop), restarting it with backoff after errors, ends of stream and stalls.
/// Returns an error only for problems a restart cannot fix (a template that does not parse).
///
/// `overlay` is what the display branch shows (`[display] enabled`); with `None` and the
/// display enabled the overlay shows "no score yet".
pub fn run_supervised(
    cfg: &Config,
    tx: Sender<CapturedFrame>,
    rx: Receiver<CapturedFrame>,
    stats: Arc<CaptureStats>,
    stop: Shutdown,
    overlay: Option<Arc<OverlayState>>,
) -> Result<Ended, CaptureError> {
    // Every cause exists from the start (at 0), so rates and alerts see a series.
    for cause in ["eos", "stall", "error"] {
        metrics::counter!("endo_agent_source_restarts_total", "cause" => cause).increment(0);
    }
    gst::init().map_err(|e| CaptureError::Init(e.to_string()))?;
    let c = &cfg.capture;
    let mut backoff = Backoff::new(
        Duration::from_millis(c.backoff_initial_ms),
        Duration::from_millis(c.backoff_max_ms),
        Duration::from_millis(c.backoff_reset_after_ms),
    );
    let phantom = (cfg.source.kind == SourceKind::Phantom).then(|| {
        // Building the phantom's textures is the generator's cost, not the agent's.
        let t0 = phantom::output::thread_cpu_ns();
        let p = Arc::new(Phantom::new(
            cfg.phantom().expect("validated with the config"),
        ));
        let spent = phantom::output::thread_cpu_ns().saturating_sub(t0);
        stats.generator_cpu_ns.fetch_add(spent, Ordering::Relaxed);
        p
    });
    let overlay = overlay.or_else(|| {
        cfg.display
            .enabled
            .then(|| OverlayState::new(cfg.select.threshold_low, cfg.select.threshold_high))
    });
    let mut source = Source {
        cfg,
        tx,
        rx,
        stats,
        phantom,
        phantom_next: 0,
        overlay,
        display: cfg.display.enabled,
    };
    loop {
        let (outcome, ran_for) = source.run_once(&stop)?;
        if let Some(ended) = source.judge(outcome, ran_for) {
            return Ok(ended);
        }
        let delay = backoff.on_failure(ran_for);
        set_source_state("backoff", &source.stats);
        tracing::info!(delay = ?delay, "restarting the source after backoff");
        if stop.sleep(delay) {
            set_source_state("stopped", &source.stats);
            return Ok(Ended::Stopped);
        }
    }
}

/// What the capture supervisor keeps across restarts of the pipeline.
struct Source<'a> {
    cfg: &'a Config,
    tx: Sender<CapturedFrame>,
    rx: Receiver<CapturedFrame>,
    stats: Arc<CaptureStats>,
    phantom: Option<Arc<Phantom>>,
    /// The phantom frame a restarted pipeline continues from.
    phantom_next: u64,
    overlay: Option<Arc<OverlayState>>,
    /// Cleared when the display branch fails: capture goes on without it.
    display: bool,
}

impl Source<'_> {
    /// Build and play the pipeline until it stops, ends, stalls or fails; tear it down.
    /// How it ended and how long it ran.
    fn run_once(&mut self, stop: &Shutdown) -> Result<(Outcome, Duration), CaptureError> {
        let (cfg, stats) = (self.cfg, &self.stats);
        set_source_state("starting", stats);
        let pipeline = build(cfg, self.display)?;
        attach_sink(&pipeline, self.tx.clone(), self.rx.clone(), stats.clone());
        if let (true, Some(state)) = (self.display, &self.overlay) {
            overlay::attach(&pipeline, state.clone(), &cfg.display);
        }
        let feed = self.phantom.as_ref().map(|p| {
            let appsrc = pipeline
                .by_name("phantom")
                .expect("checked in build")
                .downcast::<gst_app::AppSrc>()
                .expect("phantom is an appsrc");
            let max = cfg.source.max_frames;
            phantom::output::spawn_live_feed(
                p.clone(),
                appsrc,
                phantom::output::LiveOpts {
                    realtime: true,
                    max_frames: (max > 0).then(|| max.saturating_sub(self.phantom_next)),
                    start_index: self.phantom_next,
                },
            )
        });
        let started = Instant::now();
        let frames_at_start = stats.captured.load(Ordering::Relaxed);
        let outcome = match pipeline.set_state(gst::State::Playing) {
            Err(_) => Outcome::Error(
                first_error(&pipeline).unwrap_or_else(|| "the pipeline refused to start".into()),
            ),
            Ok(_) => watch(&pipeline, stats, stop, frames_at_start),
        };
        if let Some(f) = feed {
            f.stop();
            self.phantom_next += f.frames_pushed();
            stats
                .generator_cpu_ns
                .fetch_add(f.cpu_time().as_nanos() as u64, Ordering::Relaxed);
            stats
                .generator_skipped
                .fetch_add(f.frames_skipped(), Ordering::Relaxed);
        }
        let _ = pipeline.set_state(gst::State::Null);
        Ok((outcome, started.elapsed()))
    }

    /// Count and log how a run ended: Some when capture is over, None to restart.
    fn judge(&mut self, outcome: Outcome, ran_for: Duration) -> Option<Ended> {
        let restart = |cause: &'static str| {
            metrics::counter!("endo_agent_source_restarts_total", "cause" => cause).increment(1)
        };
        match outcome {
            Outcome::Stop => {
                set_source_state("stopped", &self.stats);
                return Some(Ended::Stopped);
            }
            Outcome::Eos if self.cfg.capture.on_eos != OnEos::Restart => {
                tracing::info!("source reached its end; not restarting (capture.on_eos)");
                set_source_state("stopped", &self.stats);
                return Some(Ended::EndOfStream);
            }
            Outcome::Eos => {
                restart("eos");
                tracing::warn!(ran_for = ?ran_for, "source reached end of stream; restarting");
            }
            Outcome::Stall => {
                restart("stall");
                tracing::warn!(ran_for = ?ran_for, "source delivered no frame for {STALL:?}; restarting");
            }
            Outcome::Error(msg) if self.display && overlay::is_display_error(&msg) => {
                restart("error");
                self.display = false;
                tracing::error!(
                    ran_for = ?ran_for,
                    "the display sink failed (display.sink = {:?}): {msg}; capture restarts \
                     without the on-screen overlay until the agent is restarted",
                    self.cfg.display.sink
                );
            }
            Outcome::Error(msg) => {
                restart("error");
                tracing::error!(ran_for = ?ran_for, "source failed: {msg}");
            }
        }
        None
    }
}

enum Outcome {
    Stop,
    Eos,
    Stall,
    Error(String),
}

fn first_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    bus.timed_pop_filtered(
        gst::ClockTime::from_mseconds(500),
        &[gst::MessageType::Error],
    )
    .and_then(|m| match m.view() {
        gst::MessageView::Error(e) => Some(error_text(e)),
        _ => None,
    })
}

fn error_text(e: &gst::message::Error) -> String {
    let src = e
        .src()
        .map(|s| s.path_string().to_string())
        .unwrap_or_default();
    match e.debug() {
        Some(d) => format!("{src}: {} ({d})", e.error()),
        None => format!("{src}: {}", e.error()),
    }
}

fn watch(
    pipeline: &gst::Pipeline,
    stats: &CaptureStats,
    stop: &Shutdown,
    frames_at_start: u64,
) -> Outcome {
    let bus = pipeline.bus().expect("pipelines have a bus");
    let started = Instant::now();
    let mut running = false;
    loop {
        if stop.is_stopped() {
            return Outcome::Stop;
        }
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[
                gst::MessageType::Error,
                gst::MessageType::Eos,
                gst::MessageType::Warning,
            ],
        );
        if let Some(msg) = msg {
            match msg.view() {
                gst::MessageView::Eos(_) => return Outcome::Eos,
                gst::MessageView::Error(e) => return Outcome::Error(error_text(e)),
                gst::MessageView::Warning(w) => {
                    tracing::warn!("pipeline warning: {} ({:?})", w.error(), w.debug());
                }
                _ => {}
            }
        }
        let got_frames = stats.captured.load(Ordering::Relaxed) > frames_at_start;
        if got_frames && !running {
            running = true;
            set_source_state("running", stats);
            tracing::info!("source running");
        }
        let silent = match stats.since_last_frame() {
            Some(d) if got_frames => d,
            _ => started.elapsed(),
        };
        if silent > STALL + if running { Duration::ZERO } else { STALL } {
            return Outcome::Stall;
        }
    }
}
