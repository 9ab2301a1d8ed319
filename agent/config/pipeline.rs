//! The sections of the data path's front: who the agent is, the source, capture, the
//! field of view, the model, scoring, selection and encoding.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Site (hospital) name; one path segment of every datalake key.
    pub site: String,
    /// Device (tower) name; one path segment of every datalake key.
    pub device: String,
    /// Procedure session id; empty = a new id at every start (UTC time + random suffix).
    pub session: String,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            site: "site".into(),
            device: "tower".into(),
            session: String::new(),
        }
    }
}

/// The source part of the pipeline; `kind` picks the template in `pipelines/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// phantom | test | file | v4l2 | decklink | rtsp
    pub kind: SourceKind,
    /// Frame width for phantom and test sources (pixels).
    pub width: u32,
    /// Frame height for phantom and test sources (pixels).
    pub height: u32,
    /// Frame rate for phantom and test sources (frames per second).
    pub fps: u32,
    /// phantom: seed of the generator.
    pub seed: u64,
    /// phantom: degradation schedule (see docs/phantom.md); empty = the built-in demo schedule.
    pub schedule: String,
    /// phantom: field-of-view shape, circle | octagon.
    pub phantom_fov: String,
    /// phantom: colours, nbi | white_light (narrow-band imaging or white light).
    pub phantom_palette: crate::phantom::Palette,
    /// phantom/test: stop after this many frames (0 = never).
    pub max_frames: u64,
    /// test: videotestsrc pattern name.
    pub pattern: String,
    /// file: path of the video file to replay.
    pub path: PathBuf,
    /// v4l2: device node.
    pub device: String,
    /// v4l2/decklink: caps to request from the device, e.g. "video/x-raw,width=1920,height=1080,framerate=60/1"; empty = let the device choose.
    pub caps: String,
    /// decklink: card number.
    pub device_number: u32,
    /// decklink: video mode (e.g. 1080p60, auto).
    pub mode: String,
    /// rtsp: stream URL.
    pub url: String,
    /// rtsp: jitter buffer latency in milliseconds.
    pub latency_ms: u32,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Phantom,
            width: 1280,
            height: 720,
            fps: 30,
            seed: 1,
            schedule: String::new(),
            phantom_fov: "circle".into(),
            phantom_palette: crate::phantom::Palette::Nbi,
            max_frames: 0,
            pattern: "smpte".into(),
            path: PathBuf::new(),
            device: "/dev/video0".into(),
            caps: String::new(),
            device_number: 0,
            mode: "auto".into(),
            url: String::new(),
            latency_ms: 200,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Phantom,
    Test,
    File,
    V4l2,
    Decklink,
    Rtsp,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Phantom => "phantom",
            SourceKind::Test => "test",
            SourceKind::File => "file",
            SourceKind::V4l2 => "v4l2",
            SourceKind::Decklink => "decklink",
            SourceKind::Rtsp => "rtsp",
        }
    }
    /// Live sources deliver frames in real time; a file is replayed at its own rate.
    pub fn is_live(self) -> bool {
        !matches!(self, SourceKind::File)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// A pipeline template file to use instead of the built-in one for `source.kind`.
    pub template: Option<PathBuf>,
    /// Frames waiting for the scorer; when full the oldest is dropped (counted).
    pub queue_frames: usize,
    /// What to do when the source ends: restart (with backoff) | stop (deliver, exit) | idle (deliver, keep serving HTTP).
    pub on_eos: OnEos,
    /// First restart delay after a source failure, milliseconds.
    pub backoff_initial_ms: u64,
    /// Longest restart delay, milliseconds.
    pub backoff_max_ms: u64,
    /// A source that ran this long without failing resets the backoff, milliseconds.
    pub backoff_reset_after_ms: u64,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            template: None,
            queue_frames: 4,
            on_eos: OnEos::Restart,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            backoff_reset_after_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnEos {
    /// Restart the source (with backoff): live cameras.
    Restart,
    /// Deliver everything, then exit.
    Stop,
    /// Deliver everything, then keep serving HTTP until stopped.
    Idle,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FovConfig {
    /// auto (find the field of view from the dark border) | fixed (use `rect`) | full (whole frame).
    pub mode: FovMode,
    /// fixed: [x, y, width, height] in frame pixels. Clipped to the frame; a rect that does
    /// not overlap the frame by at least 16x16 is refused at run time (frames not scored).
    pub rect: Option<[u32; 4]>,
    /// rect | circle: with circle, pixels outside the ellipse inscribed in the rectangle are
    /// ignored by the measures and blacked out in every written frame.
    pub shape: FovShape,
    /// Extra rectangles [x, y, width, height] (frame pixels) blacked out before anything is
    /// written; a mask partly outside the frame is clipped to it.
    pub masks: Vec<[u32; 4]>,
    /// auto: luma above min(this, video black + 16) is "inside the image" (at least black + 8).
    pub auto_threshold: u8,
    /// auto: frames to look at before the first attempt to lock the field of view.
    pub auto_frames: u32,
    /// auto: pixels trimmed from each side of the detected field of view (0..=64).
    pub auto_margin: u32,
    /// auto: after the lock, look again every this many frames and re-lock when the field of
    /// view changed (or unlock when text shows inside it); 0 = never.
    pub auto_recheck_frames: u32,
}

impl Default for FovConfig {
    fn default() -> Self {
        FovConfig {
            mode: FovMode::Auto,
            rect: None,
            shape: FovShape::Circle,
            masks: Vec::new(),
            auto_threshold: 40,
            auto_frames: 8,
            auto_margin: 4,
            auto_recheck_frames: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FovMode {
    Auto,
    Fixed,
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FovShape {
    Rect,
    Circle,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Path of the ONNX model; its manifest is `<stem>.manifest.json` beside it.
    pub path: PathBuf,
    /// Run the model at all (false = classical measures only).
    pub enabled: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            path: PathBuf::from("/usr/share/endo-agent/models/quality-int8.onnx"),
            enabled: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringConfig {
    /// Sharpness (noise-free difference-energy ratio at native resolution) at or above which blur = 0.
    pub sharpness_good: f32,
    /// Sharpness at or below which blur = 1.
    pub sharpness_bad: f32,
    /// Isotropy (fine-scale over coarse-scale directional balance) at or above which
    /// motion blur = 0.
    pub isotropy_good: f32,
    /// Isotropy at or below which motion blur = 1.
    pub isotropy_bad: f32,
    /// Luma below this counts as dark.
    pub dark_level: u8,
    /// Dark fraction of the field of view at which dark = 0 / dark = 0.5 (a soft curve,
    /// towards 1 beyond; `score::classical::soft`).
    pub dark_fraction: [f32; 2],
    /// Mean luma of the field of view at which dark = 0.5 / dark = 0 (soft, towards 1 as
    /// the mean falls further: a dim frame with no black area is as unusable as one with
    /// a black half).
    pub dark_mean_luma: [f32; 2],
    /// Luma at or above this counts as clipped.
    pub clip_level: u8,
    /// Clipped fraction at which overexposed = 0 / = 0.5 (soft).
    pub clipped_fraction: [f32; 2],
    /// Mean luma of the field of view at which overexposed = 0 / = 0.5 (soft; washed out
    /// before much of it clips).
    pub overexposed_mean_luma: [f32; 2],
    /// Specular (clipped and colourless) fraction at which glare = 0 / = 0.5 (soft).
    pub specular_fraction: [f32; 2],
    /// Mean Cb − mean Cr (blue over red cast) at which outside = 0 / = 1.
    pub outside_cast: [f32; 2],
    /// Estimated noise σ (luma code values, flattest blocks) at which noise = 0 / = 0.5
    /// (soft).
    pub noise_sigma: [f32; 2],
    /// 8-pixel block-grid strength (compression) at which noise = 0 / = 0.5 (soft).
    pub blockiness: [f32; 2],
    /// quality = classical × model ^ model_weight (0..1; 1 = plain product, 0 = ignore
    /// the model's quality; its artifacts still count as reasons).
    pub model_weight: f32,
    /// An artifact at or above this value is a reason code in the record.
    pub reason_threshold: f32,
    /// Row step of the sharpness measure (1 = every row, 2 = every other row).
    pub sharpness_row_step: u32,
    /// Sharpness relative to the session's reference at which defocus = 1 / = 0.
    pub relative_sharpness: [f32; 2],
    /// The session's sharpness reference is taken over this many recent well-exposed frames.
    pub reference_frames: u32,
    /// ... once at least this many were seen (before that, only the absolute ramp counts).
    pub reference_min_frames: u32,
    /// ... as this percentile of their sharpness (0..1).
    pub reference_percentile: f32,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            sharpness_good: 0.41,
            sharpness_bad: 0.38,
            isotropy_good: 0.4,
            isotropy_bad: 0.2,
            dark_level: 40,
            dark_fraction: [0.25, 0.6],
            dark_mean_luma: [60.0, 80.0],
            clip_level: 235,
            clipped_fraction: [0.05, 0.3],
            overexposed_mean_luma: [135.0, 180.0],
            specular_fraction: [0.005, 0.02],
            outside_cast: [0.0, 12.0],
            noise_sigma: [4.0, 10.5],
            blockiness: [1.05, 2.4],
            model_weight: 0.5,
            reason_threshold: 0.5,
            sharpness_row_step: 2,
            relative_sharpness: [0.65, 0.85],
            reference_frames: 300,
            reference_min_frames: 8,
            reference_percentile: 0.9,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectConfig {
    /// Quality at or above which the selector turns "good".
    pub threshold_high: f32,
    /// Quality below which it turns "bad" again (hysteresis).
    pub threshold_low: f32,
    /// Only the best frame of each window this long is forwarded, milliseconds.
    pub window_ms: u64,
    /// At most this many frames per second are forwarded.
    pub max_per_second: f32,
    /// Frames whose 64-bit difference hash is within this many bits of the last forwarded frame are duplicates (0 = off).
    pub duplicate_bits: u32,
    /// A near-duplicate is forwarded anyway when no frame was forwarded for this many
    /// seconds (a still scene then keeps a frame every N s instead of one in all; 0 = never).
    pub duplicate_resend_s: u32,
    /// Forward frames under this light only: `any`, `nbi` or `white` ([`crate::light`]).
    pub light: crate::light::LightFilter,
}

impl Default for SelectConfig {
    fn default() -> Self {
        SelectConfig {
            threshold_high: 0.6,
            threshold_low: 0.5,
            window_ms: 1000,
            max_per_second: 2.0,
            duplicate_bits: 4,
            duplicate_resend_s: 10,
            light: crate::light::LightFilter::Any,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncodeConfig {
    /// JPEG quality 1..100.
    pub jpeg_quality: u8,
    /// Selected frames waiting for the encoder; when full, the frame is evicted and counted.
    pub queue_frames: usize,
}

impl Default for EncodeConfig {
    fn default() -> Self {
        EncodeConfig {
            jpeg_quality: 90,
            queue_frames: 8,
        }
    }
}
