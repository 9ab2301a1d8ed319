//! Log lines on stderr, with their level where the journal reads them.
//!
//! Under systemd (stderr connected to the journal: `JOURNAL_STREAM` names stderr's device
//! and inode) each line starts with its syslog priority, `<3>` for an error to `<7>` for a
//! trace, which journald takes as the entry's priority (`SyslogLevelPrefix=`, on by
//! default) and strips. Without it every line of the agent is `info` in the journal, and
//! `journalctl -p warning` (what an integrator checks first) shows none of its warnings or
//! errors. The journal keeps its own timestamps, so lines carry none there. Elsewhere (a
//! terminal, a container's log) lines are tracing's usual ones.

use std::io::Write;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Install the global subscriber: `RUST_LOG` or `info`.
pub fn init() {
    let journal = stderr_is_journal();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(!journal && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if journal {
        builder
            .with_writer(Stderr { journal })
            .without_time()
            .init();
    } else {
        builder.with_writer(Stderr { journal }).init();
    }
}

/// Print a fatal error (what `main` ends with) at error priority, every line of it: a
/// config error's key is on its third line.
pub fn fatal(message: &str) {
    let text = format!("error: {message}\n");
    let out = if stderr_is_journal() {
        prefixed(3, text.as_bytes())
    } else {
        text.into_bytes()
    };
    let _ = std::io::stderr().lock().write_all(&out);
}

/// `text` with `<priority>` before each of its lines (journald reads the prefix per line).
pub fn prefixed(priority: u8, text: &[u8]) -> Vec<u8> {
    let tag = format!("<{priority}>");
    let mut out = Vec::with_capacity(text.len() + 8);
    for line in text.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(line);
    }
    out
}

/// The syslog priority of a tracing level (RFC 5424: 3 error … 7 debug).
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// True when stderr is the stream systemd connected to the journal.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    // SAFETY: fstat on a descriptor number with a zeroed out-buffer; an invalid
    // descriptor is an error return, not undefined behaviour.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    matches_stream(&stream.to_string_lossy(), st.st_dev, st.st_ino)
}

/// `JOURNAL_STREAM` is `DEVICE:INODE`, both decimal.
fn matches_stream(value: &str, dev: u64, ino: u64) -> bool {
    value
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

struct Stderr {
    journal: bool,
}

/// One event's line, written at once, prefixed with its priority under the journal.
struct Line {
    prefix: Option<u8>,
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        match self.prefix {
            // tracing's fmt layer writes a whole formatted event in one call; a message
            // of several lines keeps its priority on each.
            Some(p) => err.write_all(&prefixed(p, buf))?,
            None => err.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            prefix: self.journal.then_some(6),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line {
            prefix: self.journal.then(|| priority(meta.level())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_names_the_device_and_inode() {
        assert!(matches_stream("8:12345", 8, 12345));
        assert!(!matches_stream("8:12345", 8, 12346));
        assert!(!matches_stream("8:12345", 9, 12345));
        assert!(!matches_stream("garbage", 8, 12345));
        assert!(!matches_stream("", 0, 0));
    }

    #[test]
    fn every_line_carries_the_priority() {
        assert_eq!(prefixed(3, b"a\nb\n"), b"<3>a\n<3>b\n");
        assert_eq!(prefixed(4, b"one"), b"<4>one");
        assert_eq!(prefixed(6, b""), b"");
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
    }
}
