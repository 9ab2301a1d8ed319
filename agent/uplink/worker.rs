//! Delivery from the spool to one sink: one OS thread per sink, so a slow or dead sink
//! never holds up another, nor the encoder (which only appends to the spool).
//!
//! The worker takes the oldest record its sink has not acknowledged, delivers it, and
//! acks it in the spool only when the sink says it is stored. A failed delivery is
//! retried after an exponential backoff (100 ms doubling to 30 s, reset by a success);
//! the record stays in the spool meanwhile. The worker ends when the producer is done and
//! nothing is pending — or, when the agent is stopping, at the first failure, leaving the
//! rest durable in the spool for the next start.

use metrics::{counter, gauge, histogram};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Encoded, Sink};
use crate::capture::backoff::Backoff;
use crate::spool::{Appended, Spool, SpoolError, SpoolRecord};

/// The spool shared by the encoder (appends) and the uplink workers (read, ack).
/// File I/O happens under the lock; neither side is on the capture → score hot path.
pub struct SpoolHandle {
    spool: Mutex<Spool>,
    wake: Condvar,
    /// The encoder has finished: nothing more will be appended.
    pub producer_done: AtomicBool,
    /// Capture time (Unix ms) of the oldest frame held; 0 = empty.
    oldest_ms: AtomicU64,
}

impl SpoolHandle {
    pub fn new(spool: Spool) -> SpoolHandle {
        let h = SpoolHandle {
            spool: Mutex::new(spool),
            wake: Condvar::new(),
            producer_done: AtomicBool::new(false),
            oldest_ms: AtomicU64::new(0),
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

    pub fn len(&self) -> (usize, u64) {
        self.spool.lock().expect("spool lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len().0 == 0
    }

    fn publish(&self, s: &Spool) {
        let (n, bytes) = s.len();
        gauge!("endo_agent_spool_records").set(n as f64);
        gauge!("endo_agent_spool_bytes").set(bytes as f64);
        self.oldest_ms
            .store(s.oldest_created_ms().unwrap_or(0), Ordering::Relaxed);
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

/// Run one sink until the producer is done and everything is delivered (or, with `stop`
/// set, until the first failure). Returns the number of frames delivered.
pub fn run_sink(
    mut sink: Box<dyn Sink>,
    spool: &SpoolHandle,
    stop: &AtomicBool,
    delivered: &AtomicU64,
) -> u64 {
    let name = sink.name();
    let ok = counter!("endo_agent_frames_delivered_total", "sink" => name);
    let write_h = histogram!("endo_agent_stage_duration_seconds", "stage" => "write");
    // No time-based reset: a delivery that succeeds resets it explicitly.
    let mut backoff = Backoff::new(
        Duration::from_millis(100),
        Duration::from_secs(30),
        Duration::MAX,
    );
    let mut n = 0;
    loop {
        let next = {
            let s = spool.spool.lock().expect("spool lock");
            match s.first_pending(name) {
                Ok(Some(id)) => Some((id, s.read(id))),
                Ok(None) => {
                    if spool.producer_done.load(Ordering::Acquire) {
                        return n;
                    }
                    // Nothing to do: sleep until the encoder appends (or a timeout).
                    let _ = spool
                        .wake
                        .wait_timeout(s, Duration::from_millis(200))
                        .expect("spool lock");
                    None
                }
                Err(e) => {
                    tracing::error!("{e}");
                    return n;
                }
            }
        };
        let Some((id, read)) = next else { continue };
        let rec = match read {
            Ok(r) => r,
            Err(e) => {
                // The file went bad after it was written (disk fault): count it and move on
                // so one bad record cannot block the queue.
                tracing::error!("{e}");
                counter!("endo_agent_frames_evicted_total", "reason" => "spool_unreadable")
                    .increment(1);
                let _ = spool.spool.lock().expect("spool lock").ack(id, name);
                continue;
            }
        };
        let item = Encoded {
            key: rec.key,
            jpeg: rec.jpeg,
            record_json: rec.json,
        };
        let t0 = Instant::now();
        match sink.deliver(&item) {
            Ok(()) => {
                write_h.record(t0.elapsed().as_secs_f64());
                let mut s = spool.spool.lock().expect("spool lock");
                if let Err(e) = s.ack(id, name) {
                    tracing::error!("{e}");
                }
                spool.publish(&s);
                drop(s);
                ok.increment(1);
                delivered.fetch_add(1, Ordering::Relaxed);
                n += 1;
                backoff.reset();
            }
            Err(e) => {
                counter!("endo_agent_sink_errors_total", "sink" => name, "reason" => e.reason())
                    .increment(1);
                tracing::error!(sink = name, "{e}");
                if stop.load(Ordering::Relaxed) && spool.producer_done.load(Ordering::Acquire) {
                    tracing::warn!(sink = name, "stopping with frames still in the spool; they are sent after the next start");
                    return n;
                }
                let delay = backoff.on_failure(Duration::ZERO);
                let end = Instant::now() + delay;
                while Instant::now() < end && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}
