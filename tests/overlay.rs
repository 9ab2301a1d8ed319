//! The on-screen quality overlay, rendered by real GStreamer: frames pushed one at a time
//! through `tee → overlaycomposition → appsink` beside an untouched branch, with the score
//! fed in before each frame. Pixels outside the panel equal the input frame byte for byte;
//! the bar's length and colour follow the score. Also: the capture pipeline's display
//! branch, a failing display sink that capture survives, and the agent binary with a
//! `fakesink` display.

mod common;

use endo_agent::capture::{self, CaptureStats, Ended};
use endo_agent::config::{Config, DisplayConfig, OverlayPosition, SourceKind};
use endo_agent::frame::{yuv_to_rgb, Rect};
use endo_agent::overlay::{self, Layout, OverlayState};
use endo_agent::score::artifact::Artifact;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

const W: u32 = 640;
const H: u32 = 360;
const LOW: f32 = 0.5;
const HIGH: f32 = 0.6;

fn display(position: OverlayPosition) -> DisplayConfig {
    DisplayConfig {
        enabled: true,
        sink: "fakesink".into(),
        position,
        scale: 2,
    }
}

/// `n` frames of random noise (every pixel differs from its neighbours) in `format`.
fn input_frames(format: &str, n: usize) -> (gst::Caps, Vec<gst::Buffer>) {
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers={n} pattern=snow ! video/x-raw,format={format},width={W},height={H},framerate=30/1 \
         ! appsink name=s sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = p
        .by_name("s")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let mut caps = None;
    let mut frames = Vec::new();
    while let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
        caps = s.caps_owned();
        // A deep copy: the test keeps its own reference of the input.
        frames.push(s.buffer().unwrap().copy_deep().unwrap());
        if frames.len() == n {
            break;
        }
    }
    p.set_state(gst::State::Null).unwrap();
    assert_eq!(frames.len(), n);
    (caps.unwrap(), frames)
}

struct Harness {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    raw: gst_app::AppSink,
    out: gst_app::AppSink,
    info: gst_video::VideoInfo,
    next_pts: u64,
}

impl Harness {
    fn new(caps: &gst::Caps, state: Arc<OverlayState>, cfg: &DisplayConfig) -> Harness {
        let pipeline = gst::parse::launch(
            "appsrc name=src format=time ! tee name=t \
             ! queue ! appsink name=raw sync=false \
             t. ! queue ! overlaycomposition name=agent_overlay ! appsink name=out sync=false",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let src = pipeline
            .by_name("src")
            .unwrap()
            .downcast::<gst_app::AppSrc>()
            .unwrap();
        src.set_caps(Some(caps));
        let sink = |n: &str| {
            pipeline
                .by_name(n)
                .unwrap()
                .downcast::<gst_app::AppSink>()
                .unwrap()
        };
        let (raw, out) = (sink("raw"), sink("out"));
        overlay::attach(&pipeline, state, cfg);
        pipeline.set_state(gst::State::Playing).unwrap();
        Harness {
            info: gst_video::VideoInfo::from_caps(caps).unwrap(),
            pipeline,
            src,
            raw,
            out,
            next_pts: 0,
        }
    }

    /// Push one frame; return (raw branch, overlay branch) buffers of it.
    fn run(&mut self, frame: &gst::Buffer) -> (gst::Buffer, gst::Buffer) {
        let mut b = frame.copy();
        {
            let b = b.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_nseconds(self.next_pts));
            b.set_duration(gst::ClockTime::from_mseconds(33));
        }
        self.next_pts += 33_333_333;
        self.src.push_buffer(b).unwrap();
        let pull = |s: &gst_app::AppSink| {
            s.try_pull_sample(gst::ClockTime::from_seconds(10))
                .expect("a frame from the branch")
                .buffer_owned()
                .unwrap()
        };
        (pull(&self.raw), pull(&self.out))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Per-plane view: (data, stride, x shift, y shift, bytes per pixel).
fn planes(
    info: &gst_video::VideoInfo,
    buf: &gst::Buffer,
    f: impl FnOnce(&[(&[u8], usize, u32, u32, usize)]),
) {
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf.as_ref(), info).unwrap();
    let finfo = info.format_info();
    let v: Vec<_> = (0..frame.n_planes())
        .map(|p| {
            (
                frame.plane_data(p).unwrap(),
                frame.plane_stride()[p as usize] as usize,
                finfo.w_sub()[p as usize],
                finfo.h_sub()[p as usize],
                finfo.pixel_stride()[p as usize] as usize,
            )
        })
        .collect();
    f(&v);
}

/// Every byte of every pixel outside `rect` is equal in `a` and `b`.
fn assert_equal_outside(info: &gst_video::VideoInfo, a: &gst::Buffer, b: &gst::Buffer, rect: Rect) {
    planes(info, a, |pa| {
        planes(info, b, |pb| {
            for (p, (&(da, sa, sx, sy, bpp), &(db, sb, _, _, _))) in pa.iter().zip(pb).enumerate() {
                let (pw, ph) = (
                    (info.width() + (1 << sx) - 1) >> sx,
                    (info.height() + (1 << sy) - 1) >> sy,
                );
                for y in 0..ph {
                    for x in 0..pw {
                        // The plane sample covers these frame pixels; the panel is even-aligned,
                        // so a sample is either wholly inside or wholly outside.
                        let (fx, fy) = (x << sx, y << sy);
                        let inside = fx >= rect.x
                            && fx < rect.x + rect.width
                            && fy >= rect.y
                            && fy < rect.y + rect.height;
                        if inside {
                            continue;
                        }
                        let (oa, ob) = (
                            y as usize * sa + x as usize * bpp,
                            y as usize * sb + x as usize * bpp,
                        );
                        assert_eq!(
                            &da[oa..oa + bpp],
                            &db[ob..ob + bpp],
                            "plane {p} sample ({x},{y}) outside the panel {rect:?} changed"
                        );
                    }
                }
            }
        })
    });
}

/// Limited-range BT.709 YUV → RGB: GStreamer's blender (1.22) converts the overlay's RGB
/// to YUV with BT.709 coefficients whatever the stream's colorimetry, so this decodes its
/// colours exactly; the agent's own BT.601 [`yuv_to_rgb`] is off by up to ~20 levels.
fn yuv709_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let (c, d, e) = (
        (y as f32 - 16.0) * 255.0 / 219.0,
        (u as f32 - 128.0) * 255.0 / 224.0,
        (v as f32 - 128.0) * 255.0 / 224.0,
    );
    let px = |f: f32| f.round().clamp(0.0, 255.0) as u8;
    [
        px(c + 1.5748 * e),
        px(c - 0.1873 * d - 0.4681 * e),
        px(c + 1.8556 * d),
    ]
}

/// The RGB colour of the frame pixel (x, y); for 4:2:0 also the agent's BT.601 reading.
fn rgb_at(info: &gst_video::VideoInfo, buf: &gst::Buffer, x: u32, y: u32) -> [u8; 3] {
    rgb_and_601_at(info, buf, x, y).0
}

fn rgb_and_601_at(
    info: &gst_video::VideoInfo,
    buf: &gst::Buffer,
    x: u32,
    y: u32,
) -> ([u8; 3], [u8; 3]) {
    let mut out = ([0; 3], [0; 3]);
    planes(info, buf, |p| match info.format() {
        gst_video::VideoFormat::Rgba => {
            let o = y as usize * p[0].1 + x as usize * 4;
            let c = [p[0].0[o], p[0].0[o + 1], p[0].0[o + 2]];
            out = (c, c);
        }
        gst_video::VideoFormat::Bgrx => {
            let o = y as usize * p[0].1 + x as usize * 4;
            let c = [p[0].0[o + 2], p[0].0[o + 1], p[0].0[o]];
            out = (c, c);
        }
        gst_video::VideoFormat::I420 => {
            let yy = p[0].0[y as usize * p[0].1 + x as usize];
            let c = (y / 2) as usize * p[1].1 + (x / 2) as usize;
            let (u, v) = (p[1].0[c], p[2].0[c]);
            out = (yuv709_to_rgb(yy, u, v), yuv_to_rgb(yy, u, v));
        }
        f => panic!("format {f:?} not handled by the test"),
    });
    out
}

fn close(a: [u8; 3], b: [u8; 3], tol: u8) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tol)
}

/// The overlay colour nearest to `c`.
fn nearest(c: [u8; 3]) -> [u8; 3] {
    let d = |p: [u8; 3]| -> u32 {
        c.iter()
            .zip(p)
            .map(|(a, b)| (a.abs_diff(b) as u32).pow(2))
            .sum()
    };
    [
        overlay::COLOUR_BAD,
        overlay::COLOUR_FAIR,
        overlay::COLOUR_GOOD,
        overlay::COLOUR_BAR_EMPTY,
    ]
    .into_iter()
    .min_by_key(|p| d(*p))
    .unwrap()
}

/// The bar's first round(q × width) columns are `colour`, the rest the empty grey.
fn assert_bar(
    info: &gst_video::VideoInfo,
    out: &gst::Buffer,
    l: &Layout,
    q: Option<f32>,
    colour: [u8; 3],
    tol: u8,
    what: &str,
) {
    let filled = q.map_or(0, |q| (q * l.bar.width as f32).round() as u32);
    // 4:2:0 chroma is shared by pixel pairs: skip the column pair at the fill boundary.
    let subsampled = info.format() == gst_video::VideoFormat::I420;
    for row in l.bar.y..l.bar.y + l.bar.height {
        for col in 0..l.bar.width {
            if subsampled && col.abs_diff(filled) <= 1 {
                continue;
            }
            let want = if col < filled {
                colour
            } else {
                overlay::COLOUR_BAR_EMPTY
            };
            let (got, got601) = rgb_and_601_at(info, out, l.bar.x + col, row);
            assert!(
                close(got, want, tol) && nearest(got601) == want,
                "{what}: bar column {col} of {} (filled {filled}) row {row}: {got:?} \
                 (BT.601 {got601:?}), want {want:?}",
                l.bar.width
            );
        }
    }
}

/// Scores fed before each frame: (quality, reason, expected bar colour).
const STEPS: [(Option<f32>, Option<Artifact>, [u8; 3]); 7] = [
    (None, None, overlay::COLOUR_BAR_EMPTY),
    (Some(0.25), Some(Artifact::Blur), overlay::COLOUR_BAD),
    (Some(0.55), None, overlay::COLOUR_FAIR),
    (Some(0.9), None, overlay::COLOUR_GOOD),
    (Some(0.9), None, overlay::COLOUR_GOOD),
    (Some(1.0), None, overlay::COLOUR_GOOD),
    (Some(0.0), Some(Artifact::Dark), overlay::COLOUR_BAD),
];

fn check_format(format: &str, position: OverlayPosition, tol: u8) {
    gst::init().unwrap();
    let (caps, frames) = input_frames(format, STEPS.len());
    let cfg = display(position);
    let state = OverlayState::new(LOW, HIGH);
    let mut h = Harness::new(&caps, state.clone(), &cfg);
    let l = overlay::layout(W, H, &cfg);
    assert_eq!(l.scale, 2);
    for (i, ((q, reason, colour), frame)) in STEPS.iter().zip(&frames).enumerate() {
        if let Some(q) = q {
            state.set_score(*q, *reason, Instant::now());
        }
        state.set_kept(i as u64 * 3);
        let (raw, out) = h.run(frame);
        let what = format!("{format} step {i} (q {q:?})");
        assert_equal_outside(&h.info, frame, &raw, Rect::new(0, 0, 0, 0));
        assert_equal_outside(&h.info, frame, &out, l.rect);
        assert_bar(&h.info, &out, &l, *q, *colour, tol, &what);
        // The panel's background was drawn over the noise.
        let mut differs = 0;
        for x in l.rect.x..l.rect.x + l.rect.width {
            if rgb_at(&h.info, &out, x, l.rect.y + 1) != rgb_at(&h.info, &raw, x, l.rect.y + 1) {
                differs += 1;
            }
        }
        assert!(differs > l.rect.width / 2, "{what}: no panel drawn");
    }
    assert_eq!(state.frames_rendered(), STEPS.len() as u64);
    assert!(state.delay_quantile(0.5).is_some());
    assert!(state.score_age_quantile(0.99).unwrap() < Duration::from_secs(10));
}

#[test]
fn rgba_overlay_bar_follows_the_score_and_leaves_every_other_pixel_alone() {
    check_format("RGBA", OverlayPosition::TopRight, 1);
}

#[test]
fn bgrx_overlay_bar_follows_the_score_and_leaves_every_other_pixel_alone() {
    check_format("BGRx", OverlayPosition::BottomLeft, 1);
}

#[test]
fn i420_overlay_bar_follows_the_score_and_leaves_every_other_pixel_alone() {
    check_format("I420", OverlayPosition::BottomRight, 4);
}

fn test_source(display: &str) -> Config {
    let mut cfg = Config::default();
    cfg.source.kind = SourceKind::Test;
    cfg.source.width = 320;
    cfg.source.height = 240;
    cfg.source.pattern = "ball".into();
    cfg.display.enabled = true;
    cfg.display.sink = display.into();
    cfg.capture.backoff_initial_ms = 100;
    cfg
}

#[test]
fn the_capture_pipeline_gets_a_display_branch_only_when_enabled_and_names_a_bad_sink() {
    let cfg = test_source("fakesink sync=false");
    let (_, launch) = capture::launch_description(&cfg).unwrap();
    assert!(launch.contains("tee name=agent_tee"), "{launch}");
    assert!(
        launch.contains("overlaycomposition name=agent_overlay"),
        "{launch}"
    );
    assert!(
        launch.contains("fakesink sync=false name=display_sink"),
        "{launch}"
    );
    capture::check_pipeline(&cfg).unwrap();

    let mut off = cfg.clone();
    off.display.enabled = false;
    let (_, launch) = capture::launch_description(&off).unwrap();
    assert!(
        !launch.contains("tee") && !launch.contains("overlay"),
        "{launch}"
    );

    let bad = test_source("nosuchvideosink");
    let err = capture::check_pipeline(&bad).unwrap_err().to_string();
    assert!(
        err.contains("display.sink") && err.contains("nosuchvideosink"),
        "{err}"
    );
}

/// Run the supervised capture for `secs`, counting frames; returns (frames, how it ended).
fn run_capture(cfg: &Config, state: Option<Arc<OverlayState>>, secs: u64) -> (u64, Ended) {
    let (tx, rx) = crossbeam_channel::bounded(4);
    let stats = Arc::new(CaptureStats::default());
    let stop = endo_agent::shutdown::Shutdown::new();
    let (cfg2, rx2, stats2, stop2) = (cfg.clone(), rx.clone(), stats.clone(), stop.clone());
    let t =
        std::thread::spawn(move || capture::run_supervised(&cfg2, tx, rx2, stats2, stop2, state));
    let end = Instant::now() + Duration::from_secs(secs);
    let mut n = 0;
    while Instant::now() < end {
        if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
            n += 1;
        }
    }
    stop.stop();
    let ended = t.join().unwrap().unwrap();
    (n, ended)
}

#[test]
fn the_capture_pipeline_draws_the_overlay_on_its_display_branch() {
    let cfg = test_source("fakesink sync=false");
    let state = OverlayState::new(LOW, HIGH);
    state.set_score(0.7, None, Instant::now());
    let (frames, ended) = run_capture(&cfg, Some(state.clone()), 2);
    assert_eq!(ended, Ended::Stopped);
    assert!(frames > 20, "{frames} frames scored");
    assert!(state.frames_rendered() > 20, "{}", state.frames_rendered());
    let d = state.delay_quantile(0.5).expect("delay measured");
    assert!(d < Duration::from_millis(500), "{d:?}");
}

#[test]
fn a_failing_display_sink_does_not_stop_capture() {
    // A sink that fails when it starts, like a video sink on a tower with no display.
    let cfg = test_source("filesink location=/nonexistent-dir/overlay.raw");
    let state = OverlayState::new(LOW, HIGH);
    let (frames, ended) = run_capture(&cfg, Some(state), 3);
    assert_eq!(ended, Ended::Stopped);
    assert!(
        frames > 20,
        "capture went on without the display: {frames} frames"
    );
}

#[test]
fn the_agent_with_a_fakesink_display_reports_overlay_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
[source]
kind = "phantom"
width = 640
height = 360
fps = 30
[display]
enabled = true
sink = "fakesink sync=false"
"#;
    let agent = common::Agent::start(dir.path(), &common::with_common(dir.path(), config));
    agent.wait_for("overlay frames", Duration::from_secs(30), |a| {
        let m = a.metrics();
        m.value("endo_agent_overlay_frames_rendered_total") > 30.0
            && m.value("endo_agent_overlay_score_age_seconds_count") > 0.0
    });
    let m = agent.metrics();
    assert!(
        m.value("endo_agent_overlay_delay_seconds_count") > 0.0,
        "{}",
        m.0
    );
    assert!(
        m.value("endo_agent_overlay_render_seconds_count") > 0.0,
        "{}",
        m.0
    );
    agent.stop();
}
