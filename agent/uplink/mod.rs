//! Uplink: where encoded frames go. The encoder appends each frame to the disk spool
//! ([`crate::spool`]); one [`worker`] per configured sink delivers from there and
//! acknowledges in the spool only what the sink confirmed stored. Every sink writes the
//! same keys and bytes (see [`crate::record`]):
//!
//! - [`local`] — the directory datalake (the embedded default);
//! - [`mqtt`] — MQTT 5 over TLS to a broker, delivered when the broker's PUBACK arrives;
//!   `endo-agent ingest` ([`crate::ingest`]) moves frames from there into S3;
//! - [`s3`] — HTTPS PUT to an S3-compatible store, SigV4-signed.
//!
//! A sink is either blocking (one frame at a time: [`BlockingSink`], wrapped by
//! [`Blocking`]) or pipelined (many frames sent before their acknowledgements: MQTT).

pub mod local;
pub mod mqtt;
pub mod s3;
pub use crate::tls;
pub mod worker;

use std::path::PathBuf;
use std::time::Duration;

/// One forwarded frame, ready for a sink.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Key stem; objects are `{key}.jpg`, `{key}.json` and, for an annotated frame,
    /// `{key}.annotation.json`.
    pub key: String,
    pub jpeg: Vec<u8>,
    pub record_json: Vec<u8>,
    /// The operator's annotation (COCO-style JSON); empty for most frames.
    pub annotation: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// TLS failed: untrusted or mismatched certificate, handshake refused.
    #[error("{sink}: TLS: {detail}")]
    Tls { sink: &'static str, detail: String },
    /// The peer could not be reached or the connection broke.
    #[error("{sink}: connection: {detail}")]
    Connect { sink: &'static str, detail: String },
    /// The peer answered but refused the frame (HTTP status, MQTT reason code).
    #[error("{sink}: refused: {detail}")]
    Refused { sink: &'static str, detail: String },
    /// No acknowledgement in time.
    #[error("{sink}: timed out: {detail}")]
    Timeout { sink: &'static str, detail: String },
    /// Local setup: unreadable certificate, key or credentials file.
    #[error("{sink}: {detail}")]
    Setup { sink: &'static str, detail: String },
    /// This frame can never be stored by this sink as it is (too large for the protocol
    /// or the peer): retrying cannot help, so the worker dead-letters it.
    #[error("{sink}: {key}: can never be sent: {detail}")]
    Undeliverable {
        sink: &'static str,
        key: String,
        /// One of [`SinkError::DEAD_LETTER_REASONS`].
        reason: &'static str,
        detail: String,
    },
}

impl SinkError {
    /// Every value [`SinkError::reason`] can take.
    pub const REASONS: [&'static str; 8] = [
        "io",
        "disk_full",
        "permission_denied",
        "tls",
        "connect",
        "refused",
        "timeout",
        "setup",
    ];

    /// Every reason a frame is dead-lettered for ([`SinkError::Undeliverable`]).
    pub const DEAD_LETTER_REASONS: [&'static str; 4] = [
        mqtt::wire::Oversize::REASONS[0],
        mqtt::wire::Oversize::REASONS[1],
        mqtt::wire::Oversize::REASONS[2],
        UNSAFE_KEY,
    ];

    /// A bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SinkError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::StorageFull => "disk_full",
                std::io::ErrorKind::PermissionDenied => "permission_denied",
                _ => "io",
            },
            SinkError::Tls { .. } => "tls",
            SinkError::Connect { .. } => "connect",
            SinkError::Refused { .. } => "refused",
            SinkError::Timeout { .. } => "timeout",
            SinkError::Setup { .. } => "setup",
            SinkError::Undeliverable { reason, .. } => reason,
        }
    }
}

/// A datalake sink as the uplink worker drives it.
///
/// The worker calls [`Sink::send`] for up to [`Sink::window`] frames it has not seen
/// acknowledged, then [`Sink::poll`] for acknowledgements. After any error it calls
/// [`Sink::reset`], waits (backoff) and sends again from the oldest unacknowledged frame,
/// so a frame may reach a sink twice (same key, same bytes) but is never skipped.
pub trait Sink: Send {
    /// A short name for logs and metric labels.
    fn name(&self) -> &'static str;
    /// How many frames may be outstanding (sent, not acknowledged) at once.
    fn window(&self) -> usize {
        1
    }
    /// Start delivering frame `id` (the sink may keep the bytes until it is stored).
    fn send(&mut self, id: u64, item: Encoded) -> Result<(), SinkError>;
    /// Wait up to `timeout` for progress; returns the ids now stored by the sink.
    /// Also where a sink does its housekeeping (keepalive, periodic messages).
    fn poll(&mut self, timeout: Duration) -> Result<Vec<u64>, SinkError>;
    /// Forget everything outstanding after an error; the worker will resend it.
    fn reset(&mut self) {}
    /// The agent is stopping: say goodbye to the peer if there is one.
    fn close(&mut self) {}
}

/// A sink that stores one frame per call, durably before returning.
pub trait BlockingSink: Send {
    fn name(&self) -> &'static str;
    fn deliver(&mut self, item: &Encoded) -> Result<(), SinkError>;
}

/// Adapts a [`BlockingSink`] to [`Sink`]: `send` stores, `poll` reports it.
pub struct Blocking<T> {
    inner: T,
    done: Vec<u64>,
}

impl<T: BlockingSink> Blocking<T> {
    pub fn new(inner: T) -> Blocking<T> {
        Blocking {
            inner,
            done: Vec::new(),
        }
    }
}

impl<T: BlockingSink> Sink for Blocking<T> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn send(&mut self, id: u64, item: Encoded) -> Result<(), SinkError> {
        self.inner.deliver(&item)?;
        self.done.push(id);
        Ok(())
    }
    fn poll(&mut self, _timeout: Duration) -> Result<Vec<u64>, SinkError> {
        Ok(std::mem::take(&mut self.done))
    }
    fn reset(&mut self) {
        self.done.clear();
    }
}

/// Object names of a frame: `{key}.jpg` and `{key}.json`.
pub fn object_names(key: &str) -> [String; 2] {
    [format!("{key}.jpg"), format!("{key}.json")]
}

/// Object name of an annotated frame's annotation record.
pub fn annotation_name(key: &str) -> String {
    format!("{key}.annotation.json")
}

/// The dead-letter reason of a record whose key [`is_safe_key`] refuses.
pub const UNSAFE_KEY: &str = "unsafe_key";

/// Refuse a key that is not [`is_safe_key`], as a frame that can never be sent: every
/// sink checks before it uses a key as a path or object name, whatever wrote the spool.
pub fn check_key(sink: &'static str, key: &str) -> Result<(), SinkError> {
    if is_safe_key(key) {
        return Ok(());
    }
    Err(SinkError::Undeliverable {
        sink,
        key: crate::clip_to(key, 120),
        reason: UNSAFE_KEY,
        detail: "the key is not a relative path of [A-Za-z0-9._-] segments".into(),
    })
}

/// A key is safe to use as an object/file name:
/// relative, `/`-separated segments of `[A-Za-z0-9._-]`, no `.` or `..` segments.
pub fn is_safe_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_keys() {
        assert!(is_safe_key("frames/site/tower/2026/11/21/s-1/0000000001"));
        for bad in [
            "", "/abs", "a//b", "a/../b", "a/./b", "a/b c", "a/b\\c", "a/",
        ] {
            assert!(!is_safe_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn an_unsafe_key_is_undeliverable_with_a_bounded_reason() {
        assert!(check_key("s3", "frames/a/b/0000000001").is_ok());
        for bad in ["../escaped/X", "/etc/passwd", "frames/../../x"] {
            let e = check_key("local", bad).unwrap_err();
            assert_eq!(e.reason(), UNSAFE_KEY);
            assert!(SinkError::DEAD_LETTER_REASONS.contains(&e.reason()));
        }
        let long = "../".repeat(10_000);
        assert!(
            check_key("local", &long).unwrap_err().to_string().len() < 400,
            "not echoed whole"
        );
    }

    #[test]
    fn error_reasons_are_bounded_labels() {
        let e = SinkError::Tls {
            sink: "mqtt",
            detail: "invalid peer certificate: UnknownIssuer".into(),
        };
        assert_eq!(e.reason(), "tls");
        let io = |kind| SinkError::Io {
            path: "x".into(),
            source: std::io::Error::from(kind),
        };
        let d = || String::new();
        for e in [
            io(std::io::ErrorKind::StorageFull),
            io(std::io::ErrorKind::PermissionDenied),
            io(std::io::ErrorKind::Other),
            SinkError::Connect {
                sink: "s",
                detail: d(),
            },
            SinkError::Refused {
                sink: "s",
                detail: d(),
            },
            SinkError::Timeout {
                sink: "s",
                detail: d(),
            },
            SinkError::Setup {
                sink: "s",
                detail: d(),
            },
        ] {
            assert!(SinkError::REASONS.contains(&e.reason()), "{}", e.reason());
        }
        assert!(e.to_string().contains("UnknownIssuer"));
        let dead = SinkError::Undeliverable {
            sink: "mqtt",
            key: "frames/s/d/k".into(),
            reason: "packet_too_large",
            detail: String::new(),
        };
        assert!(SinkError::DEAD_LETTER_REASONS.contains(&dead.reason()));
        assert!(!SinkError::REASONS.contains(&dead.reason()));
        assert!(dead.to_string().contains("frames/s/d/k"), "names the key");
    }
}
