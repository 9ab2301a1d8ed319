//! The stages of `endo-agent run` after capture, one OS thread each, joined by bounded
//! queues (see [`crate::daemon`] for how they are started, supervised and stopped):
//!
//! - [`score`] — FOV → score → select, plus the operator's commands; never waits on
//!   disk or network;
//! - [`preview`] — the web view's preview JPEGs and the recent frames;
//! - [`encode`] — JPEG + record of every forwarded frame, into the spool;
//! - [`job`] — what travels from the score stage to the encoder, and its keys.

pub mod encode;
pub mod job;
pub mod preview;
pub mod score;

#[cfg(test)]
mod tests;
