//! Privacy of the field-of-view locator on a live pipeline: the real binary reads a
//! processor-like screen (1280×1024, a circle clipped by the top and bottom of the screen,
//! text in all four corners, a status bar along the bottom) through GStreamer, starting
//! dark, partly lit or lit, with `fov.mode = "auto"` and thresholds at 0 so that frames are
//! forwarded; no JPEG written to the datalake may show a text or status-bar pixel.
//! Also: a fixed rect outside the frame is refused at run time without killing scoring.

mod common;

use common::{frame_records, with_common, Agent};
use endo_agent::config::FovShape;
use endo_agent::fov::Fov;
use endo_agent::frame::Rect;
use endo_agent::phantom::processor::{Layout, Lighting};
use std::io::Write;
use std::time::Duration;

/// Write `frames` as raw I420 and a capture template that plays them at 30 fps.
fn write_source(dir: &std::path::Path, layout: &Layout, frames: &[Lighting]) -> String {
    let raw = dir.join("screen.i420");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&raw).unwrap());
    let mut cache: Vec<(Lighting, u32, endo_agent::frame::I420Image)> = Vec::new();
    for (i, &l) in frames.iter().enumerate() {
        let seed = if l == Lighting::Lit { i as u32 % 3 } else { 0 };
        if !cache.iter().any(|c| c.0 == l && c.1 == seed) {
            cache.push((l, seed, layout.render(l, seed)));
        }
        let img = &cache.iter().find(|c| c.0 == l && c.1 == seed).unwrap().2;
        for plane in [&img.y, &img.u, &img.v] {
            out.write_all(plane).unwrap();
        }
    }
    out.flush().unwrap();
    let template = dir.join("raw.pipeline");
    std::fs::write(
        &template,
        format!(
            "filesrc location=\"{{path}}\" ! rawvideoparse format=i420 width={} height={} framerate=30/1",
            layout.width, layout.height
        ),
    )
    .unwrap();
    format!(
        r#"
[source]
kind = "file"
path = "{raw}"
[capture]
template = "{template}"
on_eos = "idle"
[fov]
mode = "auto"
[select]
threshold_high = 0.0
threshold_low = 0.0
window_ms = 50
max_per_second = 100.0
duplicate_bits = 0
"#,
        raw = raw.display(),
        template = template.display()
    )
}

/// Run the agent over `frames`; check every written frame; return (frames written, metrics).
fn run_and_check(frames: &[Lighting]) -> (usize, common::Metrics) {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::clipped_circle_1280x1024();
    let config = write_source(dir.path(), &layout, frames);
    let agent = Agent::start(dir.path(), &with_common(dir.path(), &config));
    agent.wait_for("the screen to be replayed", Duration::from_secs(60), |a| {
        a.status()["drained"] == true
    });
    let m = agent.metrics();
    assert_eq!(
        m.value("endo_agent_frames_captured_total"),
        frames.len() as f64
    );
    let truth = layout.fov_rect();
    let text: Vec<(u32, u32)> = (0..layout.height)
        .flat_map(|y| (0..layout.width).map(move |x| (x, y)))
        .filter(|&(x, y)| layout.is_text(x, y))
        .collect();
    let jsons = frame_records(&dir.path().join("lake"));
    for j in &jsons {
        let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(j).unwrap()).unwrap();
        let f = &rec["frame"]["fov"];
        let px = |k: &str| f[k].as_u64().unwrap() as u32;
        let r = Rect::new(px("x"), px("y"), px("width"), px("height"));
        assert_eq!(rec["frame"]["fov_shape"], "circle");
        assert_eq!(r.intersect(&truth), r, "{r:?} must lie inside {truth:?}");
        // Mapped back: the crop's visible shape holds no text or status-bar pixel.
        let fov = Fov::new(r, FovShape::Circle, &[], layout.width, layout.height);
        assert_eq!(fov.rect, r);
        for &(x, y) in &text {
            assert!(
                !(r.contains(x, y) && fov.visible(x - r.x, y - r.y)),
                "{}: text pixel ({x},{y}) is visible in the written crop {r:?}",
                j.display()
            );
        }
        let jpg = image::open(j.with_extension("jpg")).unwrap().to_luma8();
        assert_eq!(jpg.dimensions(), (r.width, r.height));
        // And in the pixels themselves: black outside the ellipse (a little beyond it, for
        // JPEG ringing at the edge).
        let (w, h) = (r.width as f64, r.height as f64);
        for (x, y, p) in jpg.enumerate_pixels() {
            let dx = (x as f64 + 0.5 - w / 2.0) / (w / 2.0);
            let dy = (y as f64 + 0.5 - h / 2.0) / (h / 2.0);
            if dx * dx + dy * dy > 1.08 {
                assert!(p.0[0] < 40, "{}: ({x},{y}) = {}", j.display(), p.0[0]);
            }
        }
    }
    assert!(agent.stop().success());
    (jsons.len(), m)
}

#[test]
fn dark_then_partly_lit_then_lit_never_writes_text_and_locks_once_lit() {
    let mut frames = vec![Lighting::Dark; 8];
    frames.extend([Lighting::LeftPart(1.0 / 3.0); 12]);
    frames.extend([Lighting::Lit; 16]);
    let (written, m) = run_and_check(&frames);
    assert!(written >= 5, "only {written} frames written\n{}", m.0);
    assert!(
        m.sum("endo_agent_fov_rejections_total", "") >= 10.0,
        "{}",
        m.0
    );
    assert!(
        m.value("endo_agent_frames_dropped_total{reason=\"fov_pending\"}") >= 20.0,
        "{}",
        m.0
    );
    assert_eq!(
        m.value("endo_agent_fov_locks_total{event=\"lock\"}"),
        1.0,
        "{}",
        m.0
    );
    assert_eq!(m.value("endo_agent_fov_locked"), 1.0);
    assert!(m.value("endo_agent_fov_rect_pixels{edge=\"width\"}") >= 1224.0);
}

#[test]
fn a_lit_start_locks_the_whole_clipped_circle_and_never_writes_text() {
    let (written, m) = run_and_check(&[Lighting::Lit; 16]);
    assert!(written >= 5, "only {written} frames written\n{}", m.0);
    let w = m.value("endo_agent_fov_rect_pixels{edge=\"width\"}");
    let h = m.value("endo_agent_fov_rect_pixels{edge=\"height\"}");
    assert!(w >= 1224.0 && h >= 936.0, "{w}x{h}\n{}", m.0);
}

#[test]
fn a_fixed_rect_outside_the_frame_is_refused_without_killing_scoring() {
    // Issue 12 item 4: the score thread panicked on a slice index and the agent said ready.
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
[source]
kind = "test"
width = 1280
height = 720
[fov]
mode = "fixed"
rect = [5000, 5000, 100, 100]
"#;
    let agent = Agent::start(dir.path(), &with_common(dir.path(), config));
    agent.wait_for(
        "frames refused as fov_invalid",
        Duration::from_secs(30),
        |a| {
            a.metrics()
                .value("endo_agent_frames_dropped_total{reason=\"fov_invalid\"}")
                >= 30.0
        },
    );
    let m = agent.metrics();
    assert_eq!(m.value("endo_agent_frames_scored_total"), 0.0);
    assert_eq!(
        m.value("endo_agent_fov_rejections_total{reason=\"outside_frame\"}"),
        1.0
    );
    // Readiness follows scoring: frames arrive, none is scored, so not ready (the agent
    // said 200 here before); the process itself is alive.
    let (code, body) = agent.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("none was scored"), "{body}");
    assert_eq!(agent.get("/healthz").0, 200);
    let log = agent.log_text();
    assert!(log.contains("does not overlap"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(agent.stop().success(), "a clean stop");
}
