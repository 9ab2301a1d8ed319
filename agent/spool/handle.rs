//! The spool as the running agent shares it: the encoder appends, each uplink worker
//! reads and acknowledges, the status reads its size and age. One lock around the
//! [`Spool`]; file I/O happens under it, and neither side is on the capture → score path.

use metrics::gauge;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::{Appended, Spool, SpoolError, SpoolRecord};

/// The spool shared by the encoder (appends) and the uplink workers (read, ack).
/// File I/O happens under the lock; neither side is on the capture → score hot path.
pub struct SpoolHandle {
    spool: Mutex<Spool>,
    wake: Condvar,
    /// The encoder has finished: nothing more will be appended.
    producer_done: AtomicBool,
    /// Capture time (Unix ms) of the oldest frame held; 0 = empty.
    oldest_ms: AtomicU64,
    /// [`Spool::disk_low`] as of the last append.
    disk_low: AtomicBool,
}

impl SpoolHandle {
    pub fn new(spool: Spool) -> SpoolHandle {
        let h = SpoolHandle {
            spool: Mutex::new(spool),
            wake: Condvar::new(),
            producer_done: AtomicBool::new(false),
            oldest_ms: AtomicU64::new(0),
            disk_low: AtomicBool::new(false),
        };
        h.publish(&h.spool.lock().expect("spool lock"));
        h
    }

    pub fn append(&self, r: &SpoolRecord) -> Result<Appended, SpoolError> {
        let mut s = self.spool.lock().expect("spool lock");
        let a = s.append(r)?;
        self.publish(&s);
        drop(s);
        self.wake.notify_all();
        Ok(a)
    }

    /// The encoder is done; wake the workers so they can finish.
    pub fn close(&self) {
        self.producer_done.store(true, Ordering::Release);
        self.wake.notify_all();
    }

    /// Whether the encoder has finished (nothing more will be appended).
    pub fn producer_done(&self) -> bool {
        self.producer_done.load(Ordering::Acquire)
    }

    /// The spool itself, for a worker's reads and acks.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Spool> {
        self.spool.lock().expect("spool lock")
    }

    /// Wait (releasing `held`) until an append or [`close`](Self::close), at most `d`.
    pub(crate) fn wait(&self, held: MutexGuard<'_, Spool>, d: Duration) {
        let _ = self.wake.wait_timeout(held, d).expect("spool lock");
    }

    pub fn len(&self) -> (usize, u64) {
        self.spool.lock().expect("spool lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len().0 == 0
    }

    pub(crate) fn publish(&self, s: &Spool) {
        let (n, bytes) = s.len();
        gauge!("endo_agent_spool_records").set(n as f64);
        gauge!("endo_agent_spool_bytes").set(bytes as f64);
        self.oldest_ms
            .store(s.oldest_created_ms().unwrap_or(0), Ordering::Relaxed);
        self.disk_low.store(s.disk_low(), Ordering::Relaxed);
        gauge!("endo_agent_spool_disk_low").set(f64::from(u8::from(s.disk_low())));
    }

    /// Whether the disk (not `spool.max_mib`) limited the last frame appended.
    pub fn disk_low(&self) -> bool {
        self.disk_low.load(Ordering::Relaxed)
    }

    /// Age of the oldest frame in the spool at `now_ms` (zero when empty), so that a
    /// periodic task can show it growing while a sink is down.
    pub fn oldest_age(&self, now_ms: u64) -> Duration {
        match self.oldest_ms.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            t => Duration::from_millis(now_ms.saturating_sub(t)),
        }
    }
}
