//! What the agent runs with, derived once from the validated config: the operator API's
//! token (read from its file), the spool's bounds and the phantom source's configuration.

use super::Config;
use crate::phantom::{self, PhantomConfig, ScheduleError};

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

/// `http.token_file` could not give a token.
#[derive(Debug, thiserror::Error)]
#[error("http.token_file {path}: {why}")]
pub struct TokenError {
    pub path: String,
    pub why: String,
}

impl Config {
    /// The operator API's bearer token: `http.token`, or the first line of `http.token_file`
    /// (read here, at start, by `run` and `check-config` alike).
    pub fn http_token(&self) -> Result<Option<String>, TokenError> {
        let h = &self.http;
        let token = if h.token_file.as_os_str().is_empty() {
            h.token.clone()
        } else {
            let why = |why: String| TokenError {
                path: h.token_file.display().to_string(),
                why,
            };
            let text = std::fs::read_to_string(&h.token_file).map_err(|e| why(e.to_string()))?;
            let t = text.lines().next().unwrap_or("").trim().to_string();
            if t.len() < 16 || t.chars().any(char::is_whitespace) {
                return Err(why(
                    "the first line must be a token of at least 16 characters without spaces"
                        .into(),
                ));
            }
            t
        };
        Ok(Some(token).filter(|t| !t.is_empty()))
    }

    /// The phantom source's configuration (`source.kind = "phantom"`): its size, rate,
    /// seed, field-of-view shape, palette and parsed schedule. `validate` refuses a schedule that
    /// does not parse, naming `source.schedule`.
    pub fn phantom(&self) -> Result<PhantomConfig, ScheduleError> {
        let s = &self.source;
        Ok(PhantomConfig {
            width: s.width,
            height: s.height,
            fps: s.fps,
            seed: s.seed,
            schedule: if s.schedule.is_empty() {
                phantom::Schedule::default()
            } else {
                phantom::Schedule::parse(&s.schedule)?
            },
            fov_shape: if s.phantom_fov == "octagon" {
                phantom::FovShape::Octagon
            } else {
                phantom::FovShape::Circle
            },
            palette: s.phantom_palette,
            ..PhantomConfig::default()
        })
    }
}
