//! The one HTTP listener: `/metrics` (Prometheus), `/healthz` (the process answers),
//! `/readyz` (model loaded and the source delivering frames), `/api/status` (JSON for the
//! overlay and for people). Bound to loopback by default (`http.listen`).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

use crate::agent::Shared;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/status", get(status))
        .with_state(shared)
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.prometheus.render(),
    )
        .into_response()
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    match s.not_ready_reason() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn status(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(s.status_json())
}

async fn index() -> Html<&'static str> {
    Html(
        "<!doctype html><title>endo-agent</title><h1>endo-agent</h1><ul>\
         <li><a href=\"/metrics\">/metrics</a></li><li><a href=\"/healthz\">/healthz</a></li>\
         <li><a href=\"/readyz\">/readyz</a></li><li><a href=\"/api/status\">/api/status</a></li></ul>",
    )
}
