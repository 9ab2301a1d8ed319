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
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::agent::Shared;
use crate::operator::{AnnotationRequest, Command, OperatorError};

/// How long an operator request waits for the score thread.
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);
/// Interval at which the event stream looks for changes.
const EVENT_TICK: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    /// Required bearer token, when configured.
    pub token: Option<Arc<str>>,
    /// Set when the agent stops: event streams end so the server can shut down.
    pub stop: Arc<AtomicBool>,
}

pub fn router(shared: Arc<Shared>, token: Option<String>, stop: Arc<AtomicBool>) -> Router {
    // Both exist from the start, so dashboards and alerts see a series.
    metrics::gauge!("endo_agent_web_clients").set(0.0);
    metrics::counter!("endo_agent_http_unauthorized_total").increment(0);
    let state = AppState {
        shared,
        token: token.map(Arc::from),
        stop,
    };
    let operator = Router::new()
        .route("/api/operator", get(operator_info))
        .route("/api/events", get(events))
        .route("/api/frames/{id}/preview.jpg", get(preview))
        .route("/api/mark", post(mark))
        .route("/api/freeze", post(freeze))
        .route("/api/annotations", post(annotate))
        .route("/api/session/start", post(session_start))
        .route("/api/session/end", post(session_end))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/status", get(status))
        .merge(operator)
        .with_state(state)
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given.trim().as_bytes(), token.as_bytes()) {
            metrics::counter!("endo_agent_http_unauthorized_total").increment(1);
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(serde_json::json!({"error": "a valid bearer token is required (http.token)"})),
            )
                .into_response();
        }
    }
    next.run(req).await
}

impl IntoResponse for OperatorError {
    fn into_response(self) -> Response {
        let status = match self {
            OperatorError::Invalid(_) => StatusCode::BAD_REQUEST,
            OperatorError::UnknownFrame(_) => StatusCode::NOT_FOUND,
            OperatorError::Conflict(_) => StatusCode::CONFLICT,
            OperatorError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, Json(serde_json::json!({"error": self.to_string()}))).into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.shared.prometheus.render(),
    )
        .into_response()
}

async fn readyz(State(s): State<AppState>) -> Response {
    match s.shared.not_ready_reason() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn status(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(s.shared.status_json())
}

async fn index() -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(include_str!("web/index.html")),
    )
        .into_response()
}

async fn operator_info(State(s): State<AppState>) -> Json<serde_json::Value> {
    let cfg = &s.shared.operator.cfg;
    let (low, high) = s.shared.thresholds;
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

/// The web view's live state: score, reasons, counters and the newest preview.
fn live_state(s: &Shared) -> serde_json::Value {
    let latest = *s.latest.lock().expect("status lock");
    let (low, high) = s.thresholds;
    let op = &s.operator;
    let p = op.procedure();
    let preview = op.recent.lock().expect("recent lock").latest();
    serde_json::json!({
        "score": latest.map(|l| serde_json::json!({
            "quality": l.score.quality,
            "level": if l.score.quality >= high { "good" } else if l.score.quality >= low { "fair" } else { "bad" },
            "reasons": l.score.reasons().map(|a| a.as_str()).collect::<Vec<_>>(),
            "at": crate::record::format_time(l.at),
            "t_ms": l.at.timestamp_millis(),
        })),
        "source": s.capture.state(),
        "fps": (s.fps_milli.load(Ordering::Relaxed) as f64 / 100.0).round() / 10.0,
        "procedure": {
            "session": p.session,
            "active": p.active,
            "started_at": p.started_at,
            "counters": op.counters_json(),
        },
        "spool_frames": s.spool.len().0,
        "delivered": s.delivered_everywhere(),
        "preview": preview.map(|f| serde_json::json!({
            "id": f.id,
            "width": f.preview_size.0,
            "height": f.preview_size.1,
            "crop_width": f.crop_size().0,
            "crop_height": f.crop_size().1,
            "quality": f.score.quality,
            "captured_at": crate::record::format_time(f.captured_at),
        })),
    })
}

async fn events(
    State(s): State<AppState>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let clients = metrics::gauge!("endo_agent_web_clients");
    clients.increment(1.0);
    let guard = ClientGuard(clients);
    let stream =
        futures_util::stream::unfold((s, None::<String>, guard), |(s, last, guard)| async move {
            loop {
                if s.stop.load(Ordering::Relaxed) {
                    return None;
                }
                let text = live_state(&s.shared).to_string();
                if last.as_deref() != Some(text.as_str()) {
                    let ev = Event::default().event("state").data(text.clone());
                    return Some((Ok(ev), (s, Some(text), guard)));
                }
                tokio::time::sleep(EVENT_TICK).await;
            }
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
}

/// Counts open event streams in `endo_agent_web_clients`.
struct ClientGuard(metrics::Gauge);
impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

async fn preview(State(s): State<AppState>, Path(file): Path<u64>) -> Response {
    let frame = s
        .shared
        .operator
        .recent
        .lock()
        .expect("recent lock")
        .get(file);
    match frame {
        Some(f) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "private, max-age=600"),
            ],
            f.preview_jpeg.clone(),
        )
            .into_response(),
        None => OperatorError::UnknownFrame(file).into_response(),
    }
}

async fn wait_reply(
    rx: tokio::sync::oneshot::Receiver<Result<crate::operator::Kept, OperatorError>>,
) -> Response {
    match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
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
    let (tx, rx) = tokio::sync::oneshot::channel();
    if let Err(e) = s.shared.operator.send(Command::Mark { reply: tx }) {
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

/// A JSON body, or the 400 that says what is wrong with it.
fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, OperatorError> {
    b.map(|Json(t)| t)
        .map_err(|e| OperatorError::Invalid(format!("request body: {}", e.body_text())))
}

async fn freeze(State(s): State<AppState>, b: Option<Json<FreezeRequest>>) -> Response {
    let req = b.map(|Json(r)| r).unwrap_or_default();
    let op = &s.shared.operator;
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
    let op = &s.shared.operator;
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
    match s.shared.operator.rotate(true) {
        Ok(p) => (StatusCode::CREATED, Json(p)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn session_end(State(s): State<AppState>) -> Response {
    match s.shared.operator.rotate(false) {
        Ok(p) => Json(p).into_response(),
        Err(e) => e.into_response(),
    }
}
