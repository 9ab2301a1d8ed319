//! A forwarded frame on its way from the score thread to the encoder, and the keys the
//! score thread gives it.

use chrono::{DateTime, Utc};
use std::sync::Arc;

use crate::capture::CapturedFrame;
use crate::config::Config;
use crate::encode::EncodeError;
use crate::fov::Fov;
use crate::operator::RecentFrame;
use crate::record::{self, OperatorInfo};
use crate::score::Score;

/// The frame of a job with the field of view it was scored in: live from capture
/// (selected or operator-marked) or an owned recent frame (operator-annotated), which
/// holds only that field of view's rectangle and carries the FOV itself.
pub enum JobFrame {
    Live {
        frame: Arc<CapturedFrame>,
        fov: Arc<Fov>,
    },
    Recent(Arc<RecentFrame>),
}

impl JobFrame {
    /// The field of view the frame was scored in, in the source frame's coordinates.
    pub fn fov(&self) -> &Arc<Fov> {
        match self {
            JobFrame::Live { fov, .. } => fov,
            JobFrame::Recent(f) => &f.fov,
        }
    }

    /// The datalake JPEG of the redacted field of view.
    pub fn encode_jpeg(&self, quality: u8) -> Result<Vec<u8>, EncodeError> {
        match self {
            JobFrame::Live { frame, fov } => {
                crate::encode::encode_jpeg(&frame.view(), fov, quality)
            }
            JobFrame::Recent(f) => f.encode_jpeg(quality),
        }
    }

    /// The source frame's size.
    pub fn source_size(&self) -> (u32, u32) {
        match self {
            JobFrame::Live { frame, .. } => {
                let v = frame.view();
                (v.width, v.height)
            }
            JobFrame::Recent(f) => f.source_size,
        }
    }

    pub fn captured_at(&self) -> DateTime<Utc> {
        match self {
            JobFrame::Live { frame, .. } => frame.captured_at,
            JobFrame::Recent(f) => f.captured_at,
        }
    }

    /// The buffer timestamp and the source's frame number.
    pub fn pts_and_offset(&self) -> (Option<u64>, Option<u64>) {
        match self {
            JobFrame::Live { frame, .. } => (frame.pts_ns, frame.offset),
            JobFrame::Recent(f) => (f.pts_ns, f.offset),
        }
    }
}

/// Why a frame is forwarded, as the record's `selection.reason` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    BestInWindow,
    OperatorMarked,
    OperatorAnnotated,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BestInWindow => "best_in_window",
            Reason::OperatorMarked => "operator_marked",
            Reason::OperatorAnnotated => "operator_annotated",
        }
    }
}

/// A forwarded frame with its key already decided.
pub struct Job {
    /// The frame and the field of view it was scored in.
    pub frame: JobFrame,
    pub score: Score,
    pub key: String,
    pub session: Arc<str>,
    pub seq: u64,
    pub reason: Reason,
    /// The model that scored the frame (the one in force at its capture).
    pub model: Option<Arc<record::ModelInfo>>,
    pub operator: Option<OperatorInfo>,
    /// The COCO-style annotation record (empty unless annotated).
    pub annotation: Vec<u8>,
}

/// The keys of one session: `{prefix}/{site}/{device}/{date}/{session}/{seq}`, the
/// sequence from 0 in every session (see [`record::key_stem`]).
pub struct Keys {
    prefix: String,
    site: String,
    device: String,
    session: Arc<str>,
    seq: u64,
}

impl Keys {
    pub fn new(cfg: &Config, session: &str) -> Keys {
        Keys {
            prefix: cfg.datalake.prefix.clone(),
            site: cfg.agent.site.clone(),
            device: cfg.agent.device.clone(),
            session: Arc::from(session),
            seq: 0,
        }
    }

    /// The next key of this session, for a frame captured at `at`, and its sequence.
    pub fn next(&mut self, at: DateTime<Utc>) -> (String, u64) {
        let seq = self.seq;
        self.seq += 1;
        let key = record::key_stem(
            &self.prefix,
            &self.site,
            &self.device,
            at,
            &self.session,
            seq,
        );
        (key, seq)
    }

    /// A new session: its keys start from sequence 0.
    pub fn start(&mut self, session: &str) {
        self.session = Arc::from(session);
        self.seq = 0;
    }

    pub fn session(&self) -> &Arc<str> {
        &self.session
    }
}
