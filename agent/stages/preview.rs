//! The preview worker: copies a frame out of its capture buffer (so the buffer goes back
//! to the source at once), encodes the small preview JPEG of the web view while a web page
//! is connected (else the first request for it does) and adds the frame to the operator's
//! recent frames (which a freeze and an annotation use).

use crossbeam_channel::Receiver;
use metrics::histogram;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::capture::CapturedFrame;
use crate::config::OperatorConfig;
use crate::fov::Fov;
use crate::operator::{Operator, RecentFrame};
use crate::record::ModelInfo;
use crate::score::Score;

/// A frame for the web preview, as the score thread hands it over, with the model that
/// scored it.
pub type PreviewJob = (Arc<CapturedFrame>, Arc<Fov>, Score, Option<Arc<ModelInfo>>);

/// Run until the score thread hangs up.
pub fn run(cfg: &OperatorConfig, rx: Receiver<PreviewJob>, op: &Operator) {
    let preview_h = histogram!("endo_agent_stage_duration_seconds", "stage" => "preview");
    for (n, (frame, fov, score, model)) in rx.iter().enumerate() {
        let t0 = Instant::now();
        let stamps = (frame.captured_at, frame.pts_ns, frame.offset);
        let recent = Arc::new(RecentFrame::keep(
            n as u64 + 1,
            &frame.view(),
            fov,
            (score, model),
            stamps,
            cfg.preview_width,
        ));
        // The capture buffer goes back to the source at once.
        drop(frame);
        // The JPEG only while a web page shows it: without one the frame waits for a
        // freeze or a request, which encode it then (issue 14: no preview CPU unwatched).
        if op.web_clients.load(Ordering::Relaxed) > 0 {
            if let Err(e) = recent.preview_jpeg("live") {
                tracing::warn!("preview: {e}");
                continue;
            }
        }
        op.recent
            .lock()
            .expect("recent lock")
            .push(recent, cfg.recent_frames);
        preview_h.record(t0.elapsed().as_secs_f64());
    }
}
