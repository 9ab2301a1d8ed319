//! One stop for the whole process: set by SIGINT/SIGTERM, by the source ending
//! (`capture.on_eos = "stop"`) or by a dying essential thread; seen by every thread.
//!
//! Threads poll [`Shutdown::is_stopped`] (one atomic load) on their hot paths, wait in
//! [`Shutdown::sleep`] instead of sleeping blind, and async code awaits
//! [`Shutdown::stopped`]. It is a tokio-util `CancellationToken` plus a condition
//! variable for the OS threads, and signal-hook for the signals, used by `run` and
//! `ingest` alike.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A cloneable handle on the process's stop; every clone sees the same stop.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    token: CancellationToken,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Stop: every [`sleep`](Self::sleep) returns and every [`stopped`](Self::stopped)
    /// completes. Idempotent.
    pub fn stop(&self) {
        self.inner.token.cancel();
        // Taken so that a sleeper between its check and its wait cannot miss the wake.
        let _held = self.inner.lock.lock().expect("shutdown lock");
        self.inner.wake.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// Completes when the stop is set.
    pub async fn stopped(&self) {
        self.inner.token.cancelled().await
    }

    /// Sleep up to `d`, waking at once when the stop is set. Returns whether it is set.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now().checked_add(d);
        let mut held = self.inner.lock.lock().expect("shutdown lock");
        while !self.is_stopped() {
            let left = match end {
                Some(end) => end.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                break;
            }
            held = self
                .inner
                .wake
                .wait_timeout(held, left)
                .expect("shutdown lock")
                .0;
        }
        self.is_stopped()
    }

    /// Stop on the first SIGINT or SIGTERM (a thread of its own; later signals are
    /// logged and otherwise ignored while the agent drains).
    pub fn on_signals(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let stop = self.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    let name = if sig == SIGTERM {
                        "SIGTERM"
                    } else {
                        "interrupt"
                    };
                    if stop.is_stopped() {
                        tracing::info!("{name}: already stopping");
                    } else {
                        tracing::info!("{name}: stopping");
                        crate::notify::stopping();
                        stop.stop();
                    }
                }
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleep_ends_early_at_a_stop_and_runs_its_course_without_one() {
        let s = Shutdown::new();
        let t0 = Instant::now();
        assert!(!s.sleep(Duration::from_millis(30)));
        assert!(t0.elapsed() >= Duration::from_millis(30));
        let other = s.clone();
        let h = std::thread::spawn(move || {
            let t0 = Instant::now();
            (other.sleep(Duration::from_secs(30)), t0.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        s.stop();
        let (stopped, took) = h.join().unwrap();
        assert!(stopped);
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert!(
            s.sleep(Duration::from_secs(30)),
            "a stopped sleep returns at once"
        );
    }

    #[test]
    fn stopped_completes_for_every_clone() {
        let s = Shutdown::new();
        let c = s.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let wait = tokio::spawn(async move { c.stopped().await });
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!wait.is_finished());
            s.stop();
            tokio::time::timeout(Duration::from_secs(5), wait)
                .await
                .expect("stopped() completes")
                .unwrap();
        });
    }
}
