//! `endo-agent calibrate` on recordings whose right answer is known: a phantom video with a
//! defocused segment between good ones (the suggested thresholds must separate them, and
//! threshold_high must pass the good frames and reject the defocused), and black recordings
//! (refused, with a message saying why). Real GStreamer: the recording is replayed through
//! `pipelines/file.pipeline`, the live case through `pipelines/test.pipeline`.

mod common;

use common::{bin, model_path};
use endo_agent::phantom::{Phantom, PhantomConfig, Schedule};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const FPS: u32 = 15;

/// `calibrate --config CONFIG --input VIDEO --out OUT`: the recording case of every test.
fn calibrate_video(config: &str, video: &Path, out: &Path) -> (bool, String, String) {
    calibrate(&[
        "--config",
        config,
        "--input",
        video.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

fn calibrate(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .arg("calibrate")
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(dir: &Path, extra: &str) -> String {
    let p = dir.join("agent.toml");
    std::fs::write(&p, format!("[model]\npath = \"{}\"\n{extra}", model_path())).unwrap();
    p.display().to_string()
}

fn suggested(report: &Value, key: &str) -> f64 {
    report["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("no suggestion for {key}: {report}"))["suggested"]
        .as_f64()
        .unwrap()
}

fn share(values: &[f64], pass: impl Fn(f64) -> bool) -> f64 {
    values.iter().filter(|v| pass(**v)).count() as f64 / values.len() as f64
}

#[test]
fn suggested_thresholds_separate_good_frames_from_defocused_ones() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("site.mkv");
    let phantom = Phantom::new(PhantomConfig {
        fps: FPS,
        schedule: Schedule::parse("good 6s; defocus 3s sigma=3; good 3s").unwrap(),
        ..PhantomConfig::default()
    });
    let n = phantom.num_frames();
    endo_agent::phantom::write_video(&phantom, &video, 0..n).unwrap();
    let defocused = phantom.segment_frames(1);

    let out = dir.path().join("report");
    let config = write_config(dir.path(), "");
    let (ok, stdout, stderr) = calibrate_video(&config, &video, &out);
    assert!(ok, "{stdout}\n{stderr}");
    println!("{stdout}");
    assert!(stdout.contains("measures.sharpness"), "{stdout}");
    assert!(
        stdout.contains("[scoring]\n") && stdout.contains("sharpness_good = "),
        "a TOML snippet: {stdout}"
    );

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("calibration.json")).unwrap())
            .unwrap();
    assert_eq!(report["schema"], "endo-agent/calibration/v1");
    let frames = &report["frames"];
    let scored = frames["scored"].as_u64().unwrap();
    assert!(scored >= n * 8 / 10, "{frames}");
    assert!(
        frames["well_exposed"].as_u64().unwrap() >= scored * 9 / 10,
        "{frames}"
    );
    // The field of view the locator locked is the phantom's (a little inside it).
    let fov = &report["fov"][0]["rect"];
    let drawn = phantom.fov_rect();
    let near = |k: &str, v: u32| (fov[k].as_i64().unwrap() - v as i64).abs() <= 24;
    assert!(
        near("x", drawn.x) && near("y", drawn.y) && near("width", drawn.width),
        "{fov} vs {drawn:?}"
    );
    // Every measure and model output has its percentiles, over all and well-exposed frames.
    let dists = report["distributions"].as_object().unwrap();
    for name in [
        "measures.sharpness",
        "measures.isotropy",
        "measures.mean_luma",
        "measures.dark_fraction",
        "measures.clipped_fraction",
        "measures.specular_fraction",
        "measures.cast",
        "classical.blur",
        "classical_quality",
        "model_quality",
        "model.blur",
        "quality",
    ] {
        let d = &dists[name]["all"];
        for p in ["p1", "p5", "p25", "p50", "p75", "p95", "p99"] {
            assert!(d[p].is_number(), "{name} {p}: {d}");
        }
        assert_eq!(d["n"].as_u64(), Some(scored), "{name}");
        assert!(dists[name]["well_exposed"]["n"].as_u64().unwrap() > 0);
    }
    assert!(dists["quality"]["rescored"]["n"].as_u64().unwrap() == scored);
    let sharp = &dists["measures.sharpness"]["all"];
    assert!(sharp["p5"].as_f64() < sharp["p95"].as_f64(), "{sharp}");

    // The right answer, frame by frame: good frames above the suggested sharpness_good
    // (blur = 0), defocused ones below sharpness_bad (blur = 1).
    let (good_at, bad_at) = (
        suggested(&report, "scoring.sharpness_good"),
        suggested(&report, "scoring.sharpness_bad"),
    );
    let high = suggested(&report, "select.threshold_high");
    let low = suggested(&report, "select.threshold_low");
    assert!(bad_at < good_at && low <= high, "{report}");
    let (mut good, mut blurred) = (Vec::new(), Vec::new());
    for line in std::fs::read_to_string(out.join("frames.jsonl"))
        .unwrap()
        .lines()
    {
        let f: Value = serde_json::from_str(line).unwrap();
        let pts = f["pts_ns"].as_u64().expect("file frames have timestamps");
        let index = (pts as f64 * FPS as f64 / 1e9).round() as u64;
        // A frame either side of a cut may be either (timestamps are rounded by the muxer).
        if index.abs_diff(defocused.start) <= 1 || index.abs_diff(defocused.end) <= 1 {
            continue;
        }
        let values = (
            f["score"]["measures"]["sharpness"].as_f64().unwrap(),
            f["rescored_quality"].as_f64().unwrap(),
        );
        if defocused.contains(&index) {
            blurred.push(values);
        } else {
            good.push(values);
        }
    }
    assert!(
        good.len() > 100 && blurred.len() > 30,
        "{} {}",
        good.len(),
        blurred.len()
    );
    let sharpness = |v: &[(f64, f64)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
    let quality = |v: &[(f64, f64)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
    let good_sharp = share(&sharpness(&good), |s| s >= good_at);
    let blurred_dull = share(&sharpness(&blurred), |s| s <= bad_at);
    assert!(
        good_sharp >= 0.9,
        "{good_sharp} of good frames at or above {good_at}"
    );
    assert!(
        blurred_dull >= 0.9,
        "{blurred_dull} of defocused frames at or below {bad_at}"
    );
    let good_pass = share(&quality(&good), |q| q >= high);
    let blurred_pass = share(&quality(&blurred), |q| q >= high);
    assert!(
        good_pass >= 0.85,
        "{good_pass} of good frames pass threshold_high {high}"
    );
    assert!(
        blurred_pass <= 0.05,
        "{blurred_pass} of defocused frames pass {high}"
    );

    // The plot: one 480×300 panel per series (20 or more: every measure and artifact),
    // four to a row, under a header.
    let png = image::open(out.join("calibration.png")).unwrap();
    assert_eq!(png.width(), 4 * 480);
    assert!(
        png.height() >= 92 + 5 * 300 && (png.height() - 92).is_multiple_of(300),
        "{}",
        png.height()
    );
}

#[test]
fn a_black_recording_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("black.mkv");
    gstreamer::init().unwrap();
    let launch = format!(
        "videotestsrc pattern=black num-buffers=60 ! video/x-raw,width=640,height=360,framerate=30/1 \
         ! jpegenc ! matroskamux ! filesink location={}",
        video.display()
    );
    endo_agent_test_pipeline(&launch);

    let out = dir.path().join("report");
    let config = write_config(dir.path(), "");
    let (ok, stdout, stderr) = calibrate_video(&config, &video, &out);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("refusing to suggest thresholds")
            && stderr.contains("field of view was never found in 60 frames"),
        "{stderr}"
    );
    assert!(!out.join("calibration.json").exists());

    // The configured live source (no --input), black too, with the field of view fixed so
    // that the frames are scored: refused because none is well exposed.
    let config = write_config(
        dir.path(),
        "[source]\nkind = \"test\"\npattern = \"black\"\nwidth = 320\nheight = 240\n\
         [fov]\nmode = \"full\"\n",
    );
    let (ok, stdout, stderr) = calibrate(&[
        "--config",
        &config,
        "--frames",
        "40",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("only 0 of") && stderr.contains("well exposed"),
        "{stderr}"
    );
}

/// Run a GStreamer pipeline to its end.
fn endo_agent_test_pipeline(launch: &str) {
    use gstreamer::prelude::*;
    let p = gstreamer::parse::launch(launch).unwrap();
    p.set_state(gstreamer::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gstreamer::ClockTime::from_seconds(30),
            &[gstreamer::MessageType::Eos, gstreamer::MessageType::Error],
        )
        .expect("the pipeline ends");
    assert!(
        matches!(msg.view(), gstreamer::MessageView::Eos(_)),
        "{msg:?}"
    );
    p.set_state(gstreamer::State::Null).unwrap();
}
