//! Model updates without a restart: `SIGHUP` or `POST /api/model/reload` loads
//! `model.path` again. The new model is loaded, hash-checked against its manifest and
//! dry-run here, off the score thread; only if it passes is it handed to the score thread,
//! which puts it in place between two frames (two moves, no frame dropped) and hands the
//! old one back to be dropped here. A model that fails stays out: the old one keeps
//! scoring, the error names the file and the reason, and
//! `endo_agent_model_reloads_total{outcome="refused"}` counts it. Every record carries the
//! model that scored its frame, and `endo_agent_model_info` follows the model in force.

use std::path::Path;
use std::time::Instant;

use crate::operator::{Command, Operator};
use crate::record::ModelInfo;
use crate::score::model::{Manifest, ModelError};
use crate::score::LoadedModel;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("model.enabled = false: there is no model to reload")]
    Disabled,
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(
        "the score thread is not taking commands (busy with 16 others, or stopping); try again"
    )]
    Unavailable,
}

/// Every outcome exists from the start (at 0), so rates and alerts see a series.
pub fn init_metrics() {
    for outcome in ["ok", "refused"] {
        metrics::counter!("endo_agent_model_reloads_total", "outcome" => outcome).increment(0);
    }
}

/// `endo_agent_model_info` for the model in force: the old label set goes to 0 (unless
/// it is the same set: the same model reloaded).
pub fn show_model(old: Option<&Manifest>, new: &Manifest) {
    let labels = |m: &Manifest| {
        [
            ("name", m.name.clone()),
            ("version", m.version.clone()),
            ("sha256", m.sha256.clone()),
            ("quantization", m.quantization.clone()),
        ]
    };
    if let Some(old) = old.map(labels).filter(|o| *o != labels(new)) {
        metrics::gauge!("endo_agent_model_info", &old).set(0.0);
    }
    metrics::gauge!("endo_agent_model_info", &labels(new)).set(1.0);
}

/// Load `path` (None: the model is disabled) and put it in force. Blocking: call it from
/// a thread of its own or `spawn_blocking`, never from the score thread.
pub fn reload(path: Option<&Path>, operator: &Operator) -> Result<ModelInfo, ReloadError> {
    let refused = |e: ReloadError| {
        metrics::counter!("endo_agent_model_reloads_total", "outcome" => "refused").increment(1);
        tracing::error!("model reload refused, the model in force stays: {e}");
        e
    };
    let path = path.ok_or(ReloadError::Disabled).map_err(refused)?;
    let t0 = Instant::now();
    let new = LoadedModel::load(path).map_err(|e| refused(e.into()))?;
    let info = ModelInfo::of(&new.runner);
    let manifest = new.runner.manifest().clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let cmd = Command::Model {
        model: Box::new(new),
        reply: tx,
    };
    operator
        .send(cmd)
        .map_err(|_| refused(ReloadError::Unavailable))?;
    let old = rx
        .blocking_recv()
        .map_err(|_| refused(ReloadError::Unavailable))?;
    show_model(old.as_ref().map(|o| o.runner.manifest()), &manifest);
    drop(old);
    metrics::counter!("endo_agent_model_reloads_total", "outcome" => "ok").increment(1);
    tracing::info!(path = %path.display(), name = %info.name, version = %info.version,
        took_ms = t0.elapsed().as_millis() as u64, "model reloaded");
    Ok(info)
}

/// Reload on every `SIGHUP` (a thread of its own; SIGHUP no longer ends the process).
pub fn on_sighup(
    path: Option<std::path::PathBuf>,
    operator: std::sync::Arc<Operator>,
) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    std::thread::Builder::new()
        .name("reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                tracing::info!("SIGHUP: reloading the model");
                let _ = reload(path.as_deref(), &operator);
            }
        })?;
    Ok(())
}
