//! `endo-agent run`: starts the stages of the data path, supervises their threads and
//! stops them in order.
//!
//! Threads: the capture supervisor (GStreamer's own streaming threads feed it), the
//! scorer ([`stages::score`]: FOV → score → select; never waits on disk or network), the
//! preview worker, the encoder (JPEG + record → spool), one uplink worker per sink, and
//! the HTTP thread (a small tokio runtime for the listener and the 1 s upkeep). Queues
//! between them are bounded; see each module for its full-queue policy.
//!
//! Every thread is essential: one that panics — or the HTTP server or a sink worker
//! ending before the stop — stops the agent, and [`run`] returns
//! [`AgentError::ThreadDied`] naming it, so that systemd or k3s restart the agent instead
//! of leaving it capturing without scoring or serving.
//!
//! A stop ([`Shutdown`]: SIGINT/SIGTERM, the source ending with `capture.on_eos =
//! "stop"`, a dead thread) drains in order: capture stops, the scorer flushes the
//! selector's pending window, the encoder writes what it holds and closes the spool, the
//! sinks deliver what they can, then the process exits.

use chrono::Utc;
use crossbeam_channel::bounded;
use metrics::gauge;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::capture::{self, CaptureStats, CapturedFrame};
use crate::config::{Config, SinkKind};
use crate::metrics::DurationWindow;
use crate::operator::Operator;
use crate::record::{self, Producer};
use crate::score::model::{ModelError, ModelRunner};
use crate::score::Scorer;
use crate::shutdown::Shutdown;
use crate::spool::SpoolHandle;
use crate::stages::job::Job;
use crate::stages::preview::PreviewJob;
use crate::stages::score::{ScoreOutputs, ScoreStage};
use crate::stages::{encode, preview};
use crate::status::Status;
use crate::uplink::local::LocalDatalake;
use crate::uplink::mqtt::MqttSink;
use crate::uplink::s3::S3Sink;
use crate::uplink::worker::{self, SinkStatus};
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
    #[error(transparent)]
    Token(#[from] crate::config::TokenError),
    /// `http.tls_cert_file` / `http.tls_key_file` unusable (the text names the key).
    #[error("{0}")]
    Tls(String),
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

/// Procedure records waiting for the encoder (one per procedure end: a handful at most).
const DOCUMENT_QUEUE: usize = 16;

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

/// Run the agent until the source ends (`capture.on_eos = "stop"`) or `stop` is set.
pub fn run(cfg: Config, stop: Shutdown) -> Result<Summary, AgentError> {
    let prometheus = crate::metrics::install();
    gauge!("endo_agent_build_info", "version" => crate::VERSION).set(1.0);
    let model = load_model(&cfg)?;
    let session = match cfg.agent.session.as_str() {
        "" => record::new_session_id(Utc::now()),
        s => s.to_string(),
    };
    tracing::info!(site = %cfg.agent.site, device = %cfg.agent.device, session = %session, "starting");
    // Check the pipeline before anything starts, so a bad template fails fast.
    capture::check_pipeline(&cfg)?;
    let spool = open_spool(&cfg)?;
    let cfg = Arc::new(cfg);
    let (operator, commands) = Operator::new(cfg.operator.clone(), session);
    let status = Arc::new(new_status(&cfg, Arc::new(operator), spool.clone()));
    // Gauges the 1 s upkeep task maintains exist from the start.
    gauge!("endo_agent_capture_fps").set(0.0);
    gauge!("endo_agent_spool_oldest_age_seconds").set(0.0);
    crate::procedure::register_metrics();
    let sinks = make_sinks(&cfg, &status)?;
    let mut sup = Supervisor::new(stop.clone());
    let http = start_service(&mut sup, &cfg, &status, prometheus)?;

    let (frame_tx, frame_rx) = bounded::<CapturedFrame>(cfg.capture.queue_frames);
    let (job_tx, job_rx) = bounded::<Job>(cfg.encode.queue_frames);
    let (preview_tx, preview_rx) = bounded::<PreviewJob>(1);
    let (doc_tx, doc_rx) = bounded::<crate::spool::SpoolRecord>(DOCUMENT_QUEUE);
    let producer = Producer::new(&cfg);
    let stage = ScoreStage::new(
        cfg.clone(),
        Scorer::new(cfg.scoring.clone(), model),
        status.clone(),
        ScoreOutputs {
            jobs: job_tx,
            previews: preview_tx,
            documents: doc_tx,
        },
    );
    let score = sup.spawn("score", {
        let frames = frame_rx.clone();
        move || stage.run(frames, commands)
    })?;
    let (op_cfg, op) = (cfg.operator.clone(), status.operator.clone());
    let preview = sup.spawn("preview", move || preview::run(&op_cfg, preview_rx, &op))?;
    let encode = sup.spawn("encode", {
        let spool = CloseOnDrop(spool.clone());
        move || encode::run(&producer, job_rx, doc_rx, &spool.0)
    })?;
    let uplinks = start_uplinks(&mut sup, &cfg, sinks, &spool, &status)?;
    let capture = sup.spawn("capture", {
        let (cfg, stats, stop) = (cfg.clone(), status.capture.clone(), stop.clone());
        let overlay = status.overlay.clone();
        move || capture::run_supervised(&cfg, frame_tx, frame_rx, stats, stop, overlay)
    })?;

    crate::notify::status("waiting for the first frame");
    let ended = sup.join(capture);
    let (scored, latencies) = sup.join(score).unwrap_or_default();
    sup.join(preview);
    sup.join(encode);
    for t in uplinks {
        sup.join(t);
    }
    finish(&cfg, &status, &sup, &ended);
    stop.stop();
    sup.join(http);
    let summary = summary(&status, scored, &latencies);
    tracing::info!(?summary, "stopped");
    sup.result()?;
    ended.transpose()?;
    Ok(summary)
}

/// What serves the agent besides the data path: the HTTP listener (with the operator
/// API's token) and the model reload on SIGHUP.
fn start_service(
    sup: &mut Supervisor,
    cfg: &Config,
    status: &Arc<Status>,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
) -> Result<JoinHandle<()>, AgentError> {
    let token = cfg.http_token()?;
    if token.is_none() {
        tracing::info!("operator API without a token: http.listen is loopback only");
    }
    let model_path = cfg.model.enabled.then(|| cfg.model.path.clone());
    crate::reload::init_metrics();
    crate::reload::on_sighup(model_path.clone(), status.operator.clone()).map_err(|source| {
        AgentError::Thread {
            name: "reload",
            source,
        }
    })?;
    let stop = sup.stop.clone();
    let app = crate::http::router(status.clone(), prometheus.clone(), token, stop, model_path);
    start_http(sup, &cfg.http, app, status.clone(), prometheus)
}

/// After the stages ended: say what stays in the spool; with `capture.on_eos = "idle"`
/// and the source at its end, keep serving HTTP until the stop.
fn finish(
    cfg: &Config,
    status: &Status,
    sup: &Supervisor,
    ended: &Option<Result<capture::Ended, capture::CaptureError>>,
) {
    let (left, _) = status.spool.len();
    if left > 0 {
        tracing::warn!(frames = left, "frames stay in the spool for the next start");
    }
    status
        .drained
        .store(true, std::sync::atomic::Ordering::Relaxed);
    if matches!(ended, Some(Ok(capture::Ended::EndOfStream)))
        && cfg.capture.on_eos == crate::config::OnEos::Idle
        && sup.died().is_none()
    {
        tracing::info!("source ended and every frame is delivered; serving HTTP until stopped");
        sup.stop.sleep(Duration::MAX);
    }
}

fn summary(status: &Status, scored: u64, latencies: &DurationWindow) -> Summary {
    use std::sync::atomic::Ordering::Relaxed;
    let capture = &status.capture;
    Summary {
        captured: capture.captured.load(Relaxed),
        scored,
        selected: status.forwarded_total(),
        delivered: status.delivered_everywhere(),
        latency_p50: latencies.quantile(0.5).unwrap_or_default(),
        latency_p99: latencies.quantile(0.99).unwrap_or_default(),
        generator_cpu: Duration::from_nanos(capture.generator_cpu_ns.load(Relaxed)),
        generator_skipped: capture.generator_skipped.load(Relaxed),
        overlay: status.overlay.as_ref().map(|o| OverlaySummary {
            frames_rendered: o.frames_rendered(),
            delay_p50: o.delay_quantile(0.5),
            delay_p99: o.delay_quantile(0.99),
            score_age_p50: o.score_age_quantile(0.5),
            score_age_p99: o.score_age_quantile(0.99),
        }),
    }
}

fn load_model(cfg: &Config) -> Result<Option<ModelRunner>, AgentError> {
    if !cfg.model.enabled {
        tracing::warn!("model disabled: scoring with classical measures only");
        return Ok(None);
    }
    crate::notify::status(&format!("loading model {}", cfg.model.path.display()));
    let m = ModelRunner::load(&cfg.model.path)?;
    let man = m.manifest();
    tracing::info!(path = %cfg.model.path.display(), name = %man.name, version = %man.version, "model loaded");
    crate::reload::show_model(None, man);
    Ok(Some(m))
}

fn new_status(cfg: &Config, operator: Arc<Operator>, spool: Arc<SpoolHandle>) -> Status {
    let (low, high) = (cfg.select.threshold_low, cfg.select.threshold_high);
    Status::new(
        Arc::new(CaptureStats::default()),
        operator,
        cfg.display
            .enabled
            .then(|| crate::overlay::OverlayState::new(low, high)),
        (low, high),
        cfg.uplink
            .sinks
            .iter()
            .map(|k| SinkStatus::new(k.as_str()))
            .collect(),
        spool,
    )
}

/// One sink per `uplink.sinks` entry, in that order. Certificates, keys and credentials
/// are read here, so a bad path stops the agent at start with its name.
fn make_sinks(cfg: &Config, status: &Arc<Status>) -> Result<Vec<Box<dyn Sink>>, AgentError> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    for kind in &cfg.uplink.sinks {
        sinks.push(match kind {
            SinkKind::Local => {
                Box::new(Blocking::new(LocalDatalake::new(cfg.datalake.dir.clone())))
            }
            SinkKind::S3 => Box::new(Blocking::new(S3Sink::new(&cfg.s3)?)),
            SinkKind::Mqtt => {
                let st = status.clone();
                let summary: crate::uplink::mqtt::SummaryFn = Arc::new(move || {
                    serde_json::to_value(st.doc()).expect("the status serialises")
                });
                Box::new(MqttSink::new(cfg, Some(summary))?)
            }
        });
    }
    Ok(sinks)
}

/// One worker per sink. A worker that ends while the encoder still produces and no stop
/// was asked for (its spool became unreadable) has died: frames would pile up unsent.
fn start_uplinks(
    sup: &mut Supervisor,
    cfg: &Config,
    sinks: Vec<Box<dyn Sink>>,
    spool: &Arc<SpoolHandle>,
    status: &Arc<Status>,
) -> Result<Vec<JoinHandle<()>>, AgentError> {
    let retry = worker::Retry::from(&cfg.uplink);
    let mut threads = Vec::new();
    for (i, sink) in sinks.into_iter().enumerate() {
        let (spool, status, stop) = (spool.clone(), status.clone(), sup.stop.clone());
        let died = sup.died.clone();
        threads.push(sup.spawn("uplink", move || {
            worker::run_sink(sink, &spool, retry, &stop, &status.sinks[i]);
            if !spool.producer_done() && !stop.is_stopped() {
                Supervisor::record_death(&died, &stop, "uplink");
            }
        })?);
    }
    Ok(threads)
}

fn open_spool(cfg: &Config) -> Result<Arc<SpoolHandle>, AgentError> {
    use metrics::counter;
    let (spool, rec) = crate::spool::Spool::open(crate::spool::SpoolConfig::from(cfg))?;
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

/// The HTTP thread: the listener (bound here, so a taken port fails the start) and the
/// 1 s upkeep, until the stop. A server that ends before the stop has died.
fn start_http(
    sup: &mut Supervisor,
    http: &crate::config::HttpConfig,
    app: axum::Router,
    status: Arc<Status>,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
) -> Result<JoinHandle<()>, AgentError> {
    let listen = &http.listen;
    let listen_err = |source| AgentError::Listen {
        addr: listen.to_string(),
        source,
    };
    // Read before the port is bound: a bad certificate or key stops the start, naming it.
    let tls = match http.tls() {
        Some((cert, key)) => Some(Arc::new(
            crate::tls::server_config(cert, key).map_err(AgentError::Tls)?,
        )),
        None => None,
    };
    let std_listener = std::net::TcpListener::bind(listen).map_err(listen_err)?;
    std_listener.set_nonblocking(true).map_err(listen_err)?;
    let addr = std_listener.local_addr().map_err(listen_err)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("http listening on {scheme}://{addr}");
    let (stop, died) = (sup.stop.clone(), sup.died.clone());
    sup.spawn("http", move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            tokio::spawn(upkeep(status, prometheus, stop.clone()));
            crate::http::serve(listener, app, stop.stopped(), tls).await;
        });
        if !stop.is_stopped() {
            Supervisor::record_death(&died, &stop, "http");
        }
    })
}

/// Once a second: the fps and spool-age gauges, the watchdog while no frames come on
/// purpose, the systemd status line, and the exporter's housekeeping.
async fn upkeep(
    status: Arc<Status>,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
    stop: Shutdown,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut last = (Instant::now(), status.capture.captured.load(Relaxed));
    let mut tick = 0u64;
    while !stop.is_stopped() {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.stopped() => return,
        }
        tick += 1;
        // No frames on purpose (camera retry, or a finished source idling): the process
        // is alive, so keep the watchdog fed; frames themselves are fed by the scorer.
        let state = status.capture.state();
        if state == "backoff" || (state == "stopped" && status.drained.load(Relaxed)) {
            crate::notify::watchdog();
        }
        if tick.is_multiple_of(5) {
            crate::notify::status(&status.status_line());
        }
        let now = (Instant::now(), status.capture.captured.load(Relaxed));
        let fps = (now.1 - last.1) as f64 / (now.0 - last.0).as_secs_f64();
        status.fps_milli.store((fps * 1000.0) as u64, Relaxed);
        gauge!("endo_agent_capture_fps").set(fps);
        let now_ms = Utc::now().timestamp_millis().max(0) as u64;
        gauge!("endo_agent_spool_oldest_age_seconds")
            .set(status.spool.oldest_age(now_ms).as_secs_f64());
        prometheus.run_upkeep();
        last = now;
    }
}

/// Closes the spool when the encoder ends, also by a panic: the uplink workers wait for
/// the close to finish.
struct CloseOnDrop(Arc<SpoolHandle>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The agent's threads: each is named, each one's death (a panic, or an early end its
/// closure reports) stops the agent and is remembered for [`Supervisor::result`].
struct Supervisor {
    stop: Shutdown,
    died: Arc<Mutex<Option<&'static str>>>,
}

/// Notes a thread that unwinds: the other threads wind down on the stop.
struct DeathWatch {
    name: &'static str,
    stop: Shutdown,
    died: Arc<Mutex<Option<&'static str>>>,
}

impl Drop for DeathWatch {
    fn drop(&mut self) {
        if thread::panicking() {
            Supervisor::record_death(&self.died, &self.stop, self.name);
        }
    }
}

impl Supervisor {
    fn new(stop: Shutdown) -> Supervisor {
        Supervisor {
            stop,
            died: Arc::new(Mutex::new(None)),
        }
    }

    fn spawn<T: Send + 'static>(
        &mut self,
        name: &'static str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<JoinHandle<T>, AgentError> {
        let watch = DeathWatch {
            name,
            stop: self.stop.clone(),
            died: self.died.clone(),
        };
        thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _watch = watch;
                #[cfg(test)]
                tests::fault(name);
                f()
            })
            .map_err(|source| AgentError::Thread { name, source })
    }

    fn record_death(died: &Mutex<Option<&'static str>>, stop: &Shutdown, name: &'static str) {
        tracing::error!("the {name} thread died: stopping the agent");
        // A poisoned lock only means another thread died while noting it.
        let mut d = died.lock().unwrap_or_else(|e| e.into_inner());
        d.get_or_insert(name);
        drop(d);
        stop.stop();
    }

    /// The thread's result; None when it panicked (already noted by its watch).
    fn join<T>(&self, t: JoinHandle<T>) -> Option<T> {
        t.join().ok()
    }

    fn died(&self) -> Option<&'static str> {
        *self.died.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Err naming the first thread that died, if any did.
    fn result(&self) -> Result<(), AgentError> {
        match self.died() {
            Some(name) => Err(AgentError::ThreadDied { name }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread a test wants to panic at its start ("" = none).
    static FAULT: Mutex<&str> = Mutex::new("");

    pub(super) fn fault(name: &'static str) {
        let armed = *FAULT.lock().unwrap();
        if armed == name {
            panic!("test fault injected into the {name} thread");
        }
    }

    fn phantom_config(dir: &std::path::Path) -> Config {
        let mut cfg = Config::default();
        cfg.source.kind = crate::config::SourceKind::Phantom;
        cfg.model.enabled = false;
        cfg.spool.dir = dir.join("spool");
        cfg.datalake.dir = dir.join("lake");
        cfg.http.listen = "127.0.0.1:0".into();
        cfg
    }

    /// One test, so that the armed fault cannot leak into a parallel run of another.
    #[test]
    fn a_dying_essential_thread_stops_the_agent_with_an_error_naming_it() {
        for name in ["score", "encode", "uplink", "preview", "capture"] {
            let dir = tempfile::tempdir().unwrap();
            *FAULT.lock().unwrap() = name;
            let stop = Shutdown::new();
            let guard = stop.clone();
            // Should the stop not come, the test ends anyway (and fails below).
            std::thread::spawn(move || {
                guard.sleep(Duration::from_secs(60));
                guard.stop();
            });
            let t0 = Instant::now();
            let r = run(phantom_config(dir.path()), stop.clone());
            *FAULT.lock().unwrap() = "";
            stop.stop();
            match r {
                Err(AgentError::ThreadDied { name: n }) => assert_eq!(n, name),
                other => panic!("{name}: expected ThreadDied, got {other:?}"),
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{name}: {:?}",
                t0.elapsed()
            );
        }
    }
}
