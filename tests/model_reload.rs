//! Model updates without a restart (issue 16): during a 60 fps phantom stream the model
//! file is swapped for the reference model and reloaded through the operator API, then
//! replaced by a corrupt file (refused, naming the file; the model in force stays), then
//! the shipped model comes back by SIGHUP. No frame is dropped, every record carries the
//! model that scored it, and the metrics show the swaps.

mod common;

use common::{frame_records, repo, Agent};
use std::path::Path;
use std::time::Duration;

/// Install `models/{name}.onnx` and its manifest in `dir` as `model.onnx` (the manifest's
/// `file` renamed to match; the bytes and their sha256 unchanged). Its sha256.
fn install(dir: &Path, name: &str) -> String {
    let models = repo().join("models");
    std::fs::copy(
        models.join(format!("{name}.onnx")),
        dir.join("model.onnx.new"),
    )
    .unwrap();
    let text = std::fs::read_to_string(models.join(format!("{name}.manifest.json"))).unwrap();
    let mut man: serde_json::Value = serde_json::from_str(&text).unwrap();
    man["file"] = "model.onnx".into();
    std::fs::write(dir.join("model.manifest.json"), man.to_string()).unwrap();
    std::fs::rename(dir.join("model.onnx.new"), dir.join("model.onnx")).unwrap();
    man["sha256"].as_str().unwrap().to_string()
}

fn config(dir: &Path) -> String {
    format!(
        r#"
[source]
kind = "phantom"
width = 320
height = 240
fps = 60
schedule = "good 600s"
[model]
path = "{model}"
[select]
threshold_low = 0.0
threshold_high = 0.0
window_ms = 100
max_per_second = 20.0
duplicate_bits = 0
[datalake]
dir = "{lake}"
[spool]
dir = "{spool}"
[http]
listen = "127.0.0.1:0"
"#,
        model = dir.join("model.onnx").display(),
        lake = dir.join("lake").display(),
        spool = dir.join("spool").display(),
    )
}

/// The models of the records in the datalake, in key order (sequence within the session).
fn record_models(lake: &Path) -> Vec<String> {
    let mut recs: Vec<(u64, String)> = frame_records(lake)
        .iter()
        .filter(|p| !p.to_string_lossy().ends_with(".annotation.json"))
        .map(|p| {
            let r: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            (
                r["sequence"].as_u64().unwrap(),
                r["model"]["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    recs.sort();
    recs.into_iter().map(|(_, m)| m).collect()
}

#[test]
fn a_model_is_swapped_between_frames_and_a_corrupt_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = install(dir.path(), "quality-int8");
    let agent = Agent::start(dir.path(), &config(dir.path()));
    let delivered = |a: &Agent| a.status()["frames_delivered"].as_u64().unwrap_or(0);
    agent.wait_for(
        "frames under the shipped model",
        Duration::from_secs(30),
        |a| delivered(a) >= 10,
    );

    // 1. The reference model, through the operator API.
    let reference = install(dir.path(), "quality-ref");
    assert_ne!(reference, shipped);
    let (code, answer) = agent.post("/api/model/reload", None, None);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["model"]["sha256"], reference.as_str(), "{answer}");
    let n = delivered(&agent);
    agent.wait_for(
        "frames under the reference model",
        Duration::from_secs(30),
        |a| delivered(a) >= n + 10,
    );

    // 2. A corrupt file under the same manifest: refused, naming the file; nothing changes.
    std::fs::write(dir.path().join("model.onnx"), b"not an onnx model").unwrap();
    let (code, answer) = agent.post("/api/model/reload", None, None);
    assert_eq!(code, 422, "{answer}");
    let why = answer["error"].as_str().unwrap();
    assert!(why.contains("model.onnx"), "names the file: {why}");
    assert!(why.contains("sha256"), "says why: {why}");
    let n = delivered(&agent);
    agent.wait_for("frames still scored", Duration::from_secs(30), |a| {
        delivered(a) >= n + 10
    });

    // 3. The shipped model again, by SIGHUP.
    install(dir.path(), "quality-int8");
    agent.signal(libc::SIGHUP);
    agent.wait_for("the SIGHUP reload", Duration::from_secs(30), |a| {
        a.metrics()
            .value(r#"endo_agent_model_reloads_total{outcome="ok"}"#)
            >= 2.0
    });
    let n = delivered(&agent);
    agent.wait_for(
        "frames under the shipped model again",
        Duration::from_secs(30),
        |a| delivered(a) >= n + 10,
    );

    let m = agent.metrics();
    assert_eq!(
        m.value(r#"endo_agent_model_reloads_total{outcome="ok"}"#),
        2.0
    );
    assert_eq!(
        m.value(r#"endo_agent_model_reloads_total{outcome="refused"}"#),
        1.0
    );
    assert_eq!(
        m.sum("endo_agent_frames_dropped_total", r#"reason="scorer_busy""#),
        0.0,
        "no frame dropped across the swaps"
    );
    let info = |sha: &str| m.sum("endo_agent_model_info", &format!("sha256=\"{sha}\""));
    assert_eq!(info(&shipped), 1.0, "the shipped model is in force");
    assert_eq!(info(&reference), 0.0, "the reference model was replaced");
    assert!(agent.stop().success());

    // Every record names the model that scored it: shipped, then reference, then
    // shipped again, in key order, each run at least 10 long.
    let models = record_models(&dir.path().join("lake"));
    let mut runs: Vec<(String, usize)> = Vec::new();
    for m in models {
        match runs.last_mut() {
            Some((last, n)) if *last == m => *n += 1,
            _ => runs.push((m, 1)),
        }
    }
    let order: Vec<&str> = runs.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(order, [&shipped, &reference, &shipped], "{runs:?}");
    assert!(runs.iter().all(|(_, n)| *n >= 10), "{runs:?}");
}
