//! `endo-agent ingest`'s own listener (`[ingest] listen`): `/metrics` (Prometheus),
//! `/healthz` (the process answers) and `/readyz` (connected to the broker, subscribed,
//! and the store took the last frame), served by [`crate::http::serve`] like the agent's.
//!
//! Metrics, all `endo_ingest_*`:
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `messages_total` | counter | frame messages received (redeliveries included) |
//! | `stored_total` | counter | frames written to the store (JPEG + record) |
//! | `duplicates_total` | counter | stored frames whose key this process stored before |
//! | `rejected_total{reason}` | counter | messages that can never be stored: `topic`, `key`, `payload`, `annotation` |
//! | `s3_put_seconds` | histogram | one frame's PUTs, successful or not |
//! | `s3_errors_total` | counter | failed frame PUTs (each is retried) |
//! | `lag_seconds` | gauge | now − the last stored frame's `captured_at` |
//! | `connected` | gauge | 1 while connected to the broker and subscribed |

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use metrics::{describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What `/readyz` answers from: set by the broker link and the store writer.
#[derive(Debug, Default)]
pub struct Health {
    connected: AtomicBool,
    store_failing: AtomicBool,
}

impl Health {
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
        metrics::gauge!("endo_ingest_connected").set(if up { 1.0 } else { 0.0 });
    }

    pub fn set_store_failing(&self, failing: bool) {
        self.store_failing.store(failing, Ordering::Relaxed);
    }

    /// None when ready, else why not.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if !self.connected.load(Ordering::Relaxed) {
            Some("not connected to the broker")
        } else if self.store_failing.load(Ordering::Relaxed) {
            Some("the store refuses frames (retrying)")
        } else {
            None
        }
    }
}

/// Every rejection reason, so that each series exists from the start.
pub const REJECT_REASONS: [&str; 4] = ["topic", "key", "payload", "annotation"];

/// Describe the metrics and create every series at zero.
pub fn init() {
    describe_counter!(
        "endo_ingest_messages_total",
        "Frame messages received from the broker (redeliveries included)."
    );
    describe_counter!(
        "endo_ingest_stored_total",
        "Frames written to the store (JPEG and record)."
    );
    describe_counter!(
        "endo_ingest_duplicates_total",
        "Stored frames whose key this process had stored before (redeliveries)."
    );
    describe_counter!(
        "endo_ingest_rejected_total",
        "Messages that can never be stored, by reason (acknowledged and dropped)."
    );
    describe_histogram!(
        "endo_ingest_s3_put_seconds",
        "One frame's PUTs to the store (JPEG, record), successful or not."
    );
    describe_counter!(
        "endo_ingest_s3_errors_total",
        "Failed frame PUTs to the store (each is retried)."
    );
    describe_gauge!(
        "endo_ingest_lag_seconds",
        "Now minus the last stored frame's capture time."
    );
    describe_gauge!(
        "endo_ingest_connected",
        "1 while connected to the broker and subscribed."
    );
    for name in [
        "endo_ingest_messages_total",
        "endo_ingest_stored_total",
        "endo_ingest_duplicates_total",
        "endo_ingest_s3_errors_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for reason in REJECT_REASONS {
        metrics::counter!("endo_ingest_rejected_total", "reason" => reason).increment(0);
    }
    metrics::gauge!("endo_ingest_connected").set(0.0);
}

#[derive(Clone)]
struct AppState {
    prometheus: PrometheusHandle,
    health: Arc<Health>,
}

/// `/metrics`, `/healthz`, `/readyz`.
pub fn router(prometheus: PrometheusHandle, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { prometheus, health })
}

async fn metrics_page(State(s): State<AppState>) -> Response {
    crate::http::metrics_page(&s.prometheus)
}

async fn readyz(State(s): State<AppState>) -> Response {
    crate::http::readiness(s.health.not_ready_reason())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_connected_and_the_store_takes_frames() {
        let h = Health::default();
        assert_eq!(h.not_ready_reason(), Some("not connected to the broker"));
        h.set_connected(true);
        assert_eq!(h.not_ready_reason(), None);
        h.set_store_failing(true);
        assert!(h.not_ready_reason().unwrap().contains("store"));
        h.set_store_failing(false);
        h.set_connected(false);
        assert!(h.not_ready_reason().unwrap().contains("broker"));
    }
}
