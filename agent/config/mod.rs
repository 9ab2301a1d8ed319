//! The agent's configuration: one TOML file, every key documented in
//! `config/agent.example.toml`, every field with a default.
//!
//! Layout: this file loads and parses; [`pipeline`] and [`service`] hold the sections
//! (capture → encode, and what serves and delivers); `validate.rs` checks values and
//! ranges; `resolved.rs` derives what the agent runs with (the token, the spool's bounds,
//! the phantom's configuration) in one place.
//!
//! Parsing is strict (`deny_unknown_fields`): a misspelt key is an error that names the key
//! and the file. [`Config::load`] reads the file and validates; validation does no I/O
//! beyond that read (the model file is only opened when the agent starts). Relative paths
//! in the file are resolved against the directory the file lives in.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::frame::Rect;

mod pipeline;
mod resolved;
mod service;
mod validate;

pub use pipeline::*;
pub use resolved::TokenError;
pub use service::*;

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
    /// `endo-agent ingest`: how replicas share the frames.
    pub ingest: IngestConfig,
    /// The one HTTP listener (metrics, health, status, the web overlay and operator API).
    pub http: HttpConfig,
    /// The on-screen overlay: a display branch of the capture pipeline.
    pub display: DisplayConfig,
    /// The web overlay and operator marks: preview, labels, recent frames.
    pub operator: OperatorConfig,
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
        fix(&mut self.http.tls_cert_file);
        fix(&mut self.http.tls_key_file);
        if let Some(t) = self.capture.template.as_mut() {
            fix(t);
        }
    }

    /// The fixed field-of-view rectangle, if configured.
    pub fn fov_rect(&self) -> Option<Rect> {
        self.fov.rect.map(|[x, y, w, h]| Rect::new(x, y, w, h))
    }
}

/// A validation error for `key` of the config file `path`.
fn invalid(path: &Path, key: &str, why: String) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        path: path.to_owned(),
        key: key.to_string(),
        // The reason may quote the value: a huge one is named, not echoed.
        why: crate::clip_to(&why, 2 * crate::ECHO_MAX),
    })
}

/// A datalake key segment: short, and safe in paths, S3 keys and MQTT topics.
pub fn is_key_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests;
