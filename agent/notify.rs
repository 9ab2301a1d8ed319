//! systemd integration over the notify socket (`sd-notify`; a no-op when `NOTIFY_SOCKET`
//! is unset, e.g. outside systemd or in tests that do not ask for it):
//!
//! - `STATUS=` lines a person reads in `systemctl status`: "loading model …", "waiting for
//!   the first frame", then every few seconds "scoring 59.9 fps; 12 selected, 12
//!   delivered; spool 0; source running; sinks local up, mqtt down".
//! - `READY=1` once the model is loaded **and** the first frame was scored (the score
//!   thread sends it), so `Type=notify` units are "active" only when the agent works.
//! - `WATCHDOG=1` from the score thread, at half the `WatchdogSec=` interval, while frames
//!   are scored. While the capture supervisor deliberately has no frames — backing off
//!   after a camera error, or idle after a finite source ended — the 1 s upkeep task pings
//!   instead: the process is healthy and retrying, and its metrics say so. A wedged
//!   pipeline or score thread stops the pings and systemd restarts the process.
//! - `STOPPING=1` when shutdown begins.

use sd_notify::NotifyState;
use std::time::Duration;

/// Send one state; failures are logged once at debug level (nobody may be listening).
fn send(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!("sd_notify: {e}");
    }
}

pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

pub fn ready(text: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(text)]);
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, or None without a watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
