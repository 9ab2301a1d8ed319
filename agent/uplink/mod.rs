//! Uplink: where encoded frames go. The encoder appends each frame to the disk spool
//! ([`crate::spool`]); one [`worker`] per sink delivers from there and acknowledges.
//! Every sink writes the same keys and bytes (see [`crate::record`]); for now the one
//! sink is the local directory datalake ([`local`]), the embedded default.

pub mod local;
pub mod worker;

use std::path::PathBuf;

/// One forwarded frame, ready for a sink.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Key stem; objects are `{key}.jpg` and `{key}.json`.
    pub key: String,
    pub jpeg: Vec<u8>,
    pub record_json: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl SinkError {
    /// A bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SinkError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::StorageFull => "disk_full",
                std::io::ErrorKind::PermissionDenied => "permission_denied",
                _ => "io",
            },
        }
    }
}

/// A datalake sink.
pub trait Sink: Send {
    /// A short name for logs and metric labels.
    fn name(&self) -> &'static str;
    /// Store one frame; Ok means durably stored by the sink.
    fn deliver(&mut self, item: &Encoded) -> Result<(), SinkError>;
}
