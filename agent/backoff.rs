//! Retry backoff — for the capture source's restarts, each uplink worker's resends and
//! ingest's reconnects: a pure state machine, no clock of its own (the waiting is
//! [`crate::shutdown::Shutdown::sleep`], which a stop cuts short).
//!
//! After each failure the delay doubles from `initial` up to `max`. A source that ran for
//! at least `reset_after` before failing starts again from `initial`: a camera unplugged
//! once a day is retried quickly, one that fails at every start is not hammered.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    reset_after: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, reset_after: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            reset_after,
            next: initial,
        }
    }

    /// A success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// The delay before the next start, given how long the failed run lasted.
    pub fn on_failure(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.reset_after {
            self.next = self.initial;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn delays_double_up_to_the_cap_and_reset_after_a_good_run() {
        let mut b = Backoff::new(S / 2, 4 * S, 30 * S);
        let d: Vec<_> = (0..6).map(|_| b.on_failure(Duration::ZERO)).collect();
        assert_eq!(d, vec![S / 2, S, 2 * S, 4 * S, 4 * S, 4 * S]);
        assert_eq!(b.on_failure(60 * S), S / 2);
        assert_eq!(b.on_failure(S), S);
    }

    #[test]
    fn without_a_reset_time_only_reset_restarts_the_sequence() {
        let mut b = Backoff::new(S / 10, 30 * S, Duration::MAX);
        let d: Vec<_> = (0..4).map(|_| b.on_failure(Duration::ZERO)).collect();
        assert_eq!(d, vec![S / 10, S / 5, S * 2 / 5, S * 4 / 5]);
        b.reset();
        assert_eq!(b.on_failure(Duration::ZERO), S / 10);
    }
}
