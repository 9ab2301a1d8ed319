//! Files that a crash cannot leave half-written: the spool's records and the local
//! datalake's objects are both written this way.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `bytes` to `path` so that a reader sees all of it or nothing, also after a power
/// cut: written under `tmp` (on the same filesystem), fsynced, renamed over `path`, and the
/// directory fsynced. A failed write (a full disk) leaves nothing under `tmp`. The error
/// names the path that failed.
pub fn write_atomic(
    tmp: &Path,
    path: &Path,
    bytes: &[u8],
) -> Result<(), (PathBuf, std::io::Error)> {
    let written = File::create(tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(tmp);
        return Err((tmp.to_owned(), e));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| (dir.to_owned(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_lands_whole_and_a_failed_one_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let (tmp, path) = (d.path().join("x.tmp"), d.path().join("x"));
        write_atomic(&tmp, &path, b"frame").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"frame");
        assert!(!tmp.exists());
        // The final name taken by a directory: the rename fails after the write.
        let taken = d.path().join("dir");
        fs::create_dir_all(taken.join("inside")).unwrap();
        let (p, _) = write_atomic(&tmp, &taken, b"frame").unwrap_err();
        assert_eq!(p, tmp);
        assert!(!tmp.exists());
    }
}
