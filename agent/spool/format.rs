//! The spool's record file format: one file per selected frame, written to a temporary
//! name, flushed and renamed, so a power loss leaves either the whole record or a `.tmp`
//! file that recovery deletes.
//!
//! ```text
//! offset size  field
//! 0      8     magic "ENDOSPL1"
//! 8      4     body length (u32 LE): bytes after the checksum field
//! 12     4     CRC-32 (IEEE) of the body
//! 16     ...   body:
//!              f32 LE   quality (used by the eviction policy)
//!              u64 LE   created, Unix milliseconds
//!              u16 LE   key length, then the key (UTF-8)
//!              u32 LE   JPEG length, then the JPEG
//!              u32 LE   record JSON length, then the JSON
//!              optional: u32 LE annotation length, then the annotation JSON
//! ```
//!
//! The annotation section is present only for frames an operator annotated; a record
//! without one is byte-identical to the format before annotations existed.
//!
//! A file shorter than its declared length (torn write on a filesystem without atomic
//! rename), with a wrong magic, or whose checksum does not match is refused by
//! [`decode`] with the reason; nothing in it is trusted.

pub const MAGIC: &[u8; 8] = b"ENDOSPL1";
const HEADER: usize = 16;

/// One spooled frame: what every sink needs to deliver it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolRecord {
    pub key: String,
    pub quality: f32,
    pub created_ms: u64,
    pub jpeg: Vec<u8>,
    pub json: Vec<u8>,
    /// The operator's annotation (COCO-style JSON), empty for most frames.
    pub annotation: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a spool record (bad magic)")]
    Magic,
    #[error("truncated: {have} bytes, the header promises {want}")]
    Truncated { have: usize, want: usize },
    #[error("checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("malformed body: {0}")]
    Body(&'static str),
    /// Recovery only: an entry with a spool name that is not a regular file (a directory,
    /// a socket): never ours.
    #[error("not a regular file")]
    NotAFile,
    /// Recovery only: a record file whose name is not one this spool writes
    /// (`{id:020}.rec` with the id in range), so its id cannot be trusted.
    #[error("not a spool record name (the id must be 20 digits, at most {max})", max = crate::spool::MAX_ID)]
    Name,
}

impl FormatError {
    /// A bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            FormatError::Magic => "magic",
            FormatError::Truncated { .. } => "truncated",
            FormatError::Checksum { .. } => "checksum",
            FormatError::Body(_) => "body",
            FormatError::NotAFile => "not_a_file",
            FormatError::Name => "name",
        }
    }
}

/// Serialise a record (header, checksum, body).
pub fn encode(r: &SpoolRecord) -> Vec<u8> {
    let key = r.key.as_bytes();
    let ann = if r.annotation.is_empty() {
        0
    } else {
        4 + r.annotation.len()
    };
    let body_len = 4 + 8 + 2 + key.len() + 4 + r.jpeg.len() + 4 + r.json.len() + ann;
    let mut out = Vec::with_capacity(HEADER + body_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&r.quality.to_le_bytes());
    out.extend_from_slice(&r.created_ms.to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(r.jpeg.len() as u32).to_le_bytes());
    out.extend_from_slice(&r.jpeg);
    out.extend_from_slice(&(r.json.len() as u32).to_le_bytes());
    out.extend_from_slice(&r.json);
    if !r.annotation.is_empty() {
        out.extend_from_slice(&(r.annotation.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.annotation);
    }
    let crc = crc32fast::hash(&out[HEADER..]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Parse and verify a record file's bytes.
pub fn decode(bytes: &[u8]) -> Result<SpoolRecord, FormatError> {
    if bytes.len() < HEADER {
        return Err(if bytes.len() >= 8 && &bytes[..8] != MAGIC {
            FormatError::Magic
        } else {
            FormatError::Truncated {
                have: bytes.len(),
                want: HEADER,
            }
        });
    }
    if &bytes[..8] != MAGIC {
        return Err(FormatError::Magic);
    }
    let body_len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    let want = HEADER + body_len;
    if bytes.len() < want {
        return Err(FormatError::Truncated {
            have: bytes.len(),
            want,
        });
    }
    let body = &bytes[HEADER..want];
    let stored = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(FormatError::Checksum { stored, computed });
    }
    let mut c = Cursor { b: body, at: 0 };
    let quality = f32::from_le_bytes(c.take(4)?.try_into().expect("4 bytes"));
    let created_ms = u64::from_le_bytes(c.take(8)?.try_into().expect("8 bytes"));
    let key_len = u16::from_le_bytes(c.take(2)?.try_into().expect("2 bytes")) as usize;
    let key = std::str::from_utf8(c.take(key_len)?)
        .map_err(|_| FormatError::Body("key is not UTF-8"))?
        .to_string();
    let jpeg_len = u32::from_le_bytes(c.take(4)?.try_into().expect("4 bytes")) as usize;
    let jpeg = c.take(jpeg_len)?.to_vec();
    let json_len = u32::from_le_bytes(c.take(4)?.try_into().expect("4 bytes")) as usize;
    let json = c.take(json_len)?.to_vec();
    let mut annotation = Vec::new();
    if c.at != body.len() {
        let len = u32::from_le_bytes(c.take(4)?.try_into().expect("4 bytes")) as usize;
        annotation = c.take(len)?.to_vec();
    }
    if c.at != body.len() {
        return Err(FormatError::Body("trailing bytes"));
    }
    Ok(SpoolRecord {
        key,
        quality,
        created_ms,
        jpeg,
        json,
        annotation,
    })
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or(FormatError::Body("field runs past the body"))?;
        self.at += n;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> SpoolRecord {
        SpoolRecord {
            key: "frames/s/d/2026/11/21/sess/0000000007".into(),
            quality: 0.83,
            created_ms: 1_790_000_000_123,
            jpeg: (0..5000u32).map(|i| (i * 7) as u8).collect(),
            json: br#"{"sequence":7}"#.to_vec(),
            annotation: Vec::new(),
        }
    }

    #[test]
    fn a_record_round_trips() {
        assert_eq!(decode(&encode(&rec())).unwrap(), rec());
        let mut annotated = rec();
        annotated.annotation = br#"{"annotations":[]}"#.to_vec();
        let bytes = encode(&annotated);
        assert_eq!(
            bytes.len(),
            encode(&rec()).len() + 4 + annotated.annotation.len()
        );
        assert_eq!(decode(&bytes).unwrap(), annotated);
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = encode(&rec());
        for cut in [0, 5, 15, 16, 100, bytes.len() - 1] {
            let e = decode(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(e, FormatError::Truncated { .. }),
                "cut at {cut}: {e}"
            );
        }
    }

    #[test]
    fn a_flipped_byte_anywhere_in_the_body_fails_the_checksum() {
        let bytes = encode(&rec());
        for at in [16, 20, 40, bytes.len() / 2, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[at] ^= 0x10;
            assert!(
                matches!(decode(&b).unwrap_err(), FormatError::Checksum { .. }),
                "flip at {at}"
            );
        }
        let mut b = bytes.clone();
        b[0] = b'X';
        assert_eq!(decode(&b).unwrap_err(), FormatError::Magic);
    }
}
