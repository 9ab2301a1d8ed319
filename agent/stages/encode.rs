//! The encode worker: JPEG of the cropped, masked frame plus its record, then the spool;
//! documents without an image (a procedure record) go to the spool as they are. Ends
//! when the score thread hangs up; then it closes the spool for the uplink workers.

use crossbeam_channel::Receiver;
use metrics::{counter, histogram, Counter};
use std::time::{Duration, Instant};

use super::job::Job;
use crate::record::{Origin, Producer, Record};
use crate::spool::{SpoolHandle, SpoolRecord};

/// Encode every job and spool every document until the score thread hangs up, then
/// close the spool.
pub fn run(
    producer: &Producer,
    jobs: Receiver<Job>,
    documents: Receiver<SpoolRecord>,
    spool: &SpoolHandle,
) {
    let encode_h = histogram!("endo_agent_stage_duration_seconds", "stage" => "encode");
    let mut full = FullLog::new();
    let (mut jobs_open, mut docs_open) = (true, true);
    let (no_jobs, no_docs) = (crossbeam_channel::never(), crossbeam_channel::never());
    while jobs_open || docs_open {
        let item = crossbeam_channel::select! {
            recv(if jobs_open { &jobs } else { &no_jobs }) -> job => match job {
                Ok(job) => {
                    let t0 = Instant::now();
                    let item = spool_record(producer, job);
                    encode_h.record(t0.elapsed().as_secs_f64());
                    item
                }
                Err(_) => {
                    jobs_open = false;
                    None
                }
            },
            recv(if docs_open { &documents } else { &no_docs }) -> doc => {
                docs_open = doc.is_ok();
                doc.ok()
            },
        };
        let Some(item) = item else { continue };
        append(&item, spool, &mut full);
    }
    spool.close();
}

/// Append to the spool and count what was lost: frames as evicted frames, a procedure
/// record (no image) as a lost document.
fn append(item: &SpoolRecord, spool: &SpoolHandle, full: &mut FullLog) {
    let document = item.jpeg.is_empty();
    let lost_document = |reason: &'static str, why: &dyn std::fmt::Display| {
        counter!("endo_agent_documents_lost_total", "reason" => reason).increment(1);
        tracing::error!(key = %item.key, "a procedure record was lost: {why}");
    };
    match spool.append(item) {
        Ok(a) if document && a.id.is_none() => {
            lost_document("spool_full", &"the spool is full and keeps what it holds");
            full.note(a.evicted.len() as u64, spool);
        }
        Ok(a) => full.note(a.evicted.len() as u64 + u64::from(a.id.is_none()), spool),
        Err(e) if document => lost_document("spool_write_failed", &e),
        Err(e) => {
            counter!("endo_agent_frames_evicted_total", "reason" => "spool_write_failed")
                .increment(1);
            tracing::error!("{e}");
        }
    }
}

/// The JPEG and record of a job, as one spool record (None when encoding failed).
fn spool_record(producer: &Producer, mut job: Job) -> Option<SpoolRecord> {
    let jpeg = match job.frame.encode_jpeg(producer.jpeg_quality) {
        Ok(j) => j,
        Err(e) => {
            counter!("endo_agent_frames_evicted_total", "reason" => "encode_failed").increment(1);
            tracing::error!("{e}");
            return None;
        }
    };
    let captured_at = job.frame.captured_at();
    let (pts_ns, source_frame) = job.frame.pts_and_offset();
    let origin = Origin {
        key: &job.key,
        session: &job.session,
        sequence: job.seq,
        captured_at,
        pts_ns,
        source_frame,
        source_size: job.frame.source_size(),
        reason: job.reason.as_str(),
        model: job.model.as_deref(),
        operator: job.operator.take(),
    };
    let rec = Record::new(producer, origin, job.frame.fov(), &job.score, &jpeg);
    Some(SpoolRecord {
        key: job.key,
        quality: job.score.quality,
        created_ms: captured_at.timestamp_millis().max(0) as u64,
        jpeg,
        json: serde_json::to_vec(&rec).expect("records serialise"),
        annotation: job.annotation,
    })
}

/// A full spool (or disk) drops a frame per selection: counted every time, logged once
/// every 10 s with the count since the last line.
struct FullLog {
    evicted: Counter,
    logged: Option<(Instant, u64)>,
}

impl FullLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn new() -> FullLog {
        FullLog {
            evicted: counter!("endo_agent_frames_evicted_total", "reason" => "spool_full"),
            logged: None,
        }
    }

    /// `lost` frames: evicted from the spool, or the new one refused.
    fn note(&mut self, lost: u64, spool: &SpoolHandle) {
        self.evicted.increment(lost);
        if lost == 0 {
            return;
        }
        match &mut self.logged {
            Some((at, n)) if at.elapsed() < Self::EVERY => *n += lost,
            _ => {
                let before = self.logged.map_or(0, |(_, n)| n);
                tracing::warn!(
                    lost,
                    disk_low = spool.disk_low(),
                    dropped_since_last_log = before,
                    "spool full (spool.max_records / max_mib, or the disk: spool.min_free_mib)"
                );
                self.logged = Some((Instant::now(), 0));
            }
        }
    }
}
