//! The agent's configuration: one TOML file, every key documented in
//! `config/agent.example.toml`, every field with a default.
//!
//! Parsing is strict (`deny_unknown_fields`): a misspelt key is an error that names the key
//! and the file. [`Config::load`] reads the file and validates; validation does no I/O
//! beyond that read (the model file is only opened when the agent starts). Relative paths
//! in the file are resolved against the directory the file lives in.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::frame::Rect;

/// Why a configuration was refused. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: key `{key}`: {why}")]
    Invalid {
        path: PathBuf,
        key: String,
        why: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Who this agent is: site and device names go into every datalake key.
    pub agent: AgentConfig,
    /// Where frames come from.
    pub source: SourceConfig,
    /// How the capture pipeline is run and restarted.
    pub capture: CaptureConfig,
    /// The endoscopic field of view and privacy masks.
    pub fov: FovConfig,
    /// The quality model.
    pub model: ModelConfig,
    /// Classical measures and how scores are combined.
    pub scoring: ScoringConfig,
    /// Which frames are forwarded.
    pub select: SelectConfig,
    /// JPEG encoding of selected frames.
    pub encode: EncodeConfig,
    /// The local directory datalake.
    pub datalake: DatalakeConfig,
    /// The disk spool between the encoder and the sinks.
    pub spool: SpoolSection,
    /// Which sinks deliver frames from the spool, and their retry policy.
    pub uplink: UplinkConfig,
    /// The MQTT sink (and `endo-agent ingest`).
    pub mqtt: MqttConfig,
    /// The S3 sink (and `endo-agent ingest`'s destination).
    pub s3: S3Config,
    /// The one HTTP listener (metrics, health, status, the web overlay and operator API).
    pub http: HttpConfig,
    /// The on-screen overlay: a display branch of the capture pipeline.
    pub display: DisplayConfig,
    /// The web overlay and operator marks: preview, labels, recent frames.
    pub operator: OperatorConfig,
}

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
    /// Isotropy (perpendicular gradient balance) at or above which motion blur = 0.
    pub isotropy_good: f32,
    /// Isotropy at or below which motion blur = 1.
    pub isotropy_bad: f32,
    /// Luma below this counts as dark.
    pub dark_level: u8,
    /// Dark fraction of the field of view at which dark = 0 / dark = 1.
    pub dark_fraction: [f32; 2],
    /// Mean luma of the field of view at which dark = 1 / dark = 0 (a dim frame with no
    /// black area is as unusable as one with a black half).
    pub dark_mean_luma: [f32; 2],
    /// Luma at or above this counts as clipped.
    pub clip_level: u8,
    /// Clipped fraction at which overexposed = 0 / = 1.
    pub clipped_fraction: [f32; 2],
    /// Mean luma of the field of view at which overexposed = 0 / = 1 (washed out before
    /// much of it clips).
    pub overexposed_mean_luma: [f32; 2],
    /// Specular (clipped and colourless) fraction at which glare = 0 / = 1.
    pub specular_fraction: [f32; 2],
    /// Mean Cb − mean Cr (blue over red cast) at which outside = 0 / = 1.
    pub outside_cast: [f32; 2],
    /// Estimated noise σ (luma code values, flattest blocks) at which noise = 0 / = 1.
    pub noise_sigma: [f32; 2],
    /// 8-pixel block-grid strength (compression) at which noise = 0 / = 1.
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
            isotropy_good: 0.2,
            isotropy_bad: 0.1,
            dark_level: 40,
            dark_fraction: [0.25, 0.6],
            dark_mean_luma: [40.0, 65.0],
            clip_level: 235,
            clipped_fraction: [0.05, 0.3],
            overexposed_mean_luma: [150.0, 200.0],
            specular_fraction: [0.01, 0.03],
            outside_cast: [0.0, 12.0],
            noise_sigma: [4.0, 16.0],
            blockiness: [1.5, 8.0],
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
}

impl Default for SelectConfig {
    fn default() -> Self {
        SelectConfig {
            threshold_high: 0.6,
            threshold_low: 0.5,
            window_ms: 1000,
            max_per_second: 2.0,
            duplicate_bits: 4,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatalakeConfig {
    /// Root directory of the local datalake.
    pub dir: PathBuf,
    /// First segment of every key.
    pub prefix: String,
}

impl Default for DatalakeConfig {
    fn default() -> Self {
        DatalakeConfig {
            dir: PathBuf::from("/var/lib/endo-agent/datalake"),
            prefix: "frames".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolSection {
    /// Directory of the spool (one file per pending frame).
    pub dir: PathBuf,
    /// At most this many frames are held.
    pub max_records: usize,
    /// At most this many bytes of frames are held (MiB).
    pub max_mib: u64,
    /// What goes when full: lowest_quality | oldest | newest (= drop the new frame).
    pub policy: crate::spool::EvictPolicy,
    /// Free space (MiB) kept on the spool's filesystem: a filling disk counts as a full
    /// spool, and the policy makes room.
    pub min_free_mib: u64,
}

impl Default for SpoolSection {
    fn default() -> Self {
        SpoolSection {
            dir: PathBuf::from("/var/lib/endo-agent/spool"),
            max_records: 20_000,
            max_mib: 4096,
            policy: crate::spool::EvictPolicy::LowestQuality,
            min_free_mib: 64,
        }
    }
}

/// A sink name in `uplink.sinks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    Local,
    Mqtt,
    S3,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Local => "local",
            SinkKind::Mqtt => "mqtt",
            SinkKind::S3 => "s3",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UplinkConfig {
    /// Sinks that each receive every spooled frame: any of local, mqtt, s3.
    pub sinks: Vec<SinkKind>,
    /// Retry backoff after a failed delivery: first delay, doubling (with jitter) up to max.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for UplinkConfig {
    fn default() -> Self {
        UplinkConfig {
            sinks: vec![SinkKind::Local],
            backoff_initial_ms: 200,
            backoff_max_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker host name (also the name checked in its TLS certificate).
    pub host: String,
    pub port: u16,
    /// Use TLS (the default). A plaintext connection needs tls = false *and* allow_plaintext = true.
    pub tls: bool,
    pub allow_plaintext: bool,
    /// PEM file with the CA certificate(s) that signed the broker's certificate.
    pub ca_file: PathBuf,
    /// PEM client certificate chain and private key, for brokers that require mTLS.
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    /// Optional username, and a file holding the password (never the password itself).
    pub username: String,
    pub password_file: PathBuf,
    /// MQTT client id; empty = endo-agent-{site}-{device} (ingest: endo-ingest).
    pub client_id: String,
    /// Topics: {topic_prefix}/{site}/{device}/frames | summary | status.
    pub topic_prefix: String,
    /// Frames published but not yet acknowledged (PUBACK) at any time.
    pub inflight: usize,
    pub keepalive_s: u64,
    /// Seconds between score summaries (0 = none).
    pub summary_interval_s: u64,
    /// A connection with frames unacknowledged this long is dropped and retried.
    pub ack_timeout_s: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: "localhost".into(),
            port: 8883,
            tls: true,
            allow_plaintext: false,
            ca_file: PathBuf::new(),
            client_cert_file: PathBuf::new(),
            client_key_file: PathBuf::new(),
            username: String::new(),
            password_file: PathBuf::new(),
            client_id: String::new(),
            topic_prefix: "endo".into(),
            inflight: 32,
            keepalive_s: 30,
            summary_interval_s: 10,
            ack_timeout_s: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Endpoint URL, e.g. https://s3.eu-west-1.amazonaws.com or https://minio.lan:9000.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Path-style addressing (endpoint/bucket/key): MinIO, SeaweedFS. False = virtual-hosted.
    pub path_style: bool,
    /// Allow an http:// endpoint. Off by default: frames leave the tower only encrypted.
    pub allow_plaintext: bool,
    /// PEM CA certificate(s) for a private endpoint; empty = the public web roots.
    pub ca_file: PathBuf,
    /// File with access_key_id / secret_access_key (AWS shared-credentials form);
    /// empty = the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
    pub credentials_file: PathBuf,
    /// Per-request timeout.
    pub timeout_s: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            bucket: String::new(),
            region: "us-east-1".into(),
            path_style: true,
            allow_plaintext: false,
            ca_file: PathBuf::new(),
            credentials_file: PathBuf::new(),
            timeout_s: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the one HTTP listener (metrics, health, status). Port 0 = any free port.
    pub listen: String,
    /// Bearer token the operator API and the web overlay's live data require. Required
    /// (here or in `token_file`) when `listen` is not a loopback address.
    pub token: String,
    /// File holding the token (first line), instead of `token`.
    pub token_file: PathBuf,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9464".into(),
            token: String::new(),
            token_file: PathBuf::new(),
        }
    }
}

impl HttpConfig {
    /// Whether `listen` is a loopback address (only this machine can connect).
    pub fn is_loopback(&self) -> bool {
        self.listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback())
    }
}

/// Where the on-screen overlay sits on the video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverlayPosition {
    TopLeft,
    TopRight,
    BottomLeft,
    BottomRight,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisplayConfig {
    /// Add the display branch (live video with the quality overlay) to the capture pipeline.
    pub enabled: bool,
    /// The video sink, one GStreamer element with its properties, e.g. `kmssink`,
    /// `waylandsink`, `glimagesink`, `autovideosink`, `fakesink`.
    pub sink: String,
    /// Corner of the overlay panel.
    pub position: OverlayPosition,
    /// Text scale in video pixels per font pixel; 0 = from the frame height (height / 270).
    pub scale: u32,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        DisplayConfig {
            enabled: false,
            sink: "autovideosink".into(),
            position: OverlayPosition::TopRight,
            scale: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorConfig {
    /// Labels an operator can give a drawn region (the annotation's categories, in order).
    pub labels: Vec<String>,
    /// Frames per second of the web preview.
    pub preview_fps: f32,
    /// Width in pixels of the web preview (the cropped field of view, scaled down).
    pub preview_width: u32,
    /// How many recent preview frames can be frozen and annotated (full resolution, in memory).
    pub recent_frames: usize,
    /// "Keep this frame" takes the best recent frame, at most this old (a running best
    /// that starts over when it ages out).
    pub mark_window_ms: u64,
    /// Most shapes in one annotation.
    pub max_shapes: usize,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            labels: [
                "erosion",
                "ulcer",
                "polyp",
                "suspected-neoplasia",
                "bleeding",
                "other",
            ]
            .map(String::from)
            .to_vec(),
            preview_fps: 2.0,
            preview_width: 640,
            recent_frames: 8,
            mark_window_ms: 2000,
            max_shapes: 32,
        }
    }
}

impl Config {
    /// Read, parse and validate a config file. Relative paths are resolved against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut cfg = Config::parse(&text, path, base)?;
        // A fleet shares one config; each tower's name comes from its environment
        // (k3s: the node name), checked like the file's value.
        if let Some(device) = std::env::var("ENDO_AGENT_DEVICE")
            .ok()
            .filter(|d| !d.is_empty())
        {
            if !is_key_segment(&device) {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    key: "agent.device (from ENDO_AGENT_DEVICE)".into(),
                    why: format!(
                        "{:?} must be 1-64 characters of [A-Za-z0-9._-]",
                        crate::clip(&device)
                    ),
                });
            }
            cfg.agent.device = device;
        }
        Ok(cfg)
    }

    /// Parse and validate TOML text; `path` is used in messages, `base` resolves relative paths.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            // TOML quotes the offending line: a huge one is named, not echoed.
            message: e
                .to_string()
                .trim_end()
                .lines()
                .map(crate::clip)
                .collect::<Vec<_>>()
                .join("\n"),
        })?;
        cfg.resolve_paths(base);
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if !p.as_os_str().is_empty() && p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.model.path);
        fix(&mut self.datalake.dir);
        fix(&mut self.spool.dir);
        fix(&mut self.source.path);
        fix(&mut self.mqtt.ca_file);
        fix(&mut self.mqtt.client_cert_file);
        fix(&mut self.mqtt.client_key_file);
        fix(&mut self.mqtt.password_file);
        fix(&mut self.s3.ca_file);
        fix(&mut self.s3.credentials_file);
        fix(&mut self.http.token_file);
        if let Some(t) = self.capture.template.as_mut() {
            fix(t);
        }
    }

    /// Check values that parse but make no sense. No I/O.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| invalid(path, key, why);
        for (key, v) in [
            ("agent.site", &self.agent.site),
            ("agent.device", &self.agent.device),
        ] {
            if !is_key_segment(v) {
                return bad(
                    key,
                    format!("{v:?} must be 1-64 characters of [A-Za-z0-9._-]"),
                );
            }
        }
        if !self.agent.session.is_empty() && !is_key_segment(&self.agent.session) {
            return bad(
                "agent.session",
                "must be 1-64 characters of [A-Za-z0-9._-]".into(),
            );
        }
        if !is_key_segment(&self.datalake.prefix) {
            return bad(
                "datalake.prefix",
                "must be 1-64 characters of [A-Za-z0-9._-]".into(),
            );
        }
        for (key, v, lo, hi) in self.int_ranges() {
            if !(lo..=hi).contains(&v) {
                return bad(key, format!("{v} is outside {lo}..{hi}"));
            }
        }
        for (key, v, lo, hi) in self.float_ranges() {
            // Written so that NaN fails: it compares false with everything.
            if !(v.is_finite() && v > lo && v <= hi) {
                return bad(key, format!("{v} must be above {lo} and at most {hi}"));
            }
        }
        for (key, p) in [
            ("spool.dir", &self.spool.dir),
            ("datalake.dir", &self.datalake.dir),
        ] {
            if p.as_os_str().is_empty() {
                return bad(
                    key,
                    "is empty; name a directory (an empty path would be the working directory)"
                        .into(),
                );
            }
        }
        if self.model.enabled && self.model.path.as_os_str().is_empty() {
            return bad(
                "model.path",
                "is empty; name the ONNX model, or set model.enabled = false".into(),
            );
        }
        let s = &self.source;
        if matches!(s.kind, SourceKind::Phantom | SourceKind::Test) {
            if s.width < 64 || s.height < 64 || s.width > 7680 || s.height > 4320 {
                return bad(
                    "source.width",
                    format!("{}x{} is outside 64x64..7680x4320", s.width, s.height),
                );
            }
            if !s.width.is_multiple_of(2) || !s.height.is_multiple_of(2) {
                return bad(
                    "source.width",
                    "width and height must be even (I420)".into(),
                );
            }
        }
        if s.kind == SourceKind::Phantom {
            if !s.schedule.is_empty() {
                if let Err(e) = crate::phantom::schedule::Schedule::parse(&s.schedule) {
                    return bad("source.schedule", e.to_string());
                }
            }
            if !matches!(s.phantom_fov.as_str(), "circle" | "octagon") {
                return bad(
                    "source.phantom_fov",
                    format!("{:?} is not circle or octagon", s.phantom_fov),
                );
            }
        }
        if s.kind == SourceKind::File && s.path.as_os_str().is_empty() {
            return bad(
                "source.path",
                "a file source needs the path of a video file".into(),
            );
        }
        if s.kind == SourceKind::Rtsp && !s.url.starts_with("rtsp") {
            return bad(
                "source.url",
                format!("{:?} is not an rtsp:// or rtsps:// URL", s.url),
            );
        }
        for (key, v) in [
            ("source.caps", &s.caps),
            ("source.pattern", &s.pattern),
            ("source.device", &s.device),
            ("source.mode", &s.mode),
            ("source.url", &s.url),
        ] {
            // Values are pasted into a gst-launch description; refuse what would break out of it.
            if v.contains('!') || v.contains('"') || v.contains('\n') {
                return bad(key, "must not contain '!', '\"' or newlines".into());
            }
        }
        let c = &self.capture;
        if c.backoff_initial_ms > c.backoff_max_ms {
            return bad(
                "capture.backoff_initial_ms",
                "must be at most capture.backoff_max_ms".into(),
            );
        }
        let f = &self.fov;
        if f.mode == FovMode::Fixed && f.rect.is_none() {
            return bad(
                "fov.rect",
                "fov.mode = \"fixed\" needs fov.rect = [x, y, width, height]".into(),
            );
        }
        // Geometry from input: x + width and y + height must not wrap (a wrapped mask
        // covered nothing). The frame size is only known at run time, where a rect that
        // misses the frame is refused and a mask partly outside it is clipped.
        let fits =
            |[x, y, w, h]: [u32; 4]| x.checked_add(w).is_some() && y.checked_add(h).is_some();
        if let Some(r @ [_, _, w, h]) = f.rect {
            if w < 16 || h < 16 {
                return bad("fov.rect", "width and height must be at least 16".into());
            }
            if !fits(r) {
                return bad(
                    "fov.rect",
                    format!("{r:?}: x + width and y + height must fit in 32 bits"),
                );
            }
        }
        for (i, &m) in f.masks.iter().enumerate() {
            if m[2] == 0 || m[3] == 0 {
                return bad(
                    "fov.masks",
                    format!("mask {i} {m:?} is empty (width and height must be above 0)"),
                );
            }
            if !fits(m) {
                return bad(
                    "fov.masks",
                    format!("mask {i} {m:?}: x + width and y + height must fit in 32 bits"),
                );
            }
        }
        let sc = &self.scoring;
        if !(sc.sharpness_bad.is_finite()
            && sc.sharpness_good.is_finite()
            && sc.sharpness_bad < sc.sharpness_good)
        {
            return bad(
                "scoring.sharpness_bad",
                "must be finite and below scoring.sharpness_good".into(),
            );
        }
        if !(sc.isotropy_bad.is_finite()
            && sc.isotropy_good.is_finite()
            && sc.isotropy_bad < sc.isotropy_good)
        {
            return bad(
                "scoring.isotropy_bad",
                "must be finite and below scoring.isotropy_good".into(),
            );
        }
        for (key, [a, b]) in [
            ("scoring.dark_fraction", sc.dark_fraction),
            ("scoring.clipped_fraction", sc.clipped_fraction),
            ("scoring.specular_fraction", sc.specular_fraction),
            ("scoring.outside_cast", sc.outside_cast),
            ("scoring.relative_sharpness", sc.relative_sharpness),
            ("scoring.dark_mean_luma", sc.dark_mean_luma),
            ("scoring.overexposed_mean_luma", sc.overexposed_mean_luma),
            ("scoring.noise_sigma", sc.noise_sigma),
            ("scoring.blockiness", sc.blockiness),
        ] {
            if !(a.is_finite() && b.is_finite() && a < b) {
                return bad(
                    key,
                    format!("[{a}, {b}]: two finite numbers, the first below the second"),
                );
            }
        }
        if !(0.0..=1.0).contains(&sc.model_weight) {
            return bad("scoring.model_weight", "must be within 0..1".into());
        }
        if !(0.0..=1.0).contains(&sc.reason_threshold) {
            return bad("scoring.reason_threshold", "must be within 0..1".into());
        }
        if sc.reference_min_frames > sc.reference_frames {
            return bad(
                "scoring.reference_min_frames",
                "must be within 1..scoring.reference_frames".into(),
            );
        }
        if !(0.0..=1.0).contains(&sc.reference_percentile) {
            return bad("scoring.reference_percentile", "must be within 0..1".into());
        }
        let se = &self.select;
        if !(0.0..=1.0).contains(&se.threshold_high) || !(0.0..=1.0).contains(&se.threshold_low) {
            return bad(
                "select.threshold_high",
                "thresholds must be within 0..1".into(),
            );
        }
        if se.threshold_low > se.threshold_high {
            return bad(
                "select.threshold_low",
                "must not be above select.threshold_high".into(),
            );
        }
        self.validate_uplink(path)?;
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad(
                "http.listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:9464",
                    self.http.listen
                ),
            );
        }
        self.validate_operator(path)
    }

    /// `[http]` token, `[display]` and `[operator]`.
    fn validate_operator(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| invalid(path, key, why);
        let h = &self.http;
        if !h.token.is_empty() && !h.token_file.as_os_str().is_empty() {
            return bad(
                "http.token",
                "set http.token or http.token_file, not both".into(),
            );
        }
        if !h.token.is_empty() && (h.token.len() < 16 || h.token.chars().any(|c| c.is_whitespace()))
        {
            return bad(
                "http.token",
                "must be at least 16 characters without spaces".into(),
            );
        }
        if !h.is_loopback() && h.token.is_empty() && h.token_file.as_os_str().is_empty() {
            return bad(
                "http.token",
                format!(
                    "http.listen = {:?} is reachable from other machines, so the operator API needs a bearer token: set http.token or http.token_file",
                    h.listen
                ),
            );
        }
        let d = &self.display;
        if d.enabled {
            let name = d.sink.split_whitespace().next().unwrap_or("");
            if name.is_empty() || d.sink.contains('!') || d.sink.contains('\n') {
                return bad(
                    "display.sink",
                    format!(
                        "{:?} must be one GStreamer element with its properties (no '!')",
                        d.sink
                    ),
                );
            }
        }
        let o = &self.operator;
        if o.labels.is_empty() {
            return bad("operator.labels", "list at least one label".into());
        }
        for (i, l) in o.labels.iter().enumerate() {
            if !is_key_segment(l) {
                return bad(
                    "operator.labels",
                    format!("{l:?} must be 1-64 characters of [A-Za-z0-9._-]"),
                );
            }
            if o.labels[..i].contains(l) {
                return bad("operator.labels", format!("{l:?} is listed twice"));
            }
        }
        Ok(())
    }

    fn validate_uplink(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| invalid(path, key, why);
        let sinks = &self.uplink.sinks;
        if sinks.is_empty() {
            return bad(
                "uplink.sinks",
                "list at least one of local, mqtt, s3".into(),
            );
        }
        for (i, k) in sinks.iter().enumerate() {
            if sinks[..i].contains(k) {
                return bad("uplink.sinks", format!("{} is listed twice", k.as_str()));
            }
        }
        if self.uplink.backoff_max_ms < self.uplink.backoff_initial_ms {
            return bad(
                "uplink.backoff_initial_ms",
                "must be at most uplink.backoff_max_ms".into(),
            );
        }
        if sinks.contains(&SinkKind::Mqtt) {
            self.validate_mqtt(path)?;
        }
        if sinks.contains(&SinkKind::S3) {
            self.validate_s3(path)?;
        }
        Ok(())
    }

    /// The `[mqtt]` section, checked when a sink or `ingest` uses it.
    pub fn validate_mqtt(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| invalid(path, key, why);
        let m = &self.mqtt;
        if m.host.is_empty() {
            return bad("mqtt.host", "is empty".into());
        }
        if !m.tls && !m.allow_plaintext {
            return bad(
                "mqtt.tls",
                "is false, which would send frames unencrypted; set mqtt.allow_plaintext = true as well if that is really meant".into(),
            );
        }
        if m.tls && m.ca_file.as_os_str().is_empty() {
            return bad(
                "mqtt.ca_file",
                "is empty; name the PEM file of the CA that signed the broker's certificate".into(),
            );
        }
        if m.client_cert_file.as_os_str().is_empty() != m.client_key_file.as_os_str().is_empty() {
            return bad(
                "mqtt.client_cert_file",
                "mqtt.client_cert_file and mqtt.client_key_file go together".into(),
            );
        }
        if !m.topic_prefix.split('/').all(is_key_segment) {
            return bad(
                "mqtt.topic_prefix",
                format!(
                    "{:?} must be segments of [A-Za-z0-9._-] separated by /",
                    m.topic_prefix
                ),
            );
        }
        Ok(())
    }

    /// The `[s3]` section, checked when a sink or `ingest` uses it.
    pub fn validate_s3(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| invalid(path, key, why);
        let s = &self.s3;
        let scheme = s.endpoint.split("://").next().unwrap_or("");
        if !s.endpoint.contains("://") || !(scheme == "https" || scheme == "http") {
            return bad(
                "s3.endpoint",
                format!("{:?} is not an http(s):// URL", s.endpoint),
            );
        }
        if scheme == "http" && !s.allow_plaintext {
            return bad(
                "s3.endpoint",
                format!("{:?} is plaintext http; use https, or set s3.allow_plaintext = true if that is really meant", s.endpoint),
            );
        }
        if s.bucket.is_empty() {
            return bad("s3.bucket", "is empty".into());
        }
        if s.region.is_empty() {
            return bad("s3.region", "is empty".into());
        }
        Ok(())
    }

    /// Every integer key with its accepted range (inclusive), checked by [`validate`]
    /// before anything is sized or timed by it, and listed in `config/agent.example.toml`.
    /// The bounds keep every product with them (`max_mib << 20`, `window_ms * 10^6`,
    /// queue allocations) far from overflow and from allocations that abort.
    ///
    /// [`validate`]: Config::validate
    pub fn int_ranges(&self) -> [(&'static str, u64, u64, u64); 33] {
        const H: u64 = 3_600_000; // an hour, in milliseconds
        let n = |v: usize| v as u64;
        let (s, c, f, sc) = (&self.source, &self.capture, &self.fov, &self.scoring);
        let (m, o) = (&self.mqtt, &self.operator);
        [
            ("source.fps", s.fps.into(), 1, 240),
            ("source.latency_ms", s.latency_ms.into(), 0, 60_000),
            ("source.device_number", s.device_number.into(), 0, 63),
            ("capture.queue_frames", n(c.queue_frames), 1, 64),
            ("capture.backoff_initial_ms", c.backoff_initial_ms, 1, H),
            ("capture.backoff_max_ms", c.backoff_max_ms, 1, H),
            (
                "capture.backoff_reset_after_ms",
                c.backoff_reset_after_ms,
                1,
                24 * H,
            ),
            ("fov.auto_frames", f.auto_frames.into(), 1, 10_000),
            ("fov.auto_margin", f.auto_margin.into(), 0, 64),
            (
                "fov.auto_recheck_frames",
                f.auto_recheck_frames.into(),
                0,
                1_000_000,
            ),
            (
                "scoring.sharpness_row_step",
                sc.sharpness_row_step.into(),
                1,
                8,
            ),
            (
                "scoring.reference_frames",
                sc.reference_frames.into(),
                1,
                100_000,
            ),
            (
                "scoring.reference_min_frames",
                sc.reference_min_frames.into(),
                1,
                100_000,
            ),
            ("select.window_ms", self.select.window_ms, 1, H),
            (
                "select.duplicate_bits",
                self.select.duplicate_bits.into(),
                0,
                32,
            ),
            (
                "encode.jpeg_quality",
                self.encode.jpeg_quality.into(),
                1,
                100,
            ),
            ("encode.queue_frames", n(self.encode.queue_frames), 1, 256),
            (
                "spool.max_records",
                n(self.spool.max_records),
                1,
                10_000_000,
            ),
            ("spool.max_mib", self.spool.max_mib, 1, 1 << 24),
            ("spool.min_free_mib", self.spool.min_free_mib, 0, 1 << 20),
            (
                "uplink.backoff_initial_ms",
                self.uplink.backoff_initial_ms,
                1,
                H,
            ),
            ("uplink.backoff_max_ms", self.uplink.backoff_max_ms, 1, H),
            ("mqtt.port", m.port.into(), 1, 65_535),
            ("mqtt.inflight", n(m.inflight), 1, 1000),
            ("mqtt.keepalive_s", m.keepalive_s, 5, 65_535),
            ("mqtt.summary_interval_s", m.summary_interval_s, 0, 86_400),
            ("mqtt.ack_timeout_s", m.ack_timeout_s, 1, 3600),
            ("s3.timeout_s", self.s3.timeout_s, 1, 3600),
            ("display.scale", self.display.scale.into(), 0, 16),
            ("operator.preview_width", o.preview_width.into(), 64, 1920),
            ("operator.recent_frames", n(o.recent_frames), 1, 64),
            ("operator.mark_window_ms", o.mark_window_ms, 100, 60_000),
            ("operator.max_shapes", n(o.max_shapes), 1, 256),
        ]
    }

    /// The rate keys with their accepted range (above the first bound, at most the second).
    pub fn float_ranges(&self) -> [(&'static str, f32, f32, f32); 2] {
        [
            (
                "select.max_per_second",
                self.select.max_per_second,
                0.0,
                240.0,
            ),
            ("operator.preview_fps", self.operator.preview_fps, 0.0, 15.0),
        ]
    }

    /// The fixed field-of-view rectangle, if configured.
    pub fn fov_rect(&self) -> Option<Rect> {
        self.fov.rect.map(|[x, y, w, h]| Rect::new(x, y, w, h))
    }
}

/// A datalake key segment: short, and safe in paths, S3 keys and MQTT topics.
/// A validation error for `key` of the config file `path`.
fn invalid(path: &Path, key: &str, why: String) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        path: path.to_owned(),
        key: key.to_string(),
        // The reason may quote the value: a huge one is named, not echoed.
        why: crate::clip_to(&why, 2 * crate::ECHO_MAX),
    })
}

pub fn is_key_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// The spool's bounds, from `[spool]` and the sinks of `[uplink]`.
impl From<&Config> for crate::spool::SpoolConfig {
    fn from(cfg: &Config) -> crate::spool::SpoolConfig {
        crate::spool::SpoolConfig {
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(
            text,
            Path::new("/etc/endo-agent/agent.toml"),
            Path::new("/etc/endo-agent"),
        )
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.source.kind, SourceKind::Phantom);
        assert_eq!(c.http.listen, "127.0.0.1:9464");
    }

    #[test]
    fn unknown_key_is_named_with_the_file() {
        let e = parse("[select]\nthreshold_hi = 0.7\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/endo-agent/agent.toml"), "{e}");
        assert!(e.contains("threshold_hi"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = parse("[source]\nfps = \"sixty\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("fps") || e.contains("line 2"), "{e}");
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_the_config_dir() {
        let c = parse("[model]\npath = \"m.onnx\"\n").unwrap();
        assert_eq!(c.model.path, PathBuf::from("/etc/endo-agent/m.onnx"));
    }

    #[test]
    fn non_finite_scoring_values_are_refused_naming_the_key() {
        // Issue 12 item 6: NaN compared false with everything and passed check-config.
        for (text, key) in [
            (
                "[scoring]\nnoise_sigma = [nan, 16.0]\n",
                "scoring.noise_sigma",
            ),
            ("[scoring]\nblockiness = [1.5, inf]\n", "scoring.blockiness"),
            ("[scoring]\nsharpness_good = nan\n", "scoring.sharpness_bad"),
            ("[scoring]\nisotropy_bad = -inf\n", "scoring.isotropy_bad"),
            ("[scoring]\nmodel_weight = nan\n", "scoring.model_weight"),
            ("[scoring]\nmodel_weight = 1.5\n", "scoring.model_weight"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn every_integer_key_is_refused_just_outside_its_range_naming_the_key() {
        let d = Config::default();
        for (key, v, lo, hi) in d.int_ranges() {
            assert!((lo..=hi).contains(&v), "{key}: the default {v} is refused");
            let (section, name) = key.split_once('.').unwrap();
            let outside = [lo.checked_sub(1), hi.checked_add(1)];
            for bad in outside.into_iter().flatten() {
                let text = format!("[{section}]\n{name} = {bad}\n");
                let e = parse(&text).expect_err(&text).to_string();
                // Beyond the field's type, TOML refuses it and names the line instead.
                assert!(e.contains(key) || e.contains(name), "{text}: {e}");
            }
            for good in [lo, hi] {
                let text = format!("[{section}]\n{name} = {good}\n");
                if let Err(ConfigError::Invalid { why, .. }) = parse(&text) {
                    // Only a cross-key rule (backoff initial ≤ max, min ≤ frames) may refuse it.
                    assert!(!why.contains("is outside"), "{text}: {why}");
                }
            }
        }
    }

    #[test]
    fn a_huge_value_is_named_not_echoed() {
        // Issue 12 item 10: a 10 MB value came back whole in the error.
        let huge = "x".repeat(10 << 20);
        for text in [
            format!("[agent]\nsite = \"{huge}\"\n"),
            format!("[http]\nlisten = \"{huge}\"\n"),
            format!("[agent]\nsite = {huge}\n"), // not TOML: the parser quotes the line
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.len() < 2000, "{} bytes: {}", e.len(), &e[..300]);
            assert!(e.contains("bytes in all"), "{e}");
        }
    }

    #[test]
    fn the_example_config_notes_every_range_beside_its_key() {
        let text = include_str!("../config/agent.example.toml");
        let line_of = |key: &str| {
            let (section, name) = key.split_once('.').unwrap();
            let body = text.split(&format!("\n[{section}]\n")).nth(1).unwrap();
            let body = body.split("\n[").next().unwrap();
            body.lines()
                .find(|l| l.starts_with(&format!("{name} = ")))
                .unwrap_or_else(|| panic!("{key} is not in the example"))
                .to_string()
        };
        let d = Config::default();
        for (key, _, lo, hi) in d.int_ranges() {
            let l = line_of(key);
            assert!(l.ends_with(&format!("# {lo}..{hi}")), "{key}: {l}");
        }
        for (key, _, lo, hi) in d.float_ranges() {
            let l = line_of(key);
            assert!(
                l.ends_with(&format!("# above {lo}, at most {hi}")),
                "{key}: {l}"
            );
        }
    }

    #[test]
    fn the_values_that_broke_run_are_refused_by_check_config() {
        // Issue 12 item 6: each of these passed check-config and then broke `run`.
        for (text, key) in [
            ("[spool]\nmax_mib = 17592186044416\n", "spool.max_mib"), // 2^44 << 20 wrapped to 0
            (
                "[encode]\nqueue_frames = 1000000000000\n",
                "encode.queue_frames",
            ), // aborted allocating
            (
                "[select]\nwindow_ms = 9223372036854775807\n",
                "select.window_ms",
            ), // wrapped to ~0
            ("[select]\nmax_per_second = nan\n", "select.max_per_second"),
            ("[select]\nmax_per_second = inf\n", "select.max_per_second"),
            ("[operator]\npreview_fps = nan\n", "operator.preview_fps"),
            ("[datalake]\ndir = \"\"\n", "datalake.dir"), // wrote into the working directory
            ("[spool]\ndir = \"\"\n", "spool.dir"),
            ("[model]\npath = \"\"\n", "model.path"),
        ] {
            match parse(text) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(parse("[model]\npath = \"\"\nenabled = false\n").is_ok());
    }

    #[test]
    fn invalid_values_name_the_key() {
        let e = parse("[select]\nthreshold_high = 0.4\nthreshold_low = 0.5\n").unwrap_err();
        assert!(e.to_string().contains("select.threshold_low"), "{e}");
        let e = parse("[agent]\nsite = \"a/b\"\n").unwrap_err();
        assert!(e.to_string().contains("agent.site"), "{e}");
        let e = parse("[fov]\nmode = \"fixed\"\n").unwrap_err();
        assert!(e.to_string().contains("fov.rect"), "{e}");
        // Issue 12 item 3: x + width wrapped and the mask was silently not applied.
        let e = parse("[fov]\nmasks = [[1, 0, 4294967295, 200]]\n").unwrap_err();
        assert!(e.to_string().contains("fov.masks"), "{e}");
        let e = parse("[fov]\nmasks = [[0, 0, 10, 10], [5, 5, 0, 10]]\n").unwrap_err();
        assert!(e.to_string().contains("fov.masks"), "{e}");
        let e = parse("[fov]\nmode = \"fixed\"\nrect = [4294967295, 0, 100, 100]\n").unwrap_err();
        assert!(e.to_string().contains("fov.rect"), "{e}");
        // Partly outside any frame is fine: it is clipped at run time.
        assert!(parse("[fov]\nmasks = [[1000, 0, 5000, 200]]\n").is_ok());
        assert!(parse("[fov]\nmode = \"fixed\"\nrect = [5000, 5000, 100, 100]\n").is_ok());
        let e =
            parse("[source]\nkind = \"v4l2\"\ncaps = \"video/x-raw ! fakesink\"\n").unwrap_err();
        assert!(e.to_string().contains("source.caps"), "{e}");
    }

    #[test]
    fn the_operator_sections_refuse_what_cannot_work_and_name_the_key() {
        let key_of = |text: &str| match parse(text) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{text:?} gave {other:?}"),
        };
        // Reachable from other machines: a token is required, and must be a real one.
        assert_eq!(key_of("[http]\nlisten = \"0.0.0.0:9464\"\n"), "http.token");
        assert!(parse("[http]\nlisten = \"0.0.0.0:9464\"\ntoken = \"0123456789abcdef\"\n").is_ok());
        assert!(parse("[http]\nlisten = \"0.0.0.0:9464\"\ntoken_file = \"tok\"\n").is_ok());
        assert_eq!(key_of("[http]\ntoken = \"short\"\n"), "http.token");
        assert_eq!(
            key_of("[http]\ntoken = \"0123456789abcdef\"\ntoken_file = \"tok\"\n"),
            "http.token"
        );
        // Loopback needs none.
        assert!(parse("[http]\nlisten = \"[::1]:9464\"\n").is_ok());
        assert_eq!(key_of("[operator]\nlabels = []\n"), "operator.labels");
        assert_eq!(
            key_of("[operator]\nlabels = [\"a\", \"a\"]\n"),
            "operator.labels"
        );
        assert_eq!(
            key_of("[operator]\nlabels = [\"a/b\"]\n"),
            "operator.labels"
        );
        assert_eq!(
            key_of("[operator]\npreview_fps = 0.0\n"),
            "operator.preview_fps"
        );
        assert_eq!(
            key_of("[display]\nenabled = true\nsink = \"queue ! fakesink\"\n"),
            "display.sink"
        );
        let e = parse("[display]\nposition = \"middle\"\n").unwrap_err();
        assert!(e.to_string().contains("middle"), "{e}");
    }
}
