//! endo-agent: an edge daemon beside an endoscope.
//!
//! One frame walks the modules in this order (see `../shared/DESIGN.md`):
//!
//! 1. [`capture`] — a GStreamer pipeline from a template in `pipelines/` delivers I420
//!    frames to a bounded, leaky hand-off; a supervisor restarts a failed source with backoff.
//! 2. [`fov`] — the endoscopic field of view (fixed or found automatically) and the privacy
//!    masks: nothing outside it is scored or ever written.
//! 3. [`score`] — classical measures at native resolution plus the tract model on a
//!    downscaled copy, combined into a [`score::Score`].
//! 4. [`select`] — threshold with hysteresis, best frame per window, rate limit,
//!    near-duplicate suppression.
//! 5. [`encode`] — JPEG of the cropped, masked frame plus its JSON [`record::Record`].
//! 6. [`spool`] — every forwarded frame is durable on disk before any sink sees it.
//! 7. [`uplink`] — one worker per sink (local directory, MQTT, S3) delivers from the
//!    spool and acknowledges; [`ingest`] is the cloud end of the MQTT route.
//!
//! Alongside: [`overlay`] (the on-screen quality overlay, an optional display branch of the
//! capture pipeline), [`operator`] (keep-frame marks, annotations of lesion regions,
//! procedure sessions), [`config`], [`metrics`], [`http`] (metrics, health, the web overlay
//! and the operator API), [`phantom`] (the synthetic
//! NBI video generator used by the demo, tests and benchmarks) and [`agent`], which wires the
//! stages together for `endo-agent run`; [`light`] tags white light or NBI; [`calibrate`] runs capture and scoring on a site's
//! own recording and suggests `[scoring]` / `[select]` values for it.

pub mod artifact;
pub mod backoff;
pub mod calibrate;
pub mod capture;
pub mod config;
pub mod daemon;
pub mod encode;
pub mod font;
pub mod fov;
pub mod frame;
pub mod fsutil;
pub mod http;
pub mod ingest;
pub mod ingest_status;
pub mod light;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod operator;
pub mod overlay;
pub mod phantom;
pub mod preflight;
pub mod procedure;
pub mod record;
pub mod reload;
pub mod score;
pub mod select;
pub mod shutdown;
pub mod spool;
pub mod stages;
pub mod status;
pub mod tls;
pub mod uplink;

/// The agent's version, as recorded in every datalake record.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Longest text of a client's or a config's value echoed in an error message.
pub const ECHO_MAX: usize = 200;

/// Lower-case hex SHA-256 of `bytes`: the model file's pin and every JPEG's checksum.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// At most [`ECHO_MAX`] characters of `text`, marked when cut: a 10 MB value sent or
/// configured by mistake is named in an error, not echoed back whole.
pub fn clip(text: &str) -> String {
    clip_to(text, ECHO_MAX)
}

/// At most `max` characters of `text`, marked when cut.
pub fn clip_to(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((i, _)) => format!("{}… ({} bytes in all)", &text[..i], text.len()),
    }
}
