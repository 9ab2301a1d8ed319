//! Delivery from the spool to one sink: one OS thread per sink, so a slow or dead sink
//! never holds up another, nor the encoder (which only appends to the spool).
//!
//! The worker sends the oldest records its sink has not acknowledged — up to the sink's
//! window at once — and acks each in the spool only when the sink says it is stored.
//! After a failure it resets the sink, waits an exponential backoff with jitter
//! (`uplink.backoff_initial_ms` doubling to `uplink.backoff_max_ms`, each wait drawn
//! from its upper half; reset by a success), and sends again from the oldest
//! unacknowledged record; records stay in the spool meanwhile.
//!
//! A frame the sink can never take ([`SinkError::Undeliverable`]: larger than the protocol
//! or the broker allows) is not retried: it is dead-lettered for this sink
//! ([`Spool::dead_letter`]; kept on disk when no other sink stored it), counted in
//! `endo_agent_uplink_dead_letter_total{sink,reason}`, logged with its key, and the frames
//! behind it flow on. The worker ends when the
//! producer is done and nothing is pending — or, when the agent is stopping, at the first
//! failure, leaving the rest durable in the spool for the next start.

use metrics::{counter, gauge, histogram};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Encoded, Sink, SinkError};
use crate::backoff::Backoff;
use crate::shutdown::Shutdown;
use crate::spool::{SpoolError, SpoolHandle};
use rand_core::{Rng, SeedableRng};

/// What the rest of the agent (status, systemd STATUS line) sees of one sink's worker.
#[derive(Debug)]
pub struct SinkStatus {
    pub name: &'static str,
    /// Frames the sink has stored.
    pub delivered: AtomicU64,
    /// Whether its last attempt succeeded.
    pub up: AtomicBool,
}

impl SinkStatus {
    pub fn new(name: &'static str) -> SinkStatus {
        SinkStatus {
            name,
            delivered: AtomicU64::new(0),
            up: AtomicBool::new(true),
        }
    }
}

/// Retry timing of a worker.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub initial: Duration,
    pub max: Duration,
}

impl From<&crate::config::UplinkConfig> for Retry {
    fn from(c: &crate::config::UplinkConfig) -> Retry {
        Retry {
            initial: Duration::from_millis(c.backoff_initial_ms),
            max: Duration::from_millis(c.backoff_max_ms),
        }
    }
}

/// Run one sink until the producer is done and everything is delivered (or, with `stop`
/// set, until the first failure). Returns the number of frames delivered.
pub fn run_sink(
    sink: Box<dyn Sink>,
    spool: &SpoolHandle,
    retry: Retry,
    stop: &Shutdown,
    status: &SinkStatus,
) -> u64 {
    let mut w = Worker::new(sink, spool, retry, stop, status);
    loop {
        // 1. Fill the window.
        let (idle, failure) = match w.fill() {
            Ok(idle) => (idle, None),
            Err(Stop::Failed(e)) => (false, Some(e)),
            Err(Stop::SpoolUnreadable) => {
                w.sink.close();
                return w.delivered;
            }
        };
        w.m.inflight.set(w.inflight.len() as f64);
        // 2. Collect acknowledgements.
        let failure = failure.or_else(|| w.collect().err());
        // 3. On failure: forget what is in flight, back off, start again from the oldest.
        if let Some(e) = failure {
            if w.fail(e) {
                return w.delivered;
            }
            continue;
        }
        // 4. Nothing to send and nothing in flight: everything sent so far is stored,
        //    so the next scan starts from the oldest again; finish, or wait for the encoder.
        if idle && w.inflight.is_empty() && w.finish_or_wait() {
            return w.delivered;
        }
    }
}

/// Why filling the window stopped short.
enum Stop {
    /// The sink failed: back off and start again from the oldest record.
    Failed(SinkError),
    /// The spool's index cannot be read: nothing more can be sent.
    SpoolUnreadable,
}

/// A worker's metric handles, labelled with its sink.
struct WorkerMetrics {
    delivered: metrics::Counter,
    documents: metrics::Counter,
    sent: metrics::Counter,
    retried: metrics::Counter,
    up: metrics::Gauge,
    inflight: metrics::Gauge,
    write: metrics::Histogram,
}

/// One sink's delivery state: the records in flight and where the scan is.
struct Worker<'a> {
    sink: Box<dyn Sink>,
    name: &'static str,
    spool: &'a SpoolHandle,
    stop: &'a Shutdown,
    status: &'a SinkStatus,
    m: WorkerMetrics,
    backoff: Backoff,
    jitter: rand_xoshiro::Xoshiro256PlusPlus,
    window: usize,
    /// Sent, awaiting acknowledgement; the last id sent; the highest id ever sent.
    inflight: BTreeSet<u64>,
    /// Those of `inflight` that are documents (procedure records), not frames.
    documents: BTreeSet<u64>,
    cursor: Option<u64>,
    high: Option<u64>,
    delivered: u64,
}

impl<'a> Worker<'a> {
    fn new(
        sink: Box<dyn Sink>,
        spool: &'a SpoolHandle,
        retry: Retry,
        stop: &'a Shutdown,
        status: &'a SinkStatus,
    ) -> Worker<'a> {
        let name = sink.name();
        // Every failure reason exists from the start (at 0), so rates and alerts see a series.
        for reason in SinkError::REASONS {
            counter!("endo_agent_sink_errors_total", "sink" => name, "reason" => reason)
                .increment(0);
        }
        for reason in SinkError::DEAD_LETTER_REASONS {
            counter!("endo_agent_uplink_dead_letter_total", "sink" => name, "reason" => reason)
                .increment(0);
        }
        let w = Worker {
            name,
            spool,
            stop,
            status,
            m: WorkerMetrics {
                delivered: counter!("endo_agent_frames_delivered_total", "sink" => name),
                documents: counter!("endo_agent_documents_delivered_total", "sink" => name),
                sent: counter!("endo_agent_sink_sent_total", "sink" => name),
                retried: counter!("endo_agent_sink_retries_total", "sink" => name),
                up: gauge!("endo_agent_sink_up", "sink" => name),
                inflight: gauge!("endo_agent_sink_inflight", "sink" => name),
                write: histogram!("endo_agent_stage_duration_seconds", "stage" => "write"),
            },
            // No time-based reset: a delivery that succeeds resets it explicitly.
            backoff: Backoff::new(retry.initial, retry.max, Duration::MAX),
            jitter: rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
                    ^ u64::from(std::process::id()),
            ),
            window: sink.window().max(1),
            sink,
            inflight: BTreeSet::new(),
            documents: BTreeSet::new(),
            cursor: None,
            high: None,
            delivered: 0,
        };
        w.set_up(true);
        w
    }

    fn set_up(&self, v: bool) {
        self.m.up.set(if v { 1.0 } else { 0.0 });
        self.status.up.store(v, Ordering::Relaxed);
    }

    /// Send the oldest records not sent yet, up to the window. Ok(idle): whether there was
    /// nothing to send.
    fn fill(&mut self) -> Result<bool, Stop> {
        let mut idle = true;
        while self.inflight.len() < self.window {
            let next = {
                let s = self.spool.lock();
                match s.next_pending(self.name, self.cursor) {
                    Ok(Some(id)) => Some((id, s.read(id))),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::error!("{e}");
                        return Err(Stop::SpoolUnreadable);
                    }
                }
            };
            let Some((id, read)) = next else { break };
            idle = false;
            self.cursor = Some(id);
            let rec = match read {
                Ok(r) => r,
                Err(SpoolError::Missing(_)) => continue, // evicted meanwhile
                Err(e) => {
                    // The file went bad after it was written (disk fault): count it and move
                    // on so one bad record cannot block the queue.
                    tracing::error!("{e}");
                    counter!("endo_agent_frames_evicted_total", "reason" => "spool_unreadable")
                        .increment(1);
                    let _ = self.spool.lock().ack(id, self.name);
                    continue;
                }
            };
            let document = rec.jpeg.is_empty();
            let item = Encoded {
                key: rec.key,
                jpeg: rec.jpeg,
                record_json: rec.json,
                annotation: rec.annotation,
            };
            self.send(id, item, document).map_err(Stop::Failed)?;
        }
        Ok(idle)
    }

    /// Send one record; a record the sink can never take is dead-lettered, not a failure.
    fn send(&mut self, id: u64, item: Encoded, document: bool) -> Result<(), SinkError> {
        if self.high.is_some_and(|h| id <= h) {
            self.m.retried.increment(1);
        }
        self.high = self.high.max(Some(id));
        let t0 = Instant::now();
        match self.sink.send(id, item) {
            Ok(()) => {
                self.m.sent.increment(1);
                self.inflight.insert(id);
                if document {
                    self.documents.insert(id);
                }
                if self.window == 1 {
                    self.m.write.record(t0.elapsed().as_secs_f64());
                }
                Ok(())
            }
            Err(SinkError::Undeliverable {
                key,
                reason,
                detail,
                ..
            }) => {
                self.dead_letter(id, &key, reason, &detail);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Retrying cannot help: take the record out of this sink's queue.
    fn dead_letter(&self, id: u64, key: &str, reason: &'static str, detail: &str) {
        let name = self.name;
        counter!("endo_agent_uplink_dead_letter_total", "sink" => name, "reason" => reason)
            .increment(1);
        let mut s = self.spool.lock();
        match s.dead_letter(id, name) {
            Ok(Some(kept)) => tracing::error!(
                sink = name, %key, reason,
                "dead-lettered: {detail}; no sink stored it, kept as {}", kept.display()
            ),
            Ok(None) => tracing::error!(
                sink = name, %key, reason,
                "dead-lettered: {detail}; not sent to this sink"
            ),
            Err(e) => tracing::error!(sink = name, %key, "dead-lettering: {e}"),
        }
        self.spool.publish(&s);
    }

    /// Take the sink's acknowledgements (waiting a little when something is in flight)
    /// and ack them in the spool.
    fn collect(&mut self) -> Result<(), SinkError> {
        let wait = if self.inflight.is_empty() {
            Duration::ZERO
        } else {
            Duration::from_millis(200)
        };
        let acked = self.sink.poll(wait)?;
        if acked.is_empty() {
            return Ok(());
        }
        let mut s = self.spool.lock();
        for id in &acked {
            self.inflight.remove(id);
            match s.ack(*id, self.name) {
                Ok(()) | Err(SpoolError::Missing(_)) => {}
                Err(e) => tracing::error!("{e}"),
            }
        }
        self.spool.publish(&s);
        drop(s);
        let docs = acked.iter().filter(|id| self.documents.remove(id)).count() as u64;
        self.m.documents.increment(docs);
        // The frame counters count frames only: a procedure record is not one.
        let n = acked.len() as u64 - docs;
        self.m.delivered.increment(n);
        self.status.delivered.fetch_add(n, Ordering::Relaxed);
        self.delivered += n;
        self.backoff.reset();
        self.set_up(true);
        Ok(())
    }

    /// A failure: forget what is in flight and back off. True when the worker should end
    /// (the agent is stopping).
    fn fail(&mut self, e: SinkError) -> bool {
        let name = self.name;
        counter!("endo_agent_sink_errors_total", "sink" => name, "reason" => e.reason())
            .increment(1);
        self.set_up(false);
        tracing::error!(sink = name, "{e}");
        self.sink.reset();
        self.inflight.clear();
        self.documents.clear();
        self.cursor = None;
        self.m.inflight.set(0.0);
        if self.stop.is_stopped() {
            // Stopping: another try now would fail the same way (a full disk logged
            // one error 874 times in 30 ms). Wait for the encoder to finish, then go.
            while !self.spool.producer_done() {
                self.spool
                    .wait(self.spool.lock(), Duration::from_millis(20));
            }
            tracing::warn!(
                sink = name,
                "stopping with frames still in the spool; they are sent after the next start"
            );
            return true;
        }
        let full = self.backoff.on_failure(Duration::ZERO);
        // Jitter: wait somewhere in the upper half, so a fleet does not retry in step.
        let r = self.jitter.next_u32() as f64 / u32::MAX as f64;
        self.stop.sleep(full / 2 + full.mul_f64(0.5 * r));
        false
    }

    /// Nothing was sent and nothing is in flight: the next scan starts from the oldest
    /// again. True (the sink closed) when the encoder is done and nothing is pending;
    /// otherwise wait a little for the encoder.
    fn finish_or_wait(&mut self) -> bool {
        self.cursor = None;
        let s = self.spool.lock();
        if s.first_pending(self.name).ok().flatten().is_some() {
            return false;
        }
        if self.spool.producer_done() {
            drop(s);
            self.sink.close();
            return true;
        }
        self.spool.wait(s, Duration::from_millis(200));
        false
    }
}
