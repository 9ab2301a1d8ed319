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
    mut sink: Box<dyn Sink>,
    spool: &SpoolHandle,
    retry: Retry,
    stop: &Shutdown,
    status: &SinkStatus,
) -> u64 {
    let name = sink.name();
    let ok = counter!("endo_agent_frames_delivered_total", "sink" => name);
    let sent_c = counter!("endo_agent_sink_sent_total", "sink" => name);
    let retried_c = counter!("endo_agent_sink_retries_total", "sink" => name);
    let up_g = gauge!("endo_agent_sink_up", "sink" => name);
    let set_up = |v: bool| {
        up_g.set(if v { 1.0 } else { 0.0 });
        status.up.store(v, Ordering::Relaxed);
    };
    let inflight_g = gauge!("endo_agent_sink_inflight", "sink" => name);
    let write_h = histogram!("endo_agent_stage_duration_seconds", "stage" => "write");
    // No time-based reset: a delivery that succeeds resets it explicitly.
    let mut backoff = Backoff::new(retry.initial, retry.max, Duration::MAX);
    let mut jitter = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()),
    );
    let window = sink.window().max(1);
    // Sent, awaiting acknowledgement; the last id sent; the highest id ever sent.
    let mut inflight: BTreeSet<u64> = BTreeSet::new();
    let mut cursor: Option<u64> = None;
    let mut high: Option<u64> = None;
    let mut n = 0;
    set_up(true);
    // Every failure reason exists from the start (at 0), so rates and alerts see a series.
    for reason in SinkError::REASONS {
        counter!("endo_agent_sink_errors_total", "sink" => name, "reason" => reason).increment(0);
    }
    for reason in SinkError::DEAD_LETTER_REASONS {
        counter!("endo_agent_uplink_dead_letter_total", "sink" => name, "reason" => reason)
            .increment(0);
    }
    loop {
        // 1. Fill the window.
        let mut failure = None;
        let mut idle = true;
        while inflight.len() < window {
            let next = {
                let s = spool.lock();
                match s.next_pending(name, cursor) {
                    Ok(Some(id)) => Some((id, s.read(id))),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::error!("{e}");
                        sink.close();
                        return n;
                    }
                }
            };
            let Some((id, read)) = next else { break };
            idle = false;
            cursor = Some(id);
            let rec = match read {
                Ok(r) => r,
                Err(SpoolError::Missing(_)) => continue, // evicted meanwhile
                Err(e) => {
                    // The file went bad after it was written (disk fault): count it and move
                    // on so one bad record cannot block the queue.
                    tracing::error!("{e}");
                    counter!("endo_agent_frames_evicted_total", "reason" => "spool_unreadable")
                        .increment(1);
                    let _ = spool.lock().ack(id, name);
                    continue;
                }
            };
            let item = Encoded {
                key: rec.key,
                jpeg: rec.jpeg,
                record_json: rec.json,
                annotation: rec.annotation,
            };
            if high.is_some_and(|h| id <= h) {
                retried_c.increment(1);
            }
            high = high.max(Some(id));
            let t0 = Instant::now();
            match sink.send(id, item) {
                Ok(()) => {
                    sent_c.increment(1);
                    inflight.insert(id);
                    if window == 1 {
                        write_h.record(t0.elapsed().as_secs_f64());
                    }
                }
                Err(SinkError::Undeliverable {
                    key,
                    reason,
                    detail,
                    ..
                }) => {
                    // Retrying cannot help: take it out of this sink's queue.
                    counter!("endo_agent_uplink_dead_letter_total", "sink" => name, "reason" => reason)
                        .increment(1);
                    let mut s = spool.lock();
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
                    spool.publish(&s);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        inflight_g.set(inflight.len() as f64);
        // 2. Collect acknowledgements.
        if failure.is_none() {
            let wait = if inflight.is_empty() {
                Duration::ZERO
            } else {
                Duration::from_millis(200)
            };
            match sink.poll(wait) {
                Ok(acked) => {
                    if !acked.is_empty() {
                        let mut s = spool.lock();
                        for id in &acked {
                            inflight.remove(id);
                            match s.ack(*id, name) {
                                Ok(()) | Err(SpoolError::Missing(_)) => {}
                                Err(e) => tracing::error!("{e}"),
                            }
                        }
                        spool.publish(&s);
                        drop(s);
                        ok.increment(acked.len() as u64);
                        status
                            .delivered
                            .fetch_add(acked.len() as u64, Ordering::Relaxed);
                        n += acked.len() as u64;
                        backoff.reset();
                        set_up(true);
                    }
                }
                Err(e) => failure = Some(e),
            }
        }
        // 3. On failure: forget what is in flight, back off, start again from the oldest.
        if let Some(e) = failure {
            counter!("endo_agent_sink_errors_total", "sink" => name, "reason" => e.reason())
                .increment(1);
            set_up(false);
            tracing::error!(sink = name, "{e}");
            sink.reset();
            inflight.clear();
            cursor = None;
            inflight_g.set(0.0);
            if stop.is_stopped() {
                // Stopping: another try now would fail the same way (a full disk logged
                // one error 874 times in 30 ms). Wait for the encoder to finish, then go.
                while !spool.producer_done() {
                    spool.wait(spool.lock(), Duration::from_millis(20));
                }
                tracing::warn!(
                    sink = name,
                    "stopping with frames still in the spool; they are sent after the next start"
                );
                return n;
            }
            let full = backoff.on_failure(Duration::ZERO);
            // Jitter: wait somewhere in the upper half, so a fleet does not retry in step.
            let delay = full / 2 + full.mul_f64(0.5 * (jitter.next_u32() as f64 / u32::MAX as f64));
            stop.sleep(delay);
            continue;
        }
        // 4. Nothing to send and nothing in flight: everything sent so far is stored,
        //    so the next scan starts from the oldest again; finish, or wait for the encoder.
        if idle && inflight.is_empty() {
            cursor = None;
            let s = spool.lock();
            if s.first_pending(name).ok().flatten().is_some() {
                continue;
            }
            if spool.producer_done() {
                drop(s);
                sink.close();
                return n;
            }
            spool.wait(s, Duration::from_millis(200));
        }
    }
}
