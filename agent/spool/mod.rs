//! The spool: selected frames are durable on disk here before any sink sees them, and
//! leave only when every configured sink has acknowledged them. The encode worker
//! appends; one uplink worker per sink ([`crate::uplink::worker`]) delivers and acks.
//!
//! # On disk
//!
//! `{dir}/{id:020}.rec` — one record per frame, format in [`format`]: written to
//! `{id:020}.rec.tmp`, fsynced, renamed, directory fsynced.
//! `{dir}/{id:020}.{sink}.ack` — an empty marker: `sink` acknowledged record `id`.
//! `{dir}/{id:020}.{sink}.dead` — an empty marker: `sink` dead-lettered record `id` (it
//! can never take it, e.g. larger than the broker accepts; [`Spool::dead_letter`]), so
//! the record is no longer pending for that sink and cannot stall the frames behind it.
//! When every sink is done with a record (acknowledged or dead-lettered), the record and
//! its markers are deleted — unless no sink stored it: then the record is moved to
//! `{dir}/dead-letter/` (kept for inspection or a manual resend; outside the spool's
//! bounds, never sent again) so that a frame is never lost silently.
//!
//! # Recovery ([`Spool::open`])
//!
//! `.tmp` files are torn writes: deleted and counted. A `.rec` that fails to decode
//! (truncated, bad magic, checksum mismatch) is moved to `{dir}/corrupt/` (kept for
//! inspection, never sent) and counted with its reason; so is anything named like a
//! record or a temporary file that is not a regular file (a directory), and a record
//! whose name is not exactly `{id:020}.rec` with the id at most [`MAX_ID`] (such an id
//! cannot be ours, and trusting it could make the next id wrap onto a pending record).
//! Every other record is pending for each sink without a marker, oldest first. Ids
//! continue after the largest seen.
//!
//! # Bounds
//!
//! At most `max_records` records and `max_bytes` bytes of record files. When a new record
//! does not fit, [`EvictPolicy`] decides what goes; every eviction is returned to the
//! caller to be counted:
//! - `lowest_quality` (default): evict the lowest-quality records (oldest first on ties)
//!   until the new one fits — unless the new record is itself the lowest, then it is
//!   the one dropped. A long outage keeps the best frames, not merely the first or last.
//! - `oldest`: evict the oldest records.
//! - `newest`: keep what is spooled, drop the new record.

pub mod format;
mod handle;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

pub use format::{FormatError, SpoolRecord};
pub use handle::SpoolHandle;

/// The largest record id the spool accepts from disk: half the u64 range, so that ids
/// never wrap (at a million frames a second that is 290 000 years of ids).
pub const MAX_ID: u64 = u64::MAX / 2;

/// The id of a record file name this spool writes (`{id:020}.rec`), if it is one.
fn record_id(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".rec")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok().filter(|id| *id <= MAX_ID)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvictPolicy {
    LowestQuality,
    Oldest,
    Newest,
}

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub max_records: usize,
    pub max_bytes: u64,
    pub policy: EvictPolicy,
    /// Sink names; a record is deleted when all of them acknowledged it.
    pub sinks: Vec<String>,
    /// Free space kept on the spool's filesystem: the spool holds at most what it holds
    /// plus what is free above this, evicting by `policy` to stay within it (a full disk
    /// takes the worst frames out, not the new ones at random).
    pub min_free_bytes: u64,
    /// Free bytes of the filesystem holding a path ([`disk_free`]; tests inject their own).
    pub free_space: fn(&Path) -> Option<u64>,
}

/// Bytes available to an unprivileged writer on the filesystem holding `path`.
pub fn disk_free(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // Safety: a NUL-terminated path and a zeroed out-struct of the right type.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool.dir {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spool record {path}: {source}")]
    Corrupt { path: PathBuf, source: FormatError },
    #[error("spool: unknown sink {0:?}")]
    UnknownSink(String),
    #[error("spool: no record {0}")]
    Missing(u64),
}

/// What [`Spool::open`] found.
#[derive(Debug, Default)]
pub struct Recovery {
    pub records: usize,
    pub torn: usize,
    pub corrupt: Vec<(PathBuf, FormatError)>,
}

/// The result of [`Spool::append`]: the new record's id (None if the policy dropped it)
/// and the ids evicted to make room.
#[derive(Debug, PartialEq)]
pub struct Appended {
    pub id: Option<u64>,
    pub evicted: Vec<u64>,
}

/// What one sink has done with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    Pending,
    Acked,
    DeadLettered,
}

#[derive(Debug, Clone)]
struct Entry {
    quality: f32,
    created_ms: u64,
    bytes: u64,
    /// Per configured sink, in order.
    done: Vec<Done>,
}

impl Entry {
    fn finished(&self) -> bool {
        self.done.iter().all(|d| *d != Done::Pending)
    }
}

pub struct Spool {
    cfg: SpoolConfig,
    entries: BTreeMap<u64, Entry>,
    bytes: u64,
    next_id: u64,
    /// See [`Spool::disk_low`].
    disk_low: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Spool {
    pub fn open(cfg: SpoolConfig) -> Result<(Spool, Recovery), SpoolError> {
        fs::create_dir_all(&cfg.dir).map_err(io(&cfg.dir))?;
        let mut found = Found::default();
        for e in fs::read_dir(&cfg.dir).map_err(io(&cfg.dir))? {
            found.file(&cfg, e.map_err(io(&cfg.dir))?)?;
        }
        found.apply_markers(&cfg.sinks)?;
        let Found {
            rec,
            entries,
            bytes,
            ..
        } = found;
        let next_id = entries.keys().next_back().map_or(0, |k| k + 1);
        let mut spool = Spool {
            cfg,
            entries,
            bytes,
            next_id,
            disk_low: false,
        };
        // Records every (current) sink is done with were about to be deleted.
        let done: Vec<u64> = spool
            .entries
            .iter()
            .filter(|(_, e)| e.finished())
            .map(|(k, _)| *k)
            .collect();
        for id in done {
            spool.finish(id)?;
        }
        Ok((spool, rec))
    }

    fn rec_path(&self, id: u64) -> PathBuf {
        self.cfg.dir.join(format!("{id:020}.rec"))
    }

    fn ack_path(&self, id: u64, sink: &str) -> PathBuf {
        self.cfg.dir.join(format!("{id:020}.{sink}.ack"))
    }

    fn dead_path(&self, id: u64, sink: &str) -> PathBuf {
        self.cfg.dir.join(format!("{id:020}.{sink}.dead"))
    }

    /// Records held, bytes held.
    pub fn len(&self) -> (usize, u64) {
        (self.entries.len(), self.bytes)
    }

    /// Whether the last frame appended found less free disk than its size above
    /// `min_free_bytes`: the disk, not `max_bytes`, limits what is kept.
    pub fn disk_low(&self) -> bool {
        self.disk_low
    }

    /// Capture time (Unix ms) of the oldest frame held, if any.
    pub fn oldest_created_ms(&self) -> Option<u64> {
        self.entries.values().map(|e| e.created_ms).min()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Make `r` durable, evicting per the policy if the spool is full.
    pub fn append(&mut self, r: &SpoolRecord) -> Result<Appended, SpoolError> {
        let data = format::encode(r);
        let size = data.len() as u64;
        let max_bytes = match (self.cfg.free_space)(&self.cfg.dir) {
            Some(free) => {
                let room = free.saturating_sub(self.cfg.min_free_bytes);
                self.disk_low = room < size;
                self.cfg.max_bytes.min(self.bytes.saturating_add(room))
            }
            None => self.cfg.max_bytes,
        };
        let (store, evict) = choose_victims(
            &self.entries,
            r.quality,
            size,
            self.bytes,
            max_bytes,
            &self.cfg,
        );
        for id in &evict {
            self.remove(*id)?;
        }
        if !store {
            return Ok(Appended {
                id: None,
                evicted: evict,
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        let path = self.rec_path(id);
        let tmp = path.with_extension("rec.tmp");
        // A full disk: no half record stays behind to be mistaken for one.
        crate::fsutil::write_atomic(&tmp, &path, &data).map_err(|(p, e)| io(&p)(e))?;
        self.entries.insert(
            id,
            Entry {
                quality: r.quality,
                created_ms: r.created_ms,
                bytes: size,
                done: vec![Done::Pending; self.cfg.sinks.len()],
            },
        );
        self.bytes += size;
        Ok(Appended {
            id: Some(id),
            evicted: evict,
        })
    }

    /// The oldest id `sink` has not acknowledged yet.
    pub fn first_pending(&self, sink: &str) -> Result<Option<u64>, SpoolError> {
        let i = self.sink_index(sink)?;
        Ok(self
            .entries
            .iter()
            .find(|(_, e)| e.done[i] == Done::Pending)
            .map(|(k, _)| *k))
    }

    /// The oldest id after `after` (all ids when None) that `sink` has not acknowledged.
    pub fn next_pending(&self, sink: &str, after: Option<u64>) -> Result<Option<u64>, SpoolError> {
        let i = self.sink_index(sink)?;
        let from = after.map_or(0, |a| a.saturating_add(1));
        Ok(self
            .entries
            .range(from..)
            .find(|(_, e)| e.done[i] == Done::Pending)
            .map(|(k, _)| *k))
    }

    /// Ids `sink` has not acknowledged yet, oldest first.
    pub fn pending(&self, sink: &str) -> Result<Vec<u64>, SpoolError> {
        let i = self.sink_index(sink)?;
        Ok(self
            .entries
            .iter()
            .filter(|(_, e)| e.done[i] == Done::Pending)
            .map(|(k, _)| *k)
            .collect())
    }

    pub fn read(&self, id: u64) -> Result<SpoolRecord, SpoolError> {
        if !self.entries.contains_key(&id) {
            return Err(SpoolError::Missing(id));
        }
        let path = self.rec_path(id);
        let data = fs::read(&path).map_err(io(&path))?;
        format::decode(&data).map_err(|source| SpoolError::Corrupt { path, source })
    }

    /// `sink` delivered record `id`. Deletes the record once every sink is done with it.
    pub fn ack(&mut self, id: u64, sink: &str) -> Result<(), SpoolError> {
        self.mark(id, sink, Done::Acked).map(|_| ())
    }

    /// `sink` can never take record `id`: it is no longer pending for that sink. Returns
    /// where the record was kept when this was its last sink and none stored it
    /// (`{dir}/dead-letter/`), else None.
    pub fn dead_letter(&mut self, id: u64, sink: &str) -> Result<Option<PathBuf>, SpoolError> {
        self.mark(id, sink, Done::DeadLettered)
    }

    fn mark(&mut self, id: u64, sink: &str, done: Done) -> Result<Option<PathBuf>, SpoolError> {
        let i = self.sink_index(sink)?;
        let entry = self.entries.get_mut(&id).ok_or(SpoolError::Missing(id))?;
        if entry.done[i] != Done::Pending {
            return Ok(None);
        }
        entry.done[i] = done;
        if entry.finished() {
            return self.finish(id);
        }
        let marker = match done {
            Done::DeadLettered => self.dead_path(id, sink),
            _ => self.ack_path(id, sink),
        };
        File::create(&marker).map_err(io(&marker))?;
        self.sync_dir()?;
        Ok(None)
    }

    /// Every sink is done with `id`: delete it, or, when no sink stored it, move it to
    /// `dead-letter/` (returned).
    fn finish(&mut self, id: u64) -> Result<Option<PathBuf>, SpoolError> {
        let stored = self
            .entries
            .get(&id)
            .is_some_and(|e| e.done.contains(&Done::Acked));
        if stored {
            return self.remove(id).map(|()| None);
        }
        let dir = self.cfg.dir.join("dead-letter");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let kept = dir.join(format!("{id:020}.rec"));
        let path = self.rec_path(id);
        fs::rename(&path, &kept).map_err(io(&path))?;
        self.sync_dir()?;
        // The record is gone from the spool now; remove() deletes only the markers.
        self.remove(id)?;
        Ok(Some(kept))
    }

    fn sink_index(&self, sink: &str) -> Result<usize, SpoolError> {
        self.cfg
            .sinks
            .iter()
            .position(|s| s == sink)
            .ok_or_else(|| SpoolError::UnknownSink(sink.into()))
    }

    /// Delete a record (first, so a crash never leaves markers claiming more than is true)
    /// and then its markers.
    fn remove(&mut self, id: u64) -> Result<(), SpoolError> {
        if let Some(e) = self.entries.remove(&id) {
            self.bytes -= e.bytes;
            let path = self.rec_path(id);
            match fs::remove_file(&path) {
                // Already moved to dead-letter/ by finish().
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                r => r.map_err(io(&path))?,
            }
            for sink in self.cfg.sinks.clone() {
                for m in [self.ack_path(id, &sink), self.dead_path(id, &sink)] {
                    if m.exists() {
                        fs::remove_file(&m).map_err(io(&m))?;
                    }
                }
            }
        }
        Ok(())
    }

    fn sync_dir(&self) -> Result<(), SpoolError> {
        File::open(&self.cfg.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.cfg.dir))
    }
}

/// The eviction policy as a pure function: whether to store a new record of `quality`
/// and `size` bytes, and which held records to evict first.
fn choose_victims(
    entries: &BTreeMap<u64, Entry>,
    quality: f32,
    size: u64,
    bytes: u64,
    max_bytes: u64,
    cfg: &SpoolConfig,
) -> (bool, Vec<u64>) {
    let fits = |n: usize, b: u64| n < cfg.max_records && b + size <= max_bytes;
    if fits(entries.len(), bytes) {
        return (true, vec![]);
    }
    if size > max_bytes || cfg.max_records == 0 {
        return (false, vec![]);
    }
    let order: Vec<(u64, &Entry)> = match cfg.policy {
        EvictPolicy::Newest => return (false, vec![]),
        EvictPolicy::Oldest => entries.iter().map(|(k, e)| (*k, e)).collect(),
        EvictPolicy::LowestQuality => {
            let mut v: Vec<(u64, &Entry)> = entries.iter().map(|(k, e)| (*k, e)).collect();
            v.sort_by(|a, b| a.1.quality.total_cmp(&b.1.quality).then(a.0.cmp(&b.0)));
            v
        }
    };
    let (mut n, mut b) = (entries.len(), bytes);
    let mut victims = vec![];
    for (id, e) in order {
        if fits(n, b) {
            break;
        }
        if cfg.policy == EvictPolicy::LowestQuality && e.quality >= quality {
            // Everything left is at least as good as the newcomer: drop the newcomer.
            return (false, vec![]);
        }
        victims.push(id);
        n -= 1;
        b -= e.bytes;
    }
    (fits(n, b), victims)
}

/// What a spool directory holds, as [`Spool::open`] finds it.
#[derive(Default)]
struct Found {
    rec: Recovery,
    entries: BTreeMap<u64, Entry>,
    /// Acknowledgement and dead-letter markers: (record id, sink, what, file).
    acks: Vec<(u64, String, Done, PathBuf)>,
    bytes: u64,
}

impl Found {
    /// One file of the directory: a record, a marker, a torn write (removed) or something
    /// that is not a record (moved to `corrupt/`).
    fn file(&mut self, cfg: &SpoolConfig, e: fs::DirEntry) -> Result<(), SpoolError> {
        let path = e.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let ours = name.ends_with(".tmp") || name.ends_with(".rec");
        // `file_type` does not follow symlinks: a link named like a record is not one.
        if ours && !e.file_type().map_err(io(&path))?.is_file() {
            quarantine(&cfg.dir, &path, &name)?;
            self.rec.corrupt.push((path, FormatError::NotAFile));
            return Ok(());
        }
        if name.ends_with(".tmp") {
            fs::remove_file(&path).map_err(io(&path))?;
            self.rec.torn += 1;
        } else if name.ends_with(".rec") && record_id(&name).is_none() {
            quarantine(&cfg.dir, &path, &name)?;
            self.rec.corrupt.push((path, FormatError::Name));
        } else if let Some(id) = record_id(&name) {
            let data = fs::read(&path).map_err(io(&path))?;
            match format::decode(&data) {
                Ok(r) => {
                    let entry = Entry {
                        quality: r.quality,
                        created_ms: r.created_ms,
                        bytes: data.len() as u64,
                        done: vec![Done::Pending; cfg.sinks.len()],
                    };
                    self.entries.insert(id, entry);
                    self.bytes += data.len() as u64;
                    self.rec.records += 1;
                }
                Err(why) => {
                    quarantine(&cfg.dir, &path, &name)?;
                    self.rec.corrupt.push((path, why));
                }
            }
        } else if let Some((rest, done)) = name
            .strip_suffix(".ack")
            .map(|r| (r, Done::Acked))
            .or_else(|| name.strip_suffix(".dead").map(|r| (r, Done::DeadLettered)))
        {
            if let Some((id, sink)) = rest.split_once('.') {
                if let Ok(id) = id.parse::<u64>() {
                    self.acks.push((id, sink.to_string(), done, path));
                }
            }
        }
        Ok(())
    }

    /// Mark what each sink acknowledged or dead-lettered; remove markers of nothing.
    fn apply_markers(&mut self, sinks: &[String]) -> Result<(), SpoolError> {
        for (id, sink, done, path) in std::mem::take(&mut self.acks) {
            match (
                self.entries.get_mut(&id),
                sinks.iter().position(|s| *s == sink),
            ) {
                // Acknowledged wins over dead-lettered (a crash between the two markers).
                (Some(e), Some(i)) if e.done[i] != Done::Acked => e.done[i] = done,
                (Some(_), Some(_)) => {}
                // A marker without its record (deleted before the marker) or for a sink no
                // longer configured: nothing to keep.
                _ => fs::remove_file(&path).map_err(io(&path))?,
            }
        }
        Ok(())
    }
}

/// Move a file that is not a record to `{dir}/corrupt/`, for a person to look at.
fn quarantine(dir: &Path, path: &Path, name: &str) -> Result<(), SpoolError> {
    let dir = dir.join("corrupt");
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    fs::rename(path, dir.join(name)).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, max_records: usize, policy: EvictPolicy) -> SpoolConfig {
        SpoolConfig {
            dir: dir.to_owned(),
            max_records,
            max_bytes: 1 << 30,
            policy,
            sinks: vec!["local".into(), "mqtt".into()],
            min_free_bytes: 0,
            free_space: |_| None,
        }
    }

    /// Free space the test sets.
    static FREE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);

    #[test]
    fn a_filling_disk_evicts_the_worst_frames_and_keeps_the_reserve() {
        // Issue 12 item 5: on a full disk new frames failed at random (spool_write_failed).
        use std::sync::atomic::Ordering::Relaxed;
        let d = tempfile::tempdir().unwrap();
        let mut c = cfg(d.path(), 100, EvictPolicy::LowestQuality);
        c.min_free_bytes = 1000;
        c.free_space = |_| Some(FREE.load(Relaxed));
        FREE.store(1 << 30, Relaxed);
        let (mut s, _) = Spool::open(c).unwrap();
        for (i, q) in [(1, 0.9), (2, 0.3), (3, 0.8)] {
            assert!(s.append(&rec(i, q)).unwrap().id.is_some());
        }
        // The disk is now nearly full: room for one more above the reserve would not do.
        FREE.store(1100, Relaxed);
        let a = s.append(&rec(4, 0.7)).unwrap();
        assert!(a.id.is_some(), "a better frame takes the worst one's place");
        assert_eq!(a.evicted.len(), 1, "{a:?}");
        let held: Vec<f32> = s.entries.values().map(|e| e.quality).collect();
        assert_eq!(held, [0.9, 0.8, 0.7]);
        // A frame worse than everything held is the one not stored.
        let a = s.append(&rec(5, 0.1)).unwrap();
        assert!(a.id.is_none() && a.evicted.is_empty(), "{a:?}");
        assert!(s.disk_low());
        FREE.store(u64::MAX, Relaxed);
        s.append(&rec(6, 0.95)).unwrap();
        assert!(!s.disk_low(), "room again");
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(cfg(d.path(), 10, EvictPolicy::Oldest)).unwrap();
        // The final name taken by a directory: the rename fails after the write.
        std::fs::create_dir(s.rec_path(s.next_id)).unwrap();
        assert!(s.append(&rec(1, 0.5)).is_err());
        let tmps: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(tmps.is_empty(), "{tmps:?}");
    }

    #[test]
    fn a_spool_that_cannot_be_opened_names_its_key_and_path() {
        // Issue 12 item 10: the error read "spool : No such file or directory".
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), b"x").unwrap();
        let dir = d.path().join("f/spool");
        let e = Spool::open(cfg(&dir, 10, EvictPolicy::Oldest))
            .err()
            .expect("a spool under a file")
            .to_string();
        assert!(
            e.starts_with("spool.dir ") && e.contains(&*dir.to_string_lossy()),
            "{e}"
        );
    }

    fn rec(i: u32, quality: f32) -> SpoolRecord {
        SpoolRecord {
            key: format!("frames/s/d/2026/11/21/sess/{i:010}"),
            quality,
            created_ms: 1_000 + i as u64,
            jpeg: vec![i as u8; 1000],
            json: format!("{{\"sequence\":{i}}}").into_bytes(),
            annotation: Vec::new(),
        }
    }

    #[test]
    fn records_survive_a_restart_and_leave_only_when_every_sink_acked() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(cfg(d.path(), 100, EvictPolicy::LowestQuality)).unwrap();
        for i in 0..3 {
            s.append(&rec(i, 0.9)).unwrap();
        }
        s.ack(0, "local").unwrap();
        s.ack(0, "mqtt").unwrap();
        s.ack(1, "mqtt").unwrap();
        drop(s);
        let (s, r) = Spool::open(cfg(d.path(), 100, EvictPolicy::LowestQuality)).unwrap();
        assert_eq!(r.records, 2);
        assert_eq!(s.pending("local").unwrap(), vec![1, 2]);
        assert_eq!(s.pending("mqtt").unwrap(), vec![2]);
        assert_eq!(s.read(2).unwrap(), rec(2, 0.9));
        let mut s = s;
        assert_eq!(
            s.append(&rec(9, 0.9)).unwrap().id,
            Some(3),
            "ids continue after a restart"
        );
    }

    #[test]
    fn a_dead_lettered_record_no_longer_blocks_its_sink_and_is_kept_unless_stored() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(cfg(d.path(), 100, EvictPolicy::LowestQuality)).unwrap();
        for i in 0..3 {
            s.append(&rec(i, 0.9)).unwrap();
        }
        assert_eq!(
            s.dead_letter(0, "mqtt").unwrap(),
            None,
            "local still owes it"
        );
        assert_eq!(s.first_pending("mqtt").unwrap(), Some(1));
        assert_eq!(s.next_pending("mqtt", None).unwrap(), Some(1));
        assert_eq!(s.pending("local").unwrap(), vec![0, 1, 2]);
        drop(s);
        let (mut s, _) = Spool::open(cfg(d.path(), 100, EvictPolicy::LowestQuality)).unwrap();
        assert_eq!(s.pending("mqtt").unwrap(), vec![1, 2], "survives a restart");
        // Another sink stored it: the datalake has it, nothing more to keep.
        s.ack(0, "local").unwrap();
        assert_eq!(s.len().0, 2);
        assert!(!d.path().join("dead-letter").exists());
        // No sink stored it: kept aside, out of the spool and its bounds.
        assert_eq!(s.dead_letter(1, "mqtt").unwrap(), None);
        let kept = s.dead_letter(1, "local").unwrap().expect("kept");
        assert_eq!(kept, d.path().join("dead-letter/00000000000000000001.rec"));
        assert_eq!(
            format::decode(&fs::read(&kept).unwrap()).unwrap(),
            rec(1, 0.9)
        );
        assert_eq!(s.len().0, 1);
        assert_eq!(s.pending("mqtt").unwrap(), vec![2]);
        let left: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("00000000000000000001"))
            .collect();
        assert!(left.is_empty(), "no markers left: {left:?}");
        assert_eq!(s.dead_letter(2, "mqtt").unwrap(), None);
        assert_eq!(s.dead_letter(2, "mqtt").unwrap(), None, "twice is once");
        s.ack(2, "local").unwrap();
        assert!(s.is_empty());
    }

    #[test]
    fn torn_and_corrupt_files_are_skipped_counted_and_the_rest_delivered() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(cfg(d.path(), 100, EvictPolicy::LowestQuality)).unwrap();
        for i in 0..4 {
            s.append(&rec(i, 0.9)).unwrap();
        }
        drop(s);
        let p = |id: u64| d.path().join(format!("{id:020}.rec"));
        let bytes = fs::read(p(1)).unwrap();
        fs::write(p(1), &bytes[..bytes.len() / 2]).unwrap(); // truncated mid-record
        let mut b = fs::read(p(2)).unwrap();
        b[40] ^= 1; // one flipped bit
        fs::write(p(2), b).unwrap();
        fs::write(
            d.path().join("00000000000000000004.rec.tmp"),
            b"half a write",
        )
        .unwrap();
        let (s, r) = Spool::open(cfg(d.path(), 100, EvictPolicy::LowestQuality)).unwrap();
        assert_eq!(r.records, 2);
        assert_eq!(r.torn, 1);
        let reasons: Vec<_> = r.corrupt.iter().map(|(_, e)| e.reason()).collect();
        assert_eq!(reasons.len(), 2);
        assert!(
            reasons.contains(&"truncated") && reasons.contains(&"checksum"),
            "{reasons:?}"
        );
        assert_eq!(s.pending("local").unwrap(), vec![0, 3]);
        assert!(
            d.path()
                .join("corrupt")
                .join("00000000000000000002.rec")
                .exists(),
            "kept for inspection"
        );
    }

    #[test]
    fn entries_that_are_not_our_records_are_quarantined_not_trusted() {
        // Issue 12 item 7: a directory named like a record stopped startup; a record named
        // with u64::MAX made the next id wrap onto a pending record.
        let d = tempfile::tempdir().unwrap();
        let sinks = cfg(d.path(), 100, EvictPolicy::LowestQuality);
        {
            let (mut s, _) = Spool::open(sinks.clone()).unwrap();
            s.append(&rec(0, 0.9)).unwrap();
        }
        fs::create_dir(d.path().join("00000000000000000998.rec")).unwrap();
        fs::create_dir(d.path().join("x.tmp")).unwrap();
        let valid = fs::read(d.path().join("00000000000000000000.rec")).unwrap();
        fs::write(d.path().join("18446744073709551615.rec"), &valid).unwrap();
        fs::write(d.path().join("7.rec"), &valid).unwrap();
        let (mut s, r) = Spool::open(sinks).unwrap();
        assert_eq!(r.records, 1, "only the record this spool wrote");
        let mut reasons: Vec<&str> = r.corrupt.iter().map(|(_, e)| e.reason()).collect();
        reasons.sort();
        assert_eq!(reasons, ["name", "name", "not_a_file", "not_a_file"]);
        for n in [
            "00000000000000000998.rec",
            "x.tmp",
            "18446744073709551615.rec",
            "7.rec",
        ] {
            assert!(d.path().join("corrupt").join(n).exists(), "{n} quarantined");
            assert!(!d.path().join(n).exists(), "{n} gone from the spool");
        }
        // The next id follows the real records and overwrites nothing.
        let a = s.append(&rec(1, 0.8)).unwrap();
        assert_eq!(a.id, Some(1));
        assert_eq!(s.read(0).unwrap().quality, 0.9);
        assert_eq!(s.pending("local").unwrap(), vec![0, 1]);
        assert_eq!(record_id("00000000000000000001.rec"), Some(1));
        assert_eq!(record_id("09223372036854775808.rec"), None, "above MAX_ID");
    }

    #[test]
    fn a_full_spool_keeps_the_best_frames_by_default() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(cfg(d.path(), 3, EvictPolicy::LowestQuality)).unwrap();
        for (i, q) in [0.7, 0.9, 0.8].into_iter().enumerate() {
            s.append(&rec(i as u32, q)).unwrap();
        }
        let a = s.append(&rec(3, 0.95)).unwrap();
        assert_eq!(
            a,
            Appended {
                id: Some(3),
                evicted: vec![0]
            },
            "the 0.7 frame goes"
        );
        let a = s.append(&rec(4, 0.6)).unwrap();
        assert_eq!(
            a,
            Appended {
                id: None,
                evicted: vec![]
            },
            "a worse newcomer is the one dropped"
        );
        assert_eq!(s.len().0, 3);
        let files = fs::read_dir(d.path()).unwrap().count();
        assert_eq!(files, 3, "bounded on disk");
    }

    #[test]
    fn the_other_policies_evict_oldest_or_refuse_newest() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(cfg(d.path(), 2, EvictPolicy::Oldest)).unwrap();
        s.append(&rec(0, 0.9)).unwrap();
        s.append(&rec(1, 0.5)).unwrap();
        assert_eq!(
            s.append(&rec(2, 0.1)).unwrap(),
            Appended {
                id: Some(2),
                evicted: vec![0]
            }
        );
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(cfg(d.path(), 2, EvictPolicy::Newest)).unwrap();
        s.append(&rec(0, 0.1)).unwrap();
        s.append(&rec(1, 0.1)).unwrap();
        assert_eq!(
            s.append(&rec(2, 0.99)).unwrap(),
            Appended {
                id: None,
                evicted: vec![]
            }
        );
    }

    #[test]
    fn byte_bounds_count_as_well_as_record_bounds() {
        let d = tempfile::tempdir().unwrap();
        let mut c = cfg(d.path(), 100, EvictPolicy::LowestQuality);
        c.max_bytes = 2500; // two ~1.1 kB records
        let (mut s, _) = Spool::open(c).unwrap();
        s.append(&rec(0, 0.5)).unwrap();
        s.append(&rec(1, 0.6)).unwrap();
        let a = s.append(&rec(2, 0.7)).unwrap();
        assert_eq!(a.evicted, vec![0]);
        assert!(s.len().1 <= 2500);
    }

    #[test]
    fn unknown_sinks_and_ids_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(cfg(d.path(), 10, EvictPolicy::LowestQuality)).unwrap();
        assert!(matches!(s.ack(5, "local"), Err(SpoolError::Missing(5))));
        s.append(&rec(0, 0.9)).unwrap();
        assert!(matches!(s.ack(0, "s3"), Err(SpoolError::UnknownSink(_))));
    }
}
