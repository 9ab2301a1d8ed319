//! Every figure an operator or fleet manager wants, as Prometheus metrics.
//!
//! Names are prefixed `endo_agent_`, counters end in `_total`, durations are histograms
//! in seconds. Label values are bounded (reasons, stages and states are fixed sets).
//! The exporter renders into the agent's own HTTP listener ([`crate::http`]); there is
//! no second port.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `endo_agent_build_info` | gauge (1) | `version` |
//! | `endo_agent_model_info` | gauge (1 in force, 0 replaced by a reload) | `name`, `version`, `sha256`, `quantization` |
//! | `endo_agent_model_reloads_total` | counter | `outcome` = ok, refused |
//! | `endo_agent_source_up` | gauge 0/1 | |
//! | `endo_agent_source_state` | gauge (1 for the current state) | `state` = starting, running, backoff, stopped |
//! | `endo_agent_source_restarts_total` | counter | `cause` = error, eos, stall |
//! | `endo_agent_capture_fps` | gauge | |
//! | `endo_agent_frames_captured_total` | counter | |
//! | `endo_agent_frames_dropped_total` | counter | `reason` = scorer_busy, convert_busy, fov_pending, fov_invalid, map_failed, score_failed |
//! | `endo_agent_frames_scored_total` | counter | |
//! | `endo_agent_frames_bad_total` | counter | `artifact` (primary reason of frames below threshold) |
//! | `endo_agent_frames_light_total` | counter | `light` = nbi, white: scored frames by the light the processor shows ([scoring.md](docs/scoring.md)) |
//! | `endo_agent_frames_rejected_total` | counter | `reason` = below_threshold, hysteresis, not_best_in_window, rate_limited, duplicate, light (`select.light`) |
//! | `endo_agent_frames_selected_total` | counter | |
//! | `endo_agent_frames_evicted_total` | counter | `reason` = encode_queue_full, encode_failed, spool_full, spool_write_failed, spool_unreadable |
//! | `endo_agent_frames_delivered_total` | counter | `sink` |
//! | `endo_agent_documents_delivered_total` | counter | `sink`: procedure records stored (documents, not frames; not in `frames_delivered_total`) |
//! | `endo_agent_documents_lost_total` | counter | `reason` = queue_full, spool_full, spool_write_failed: procedure records lost before the spool (logged with their key) |
//! | `endo_agent_sink_errors_total` | counter | `sink`, `reason` = io, disk_full, permission_denied, tls, connect, refused, timeout, setup |
//! | `endo_agent_uplink_dead_letter_total` | counter | `sink`, `reason` = topic_too_long, property_too_long, packet_too_large (frames that sink can never take, taken out of its queue) |
//! | `endo_agent_sink_sent_total` | counter | `sink` (sends, resends included) |
//! | `endo_agent_sink_retries_total` | counter | `sink` (resends of a frame already sent once) |
//! | `endo_agent_sink_up` | gauge 0/1 | `sink` (0 from a failure until the next delivery) |
//! | `endo_agent_sink_inflight` | gauge | `sink` (frames sent, awaiting acknowledgement) |
//! | `endo_agent_spool_records` | gauge | frames held in the spool |
//! | `endo_agent_spool_bytes` | gauge | bytes held in the spool |
//! | `endo_agent_spool_oldest_age_seconds` | gauge | age of the oldest frame held (0 when empty) |
//! | `endo_agent_spool_recovered_total` | counter | `outcome` = record, torn, corrupt (at start) |
//! | `endo_agent_quality_score` | histogram | |
//! | `endo_agent_capture_to_score_seconds` | histogram | |
//! | `endo_agent_stage_duration_seconds` | histogram | `stage` = classical, preprocess, inference, encode, write, preview |
//! | `endo_agent_fov_locked` | gauge 0/1 | |
//! | `endo_agent_fov_rect_pixels` | gauge | `edge` = x, y, width, height (the locked crop; 0 when none) |
//! | `endo_agent_fov_locks_total` | counter | `event` = lock, relock, unlock |
//! | `endo_agent_fov_rejections_total` | counter | `reason` = dark, too_small, off_centre, asymmetric, not_round, not_filled, text_inside, outside_frame |
//! | `endo_agent_session_frames_selected` | gauge | (this procedure session) |
//! | `endo_agent_overlay_frames_rendered_total` | counter | frames that got the on-screen overlay |
//! | `endo_agent_overlay_render_seconds` | histogram | time in the overlay's draw callback, re-render included |
//! | `endo_agent_overlay_delay_seconds` | histogram | delay the display branch adds to the video (branch entry → video sink) |
//! | `endo_agent_overlay_score_age_seconds` | histogram | age of the displayed score (its frame's arrival → draw) |
//! | `endo_agent_operator_marks_total` | counter | frames kept by an operator's "keep this frame" (docs/operator.md) |
//! | `endo_agent_operator_annotations_total` | counter | annotations stored (frame + COCO-style record) |
//! | `endo_agent_operator_annotation_shapes_total` | counter | regions in those annotations |
//! | `endo_agent_operator_sessions_total` | counter | `event` = start, end (procedure sessions) |
//! | `endo_agent_procedures_total` | counter | `ended_by` = operator_end, operator_start, agent_stop: procedures ended (each writes `procedure.json`, docs/datalake.md) |
//! | `endo_agent_procedure_last_good_ratio` | gauge | share of good frames (quality ≥ `threshold_high`) of the last procedure that ended (NaN before the first) |
//! | `endo_agent_procedure_last_duration_seconds` | gauge | its wall-clock duration |
//! | `endo_agent_procedure_last_scored_seconds` | gauge | its stream time scored |
//! | `endo_agent_procedure_last_longest_bad_seconds` | gauge | its longest run of bad frames (quality < `threshold_low`) |
//! | `endo_agent_procedure_last_bad_seconds` | gauge | `reason` (each artifact): its bad time by primary reason |
//! | `endo_agent_procedure_last_end_timestamp_seconds` | gauge | when it ended (Unix time) |
//! | `endo_agent_web_clients` | gauge | open web overlay event streams |
//! | `endo_agent_previews_encoded_total` | counter | `when` = live (a web page was connected), on_request (a freeze or a preview request for a frame kept unencoded) |
//! | `endo_agent_http_unauthorized_total` | counter | operator API requests refused for a missing or wrong token |

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the process-wide Prometheus recorder (once) and return its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.012, 0.016, 0.025, 0.05, 0.1, 0.25,
                0.5, 1.0,
            ];
            let quality: Vec<f64> = (1..=10).map(|i| i as f64 / 10.0).collect();
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("endo_agent_quality_score".into()),
                        &quality,
                    )
                })
                .expect("bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // A second install in the same process (tests) keeps the first recorder.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_gauge!(
        "endo_agent_build_info",
        "Agent build; the value is 1, the version is a label."
    );
    describe_gauge!(
        "endo_agent_model_info",
        "Quality model: 1 for the one in force, 0 for one a reload replaced."
    );
    describe_counter!(
        "endo_agent_model_reloads_total",
        "Model reloads (SIGHUP, POST /api/model/reload), by outcome: ok, or refused (the old model stays)."
    );
    describe_gauge!(
        "endo_agent_source_up",
        "1 while the capture source delivers frames."
    );
    describe_gauge!(
        "endo_agent_source_state",
        "1 for the capture source's current state."
    );
    describe_counter!(
        "endo_agent_source_restarts_total",
        "Capture pipeline restarts after an error or end of stream."
    );
    describe_gauge!(
        "endo_agent_capture_fps",
        "Frames per second arriving from the source (1 s window)."
    );
    describe_counter!(
        "endo_agent_frames_captured_total",
        "Frames delivered by the capture pipeline."
    );
    describe_counter!(
        "endo_agent_frames_dropped_total",
        "Frames dropped before scoring, by reason."
    );
    describe_counter!("endo_agent_frames_scored_total", "Frames scored.");
    describe_counter!(
        "endo_agent_frames_bad_total",
        "Scored frames below the low threshold, by primary artifact."
    );
    describe_counter!(
        "endo_agent_frames_rejected_total",
        "Scored frames not forwarded, by selection reason."
    );
    describe_counter!(
        "endo_agent_frames_selected_total",
        "Frames the selector forwarded."
    );
    describe_counter!(
        "endo_agent_frames_evicted_total",
        "Selected frames lost before reaching a sink, by reason."
    );
    describe_counter!(
        "endo_agent_frames_delivered_total",
        "Frames stored by a sink."
    );
    describe_counter!(
        "endo_agent_documents_delivered_total",
        "Procedure records stored by a sink (not frames)."
    );
    describe_counter!(
        "endo_agent_documents_lost_total",
        "Procedure records lost before the spool, by reason."
    );
    describe_counter!(
        "endo_agent_frames_light_total",
        "Scored frames by the light the processor shows (nbi, white)."
    );
    describe_counter!(
        "endo_agent_procedures_total",
        "Procedures ended (each writes procedure.json), by how they ended."
    );
    describe_gauge!(
        "endo_agent_procedure_last_good_ratio",
        "Share of good frames of the last procedure that ended (NaN before the first)."
    );
    describe_gauge!(
        "endo_agent_procedure_last_duration_seconds",
        "Wall-clock duration of the last procedure that ended."
    );
    describe_gauge!(
        "endo_agent_procedure_last_scored_seconds",
        "Stream time scored in the last procedure that ended."
    );
    describe_gauge!(
        "endo_agent_procedure_last_longest_bad_seconds",
        "Longest run of bad frames in the last procedure that ended."
    );
    describe_gauge!(
        "endo_agent_procedure_last_bad_seconds",
        "Bad time of the last procedure that ended, by primary reason."
    );
    describe_gauge!(
        "endo_agent_procedure_last_end_timestamp_seconds",
        "When the last procedure ended (Unix time)."
    );
    describe_counter!(
        "endo_agent_sink_errors_total",
        "Failed sink writes, by sink and reason."
    );
    describe_counter!(
        "endo_agent_uplink_dead_letter_total",
        "Frames a sink can never take (too large for MQTT or the broker), removed from its queue, by sink and reason."
    );
    describe_counter!(
        "endo_agent_sink_sent_total",
        "Frames sent to a sink, resends included."
    );
    describe_counter!(
        "endo_agent_sink_retries_total",
        "Resends of a frame already sent once to a sink (after a failure)."
    );
    describe_gauge!(
        "endo_agent_sink_up",
        "1 while a sink delivers; 0 from a failure until its next delivery."
    );
    describe_gauge!(
        "endo_agent_sink_inflight",
        "Frames sent to a sink and awaiting its acknowledgement."
    );
    describe_gauge!("endo_agent_spool_records", "Frames held in the disk spool.");
    describe_gauge!("endo_agent_spool_bytes", "Bytes held in the disk spool.");
    describe_gauge!(
        "endo_agent_spool_oldest_age_seconds",
        "Age of the oldest frame in the spool; 0 when empty."
    );
    describe_counter!(
        "endo_agent_spool_recovered_total",
        "Spool files found at start: records kept, torn writes removed, corrupt files set aside."
    );
    describe_histogram!(
        "endo_agent_quality_score",
        "Overall quality of scored frames (0..1)."
    );
    describe_histogram!(
        "endo_agent_capture_to_score_seconds",
        Unit::Seconds,
        "From a frame reaching the agent's appsink to its score."
    );
    describe_histogram!(
        "endo_agent_stage_duration_seconds",
        Unit::Seconds,
        "Time spent per stage and frame."
    );
    describe_gauge!(
        "endo_agent_fov_locked",
        "1 while a field of view is locked; 0 while it is looked for or refused."
    );
    describe_gauge!(
        "endo_agent_fov_rect_pixels",
        "The locked field of view's crop rectangle (edge = x, y, width, height); 0 when none."
    );
    describe_counter!(
        "endo_agent_fov_locks_total",
        "Field-of-view locks, re-locks (the view changed) and unlocks (text inside it)."
    );
    describe_counter!(
        "endo_agent_fov_rejections_total",
        "Candidate fields of view refused, by reason (one per attempt, i.e. per frame while looking)."
    );
    describe_gauge!(
        "endo_agent_session_frames_selected",
        "Frames forwarded in the current procedure session."
    );
    describe_counter!(
        "endo_agent_operator_marks_total",
        "Frames forwarded because an operator pressed \"keep this frame\"."
    );
    describe_counter!(
        "endo_agent_operator_annotations_total",
        "Operator annotations stored (frame plus COCO-style annotation record)."
    );
    describe_counter!(
        "endo_agent_operator_annotation_shapes_total",
        "Regions (rectangles, polygons) in the stored annotations."
    );
    describe_counter!(
        "endo_agent_operator_sessions_total",
        "Procedure sessions started and ended by an operator."
    );
    describe_gauge!(
        "endo_agent_web_clients",
        "Open event streams of the web overlay."
    );
    describe_counter!(
        "endo_agent_previews_encoded_total",
        "Web preview JPEGs encoded: live while a web page is connected, on request otherwise."
    );
    describe_counter!(
        "endo_agent_http_unauthorized_total",
        "Operator API requests refused for a missing or wrong bearer token."
    );
    describe_counter!(
        "endo_agent_overlay_frames_rendered_total",
        "Frames that got the on-screen quality overlay."
    );
    describe_histogram!(
        "endo_agent_overlay_render_seconds",
        Unit::Seconds,
        "Time in the overlay's draw callback per frame, re-rendering the panel included."
    );
    describe_histogram!(
        "endo_agent_overlay_delay_seconds",
        Unit::Seconds,
        "Delay the display branch adds to the video: from entering the branch to the video sink."
    );
    describe_histogram!(
        "endo_agent_overlay_score_age_seconds",
        Unit::Seconds,
        "Age of the displayed score when drawn: from its frame's arrival at the appsink."
    );
}

/// Set a one-hot state gauge: 1 for `current`, 0 for the others.
pub fn set_state(name: &'static str, all: &[&'static str], current: &str) {
    for s in all {
        metrics::gauge!(name, "state" => *s).set(if *s == current { 1.0 } else { 0.0 });
    }
}

/// The last [`DurationWindow::LEN`] durations of something measured per frame (capture →
/// score latency, the overlay's added delay and score age), for exact percentiles in run
/// summaries and benchmarks; the histograms' buckets are too coarse for that. Fixed size,
/// no allocation per sample; `push` takes `&self` so a GStreamer streaming thread can write
/// while another thread reads.
pub struct DurationWindow {
    ns: Box<[std::sync::atomic::AtomicU64]>,
    n: std::sync::atomic::AtomicUsize,
}

impl Default for DurationWindow {
    fn default() -> Self {
        DurationWindow {
            ns: (0..Self::LEN)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            n: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl DurationWindow {
    pub const LEN: usize = 8192;

    pub fn push(&self, d: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let i = self.n.fetch_add(1, Relaxed);
        self.ns[i % Self::LEN].store(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// The q-quantile (0..1) of the durations held, or None before the first.
    pub fn quantile(&self, q: f64) -> Option<std::time::Duration> {
        use std::sync::atomic::Ordering::Relaxed;
        let len = self.n.load(Relaxed).min(Self::LEN);
        if len == 0 {
            return None;
        }
        let mut v: Vec<u64> = self.ns[..len].iter().map(|a| a.load(Relaxed)).collect();
        v.sort_unstable();
        let i = ((len - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        Some(std::time::Duration::from_nanos(v[i]))
    }
}
