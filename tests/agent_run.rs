//! The real binary on the phantom source: a scripted schedule goes through capture →
//! score → select → local datalake, and what `/metrics` says agrees with the files on
//! disk; no pixel outside the field of view (where the fake patient data is) is written;
//! a failing source is restarted and a missing camera is retried, visible in metrics.

mod common;

use common::{files, frame_records, model_path, procedure_records, with_common, Agent};
use endo_agent::phantom::{Phantom, PhantomConfig, Schedule};
use std::time::Duration;

const SCHEDULE: &str = "good 2s; defocus 1s sigma=3; good 2s; dark 1s gain=0.25; good 2s; glare 1s area=0.06; \
                        good 2s; outside 1s; good 2s; motion 1s len=30 angle=0; good 2s; overexposed 1s gain=2.5; good 2s";

fn phantom_config(dir: &std::path::Path, on_eos: &str, frames: u64) -> String {
    format!(
        r#"
[agent]
site = "test-site"
device = "tower-7"
[source]
kind = "phantom"
width = 960
height = 540
fps = 30
seed = 5
schedule = "{SCHEDULE}"
max_frames = {frames}
[capture]
on_eos = "{on_eos}"
queue_frames = 8
[model]
path = "{model}"
[select]
window_ms = 500
max_per_second = 4.0
[datalake]
dir = "{lake}"
[spool]
dir = "{spool}"
[http]
listen = "127.0.0.1:0"
"#,
        model = model_path(),
        lake = dir.join("lake").display(),
        spool = dir.join("spool").display()
    )
}

#[test]
fn a_phantom_run_forwards_only_good_frames_and_metrics_agree_with_the_datalake() {
    let dir = tempfile::tempdir().unwrap();
    let phantom = Phantom::new(PhantomConfig {
        width: 960,
        height: 540,
        fps: 30,
        seed: 5,
        schedule: Schedule::parse(SCHEDULE).unwrap(),
        ..PhantomConfig::default()
    });
    let frames = phantom.num_frames();
    let agent = Agent::start(dir.path(), &phantom_config(dir.path(), "idle", frames));
    agent.wait_for(
        "the source to end and the datalake to be written",
        Duration::from_secs(120),
        |a| a.status()["drained"] == true,
    );
    let m = agent.metrics();
    let (code, _) = agent.get("/healthz");
    assert_eq!(code, 200);

    // Every frame offered to the selector has exactly one outcome.
    let scored = m.value("endo_agent_frames_scored_total");
    let selected = m.value("endo_agent_frames_selected_total");
    let rejected = m.sum("endo_agent_frames_rejected_total", "");
    assert!(
        scored > frames as f64 * 0.8,
        "scored {scored} of {frames} (log:\n{})",
        agent.log_text()
    );
    assert_eq!(
        selected + rejected,
        scored,
        "selected {selected} + rejected {rejected} != scored {scored}"
    );
    // ... and every captured frame was either scored or dropped with a reason.
    let captured = m.value("endo_agent_frames_captured_total");
    let dropped = m.sum("endo_agent_frames_dropped_total", "");
    let convert_busy = m.value("endo_agent_frames_dropped_total{reason=\"convert_busy\"}");
    assert_eq!(
        captured,
        scored + dropped - convert_busy,
        "captured {captured}, scored {scored}, dropped {dropped}"
    );

    // Each degraded segment was rejected with its own reason, for most of its frames.
    for artifact in ["blur", "dark", "glare", "outside", "overexposed"] {
        let bad = m.value(&format!(
            "endo_agent_frames_bad_total{{artifact=\"{artifact}\"}}"
        ));
        assert!(
            bad >= 20.0,
            "{artifact}: only {bad} frames rejected for it\n{}",
            m.0
        );
    }

    // The files on disk are exactly what the metrics say.
    let lake = dir.path().join("lake");
    let jsons = frame_records(&lake);
    let jpgs = files(&lake, "jpg");
    let delivered = m.value("endo_agent_frames_delivered_total{sink=\"local\"}");
    assert!(selected >= 5.0, "only {selected} frames selected\n{}", m.0);
    assert_eq!(jsons.len() as f64, selected, "records on disk vs selected");
    assert_eq!(jpgs.len() as f64, delivered, "jpegs on disk vs delivered");
    assert_eq!(delivered, selected);
    assert_eq!(m.sum("endo_agent_frames_evicted_total", ""), 0.0);

    let osd = phantom.osd_rects();
    let truth = phantom.fov_rect();
    for j in &jsons {
        let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(j).unwrap()).unwrap();
        // Only good frames: the phantom frame behind the record is labelled good.
        let index = rec["source_frame"]
            .as_u64()
            .expect("phantom frames carry their index");
        let label = phantom.label(index);
        assert!(
            label.expected.is_none(),
            "{}: frame {index} is {:?}: {rec:#}",
            j.display(),
            label.degradation
        );
        assert!(rec["score"]["quality"].as_f64().unwrap() >= 0.6);
        assert_eq!(rec["site"], "test-site");
        assert_eq!(rec["model"]["name"], "endo-quality");
        let key = rec["key"].as_str().unwrap();
        assert!(
            j.ends_with(format!("{key}.json")),
            "{key} vs {}",
            j.display()
        );
        assert!(key.starts_with("frames/test-site/tower-7/"), "{key}");

        // Privacy: the JPEG is the field of view, which holds no on-screen text, and
        // everything outside the inscribed ellipse is black.
        let fov = &rec["frame"]["fov"];
        let r = endo_agent::frame::Rect::new(
            fov["x"].as_u64().unwrap() as u32,
            fov["y"].as_u64().unwrap() as u32,
            fov["width"].as_u64().unwrap() as u32,
            fov["height"].as_u64().unwrap() as u32,
        );
        assert_eq!(
            r.intersect(&truth),
            r,
            "written FOV {r:?} must lie inside the true one {truth:?}"
        );
        for o in &osd {
            assert!(
                o.intersect(&r).is_empty(),
                "written region {r:?} overlaps the OSD text {o:?}"
            );
        }
        let jpg = j.with_extension("jpg");
        let bytes = std::fs::read(&jpg).unwrap();
        assert_eq!(rec["jpeg"]["bytes"].as_u64().unwrap() as usize, bytes.len());
        let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (r.width, r.height), "{}", jpg.display());
        let (w, h) = (r.width as f64, r.height as f64);
        for (x, y, px) in img.enumerate_pixels() {
            let dx = (x as f64 + 0.5 - w / 2.0) / (w / 2.0);
            let dy = (y as f64 + 0.5 - h / 2.0) / (h / 2.0);
            if dx * dx + dy * dy > 1.08 {
                assert!(
                    px.0.iter().all(|&c| c < 40),
                    "{}: pixel ({x},{y}) outside the FOV is {:?}",
                    jpg.display(),
                    px.0
                );
            }
        }
    }
    let status = agent.stop();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn a_source_that_fails_mid_run_is_restarted_and_scoring_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("failing.pipeline");
    // identity errors out after 30 buffers: a capture card that drops off the bus.
    std::fs::write(
        &template,
        "videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! identity error-after=30",
    )
    .unwrap();
    let config = format!(
        r#"
[source]
kind = "test"
[capture]
template = "{template}"
backoff_initial_ms = 200
[fov]
mode = "full"
shape = "rect"
"#,
        template = template.display()
    );
    let agent = Agent::start(dir.path(), &with_common(dir.path(), &config));
    agent.wait_for(
        "two restarts after errors and scoring beyond them",
        Duration::from_secs(60),
        |a| {
            let m = a.metrics();
            m.value("endo_agent_source_restarts_total{cause=\"error\"}") >= 2.0
                && m.value("endo_agent_frames_scored_total") > 70.0
        },
    );
    assert!(
        agent.log_text().contains("source failed"),
        "the failure is logged"
    );
    assert!(agent.stop().success());
}

#[test]
fn a_missing_camera_is_retried_with_backoff_and_shows_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
[source]
kind = "v4l2"
device = "/dev/video-not-plugged-in"
[capture]
backoff_initial_ms = 100
backoff_max_ms = 400
"#;
    let agent = Agent::start(dir.path(), &with_common(dir.path(), config));
    agent.wait_for("three restarts", Duration::from_secs(30), |a| {
        a.metrics()
            .value("endo_agent_source_restarts_total{cause=\"error\"}")
            >= 3.0
    });
    let m = agent.metrics();
    assert_eq!(m.value("endo_agent_source_up"), 0.0);
    assert_eq!(m.value("endo_agent_frames_captured_total"), 0.0);
    let (code, body) = agent.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("source"), "{body}");
    assert_eq!(agent.get("/healthz").0, 200);
    assert!(
        agent.log_text().contains("video-not-plugged-in"),
        "the device is named in the log"
    );
    assert!(agent.stop().success());
}

#[test]
fn a_recording_is_replayed_through_the_file_source() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("procedure.mkv");
    let phantom = Phantom::new(PhantomConfig {
        width: 640,
        height: 360,
        fps: 30,
        schedule: Schedule::parse("good 1s; dark 1s gain=0.2; good 1s").unwrap(),
        ..PhantomConfig::default()
    });
    endo_agent::phantom::write_video(&phantom, &video, 0..90).unwrap();
    let config = format!(
        r#"
[source]
kind = "file"
path = "{video}"
[capture]
on_eos = "idle"
"#,
        video = video.display()
    );
    let agent = Agent::start(dir.path(), &with_common(dir.path(), &config));
    agent.wait_for(
        "the recording to be replayed",
        Duration::from_secs(60),
        |a| a.status()["drained"] == true,
    );
    let m = agent.metrics();
    assert_eq!(
        m.value("endo_agent_frames_captured_total"),
        90.0,
        "a file source replays every frame"
    );
    assert!(
        m.value("endo_agent_frames_bad_total{artifact=\"dark\"}") >= 25.0,
        "{}",
        m.0
    );
    assert!(m.value("endo_agent_frames_selected_total") >= 1.0);
    assert_eq!(
        m.value("endo_agent_source_restarts_total{cause=\"eos\"}"),
        0.0
    );
    assert!(agent.stop().success());
}

#[test]
fn a_dead_sink_fills_the_spool_and_the_frames_are_delivered_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The datalake path is a file: every write fails, as with a dead disk or mount.
    std::fs::write(dir.path().join("lake"), b"not a directory").unwrap();
    let config = r#"
[source]
kind = "phantom"
width = 640
height = 360
fps = 30
schedule = "good 4s"
max_frames = 120
[capture]
on_eos = "idle"
[select]
window_ms = 300
max_per_second = 5.0
duplicate_bits = 0
"#;
    let agent = Agent::start(dir.path(), &with_common(dir.path(), config));
    // While frames arrive the agent is ready, whatever the sink is doing.
    agent.wait_for("/readyz to answer 200", Duration::from_secs(30), |a| {
        a.get("/readyz").0 == 200
    });
    agent.wait_for(
        "frames to pile up in the spool while the sink fails",
        Duration::from_secs(60),
        |a| {
            let m = a.metrics();
            a.status()["frames_selected"].as_u64().unwrap_or(0) >= 5
                && m.value("endo_agent_spool_records") >= 5.0
                && m.sum("endo_agent_sink_errors_total", "sink=\"local\"") >= 1.0
        },
    );
    agent.wait_for(
        "the spool's oldest frame to age",
        Duration::from_secs(10),
        |a| a.metrics().value("endo_agent_spool_oldest_age_seconds") >= 1.0,
    );
    let m = agent.metrics();
    assert_eq!(
        m.value("endo_agent_frames_delivered_total{sink=\"local\"}"),
        0.0
    );
    assert!(agent.stop().success());
    // The frames, and the procedure record written when the source ended (the newest).
    let spooled = files(&dir.path().join("spool"), "rec").len();
    assert!(spooled >= 6, "{spooled} records spooled");

    // Power loss damaged two spool files: one cut mid-record, one with a flipped byte.
    let recs = files(&dir.path().join("spool"), "rec");
    let len = std::fs::metadata(&recs[0]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&recs[0])
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let mut bytes = std::fs::read(&recs[1]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&recs[1], bytes).unwrap();
    let intact = spooled - 2;
    let intact_frames = intact - 1;

    // The sink comes back; a restart (with a camera that delivers nothing) sends the rest.
    std::fs::remove_file(dir.path().join("lake")).unwrap();
    let config = r#"
[source]
kind = "v4l2"
device = "/dev/video-not-plugged-in"
"#;
    let agent = Agent::start(dir.path(), &with_common(dir.path(), config));
    agent.wait_for(
        "the spooled frames to be delivered",
        Duration::from_secs(30),
        |a| {
            let m = a.metrics();
            m.value("endo_agent_spool_records") == 0.0
                && m.value("endo_agent_frames_delivered_total{sink=\"local\"}")
                    == intact_frames as f64
                && m.value("endo_agent_documents_delivered_total{sink=\"local\"}") == 1.0
        },
    );
    let lake = dir.path().join("lake");
    assert_eq!(frame_records(&lake).len(), intact_frames);
    assert_eq!(files(&lake, "jpg").len(), intact_frames);
    assert_eq!(procedure_records(&lake).len(), 1);
    assert_eq!(
        files(&dir.path().join("spool"), "rec").len(),
        2,
        "the bad two, set aside"
    );
    assert_eq!(files(&dir.path().join("spool/corrupt"), "rec").len(), 2);
    let m = agent.metrics();
    assert_eq!(
        m.value("endo_agent_spool_recovered_total{outcome=\"record\"}"),
        intact as f64
    );
    assert_eq!(
        m.value("endo_agent_spool_recovered_total{outcome=\"corrupt\"}"),
        2.0
    );
    assert!(agent.stop().success());
}

#[test]
fn a_full_spool_stays_bounded_and_counts_what_it_evicts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lake"), b"not a directory").unwrap();
    let config = format!(
        r#"
[source]
kind = "phantom"
width = 640
height = 360
fps = 30
schedule = "good 3s; defocus 1s sigma=2; good 3s"
max_frames = 210
[capture]
on_eos = "idle"
[select]
window_ms = 200
max_per_second = 5.0
duplicate_bits = 0
[model]
path = "{}"
[datalake]
dir = "{}"
[spool]
dir = "{}"
max_records = 4
policy = "newest"
[http]
listen = "127.0.0.1:0"
"#,
        model_path(),
        dir.path().join("lake").display(),
        dir.path().join("spool").display()
    );
    let agent = Agent::start(dir.path(), &config);
    // The sink never recovers, so the agent never drains: wait until the source ended and
    // every selected frame is either held or evicted.
    agent.wait_for("the source to end", Duration::from_secs(60), |a| {
        let m = a.metrics();
        m.value("endo_agent_source_state{state=\"stopped\"}") == 1.0
            && m.value("endo_agent_frames_selected_total")
                == m.value("endo_agent_spool_records")
                    + m.value("endo_agent_frames_evicted_total{reason=\"spool_full\"}")
            // The procedure record, written at the source's end, does not fit either.
            && m.value("endo_agent_documents_lost_total{reason=\"spool_full\"}") == 1.0
    });
    let m = agent.metrics();
    let selected = m.value("endo_agent_frames_selected_total");
    let evicted = m.value("endo_agent_frames_evicted_total{reason=\"spool_full\"}");
    assert!(selected >= 10.0, "{selected} selected");
    assert_eq!(m.value("endo_agent_spool_records"), 4.0);
    assert_eq!(
        evicted,
        selected - 4.0,
        "every frame that did not fit is counted"
    );
    assert!(agent.stop().success());
    // On disk: four frames, no more, and the policy's choice: `newest` refuses newcomers,
    // so the first four selected stay. (`lowest_quality` ordering: spool unit tests.)
    let recs = files(&dir.path().join("spool"), "rec");
    assert_eq!(recs.len(), 4);
    let mut seqs: Vec<String> = recs
        .iter()
        .map(|p| {
            let r = endo_agent::spool::format::decode(&std::fs::read(p).unwrap()).unwrap();
            r.key.rsplit('/').next().unwrap().to_string()
        })
        .collect();
    seqs.sort();
    assert_eq!(
        seqs,
        ["0000000000", "0000000001", "0000000002", "0000000003"]
    );
}

#[test]
fn ctrl_c_stops_the_agent_cleanly() {
    // The README's demo promises it.
    let dir = tempfile::tempdir().unwrap();
    let config = "[source]\nkind = \"phantom\"\nwidth = 320\nheight = 240\nfps = 30\nschedule = \"good 60s\"\n";
    let agent = Agent::start(dir.path(), &with_common(dir.path(), config));
    agent.wait_for("frames scored", Duration::from_secs(30), |a| {
        a.metrics().value("endo_agent_frames_scored_total") >= 10.0
    });
    let log = agent.log.clone();
    assert!(agent.stop_with(libc::SIGINT).success());
    // The log reader may still be draining the pipe after the exit.
    let text = || log.lock().unwrap().join("\n");
    for _ in 0..50 {
        if text().contains("stopped") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = text();
    assert!(
        log.contains("interrupt: stopping") && log.contains("stopped"),
        "{log}"
    );
    // The stop ended the procedure: its record is in the datalake beside its frames.
    let procs = procedure_records(&dir.path().join("lake"));
    assert_eq!(procs.len(), 1, "{log}");
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&procs[0]).unwrap()).unwrap();
    assert_eq!(rec["ended_by"], "agent_stop");
    assert!(rec["frames"]["scored"].as_u64().unwrap() >= 10, "{rec}");
}

/// Issue 14: no preview JPEG is encoded while no web page is connected; a freeze (or a
/// preview request) encodes the one frame asked for, and an open event stream turns live
/// encoding on until it closes.
#[test]
fn previews_are_encoded_only_while_a_web_page_watches() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path(), &phantom_config(dir.path(), "restart", 0));
    let count = |a: &Agent| {
        a.metrics()
            .value("endo_agent_stage_duration_seconds_count{stage=\"preview\"}")
    };
    agent.wait_for("recent frames", Duration::from_secs(20), |a| {
        count(a) >= 10.0
    });
    let encoded = |a: &Agent, when: &str| {
        a.metrics().value(&format!(
            "endo_agent_previews_encoded_total{{when=\"{when}\"}}"
        ))
    };
    assert_eq!(
        encoded(&agent, "live"),
        0.0,
        "no web page, yet previews were encoded"
    );
    assert_eq!(encoded(&agent, "on_request"), 0.0);

    // A freeze by the API alone: the frozen frame's preview is encoded when asked for.
    let (code, f) = agent.post("/api/freeze", Some(serde_json::json!({})), None);
    assert_eq!(code, 200, "freeze: {f}");
    let url = format!("http://{}{}", agent.addr, f["preview"].as_str().unwrap());
    let mut r = common::http_client().get(&url).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let jpeg = r.body_mut().read_to_vec().unwrap();
    let img = image::load_from_memory(&jpeg).expect("the preview is a JPEG");
    assert_eq!(
        (img.width() as u64, img.height() as u64),
        (
            f["preview_width"].as_u64().unwrap(),
            f["preview_height"].as_u64().unwrap()
        )
    );
    assert_eq!(encoded(&agent, "on_request"), 1.0);

    // A web page connects: previews are encoded as they arrive, until it goes away.
    let events = format!("http://{}/api/events", agent.addr);
    let page = std::thread::spawn(move || {
        let mut r = common::http_client().get(&events).call().unwrap();
        let mut reader = r.body_mut().as_reader();
        let (t0, mut buf) = (std::time::Instant::now(), [0u8; 4096]);
        while t0.elapsed() < Duration::from_secs(3) {
            if std::io::Read::read(&mut reader, &mut buf).unwrap_or(0) == 0 {
                break;
            }
        }
    });
    agent.wait_for("live previews", Duration::from_secs(10), |a| {
        encoded(a, "live") >= 3.0
    });
    page.join().unwrap();
    agent.wait_for("the page gone", Duration::from_secs(10), |a| {
        a.metrics().value("endo_agent_web_clients") == 0.0
    });
    let after = encoded(&agent, "live");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        encoded(&agent, "live") <= after + 1.0,
        "previews still encoded with no page: {after} then {}",
        encoded(&agent, "live")
    );
}
