//! The one HTTP listener. Bound to loopback by default (`http.listen`).
//!
//! Open to anyone who can connect:
//! - `/metrics` (Prometheus), `/healthz` (the process answers), `/readyz` (model loaded,
//!   the source delivering frames and the scorer scoring them), `/api/status` (JSON summary, no images);
//! - `/` — the web overlay page (static; it fetches everything else with the token).
//!
//! The operator API, which shows patient images and changes what is stored, needs
//! `Authorization: Bearer <http.token>` whenever a token is configured (it must be when
//! the listener is not loopback):
//! - `GET /api/operator` — labels, thresholds and limits for the page;
//! - `GET /api/events` — server-sent events: `state` (score, reasons, counters, newest
//!   preview id) whenever it changes, at most 10 per second;
//! - `GET /api/frames/{id}/preview.jpg` — a recent preview (cropped, masked, scaled);
//! - `POST /api/mark` — keep the best recent frame;
//! - `POST /api/freeze` `{"frame": id}` (or `{}` = newest) — hold a frame for annotation;
//! - `POST /api/annotations` — label regions on a frozen frame (see [`crate::operator`]);
//! - `POST /api/session/start`, `POST /api/session/end` — procedure sessions.

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clip;
use crate::operator::{AnnotationRequest, Command, Operator, OperatorError};
use crate::shutdown::Shutdown;
use crate::status::Status;

/// How long an operator request waits for the score thread.
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);
/// Interval at which the event stream looks for changes.
const EVENT_TICK: Duration = Duration::from_millis(100);
/// Wrong bearer tokens one client address may present per minute; after that it gets 429
/// (valid token or not) until the minute is over. A missing token is not a guess and is
/// not counted: the page asks for the token without locking its own machine out.
pub const TOKEN_FAILURES_PER_MINUTE: u32 = 20;
/// `POST /api/mark` requests per second, from anyone, before 429 (a held key, a script).
pub const MARKS_PER_SECOND: u32 = 4;
/// Fixed-window counters per client address: at most `limit` events per `window`.
/// The lock is held for a map lookup, never across I/O; the map is pruned of expired
/// windows when it grows, so a scan of many addresses cannot grow it without bound.
pub struct Throttle {
    limit: u32,
    window: Duration,
    slots: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Throttle {
    pub fn new(limit: u32, window: Duration) -> Throttle {
        Throttle {
            limit,
            window,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// How long `ip` must wait, when it used up its window.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let slots = self.slots.lock().expect("throttle lock");
        let &(start, n) = slots.get(&ip)?;
        let left = self.window.checked_sub(start.elapsed())?;
        (n >= self.limit).then_some(left)
    }

    /// Count one event for `ip`: its number in the current window, or how long to wait.
    pub fn hit(&self, ip: IpAddr) -> Result<u32, Duration> {
        let mut slots = self.slots.lock().expect("throttle lock");
        if slots.len() >= 4096 {
            slots.retain(|_, (start, _)| start.elapsed() < self.window);
            if slots.len() >= 4096 {
                slots.clear();
            }
        }
        let slot = slots.entry(ip).or_insert((Instant::now(), 0));
        if slot.0.elapsed() >= self.window {
            *slot = (Instant::now(), 0);
        }
        if slot.1 >= self.limit {
            return Err(self.window.saturating_sub(slot.0.elapsed()));
        }
        slot.1 += 1;
        Ok(slot.1)
    }
}

/// 429 with `Retry-After` in whole seconds (at least 1) and a JSON reason.
fn too_many(wait: Duration, why: &str) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, secs.max(1).to_string())],
        Json(serde_json::json!({"error": format!("{why}; retry in {} s", secs.max(1))})),
    )
        .into_response()
}

#[derive(Clone)]
pub struct AppState {
    pub status: Arc<Status>,
    pub prometheus: metrics_exporter_prometheus::PrometheusHandle,
    /// Required bearer token, when configured.
    pub token: Option<Arc<str>>,
    /// The agent's stop: event streams end so the server can shut down.
    pub stop: Shutdown,
    /// Wrong tokens per client address ([`TOKEN_FAILURES_PER_MINUTE`]).
    pub token_failures: Arc<Throttle>,
    /// Marks, counted under one address for all clients ([`MARKS_PER_SECOND`]).
    pub marks: Arc<Throttle>,
    /// `model.path`, reloaded by `POST /api/model/reload` (None: the model is disabled).
    pub model_path: Option<Arc<std::path::Path>>,
}

pub fn router(
    status: Arc<Status>,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
    token: Option<String>,
    stop: Shutdown,
    model_path: Option<std::path::PathBuf>,
) -> Router {
    // Both exist from the start, so dashboards and alerts see a series.
    metrics::gauge!("endo_agent_web_clients").set(0.0);
    metrics::counter!("endo_agent_http_unauthorized_total").increment(0);
    for route in ["token", "mark"] {
        metrics::counter!("endo_agent_http_throttled_total", "reason" => route).increment(0);
    }
    let state = AppState {
        status,
        prometheus,
        token: token.map(Arc::from),
        stop,
        token_failures: Arc::new(Throttle::new(
            TOKEN_FAILURES_PER_MINUTE,
            Duration::from_secs(60),
        )),
        marks: Arc::new(Throttle::new(MARKS_PER_SECOND, Duration::from_secs(1))),
        model_path: model_path.map(Arc::from),
    };
    let operator = Router::new()
        .route("/api/operator", get(operator_info))
        .route("/api/events", get(events))
        .route("/api/procedures/last", get(last_procedure))
        .route("/api/frames/{id}/preview.jpg", get(preview))
        .route("/api/mark", post(mark))
        .route("/api/freeze", post(freeze))
        .route("/api/annotations", post(annotate))
        .route("/api/session/start", post(session_start))
        .route("/api/session/end", post(session_end))
        .route("/api/model/reload", post(model_reload))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/status", get(status_doc))
        .merge(operator)
        .layer(middleware::from_fn(limit_body))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The largest request body any route takes (annotations are the largest real ones).
pub const MAX_BODY: usize = 2 << 20;

/// A refused body up to this size is read and dropped before the 413, so that a client
/// still sending it sees the answer instead of a reset connection.
const DRAIN_MAX: u64 = 16 << 20;

/// Every route: a body declared larger than [`MAX_BODY`] is refused with 413 before the
/// handler runs (JSON bodies are also cut at it while read, whatever they declare). A
/// client that asked `Expect: 100-continue` never sends it; from one that did not, up to
/// [`DRAIN_MAX`] is read (for at most 5 s) and dropped, never kept.
async fn limit_body(req: Request, next: Next) -> Response {
    use futures_util::StreamExt;
    let headers = req.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(n) = declared.filter(|n| *n > MAX_BODY as u64) else {
        return next.run(req).await;
    };
    let expects = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !expects && n <= DRAIN_MAX {
        let mut data = req.into_body().into_data_stream();
        let drain = async { while let Some(Ok(_)) = data.next().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    }
    BodyError(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body: {n} bytes, more than the {MAX_BODY}-byte limit"),
    )
    .into_response()
}

/// Connections served at once. One more is closed at once (counted): a flood of idle
/// connections cannot take every file descriptor from the spool and the sinks.
pub const MAX_CONNECTIONS: usize = 256;
/// A connection must deliver a request's headers within this (idle keep-alive
/// connections included); a client sending one byte a second is closed after it.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// At a stop, connections get this long to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serve `app` on `listener` until `shutdown` completes: HTTP/1.1 with
/// [`HEADER_TIMEOUT`] and at most [`MAX_CONNECTIONS`], over TLS when `tls` is given (the
/// handshake within [`HEADER_TIMEOUT`] too; a client that does not speak TLS is dropped
/// and counted as `tls_failed`). Each request carries the peer's [`ConnectInfo`]. An
/// accept error (EMFILE when descriptors ran out) waits a little instead of spinning,
/// and is counted.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    for outcome in ["refused_busy", "accept_error", "tls_failed"] {
        metrics::counter!("endo_agent_http_connections_total", "outcome" => outcome).increment(0);
    }
    metrics::gauge!("endo_agent_http_connections").set(0.0);
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    let mut last_warning: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    metrics::counter!("endo_agent_http_connections_total", "outcome" => "accept_error").increment(1);
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        last_warning = Some(Instant::now());
                        tracing::warn!("http accept: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("endo_agent_http_connections_total", "outcome" => "refused_busy")
                .increment(1);
            drop(stream);
            continue;
        };
        metrics::gauge!("endo_agent_http_connections").increment(1.0);
        let (app, closing, tls) = (app.clone(), closing.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, app, peer, closing).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => serve_connection(s, app, peer, closing).await,
                        Ok(Err(e)) => tls_failed(peer, &e.to_string()),
                        Err(_) => tls_failed(peer, "no handshake within the header timeout"),
                    }
                }
            }
            metrics::gauge!("endo_agent_http_connections").decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Every slot back = every connection closed.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(MAX_CONNECTIONS as u32)).await;
}

/// A client that did not complete the TLS handshake (plain HTTP to the HTTPS port, an
/// untrusted certificate, a port scan): counted, logged at debug level only.
fn tls_failed(peer: SocketAddr, why: &str) {
    metrics::counter!("endo_agent_http_connections_total", "outcome" => "tls_failed").increment(1);
    tracing::debug!(%peer, "tls handshake failed: {why}");
}

/// One connection's requests, until the client closes it or the server stops (then
/// gracefully: the request in hand is answered).
async fn serve_connection<I>(
    io: I,
    app: Router,
    peer: SocketAddr,
    mut closing: tokio::sync::watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = async {
            while !*closing.borrow_and_update() {
                if closing.changed().await.is_err() {
                    return;
                }
            }
        } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.as_mut().await;
        }
    }
}

/// `POST /api/model/reload`: load `model.path` again and put it in force (see
/// [`crate::reload`]): 200 with the model, 422 naming the file and why it was refused
/// (the model in force stays), 409 when the model is disabled.
async fn model_reload(State(s): State<AppState>) -> Response {
    use crate::reload::ReloadError;
    let (path, op) = (s.model_path.clone(), s.status.operator.clone());
    let done = tokio::task::spawn_blocking(move || crate::reload::reload(path.as_deref(), &op));
    let (status, error) = match done.await {
        Ok(Ok(model)) => return Json(serde_json::json!({ "model": model })).into_response(),
        Ok(Err(e @ ReloadError::Model(_))) => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Ok(Err(e @ ReloadError::Disabled)) => (StatusCode::CONFLICT, e.to_string()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    (status, Json(serde_json::json!({ "error": clip(&error) }))).into_response()
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization` header: the scheme is case-insensitive (RFC 9110),
/// `Bearer`, `bearer` and `BEARER` alike. None when there is no bearer token at all.
fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

async fn require_token(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = &s.token else {
        return next.run(req).await;
    };
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    if let Some(wait) = s.token_failures.blocked(ip) {
        metrics::counter!("endo_agent_http_throttled_total", "reason" => "token").increment(1);
        return too_many(wait, "too many wrong bearer tokens from this address");
    }
    let given = bearer(&req);
    if given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
        return next.run(req).await;
    }
    metrics::counter!("endo_agent_http_unauthorized_total").increment(1);
    if given.is_some() {
        // A guess: counted, and logged twice per address and minute at most (the first
        // one, and the one that uses up the budget), never with the token itself.
        let path = clip(req.uri().path());
        match s.token_failures.hit(ip) {
            Ok(1) => tracing::warn!("{ip}: a wrong bearer token for {path}"),
            Ok(n) if n == TOKEN_FAILURES_PER_MINUTE => tracing::warn!(
                "{ip}: {n} wrong bearer tokens within a minute; refusing it (429) for the rest of the minute"
            ),
            _ => {}
        }
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({"error": "a valid bearer token is required (http.token)"})),
    )
        .into_response()
}

impl IntoResponse for OperatorError {
    fn into_response(self) -> Response {
        let status = match self {
            OperatorError::Invalid(_) => StatusCode::BAD_REQUEST,
            OperatorError::UnknownFrame(_) => StatusCode::NOT_FOUND,
            OperatorError::Conflict(_) => StatusCode::CONFLICT,
            OperatorError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (
            status,
            Json(serde_json::json!({"error": clip(&self.to_string())})),
        )
            .into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    metrics_page(&s.prometheus)
}

async fn readyz(State(s): State<AppState>) -> Response {
    readiness(s.status.not_ready_reason())
}

/// `/metrics`: the recorder's text exposition (the agent's and ingest's listeners).
pub fn metrics_page(prometheus: &metrics_exporter_prometheus::PrometheusHandle) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prometheus.render(),
    )
        .into_response()
}

/// `/readyz`: 200 "ready", or 503 "not ready: {why}".
pub fn readiness(not_ready: Option<&str>) -> Response {
    match not_ready {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn status_doc(State(s): State<AppState>) -> Json<crate::status::StatusDoc> {
    Json(s.status.doc())
}

/// The record of the last procedure that ended (404 before the first one ends).
async fn last_procedure(State(s): State<AppState>) -> Response {
    let last = s
        .status
        .last_procedure
        .lock()
        .expect("procedure lock")
        .clone();
    match last {
        Some(rec) => Json(&*rec).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "no procedure has ended since the agent started"})),
        )
            .into_response(),
    }
}

async fn index() -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(include_str!("web/index.html")),
    )
        .into_response()
}

async fn operator_info(State(s): State<AppState>) -> Json<serde_json::Value> {
    let cfg = &s.status.operator.cfg;
    let (low, high) = s.status.thresholds;
    Json(serde_json::json!({
        "labels": cfg.labels,
        "max_shapes": cfg.max_shapes,
        "max_points": crate::operator::MAX_POINTS,
        "preview_fps": cfg.preview_fps,
        "mark_window_ms": cfg.mark_window_ms,
        "threshold_low": round3(low),
        "threshold_high": round3(high),
    }))
}

/// An f32 setting as the decimal a person wrote (0.6, not 0.6000000238).
fn round3(v: f32) -> f64 {
    (v as f64 * 1000.0).round() / 1000.0
}

async fn events(
    State(s): State<AppState>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let guard = ClientGuard::open(s.status.operator.clone());
    let stream =
        futures_util::stream::unfold((s, None::<String>, guard), |(s, last, guard)| async move {
            loop {
                if s.stop.is_stopped() {
                    return None;
                }
                let text = serde_json::to_string(&s.status.live()).expect("status serialises");
                if last.as_deref() != Some(text.as_str()) {
                    let ev = Event::default().event("state").data(text.clone());
                    return Some((Ok(ev), (s, Some(text), guard)));
                }
                tokio::select! {
                    _ = tokio::time::sleep(EVENT_TICK) => {}
                    _ = s.stop.stopped() => {}
                }
            }
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
}

/// Counts an open event stream in `endo_agent_web_clients` and in the operator's
/// `web_clients` (which turns the preview encoding on) while it lives.
struct ClientGuard(Arc<Operator>);
impl ClientGuard {
    fn open(op: Arc<Operator>) -> ClientGuard {
        op.web_clients.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("endo_agent_web_clients").increment(1.0);
        ClientGuard(op)
    }
}
impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.web_clients.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("endo_agent_web_clients").decrement(1.0);
    }
}

async fn preview(State(s): State<AppState>, Path(file): Path<u64>) -> Response {
    let frame = s
        .status
        .operator
        .recent
        .lock()
        .expect("recent lock")
        .get(file);
    let Some(f) = frame else {
        return OperatorError::UnknownFrame(file).into_response();
    };
    // Encoded already while a page watched; else encode it now, off the runtime's threads.
    let jpeg = match f.preview.get() {
        Some(j) => Ok(j.clone()),
        None => tokio::task::spawn_blocking(move || {
            f.preview_jpeg("on_request")
                .map(<[u8]>::to_vec)
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string())),
    };
    match jpeg {
        Ok(jpeg) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "private, max-age=600"),
            ],
            jpeg,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("preview: {e}\n")).into_response(),
    }
}

async fn wait_reply(
    rx: tokio::sync::oneshot::Receiver<Result<crate::operator::Kept, OperatorError>>,
) -> Response {
    match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
        Ok(Ok(Ok(kept))) if kept.already_kept => (StatusCode::OK, Json(kept)).into_response(),
        Ok(Ok(Ok(kept))) => (StatusCode::CREATED, Json(kept)).into_response(),
        Ok(Ok(Err(e))) => e.into_response(),
        Ok(Err(_)) => OperatorError::Unavailable("the agent is stopping".into()).into_response(),
        Err(_) => {
            OperatorError::Unavailable("the scorer did not answer in time (source stalled?)".into())
                .into_response()
        }
    }
}

async fn mark(State(s): State<AppState>) -> Response {
    if let Err(wait) = s.marks.hit(IpAddr::V4(Ipv4Addr::UNSPECIFIED)) {
        metrics::counter!("endo_agent_http_throttled_total", "reason" => "mark").increment(1);
        return too_many(
            wait,
            &format!("at most {MARKS_PER_SECOND} marks per second"),
        );
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    if let Err(e) = s.status.operator.send(Command::Mark { reply: tx }) {
        return e.into_response();
    }
    wait_reply(rx).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FreezeRequest {
    /// Preview id; none = the newest.
    frame: Option<u64>,
}

/// A body the API cannot use: its status and reason.
struct BodyError(StatusCode, String);

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// A JSON body, or the documented `{"error": …}` answer: 413 when it is larger than
/// [`MAX_BODY`], else 400 (not JSON, the wrong fields or types), the reason clipped.
fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, BodyError> {
    b.map(|Json(t)| t).map_err(|e| {
        let status = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        BodyError(status, clip(&format!("request body: {}", e.body_text())))
    })
}

async fn freeze(
    State(s): State<AppState>,
    b: Result<Option<Json<FreezeRequest>>, JsonRejection>,
) -> Response {
    // No body (or no JSON content type) means the newest frame, like `{}`.
    let req = match body(b.map(|o| Json(o.map(|Json(r)| r).unwrap_or_default()))) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let op = &s.status.operator;
    let mut recent = op.recent.lock().expect("recent lock");
    let id = match req.frame.or_else(|| recent.latest().map(|f| f.id)) {
        Some(id) => id,
        None => {
            return OperatorError::Conflict("no preview frame yet".into()).into_response();
        }
    };
    match recent.pin(id) {
        Some(f) => Json(serde_json::json!({
            "frame": f.id,
            "width": f.crop_size().0,
            "height": f.crop_size().1,
            "preview_width": f.preview_size.0,
            "preview_height": f.preview_size.1,
            "quality": f.score.quality,
            "reasons": f.score.reasons().map(|a| a.as_str()).collect::<Vec<_>>(),
            "captured_at": crate::record::format_time(f.captured_at),
            "preview": format!("/api/frames/{}/preview.jpg", f.id),
        }))
        .into_response(),
        None => OperatorError::UnknownFrame(id).into_response(),
    }
}

async fn annotate(
    State(s): State<AppState>,
    b: Result<Json<AnnotationRequest>, JsonRejection>,
) -> Response {
    let req = match body(b) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let op = &s.status.operator;
    let Some(frame) = op.recent.lock().expect("recent lock").get(req.frame) else {
        return OperatorError::UnknownFrame(req.frame).into_response();
    };
    let (w, h) = frame.crop_size();
    if let Err(e) = req.validate(&op.cfg, w, h) {
        return e.into_response();
    }
    let id = req.frame;
    let (tx, rx) = tokio::sync::oneshot::channel();
    if let Err(e) = op.send(Command::Annotate {
        frame,
        request: req,
        reply: tx,
    }) {
        return e.into_response();
    }
    let resp = wait_reply(rx).await;
    if resp.status() == StatusCode::CREATED {
        op.recent.lock().expect("recent lock").unpin(id);
    }
    resp
}

async fn session_start(State(s): State<AppState>) -> Response {
    match s.status.operator.rotate(true) {
        Ok(p) => (StatusCode::CREATED, Json(p)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn session_end(State(s): State<AppState>) -> Response {
    match s.status.operator.rotate(false) {
        Ok(p) => Json(p).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_counts_per_address_and_frees_it_after_the_window() {
        let t = Throttle::new(3, Duration::from_millis(200));
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        assert_eq!(t.hit(a), Ok(1));
        assert_eq!(t.hit(a), Ok(2));
        assert!(t.blocked(a).is_none());
        assert_eq!(t.hit(a), Ok(3));
        let wait = t.blocked(a).expect("blocked after 3");
        assert!(wait <= Duration::from_millis(200));
        assert!(t.hit(a).is_err());
        // Another address has its own budget.
        assert_eq!(t.hit(b), Ok(1));
        std::thread::sleep(Duration::from_millis(250));
        assert!(t.blocked(a).is_none());
        assert_eq!(t.hit(a), Ok(1));
    }

    #[test]
    fn a_scan_of_many_addresses_does_not_grow_the_throttle_without_bound() {
        let t = Throttle::new(1, Duration::from_secs(60));
        for i in 0..10_000u32 {
            let _ = t.hit(IpAddr::from(i.to_be_bytes()));
        }
        assert!(t.slots.lock().unwrap().len() <= 4096);
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_an_empty_token_is_none() {
        let req = |v: &str| {
            Request::builder()
                .header(header::AUTHORIZATION, v)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        for v in ["Bearer abc", "bearer abc", "BEARER  abc ", " Bearer abc"] {
            assert_eq!(bearer(&req(v)), Some("abc"), "{v:?}");
        }
        for v in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", "abc"] {
            assert_eq!(bearer(&req(v)), None, "{v:?}");
        }
    }

    #[test]
    fn clip_names_a_long_value_instead_of_echoing_it() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(5_000_000); // 10 MB
        let c = clip(&long);
        assert!(c.len() < 600, "{}", c.len());
        assert!(c.ends_with("(10000000 bytes in all)"), "{c}");
    }
}
