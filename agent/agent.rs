//! `endo-agent run`: wires the stages of the data path together.
//!
//! Threads: the capture supervisor (GStreamer's own streaming threads feed it), the
//! scorer (one OS thread: FOV → score → select; never waits on disk or network), the
//! encode worker (JPEG + record + sink), and one small tokio runtime for the HTTP listener
//! and signal handling. Queues between them are bounded; see each module for its
//! full-queue policy. Shutdown (SIGINT/SIGTERM, or the source ending with
//! `capture.on_eos = "stop"`) drains in order: capture stops, the scorer flushes the
//! selector's pending window, the encoder writes what it holds, then the process exits.

use chrono::Utc;
use crossbeam_channel::{bounded, Receiver, Sender};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::capture::{self, CaptureStats, CapturedFrame};
use crate::config::Config;
use crate::config::SinkKind;
use crate::encode;
use crate::fov::{Fov, FovLocator, Locate};
use crate::frame::I420View;
use crate::metrics::DurationWindow;
use crate::operator::{Command, Kept, Operator, OperatorError, RecentFrame};
use crate::record::{self, Record};
use crate::score::artifact::Artifact;
use crate::score::model::{ModelError, ModelRunner};
use crate::score::{Score, Scorer};
use crate::select::{Rejection, Selector};
use crate::spool::{Spool, SpoolConfig, SpoolRecord};
use crate::uplink::local::LocalDatalake;
use crate::uplink::mqtt::MqttSink;
use crate::uplink::s3::S3Sink;
use crate::uplink::worker::{self, Retry, SinkStatus, SpoolHandle};
use crate::uplink::{Blocking, Sink, SinkError};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Capture(#[from] capture::CaptureError),
    #[error("http.listen {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("http.token_file {path}: {why}")]
    Token { path: String, why: String },
    #[error("{key} {path}: {why}")]
    Path {
        key: &'static str,
        path: std::path::PathBuf,
        why: String,
    },
    #[error("starting thread {name}: {source}")]
    Thread {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("the {name} thread died (see the log above); the agent stopped")]
    ThreadDied { name: &'static str },
}

/// Stops the agent when an essential thread unwinds: the other threads wind down and
/// [`run`] returns [`AgentError::ThreadDied`], so that systemd or k3s restart the agent
/// instead of leaving it capturing without scoring.
struct StopOnPanic {
    name: &'static str,
    stop: Arc<AtomicBool>,
}

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if thread::panicking() {
            tracing::error!("the {} thread died: stopping the agent", self.name);
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// What the HTTP server and the operator see of the running agent.
pub struct Shared {
    pub prometheus: PrometheusHandle,
    pub capture: Arc<CaptureStats>,
    /// Procedure sessions, marks, annotations and the recent frames of the web view.
    pub operator: Arc<Operator>,
    /// What the on-screen overlay shows (when `display.enabled`).
    pub overlay: Option<Arc<crate::overlay::OverlayState>>,
    pub fov_locked: AtomicBool,
    /// When the score thread last scored a frame ([`CaptureStats::stamp`]; 0 = never).
    pub last_scored_ns: AtomicU64,
    /// `select.threshold_low` and `threshold_high`, for the overlay's colours.
    pub thresholds: (f32, f32),
    /// Frames forwarded (selected, and kept or annotated by an operator) since start.
    pub selected: AtomicU64,
    /// Each configured sink's deliveries and state, in `uplink.sinks` order.
    pub sinks: Vec<SinkStatus>,
    pub fps_milli: AtomicU64,
    pub latest: Mutex<Option<Latest>>,
    /// The source ended and every selected frame went through the encoder (on_eos = idle).
    pub drained: AtomicBool,
    pub spool: Arc<SpoolHandle>,
}

/// The latest score, for the overlay and `/api/status`.
#[derive(Debug, Clone, Copy)]
pub struct Latest {
    pub score: Score,
    pub at: chrono::DateTime<Utc>,
}

impl Shared {
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
            self.fps_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            self.selected.load(Ordering::Relaxed),
            self.delivered_everywhere(),
            self.spool.len().0,
            self.capture.state(),
            sinks.join(", ")
        )
    }

    /// Frames stored by every sink (the smallest per-sink count).
    pub fn delivered_everywhere(&self) -> u64 {
        self.sinks
            .iter()
            .map(|s| s.delivered.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    pub fn status_json(&self) -> serde_json::Value {
        let latest = *self.latest.lock().expect("status lock");
        let procedure = self.operator.procedure();
        serde_json::json!({
            "session": procedure.session,
            "procedure": {
                "session": procedure.session,
                "active": procedure.active,
                "started_at": procedure.started_at,
                "counters": self.operator.counters_json(),
            },
            "ready": self.not_ready_reason().is_none(),
            "source_up": self.capture.up.load(Ordering::Relaxed),
            "fps": self.fps_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            "fov_locked": self.fov_locked.load(Ordering::Relaxed),
            "frames_captured": self.capture.captured.load(Ordering::Relaxed),
            "frames_selected": self.selected.load(Ordering::Relaxed),
            "frames_delivered": self.delivered_everywhere(),
            "delivered_by_sink": self.sinks.iter()
                .map(|s| (s.name.to_string(), s.delivered.load(Ordering::Relaxed).into()))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
            "spool_frames": self.spool.len().0,
            "drained": self.drained.load(Ordering::Relaxed),
            "latest": latest.map(|l| serde_json::json!({
                "at": record::format_time(l.at),
                "quality": l.score.quality,
                "reasons": l.score.reasons().map(|a| a.as_str()).collect::<Vec<_>>(),
                "artifacts": crate::record::ScoreInfo::from_score(&l.score).artifacts,
            })),
        })
    }
}

/// What a finished run did (logged at exit, used by tests and the benchmark).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub captured: u64,
    pub scored: u64,
    pub selected: u64,
    pub delivered: u64,
    /// Capture→score latency over the last frames (up to [`DurationWindow::LEN`]).
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    /// Phantom source only: the generator's CPU time and the frame slots it skipped.
    pub generator_cpu: Duration,
    pub generator_skipped: u64,
    /// The on-screen overlay's figures, when `display.enabled`.
    pub overlay: Option<OverlaySummary>,
}

/// What the display branch did in a run (exact percentiles over its last frames).
#[derive(Debug, Clone, Default)]
pub struct OverlaySummary {
    pub frames_rendered: u64,
    /// Delay the branch added to the video (entering the branch → the video sink).
    pub delay_p50: Option<Duration>,
    pub delay_p99: Option<Duration>,
    /// Age of the displayed score at draw time.
    pub score_age_p50: Option<Duration>,
    pub score_age_p99: Option<Duration>,
}

/// A frame to encode: live from capture (selected or operator-marked) or an owned recent
/// frame (operator-annotated).
enum JobFrame {
    Live(Arc<CapturedFrame>),
    Recent(Arc<RecentFrame>),
}

impl JobFrame {
    fn view(&self) -> I420View<'_> {
        match self {
            JobFrame::Live(f) => f.view(),
            JobFrame::Recent(f) => f.image.view(),
        }
    }
    fn captured_at(&self) -> chrono::DateTime<Utc> {
        match self {
            JobFrame::Live(f) => f.captured_at,
            JobFrame::Recent(f) => f.captured_at,
        }
    }
    fn pts_and_offset(&self) -> (Option<u64>, Option<u64>) {
        match self {
            JobFrame::Live(f) => (f.pts_ns, f.offset),
            JobFrame::Recent(f) => (f.pts_ns, f.offset),
        }
    }
}

/// A forwarded frame on its way to the encoder, with its key already decided.
struct Job {
    frame: JobFrame,
    fov: Arc<Fov>,
    score: Score,
    key: String,
    session: Arc<str>,
    seq: u64,
    /// `best_in_window`, `operator_marked` or `operator_annotated`.
    reason: &'static str,
    operator: Option<record::OperatorInfo>,
    /// The COCO-style annotation record (empty unless annotated).
    annotation: Vec<u8>,
}

/// Run the agent until the source ends (`capture.on_eos = "stop"`) or `stop` is set.
pub fn run(cfg: Config, stop: Arc<AtomicBool>) -> Result<Summary, AgentError> {
    let prometheus = crate::metrics::install();
    gauge!("endo_agent_build_info", "version" => crate::VERSION).set(1.0);
    crate::notify::status(&format!("loading model {}", cfg.model.path.display()));
    let model = if cfg.model.enabled {
        let m = ModelRunner::load(&cfg.model.path)?;
        let man = m.manifest();
        tracing::info!(path = %cfg.model.path.display(), name = %man.name, version = %man.version, "model loaded");
        gauge!("endo_agent_model_info", "name" => man.name.clone(), "version" => man.version.clone(),
            "sha256" => man.sha256.clone(), "quantization" => man.quantization.clone())
        .set(1.0);
        Some(m)
    } else {
        tracing::warn!("model disabled: scoring with classical measures only");
        None
    };
    let session = if cfg.agent.session.is_empty() {
        record::new_session_id(Utc::now())
    } else {
        cfg.agent.session.clone()
    };
    tracing::info!(site = %cfg.agent.site, device = %cfg.agent.device, session = %session, "starting");
    // Check the pipeline before anything starts, so a bad template fails fast.
    capture::check_pipeline(&cfg)?;

    let spool = open_spool(&cfg)?;

    let stats = Arc::new(CaptureStats::default());
    let (operator, commands) = Operator::new(cfg.operator.clone(), session.clone());
    let operator = Arc::new(operator);
    let shared = Arc::new(Shared {
        prometheus,
        capture: stats.clone(),
        operator: operator.clone(),
        overlay: cfg.display.enabled.then(|| {
            crate::overlay::OverlayState::new(cfg.select.threshold_low, cfg.select.threshold_high)
        }),
        fov_locked: AtomicBool::new(false),
        last_scored_ns: AtomicU64::new(0),
        thresholds: (cfg.select.threshold_low, cfg.select.threshold_high),
        selected: AtomicU64::new(0),
        sinks: cfg
            .uplink
            .sinks
            .iter()
            .map(|k| SinkStatus::new(k.as_str()))
            .collect(),
        fps_milli: AtomicU64::new(0),
        latest: Mutex::new(None),
        drained: AtomicBool::new(false),
        spool: spool.clone(),
    });
    // Gauges the 1 s upkeep task maintains exist from the start.
    gauge!("endo_agent_capture_fps").set(0.0);
    gauge!("endo_agent_spool_oldest_age_seconds").set(0.0);
    let sinks = make_sinks(&cfg, &shared)?;
    let token = http_token(&cfg)?;
    if token.is_none() {
        tracing::info!("operator API without a token: http.listen is loopback only");
    }
    let http = start_http(&cfg.http.listen, shared.clone(), token, stop.clone())?;

    let (frame_tx, frame_rx) = bounded::<CapturedFrame>(cfg.capture.queue_frames);
    let (job_tx, job_rx) = bounded::<Job>(cfg.encode.queue_frames);
    let spawn = |name: &'static str| thread::Builder::new().name(name.into());
    let thread_err = |name| move |source| AgentError::Thread { name, source };

    let model_info = model.as_ref().map(|m| record::ModelInfo {
        name: m.manifest().name.clone(),
        version: m.manifest().version.clone(),
        sha256: m.manifest().sha256.clone(),
    });
    let scorer = Scorer::new(cfg.scoring.clone(), model);
    let sc_cfg = cfg.clone();
    let sc_shared = shared.clone();
    let sc_rx = frame_rx.clone();
    let sc_stop = stop.clone();
    let (preview_tx, preview_rx) = bounded::<PreviewJob>(1);
    let score_thread = spawn("score")
        .spawn(move || {
            let _stop_on_panic = StopOnPanic {
                name: "score",
                stop: sc_stop,
            };
            score_loop(
                &sc_cfg,
                scorer,
                ScoreIo {
                    frames: sc_rx,
                    commands,
                    jobs: job_tx,
                    previews: preview_tx,
                },
                &sc_shared,
            )
        })
        .map_err(thread_err("score"))?;
    let pv_cfg = cfg.operator.clone();
    let pv_operator = operator.clone();
    let preview_thread = spawn("preview")
        .spawn(move || preview_loop(&pv_cfg, preview_rx, &pv_operator))
        .map_err(thread_err("preview"))?;

    let enc_cfg = cfg.clone();
    let enc_spool = spool.clone();
    let encode_thread = spawn("encode")
        .spawn(move || {
            encode_loop(&enc_cfg, model_info, job_rx, &enc_spool);
            enc_spool.close();
        })
        .map_err(thread_err("encode"))?;

    let retry = Retry::from(&cfg.uplink);
    let mut uplink_threads = Vec::new();
    for (i, sink) in sinks.into_iter().enumerate() {
        let up_spool = spool.clone();
        let up_shared = shared.clone();
        let up_stop = stop.clone();
        let name = sink.name();
        let t = thread::Builder::new()
            .name(format!("uplink-{name}"))
            .spawn(move || worker::run_sink(sink, &up_spool, retry, &up_stop, &up_shared.sinks[i]))
            .map_err(thread_err("uplink"))?;
        uplink_threads.push(t);
    }

    let cap_cfg = cfg.clone();
    let cap_stop = stop.clone();
    let cap_overlay = shared.overlay.clone();
    let capture_thread = spawn("capture")
        .spawn(move || {
            capture::run_supervised(&cap_cfg, frame_tx, frame_rx, stats, cap_stop, cap_overlay)
        })
        .map_err(thread_err("capture"))?;

    crate::notify::status("waiting for the first frame");
    let ended = capture_thread.join().expect("capture thread panicked");
    let (scored, latencies, died) = match score_thread.join() {
        Ok((n, l)) => (n, l, None),
        Err(_) => (0, DurationWindow::default(), Some("score")),
    };
    preview_thread.join().expect("preview thread panicked");
    encode_thread.join().expect("encode thread panicked");
    for t in uplink_threads {
        t.join().expect("uplink thread panicked");
    }
    let (left, _) = spool.len();
    if left > 0 {
        tracing::warn!(frames = left, "frames stay in the spool for the next start");
    }
    shared.drained.store(true, Ordering::Relaxed);
    if matches!(ended, Ok(capture::Ended::EndOfStream))
        && cfg.capture.on_eos == crate::config::OnEos::Idle
    {
        tracing::info!("source ended and every frame is delivered; serving HTTP until stopped");
        while !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(50));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = http.join();
    let summary = Summary {
        captured: shared.capture.captured.load(Ordering::Relaxed),
        scored,
        selected: shared.selected.load(Ordering::Relaxed),
        delivered: shared.delivered_everywhere(),
        latency_p50: latencies.quantile(0.5).unwrap_or_default(),
        latency_p99: latencies.quantile(0.99).unwrap_or_default(),
        generator_cpu: Duration::from_nanos(
            shared.capture.generator_cpu_ns.load(Ordering::Relaxed),
        ),
        generator_skipped: shared.capture.generator_skipped.load(Ordering::Relaxed),
        overlay: shared.overlay.as_ref().map(|o| OverlaySummary {
            frames_rendered: o.frames_rendered(),
            delay_p50: o.delay_quantile(0.5),
            delay_p99: o.delay_quantile(0.99),
            score_age_p50: o.score_age_quantile(0.5),
            score_age_p99: o.score_age_quantile(0.99),
        }),
    };
    tracing::info!(?summary, "stopped");
    if let Some(name) = died {
        return Err(AgentError::ThreadDied { name });
    }
    ended?;
    Ok(summary)
}

/// One sink per `uplink.sinks` entry, in that order. Certificates, keys and credentials
/// are read here, so a bad path stops the agent at start with its name.
fn make_sinks(cfg: &Config, shared: &Arc<Shared>) -> Result<Vec<Box<dyn Sink>>, AgentError> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    for kind in &cfg.uplink.sinks {
        sinks.push(match kind {
            SinkKind::Local => {
                Box::new(Blocking::new(LocalDatalake::new(cfg.datalake.dir.clone())))
            }
            SinkKind::S3 => Box::new(Blocking::new(S3Sink::new(&cfg.s3)?)),
            SinkKind::Mqtt => {
                let sh = shared.clone();
                let summary: crate::uplink::mqtt::SummaryFn = Arc::new(move || sh.status_json());
                Box::new(MqttSink::new(cfg, Some(summary))?)
            }
        });
    }
    Ok(sinks)
}

fn open_spool(cfg: &Config) -> Result<Arc<SpoolHandle>, AgentError> {
    let (spool, rec) = Spool::open(SpoolConfig {
        dir: cfg.spool.dir.clone(),
        max_records: cfg.spool.max_records,
        max_bytes: cfg.spool.max_mib << 20,
        policy: cfg.spool.policy,
        sinks: cfg
            .uplink
            .sinks
            .iter()
            .map(|k| k.as_str().to_string())
            .collect(),
        min_free_bytes: cfg.spool.min_free_mib << 20,
        free_space: crate::spool::disk_free,
    })?;
    counter!("endo_agent_spool_recovered_total", "outcome" => "record")
        .increment(rec.records as u64);
    counter!("endo_agent_spool_recovered_total", "outcome" => "torn").increment(rec.torn as u64);
    for (path, why) in &rec.corrupt {
        counter!("endo_agent_spool_recovered_total", "outcome" => "corrupt").increment(1);
        tracing::error!(
            "spool record {} is unreadable ({why}); moved to corrupt/",
            path.display()
        );
    }
    if rec.records + rec.torn + rec.corrupt.len() > 0 {
        tracing::info!(records = rec.records, torn = rec.torn, corrupt = rec.corrupt.len(), dir = %cfg.spool.dir.display(), "spool recovered");
    }
    Ok(Arc::new(SpoolHandle::new(spool)))
}

/// The operator API's bearer token: `http.token`, or the first line of `http.token_file`.
pub(crate) fn http_token(cfg: &Config) -> Result<Option<String>, AgentError> {
    let h = &cfg.http;
    let token = if h.token_file.as_os_str().is_empty() {
        h.token.clone()
    } else {
        let why = |why: String| AgentError::Token {
            path: h.token_file.display().to_string(),
            why,
        };
        let text = std::fs::read_to_string(&h.token_file).map_err(|e| why(e.to_string()))?;
        let t = text.lines().next().unwrap_or("").trim().to_string();
        if t.len() < 16 || t.chars().any(char::is_whitespace) {
            return Err(why(
                "the first line must be a token of at least 16 characters without spaces".into(),
            ));
        }
        t
    };
    Ok(Some(token).filter(|t| !t.is_empty()))
}

fn start_http(
    listen: &str,
    shared: Arc<Shared>,
    token: Option<String>,
    stop: Arc<AtomicBool>,
) -> Result<thread::JoinHandle<()>, AgentError> {
    let listen_err = |source| AgentError::Listen {
        addr: listen.to_string(),
        source,
    };
    let std_listener = std::net::TcpListener::bind(listen).map_err(listen_err)?;
    std_listener.set_nonblocking(true).map_err(listen_err)?;
    let addr = std_listener.local_addr().map_err(listen_err)?;
    tracing::info!("http listening on http://{addr}");
    let app = crate::http::router(shared.clone(), token, stop.clone());
    thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                let upkeep_stop = stop.clone();
                tokio::spawn(async move { upkeep(shared, upkeep_stop).await });
                let stop_wait = stop.clone();
                let shutdown = async move {
                    // The signal streams live for the whole loop: one made afresh per
                    // iteration would miss a signal arriving between two of them.
                    let mut term = signal_stream(SignalKind::terminate());
                    let mut int = signal_stream(SignalKind::interrupt());
                    loop {
                        tokio::select! {
                            _ = next_signal(&mut int) => { tracing::info!("interrupt: stopping"); crate::notify::stopping(); stop_wait.store(true, Ordering::Relaxed); }
                            _ = next_signal(&mut term) => { tracing::info!("SIGTERM: stopping"); crate::notify::stopping(); stop_wait.store(true, Ordering::Relaxed); }
                            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        }
                        if stop_wait.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                };
                crate::http::serve(listener, app, shutdown).await;
            })
        })
        .map_err(|source| AgentError::Thread { name: "http", source })
}

use tokio::signal::unix::{Signal, SignalKind};

fn signal_stream(kind: SignalKind) -> Option<Signal> {
    match tokio::signal::unix::signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!("cannot listen for signal {kind:?}: {e}");
            None
        }
    }
}

/// The next delivery of a signal (never, without a stream).
async fn next_signal(s: &mut Option<Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Once a second: the fps and spool-age gauges and the exporter's housekeeping.
async fn upkeep(shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    let mut last = (
        Instant::now(),
        shared.capture.captured.load(Ordering::Relaxed),
    );
    let mut tick = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        tick += 1;
        // No frames on purpose (camera retry, or a finished source idling): the process
        // is alive, so keep the watchdog fed; frames themselves are fed by the scorer.
        let state = shared.capture.state();
        if state == "backoff" || (state == "stopped" && shared.drained.load(Ordering::Relaxed)) {
            crate::notify::watchdog();
        }
        if tick.is_multiple_of(5) {
            crate::notify::status(&shared.status_line());
        }
        let now = (
            Instant::now(),
            shared.capture.captured.load(Ordering::Relaxed),
        );
        let fps = (now.1 - last.1) as f64 / (now.0 - last.0).as_secs_f64();
        shared
            .fps_milli
            .store((fps * 1000.0) as u64, Ordering::Relaxed);
        gauge!("endo_agent_capture_fps").set(fps);
        let now_ms = Utc::now().timestamp_millis().max(0) as u64;
        gauge!("endo_agent_spool_oldest_age_seconds")
            .set(shared.spool.oldest_age(now_ms).as_secs_f64());
        shared.prometheus.run_upkeep();
        last = now;
    }
}

/// The score thread's channels.
struct ScoreIo {
    frames: Receiver<CapturedFrame>,
    commands: Receiver<Command>,
    jobs: Sender<Job>,
    previews: Sender<PreviewJob>,
}

/// A frame for the web preview (and for freezing): copied out by the preview worker.
type PreviewJob = (Arc<CapturedFrame>, Arc<Fov>, Score);

/// What the score thread hands to the encoder, and how it names it.
struct Keys<'a> {
    cfg: &'a Config,
    session: Arc<str>,
    seq: u64,
}

impl Keys<'_> {
    /// The next key of this session, for a frame captured at `at`.
    fn next(&mut self, at: chrono::DateTime<Utc>) -> (String, u64) {
        let seq = self.seq;
        self.seq += 1;
        let a = &self.cfg.agent;
        let key = record::key_stem(
            &self.cfg.datalake.prefix,
            &a.site,
            &a.device,
            at,
            &self.session,
            seq,
        );
        (key, seq)
    }
}

/// The scoring thread. Returns the number of frames scored and their latencies.
///
/// Besides frames it takes the operator's commands (keep a frame, annotate a frozen
/// one), because it owns the session's sequence numbers; a command costs it a key and a
/// channel send, never I/O.
fn score_loop(
    cfg: &Config,
    mut scorer: Scorer,
    io: ScoreIo,
    shared: &Shared,
) -> (u64, DurationWindow) {
    let latencies = DurationWindow::default();
    let scored = counter!("endo_agent_frames_scored_total");
    let fov_pending = counter!("endo_agent_frames_dropped_total", "reason" => "fov_pending");
    let score_failed = counter!("endo_agent_frames_dropped_total", "reason" => "score_failed");
    let quality_h = histogram!("endo_agent_quality_score");
    let latency_h = histogram!("endo_agent_capture_to_score_seconds");
    let stage = |s: &'static str| histogram!("endo_agent_stage_duration_seconds", "stage" => s);
    let (classical_h, preprocess_h, inference_h) =
        (stage("classical"), stage("preprocess"), stage("inference"));
    let fov_invalid = counter!("endo_agent_frames_dropped_total", "reason" => "fov_invalid");
    let session_selected_g = gauge!("endo_agent_session_frames_selected");
    session_selected_g.set(0.0);
    let op = &shared.operator;
    let mut locator = FovLocator::new(&cfg.fov);
    let mut fov: Option<Arc<Fov>> = None;
    type Item = (Arc<CapturedFrame>, Arc<Fov>, Score);
    let mut selector: Selector<Item> = Selector::new(cfg.select.clone());
    let mut n = 0u64;
    let mut generation = op.generation();
    let mut keys = Keys {
        cfg,
        session: Arc::from(op.procedure().session),
        seq: 0,
    };
    let epoch = Instant::now();
    let watchdog_every = crate::notify::watchdog_interval();
    let mut last_ping = Instant::now();
    // "Keep this frame": the best frame of the last mark window.
    let mark_window = Duration::from_millis(cfg.operator.mark_window_ms);
    let mut best: Option<Item> = None;
    let preview_every = Duration::from_secs_f32(1.0 / cfg.operator.preview_fps);
    let mut last_preview: Option<Instant> = None;

    // Labelled counters are looked up once here, not per frame.
    let rejected = Rejection::ALL
        .map(|r| counter!("endo_agent_frames_rejected_total", "reason" => r.as_str()));
    let bad =
        Artifact::ALL.map(|a| counter!("endo_agent_frames_bad_total", "artifact" => a.as_str()));
    let bad_unexplained = counter!("endo_agent_frames_bad_total", "artifact" => "none");
    // Count a forwarded frame and hand it to the encoder.
    let forward = |job: Job| -> bool {
        if io.jobs.try_send(job).is_err() {
            counter!("endo_agent_frames_evicted_total", "reason" => "encode_queue_full")
                .increment(1);
            tracing::warn!("encoder backlog full: a forwarded frame was evicted");
            return false;
        }
        shared.selected.fetch_add(1, Ordering::Relaxed);
        let kept = op.counters.kept.fetch_add(1, Ordering::Relaxed) + 1;
        session_selected_g.set(kept as f64);
        if let Some(o) = &shared.overlay {
            o.set_kept(kept);
        }
        true
    };
    let handle_step = |step: crate::select::Step<Item>, keys: &mut Keys| {
        for r in step.rejections() {
            rejected[r as usize].increment(1);
        }
        if let Some(sel) = step.selected {
            let (frame, fov, score) = sel.item;
            counter!("endo_agent_frames_selected_total").increment(1);
            let (key, seq) = keys.next(frame.captured_at);
            forward(Job {
                frame: JobFrame::Live(frame),
                fov,
                score,
                key,
                session: keys.session.clone(),
                seq,
                reason: "best_in_window",
                operator: None,
                annotation: Vec::new(),
            });
        }
    };

    loop {
        let event = crossbeam_channel::select! {
            recv(io.frames) -> f => match f {
                Ok(f) => Ok(f),
                Err(_) => break,
            },
            recv(io.commands) -> c => match c {
                Ok(c) => Err(c),
                Err(_) => continue,
            },
        };
        // A new procedure session (checked before frames and commands alike, so a mark
        // right after a start gets the new session): the pending window belongs to the
        // old one.
        let g = op.generation();
        if g != generation {
            handle_step(selector.flush(), &mut keys);
            // The new procedure's sharpness reference starts from its own frames.
            scorer.reset();
            generation = g;
            keys.session = Arc::from(op.procedure().session);
            keys.seq = 0;
            if let Some(o) = &shared.overlay {
                o.set_kept(op.counters.kept.load(Ordering::Relaxed));
            }
        }
        let frame = match event {
            Ok(frame) => frame,
            Err(c) => {
                let (action, outcome) =
                    handle_command(c, cfg, op, best.as_ref(), mark_window, &mut keys, &forward);
                if let Err(e) = outcome {
                    tracing::info!("operator {action}: {e}");
                }
                continue;
            }
        };
        let view = frame.view();
        // The locator logs, counts and sets the FOV gauges itself; a FOV it hands out
        // always fits the frame.
        let current = match locator.observe(&view) {
            Locate::Pending => {
                fov_pending.increment(1);
                shared.fov_locked.store(false, Ordering::Relaxed);
                continue;
            }
            Locate::Refused => {
                fov_invalid.increment(1);
                shared.fov_locked.store(false, Ordering::Relaxed);
                continue;
            }
            Locate::Locked(f) => f,
        };
        if fov
            .as_ref()
            .is_none_or(|cached| cached.rect != current.rect)
        {
            fov = Some(Arc::new(current.clone()));
            // Sharpness measured over another crop is no reference for this one.
            scorer.reset();
        }
        shared.fov_locked.store(true, Ordering::Relaxed);
        let fov_now = fov.clone().expect("set above");
        let (score, t) = match scorer.score(&view, &fov_now) {
            Ok(r) => r,
            Err(e) => {
                score_failed.increment(1);
                tracing::error!("{e}");
                continue;
            }
        };
        n += 1;
        shared
            .last_scored_ns
            .store(shared.capture.stamp(), Ordering::Relaxed);
        if n == 1 {
            crate::notify::ready(&format!(
                "scoring; first frame quality {:.2}",
                score.quality
            ));
        }
        if watchdog_every.is_some_and(|w| last_ping.elapsed() >= w) {
            crate::notify::watchdog();
            last_ping = Instant::now();
        }
        scored.increment(1);
        op.counters.scored.fetch_add(1, Ordering::Relaxed);
        if score.quality >= cfg.select.threshold_high {
            op.counters.good.fetch_add(1, Ordering::Relaxed);
        }
        quality_h.record(score.quality as f64);
        classical_h.record(t.classical.as_secs_f64());
        preprocess_h.record(t.preprocess.as_secs_f64());
        inference_h.record(t.inference.as_secs_f64());
        let latency = frame.arrived.elapsed();
        latency_h.record(latency.as_secs_f64());
        latencies.push(latency);
        if score.quality < cfg.select.threshold_low {
            match score.primary_reason() {
                Some(a) => bad[a.index()].increment(1),
                None => bad_unexplained.increment(1),
            }
        }
        if let Some(o) = &shared.overlay {
            let bad = score.quality < cfg.select.threshold_low;
            o.set_score(
                score.quality,
                score.primary_reason().filter(|_| bad),
                frame.arrived,
            );
        }
        if let Ok(mut l) = shared.latest.try_lock() {
            *l = Some(Latest {
                score,
                at: frame.captured_at,
            });
        }
        let t_ns = frame
            .pts_ns
            .unwrap_or_else(|| (frame.arrived - epoch).as_nanos() as u64);
        let frame = Arc::new(frame);
        if best
            .as_ref()
            .is_none_or(|(b, _, s)| s.quality <= score.quality || b.arrived.elapsed() > mark_window)
        {
            best = Some((frame.clone(), fov_now.clone(), score));
        }
        if last_preview.is_none_or(|l| l.elapsed() >= preview_every) {
            // The preview worker copies it out; when it is still busy, skip this one.
            if io
                .previews
                .try_send((frame.clone(), fov_now.clone(), score))
                .is_ok()
            {
                last_preview = Some(Instant::now());
            }
        }
        let step = selector.offer(t_ns, score.quality, score.dhash, (frame, fov_now, score));
        handle_step(step, &mut keys);
    }
    handle_step(selector.flush(), &mut keys);
    (n, latencies)
}

/// Carry out an operator command on the score thread; the reply goes to the HTTP handler.
/// Returns the action's name and outcome for the log.
fn handle_command(
    c: Command,
    cfg: &Config,
    op: &Operator,
    best: Option<&(Arc<CapturedFrame>, Arc<Fov>, Score)>,
    mark_window: Duration,
    keys: &mut Keys,
    forward: &dyn Fn(Job) -> bool,
) -> (&'static str, Result<(), OperatorError>) {
    let now = Utc::now();
    let session = keys.session.clone();
    // The frame under the session's next key, as a job for the encoder and the answer;
    // a label makes it an annotation.
    let mut job = |frame: JobFrame, fov: Arc<Fov>, score: Score, label: Option<String>| {
        let captured_at = frame.captured_at();
        let (key, seq) = keys.next(captured_at);
        let annotation = label
            .is_some()
            .then(|| crate::uplink::annotation_name(&key));
        let kept = Kept {
            key: key.clone(),
            session: keys.session.to_string(),
            sequence: seq,
            quality: score.quality,
            captured_at: record::format_time(captured_at),
            annotation: annotation.clone(),
            already_kept: false,
        };
        let (reason, action) = match label {
            Some(_) => ("operator_annotated", "annotate"),
            None => ("operator_marked", "keep"),
        };
        let job = Job {
            frame,
            fov,
            score,
            key,
            session: keys.session.clone(),
            seq,
            reason,
            operator: Some(record::OperatorInfo {
                marked: true,
                action,
                at: record::format_time(now),
                label,
                annotation,
            }),
            annotation: Vec::new(),
        };
        (job, kept)
    };
    let (action, reply, prepared, shapes) =
        match c {
            Command::Mark { reply } => {
                if let Some(kept) = op.kept_already(mark_window, &session) {
                    // Marked again within the window (a double click, a held key): the same
                    // answer, nothing stored twice.
                    let _ = reply.send(Ok(kept));
                    return ("keep (already kept)", Ok(()));
                }
                let prepared =
                    match best {
                        Some((frame, fov, score)) if frame.arrived.elapsed() <= mark_window => Ok(
                            job(JobFrame::Live(frame.clone()), fov.clone(), *score, None),
                        ),
                        _ => Err(OperatorError::Conflict(format!(
                            "no frame was scored in the last {} ms (is the source running?)",
                            mark_window.as_millis()
                        ))),
                    };
                ("keep", reply, prepared, 0)
            }
            Command::Annotate {
                frame,
                request,
                reply,
            } => {
                let (w, h) = frame.crop_size();
                let (fov, score, captured_at) = (frame.fov.clone(), frame.score, frame.captured_at);
                let (mut job, kept) = job(
                    JobFrame::Recent(frame),
                    fov,
                    score,
                    Some(request.label.clone()),
                );
                let doc = crate::operator::coco(
                    &request,
                    &cfg.operator.labels,
                    &crate::operator::AnnotationContext {
                        key: &job.key,
                        site: &cfg.agent.site,
                        device: &cfg.agent.device,
                        session: &job.session,
                        sequence: job.seq,
                        captured_at,
                        annotated_at: now,
                        width: w,
                        height: h,
                    },
                );
                job.annotation = serde_json::to_vec(&doc).expect("annotations serialise");
                (
                    "annotate",
                    reply,
                    Ok((job, kept)),
                    request.shapes.len() as u64,
                )
            }
        };
    let result = prepared.and_then(|(job, kept)| {
        if forward(job) {
            Ok(kept)
        } else {
            Err(OperatorError::Unavailable(
                "the encoder is backed up; try again".into(),
            ))
        }
    });
    if let Ok(kept) = &result {
        if action == "keep" {
            op.note_mark(kept);
            counter!("endo_agent_operator_marks_total").increment(1);
            op.counters.marks.fetch_add(1, Ordering::Relaxed);
        } else {
            counter!("endo_agent_operator_annotations_total").increment(1);
            counter!("endo_agent_operator_annotation_shapes_total").increment(shapes);
            op.counters.annotations.fetch_add(1, Ordering::Relaxed);
        }
        tracing::info!(key = %kept.key, quality = kept.quality, "operator {action}");
    }
    let outcome = result.as_ref().map(|_| ()).map_err(Clone::clone);
    let _ = reply.send(result);
    (action, outcome)
}

/// The preview worker: copies a frame out of its capture buffer (so the buffer goes back
/// to the source at once), encodes the small preview JPEG and adds it to the recent frames.
fn preview_loop(cfg: &crate::config::OperatorConfig, rx: Receiver<PreviewJob>, op: &Operator) {
    let preview_h = histogram!("endo_agent_stage_duration_seconds", "stage" => "preview");
    let mut id = 0u64;
    for (frame, fov, score) in rx.iter() {
        let t0 = Instant::now();
        let image = frame.view().to_owned_image();
        let (captured_at, pts_ns, offset) = (frame.captured_at, frame.pts_ns, frame.offset);
        drop(frame);
        let (jpeg, size) = match crate::encode::preview_jpeg(&image.view(), &fov, cfg.preview_width)
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("preview: {e}");
                continue;
            }
        };
        id += 1;
        let recent = Arc::new(RecentFrame {
            id,
            image,
            fov,
            score,
            captured_at,
            pts_ns,
            offset,
            preview_jpeg: jpeg,
            preview_size: size,
        });
        op.recent
            .lock()
            .expect("recent lock")
            .push(recent, cfg.recent_frames);
        preview_h.record(t0.elapsed().as_secs_f64());
    }
}

/// The encode worker: JPEG + record, then the spool. Ends when the scorer hangs up.
fn encode_loop(
    cfg: &Config,
    model: Option<record::ModelInfo>,
    rx: Receiver<Job>,
    spool: &SpoolHandle,
) {
    let encode_h = histogram!("endo_agent_stage_duration_seconds", "stage" => "encode");
    let spool_full = counter!("endo_agent_frames_evicted_total", "reason" => "spool_full");
    // A full spool (or disk) drops a frame per selection: log it once every 10 s.
    let mut full_logged: Option<(Instant, u64)> = None;
    for job in rx.iter() {
        let t0 = Instant::now();
        let view = job.frame.view();
        let jpeg = match encode::encode_jpeg(&view, &job.fov, cfg.encode.jpeg_quality) {
            Ok(j) => j,
            Err(e) => {
                counter!("endo_agent_frames_evicted_total", "reason" => "encode_failed")
                    .increment(1);
                tracing::error!("{e}");
                continue;
            }
        };
        let captured_at = job.frame.captured_at();
        let (pts_ns, source_frame) = job.frame.pts_and_offset();
        let rec = Record {
            schema: record::SCHEMA,
            key: job.key.clone(),
            site: cfg.agent.site.clone(),
            device: cfg.agent.device.clone(),
            session: job.session.to_string(),
            sequence: job.seq,
            captured_at: record::format_time(captured_at),
            pts_ns,
            source_frame,
            frame: record::FrameInfo {
                width: job.fov.rect.width,
                height: job.fov.rect.height,
                source_width: view.width,
                source_height: view.height,
                fov: job.fov.rect,
                fov_shape: match job.fov.shape {
                    crate::config::FovShape::Rect => "rect",
                    crate::config::FovShape::Circle => "circle",
                },
                masks: job.fov.masks.len(),
            },
            score: record::ScoreInfo::from_score(&job.score),
            selection: record::SelectionInfo {
                reason: job.reason,
                threshold_high: cfg.select.threshold_high,
                threshold_low: cfg.select.threshold_low,
                window_ms: cfg.select.window_ms,
            },
            model: model.clone(),
            agent: record::AgentInfo {
                version: crate::VERSION,
            },
            jpeg: record::JpegInfo {
                bytes: jpeg.len(),
                sha256: crate::score::model::sha256_hex(&jpeg),
                quality: cfg.encode.jpeg_quality,
            },
            operator: job.operator.clone(),
        };
        let quality = job.score.quality;
        let created_ms = captured_at.timestamp_millis().max(0) as u64;
        let Job {
            key, annotation, ..
        } = job;
        let item = SpoolRecord {
            key,
            quality,
            created_ms,
            jpeg,
            json: serde_json::to_vec(&rec).expect("records serialise"),
            annotation,
        };
        encode_h.record(t0.elapsed().as_secs_f64());
        match spool.append(&item) {
            Ok(a) => {
                spool_full.increment(a.evicted.len() as u64 + a.id.is_none() as u64);
                if a.id.is_none() || !a.evicted.is_empty() {
                    let lost = a.evicted.len() as u64 + u64::from(a.id.is_none());
                    match &mut full_logged {
                        Some((at, n)) if at.elapsed() < Duration::from_secs(10) => *n += lost,
                        _ => {
                            let before = full_logged.map_or(0, |(_, n)| n);
                            tracing::warn!(
                                evicted = a.evicted.len(),
                                kept_new = a.id.is_some(),
                                disk_low = spool.disk_low(),
                                dropped_since_last_log = before,
                                "spool full (spool.max_records / max_mib, or the disk: spool.min_free_mib)"
                            );
                            full_logged = Some((Instant::now(), 0));
                        }
                    }
                }
            }
            Err(e) => {
                counter!("endo_agent_frames_evicted_total", "reason" => "spool_write_failed")
                    .increment(1);
                tracing::error!("{e}");
            }
        }
    }
}
