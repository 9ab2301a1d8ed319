//! The procedure record against a phantom stream with a known schedule: every figure of
//! `procedure.json` checked against the schedule (durations within one frame interval),
//! in the local datalake and, byte for byte, in a real S3 store (SeaweedFS over HTTPS,
//! the uplink tests' services). The operator's end of a procedure, the web page's
//! summary card and `/api/procedures/last` are in tests/web_overlay.rs.

mod common;

use common::services::{Pki, Seaweed};
use common::uplink::{drained, make_bucket, s3_section};
use common::{frame_records, model_path, procedure_records, Agent};
use endo_agent::phantom::{Phantom, PhantomConfig, Schedule};
use serde_json::Value;
use std::time::Duration;

const FPS: u32 = 30;
/// 7 s: 2 s good, 1 s dark, 1.5 s good, 1 s outside the body, 1.5 s good.
const SCHEDULE: &str = "good 2s; dark 1s gain=0.15; good 1.5s; outside 1s; good 1.5s";
const FRAMES: u64 = 210;

fn config(d: &std::path::Path, sections: &str) -> String {
    let (w, h) = (1280, 720);
    let phantom = Phantom::new(PhantomConfig {
        width: w,
        height: h,
        fps: FPS,
        schedule: Schedule::parse(SCHEDULE).unwrap(),
        ..PhantomConfig::default()
    });
    assert_eq!(phantom.num_frames(), FRAMES);
    let r = phantom.fov_rect();
    format!(
        r#"
[agent]
site = "proc-site"
device = "tower-9"
[source]
kind = "phantom"
width = {w}
height = {h}
fps = {FPS}
schedule = "{SCHEDULE}"
max_frames = {FRAMES}
[capture]
on_eos = "idle"
[fov]
mode = "fixed"
shape = "circle"
rect = [{}, {}, {}, {}]
[model]
path = "{model}"
[select]
window_ms = 200
max_per_second = 5.0
duplicate_bits = 0
[datalake]
dir = "{lake}"
[spool]
dir = "{spool}"
[uplink]
sinks = ["local", "s3"]
backoff_initial_ms = 100
backoff_max_ms = 1000
[http]
listen = "127.0.0.1:0"
{sections}
"#,
        r.x,
        r.y,
        r.width,
        r.height,
        model = model_path(),
        lake = d.join("lake").display(),
        spool = d.join("spool").display(),
    )
}

/// `got` is `want` seconds within `frames` frame intervals.
fn within(what: &str, got: &Value, want: f64, frames: f64) {
    let got = got.as_f64().unwrap_or_else(|| panic!("{what}: {got}"));
    let tol = frames / FPS as f64 + 1e-3;
    assert!(
        (got - want).abs() <= tol,
        "{what}: {got} s, the schedule says {want} s (± {tol:.3})"
    );
}

#[test]
fn the_procedure_record_matches_the_schedule_locally_and_in_s3() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::generate(&d.join("pki"));
    let store = Seaweed::start(&d.join("weed"), &pki);
    make_bucket(&store, &pki, d, "lake-proc");
    let agent = Agent::start(d, &config(d, &s3_section(&store, &pki, d, "lake-proc")));
    agent.wait_for(
        "the source's end, all delivered",
        Duration::from_secs(90),
        drained,
    );
    let m = agent.metrics();
    let lake = d.join("lake");
    let procs = procedure_records(&lake);
    assert_eq!(procs.len(), 1, "{procs:?}");
    let bytes = std::fs::read(&procs[0]).unwrap();
    let rec: Value = serde_json::from_slice(&bytes).unwrap();
    let frames = frame_records(&lake);

    // Who, when, how it ended.
    assert_eq!(rec["schema"], "endo-agent/procedure-record/v1");
    assert_eq!(
        (rec["site"].as_str(), rec["device"].as_str()),
        (Some("proc-site"), Some("tower-9"))
    );
    assert_eq!(rec["started_by"], "agent");
    assert_eq!(rec["ended_by"], "agent_stop", "the source ended");
    let session = rec["session"].as_str().unwrap();
    assert!(
        frames.iter().all(|f| f.parent() == procs[0].parent()),
        "beside the session's frames"
    );
    assert!(procs[0].ends_with(format!("{session}/procedure.json")));

    // Frames: every one of the schedule scored (fixed field of view).
    let f = &rec["frames"];
    assert_eq!(
        (f["captured"].as_u64(), f["scored"].as_u64()),
        (Some(FRAMES), Some(FRAMES)),
        "{f}"
    );
    let (good, bad) = (f["good"].as_u64().unwrap(), f["bad"].as_u64().unwrap());
    assert!(good.abs_diff(150) <= 1 && bad.abs_diff(60) <= 1, "{f}");
    assert_eq!(
        f["good_share"].as_f64().unwrap(),
        (good as f64 / FRAMES as f64 * 1e4).round() / 1e4
    );

    // Time, against the schedule: within one frame interval each.
    let t = &rec["time"];
    within("scored", &t["scored_s"], 7.0, 1.0);
    within("good", &t["good_s"], 5.0, 1.0);
    within("bad", &t["bad_s"], 2.0, 1.0);
    within("dark", &t["bad_by_reason_s"]["dark"], 1.0, 1.0);
    within("outside", &t["bad_by_reason_s"]["outside"], 1.0, 1.0);
    for other in ["blur", "overexposed", "glare", "noise", "none"] {
        within(other, &t["bad_by_reason_s"][other], 0.0, 1.0);
    }
    within("longest bad stretch", &t["longest_bad_s"], 1.0, 1.0);
    assert!(
        rec["duration_s"].as_f64().unwrap() >= 7.0 - 1.0 / FPS as f64,
        "{rec}"
    );

    // The light, what was kept, the model and the thresholds.
    assert_eq!(
        rec["light"]["nbi"].as_u64(),
        Some(FRAMES),
        "the phantom's palette is NBI"
    );
    assert_eq!(rec["kept"]["forwarded"].as_u64(), Some(frames.len() as u64));
    assert!(frames.len() >= 5, "{} frames forwarded", frames.len());
    assert_eq!(
        (
            rec["kept"]["marked"].as_u64(),
            rec["kept"]["annotated"].as_u64()
        ),
        (Some(0), Some(0))
    );
    let model = std::fs::read(model_path()).unwrap();
    let models = rec["models"].as_array().unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0]["sha256"], endo_agent::sha256_hex(&model));
    assert_eq!(models[0]["frames"].as_u64(), Some(FRAMES));
    assert_eq!(rec["thresholds"]["select"]["threshold_high"], 0.6);
    assert_eq!(rec["thresholds"]["select"]["window_ms"], 200);

    // The timeline: 1 s points, the dark second bad, the good ones good.
    let tl = &rec["timeline"];
    assert_eq!(tl["bucket_s"], 1.0);
    let mean: Vec<f64> = tl["quality_mean"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(mean.len(), 7, "{mean:?}");
    assert!(
        mean[0] >= 0.6 && mean[1] >= 0.6 && mean[6] >= 0.6,
        "{mean:?}"
    );
    assert!(mean[2] < 0.5, "the dark second: {mean:?}");

    // The same bytes in S3, and counted as a document, not a frame.
    let key = procs[0].strip_prefix(&lake).unwrap().display().to_string();
    assert_eq!(
        store.filer_get("lake-proc", &key).as_deref(),
        Some(&bytes[..]),
        "{key} in S3"
    );
    for sink in ["local", "s3"] {
        assert_eq!(
            m.value(&format!(
                "endo_agent_documents_delivered_total{{sink=\"{sink}\"}}"
            )),
            1.0
        );
        assert_eq!(
            m.value(&format!(
                "endo_agent_frames_delivered_total{{sink=\"{sink}\"}}"
            )),
            frames.len() as f64
        );
    }
    assert_eq!(
        m.value("endo_agent_procedures_total{ended_by=\"agent_stop\"}"),
        1.0
    );
    within(
        "last longest bad gauge",
        &m.value("endo_agent_procedure_last_longest_bad_seconds")
            .into(),
        1.0,
        1.0,
    );
    assert!(agent.stop().success());
}
