//! The datalake record: one JPEG and one JSON document per forwarded frame, under a
//! key that depends only on the frame (site, device, capture date, session, sequence),
//! so a retried upload overwrites the same object instead of duplicating it.
//!
//! Key scheme (shared by every sink):
//! `{prefix}/{site}/{device}/{yyyy}/{mm}/{dd}/{session}/{seq:010}` + `.jpg` / `.json`.
//! The date is the frame's capture date in UTC.

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

use crate::frame::Rect;
use crate::score::Score;

pub const SCHEMA: &str = "endo-agent/frame-record/v1";

/// The object key stem (without extension) for a frame.
pub fn key_stem(
    prefix: &str,
    site: &str,
    device: &str,
    captured: DateTime<Utc>,
    session: &str,
    seq: u64,
) -> String {
    format!(
        "{prefix}/{site}/{device}/{:04}/{:02}/{:02}/{session}/{seq:010}",
        captured.year(),
        captured.month(),
        captured.day()
    )
}

/// A new procedure session id: UTC start time plus a random suffix, e.g. `20261121T101500Z-3fa2`.
pub fn new_session_id(now: DateTime<Utc>) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(now.timestamp_nanos_opt().unwrap_or_default() as u128);
    h.write_u32(std::process::id());
    format!(
        "{}-{:04x}",
        now.format("%Y%m%dT%H%M%SZ"),
        h.finish() & 0xffff
    )
}

#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub schema: &'static str,
    /// Key stem; the JPEG is `{key}.jpg`, this record `{key}.json`.
    pub key: String,
    pub site: String,
    pub device: String,
    pub session: String,
    /// Sequence of forwarded frames in this session, from 0.
    pub sequence: u64,
    /// Capture time, UTC, RFC 3339 with milliseconds.
    pub captured_at: String,
    /// Buffer timestamp in the capture pipeline, nanoseconds (None if the source gave none).
    pub pts_ns: Option<u64>,
    /// The source's frame number, when it sets one (the phantom's frame index).
    pub source_frame: Option<u64>,
    pub frame: FrameInfo,
    pub score: ScoreInfo,
    pub selection: SelectionInfo,
    pub model: Option<ModelInfo>,
    pub agent: AgentInfo,
    pub jpeg: JpegInfo,
    /// Present only for frames an operator kept or annotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<OperatorInfo>,
}

/// An operator's part in a forwarded frame.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorInfo {
    /// Always true: the frame was forwarded because of an operator, whatever its score.
    pub marked: bool,
    /// `keep` ("keep this frame") or `annotate` (regions drawn on a frozen frame).
    pub action: &'static str,
    /// When the operator acted (UTC, RFC 3339 with milliseconds).
    pub at: String,
    /// The annotation's label, for `annotate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Object name of the annotation record (`{key}.annotation.json`), for `annotate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotation: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameInfo {
    /// Size of the written JPEG (= the field of view).
    pub width: u32,
    pub height: u32,
    pub source_width: u32,
    pub source_height: u32,
    /// The field of view in source pixels.
    pub fov: Rect,
    pub fov_shape: &'static str,
    /// How many privacy masks were applied.
    pub masks: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScoreInfo {
    pub quality: f32,
    pub classical_quality: f32,
    pub model_quality: Option<f32>,
    pub artifacts: BTreeMap<&'static str, f32>,
    pub reasons: Vec<&'static str>,
    /// `white` or `nbi`: the light the frame was captured under ([`crate::light`]).
    pub light: crate::light::Light,
    pub measures: crate::score::classical::Measures,
}

impl ScoreInfo {
    pub fn from_score(s: &Score) -> ScoreInfo {
        ScoreInfo {
            quality: s.quality,
            classical_quality: s.classical_quality,
            model_quality: s.model_quality(),
            artifacts: crate::artifact::Artifact::ALL
                .iter()
                .map(|a| (a.as_str(), s.artifact(*a)))
                .collect(),
            reasons: s.reasons().map(|a| a.as_str()).collect(),
            light: s.light,
            measures: s.measures,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SelectionInfo {
    /// Why it was forwarded: `best_in_window`, `operator_marked` or `operator_annotated`.
    pub reason: &'static str,
    pub threshold_high: f32,
    pub threshold_low: f32,
    pub window_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

impl ModelInfo {
    /// What a record says of the model that scored its frame.
    pub fn of(m: &crate::score::model::ModelRunner) -> ModelInfo {
        let man = m.manifest();
        ModelInfo {
            name: man.name.clone(),
            version: man.version.clone(),
            sha256: man.sha256.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentInfo {
    pub version: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct JpegInfo {
    pub bytes: usize,
    pub sha256: String,
    pub quality: u8,
}

/// What every record of this agent says the same way: who made it and how it chose.
/// Built once per run from the config.
#[derive(Debug, Clone)]
pub struct Producer {
    pub site: String,
    pub device: String,
    pub threshold_high: f32,
    pub threshold_low: f32,
    pub window_ms: u64,
    pub jpeg_quality: u8,
}

impl Producer {
    pub fn new(cfg: &crate::config::Config) -> Producer {
        Producer {
            site: cfg.agent.site.clone(),
            device: cfg.agent.device.clone(),
            threshold_high: cfg.select.threshold_high,
            threshold_low: cfg.select.threshold_low,
            window_ms: cfg.select.window_ms,
            jpeg_quality: cfg.encode.jpeg_quality,
        }
    }
}

/// Where one forwarded frame came from and why it was forwarded.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub key: &'a str,
    pub session: &'a str,
    pub sequence: u64,
    pub captured_at: DateTime<Utc>,
    pub pts_ns: Option<u64>,
    pub source_frame: Option<u64>,
    /// The whole source frame's size.
    pub source_size: (u32, u32),
    /// `best_in_window`, `operator_marked` or `operator_annotated`.
    pub reason: &'static str,
    /// The model that scored it.
    pub model: Option<&'a ModelInfo>,
    pub operator: Option<OperatorInfo>,
}

impl Record {
    /// The record of a forwarded frame whose JPEG (the cropped, masked `fov`) is `jpeg`.
    pub fn new(
        p: &Producer,
        o: Origin<'_>,
        fov: &crate::fov::Fov,
        score: &Score,
        jpeg: &[u8],
    ) -> Record {
        Record {
            schema: SCHEMA,
            key: o.key.to_string(),
            site: p.site.clone(),
            device: p.device.clone(),
            session: o.session.to_string(),
            sequence: o.sequence,
            captured_at: format_time(o.captured_at),
            pts_ns: o.pts_ns,
            source_frame: o.source_frame,
            frame: FrameInfo {
                width: fov.rect.width,
                height: fov.rect.height,
                source_width: o.source_size.0,
                source_height: o.source_size.1,
                fov: fov.rect,
                fov_shape: match fov.shape {
                    crate::config::FovShape::Rect => "rect",
                    crate::config::FovShape::Circle => "circle",
                },
                masks: fov.masks.len(),
            },
            score: ScoreInfo::from_score(score),
            selection: SelectionInfo {
                reason: o.reason,
                threshold_high: p.threshold_high,
                threshold_low: p.threshold_low,
                window_ms: p.window_ms,
            },
            model: o.model.cloned(),
            agent: AgentInfo {
                version: crate::VERSION,
            },
            jpeg: JpegInfo {
                bytes: jpeg.len(),
                sha256: crate::sha256_hex(jpeg),
                quality: p.jpeg_quality,
            },
            operator: o.operator,
        }
    }
}

/// RFC 3339 UTC with milliseconds.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn key_follows_the_scheme() {
        let t = Utc.with_ymd_and_hms(2026, 3, 7, 23, 59, 59).unwrap();
        assert_eq!(
            key_stem("frames", "st-mary", "tower-3", t, "s1", 42),
            "frames/st-mary/tower-3/2026/03/07/s1/0000000042"
        );
    }

    #[test]
    fn session_ids_are_key_segments_and_differ() {
        let t = Utc::now();
        let a = new_session_id(t);
        let b = new_session_id(t);
        assert!(crate::config::is_key_segment(&a), "{a}");
        assert_ne!(a, b);
    }
}
