//! The local directory datalake: `{dir}/{key}.jpg` and `{dir}/{key}.json`.
//!
//! Writes are atomic: each file is written under `{dir}/.tmp/`, flushed to disk, renamed
//! into place, and the directory is synced. The JPEG lands before the JSON record, so a
//! record on disk always has its image beside it and a crash never leaves a half file
//! under a final name. A write that fails (a full disk) removes its temporary file; what a
//! crash left in `.tmp/` is removed when the sink starts.

use std::fs;
use std::path::{Path, PathBuf};

use super::{BlockingSink, Encoded, SinkError};

/// Temporary files, under the datalake's root (the same filesystem: renames are atomic).
pub const TMP_DIR: &str = ".tmp";

pub struct LocalDatalake {
    root: PathBuf,
}

impl LocalDatalake {
    /// The datalake at `root`; temporary files a crash left behind are removed.
    pub fn new(root: impl Into<PathBuf>) -> LocalDatalake {
        let root = root.into();
        if let Ok(dir) = fs::read_dir(root.join(TMP_DIR)) {
            let stale = dir
                .filter_map(Result::ok)
                .filter(|e| fs::remove_file(e.path()).is_ok());
            let n = stale.count();
            if n > 0 {
                tracing::info!("local datalake: removed {n} temporary files left by a crash");
            }
        }
        LocalDatalake { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Atomically write `bytes` to `{root}/{rel}`.
    pub fn put(&self, rel: &str, bytes: &[u8]) -> Result<(), SinkError> {
        let path = self.root.join(rel);
        let io = |source| SinkError::Io {
            path: path.clone(),
            source,
        };
        let dir = path.parent().expect("keys have directories");
        fs::create_dir_all(dir).map_err(io)?;
        let name = path
            .file_name()
            .expect("keys have file names")
            .to_string_lossy();
        let tmp_dir = self.root.join(TMP_DIR);
        fs::create_dir_all(&tmp_dir).map_err(io)?;
        let tmp = tmp_dir.join(format!("{name}-{}", std::process::id()));
        // A full disk: nothing half-written stays behind.
        crate::fsutil::write_atomic(&tmp, &path, bytes).map_err(|(_, e)| io(e))
    }
}

impl BlockingSink for LocalDatalake {
    fn name(&self) -> &'static str {
        "local"
    }

    fn deliver(&mut self, item: &Encoded) -> Result<(), SinkError> {
        // Never a path outside the datalake, whatever the spool holds.
        super::check_key("local", &item.key)?;
        // The record last: a record in the datalake always has its image (and annotation).
        // A document without an image (a procedure record) is its `.json` alone.
        if !item.jpeg.is_empty() {
            self.put(&format!("{}.jpg", item.key), &item.jpeg)?;
        }
        if !item.annotation.is_empty() {
            self.put(&super::annotation_name(&item.key), &item.annotation)?;
        }
        self.put(&format!("{}.json", item.key), &item.record_json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_files_do_not_outlive_a_failed_write_or_a_restart() {
        // Issue 12 item 5: zero-byte .tmp files stayed in the datalake after a full disk.
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("lake");
        let lake = LocalDatalake::new(&root);
        lake.put("a/b/1.jpg", b"jpeg").unwrap();
        // The final name taken by a directory: the rename fails after the write.
        fs::create_dir_all(root.join("a/b/2.jpg")).unwrap();
        assert!(lake.put("a/b/2.jpg", b"jpeg").is_err());
        assert_eq!(fs::read_dir(root.join(TMP_DIR)).unwrap().count(), 0);
        // What a crash left is removed at the next start.
        fs::write(root.join(TMP_DIR).join("3.jpg-999"), b"").unwrap();
        let _ = LocalDatalake::new(&root);
        assert_eq!(fs::read_dir(root.join(TMP_DIR)).unwrap().count(), 0);
        assert_eq!(fs::read(root.join("a/b/1.jpg")).unwrap(), b"jpeg");
    }

    #[test]
    fn a_key_that_escapes_the_datalake_is_refused_and_nothing_is_written() {
        // Issue 12 item 7: a valid spool record with key `../escaped/X` was written
        // outside the datalake.
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("lake");
        let mut lake = LocalDatalake::new(&root);
        for key in ["../escaped/X", "/tmp/abs", "a/../../b"] {
            let item = Encoded {
                key: key.into(),
                jpeg: vec![0xff, 0xd8],
                record_json: b"{}".to_vec(),
                annotation: Vec::new(),
            };
            let e = lake.deliver(&item).unwrap_err();
            assert_eq!(e.reason(), super::super::UNSAFE_KEY, "{key}: {e}");
        }
        assert!(!top.path().join("escaped").exists());
        assert!(!root.exists(), "nothing written at all");
    }

    #[test]
    fn delivers_both_files_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let mut lake = LocalDatalake::new(dir.path());
        let item = Encoded {
            key: "frames/s/d/2026/01/02/sess/0000000001".into(),
            jpeg: vec![0xff, 0xd8, 1, 2, 3],
            record_json: b"{}".to_vec(),
            annotation: Vec::new(),
        };
        lake.deliver(&item).unwrap();
        lake.deliver(&item).unwrap(); // idempotent: same key, same bytes
        let d = dir.path().join("frames/s/d/2026/01/02/sess");
        let mut names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, vec!["0000000001.jpg", "0000000001.json"]);
        assert_eq!(fs::read(d.join("0000000001.jpg")).unwrap(), item.jpeg);
    }

    #[test]
    fn an_unwritable_root_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"x").unwrap();
        let lake = LocalDatalake::new(&file);
        let e = lake.put("a/b.jpg", b"x").unwrap_err().to_string();
        assert!(e.contains("not-a-dir"), "{e}");
    }
}
