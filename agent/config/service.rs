//! The sections of what serves and delivers: the datalake, the spool, the uplink and its
//! sinks (MQTT, S3), the HTTP listener, the on-screen overlay and the operator.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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

/// `endo-agent ingest`, the cloud end of the MQTT route.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// MQTT 5 shared-subscription group: replicas with the same group split the towers'
    /// frames (`$share/{group}/{topic_prefix}/+/+/frames`); empty = one plain
    /// subscription, every ingest gets every frame. Each replica needs its own
    /// `mqtt.client_id` (or `ENDO_INGEST_CLIENT_ID`): its session holds what it was sent.
    pub share_group: String,
    /// Address for ingest's `/metrics`, `/healthz` and `/readyz` (e.g. 0.0.0.0:9465; port
    /// 0 picks a free one, logged); empty = none. No token: nothing there changes state.
    pub listen: String,
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
    /// Serve HTTPS instead of HTTP: the PEM certificate chain (leaf first) of the listener.
    /// Set together with `tls_key_file`; empty = plain HTTP.
    pub tls_cert_file: PathBuf,
    /// The PEM private key of `tls_cert_file`.
    pub tls_key_file: PathBuf,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9464".into(),
            token: String::new(),
            token_file: PathBuf::new(),
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
        }
    }
}

impl HttpConfig {
    /// The certificate and key files when the listener serves HTTPS.
    pub fn tls(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        use crate::tls::opt_path;
        opt_path(&self.tls_cert_file).zip(opt_path(&self.tls_key_file))
    }

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
