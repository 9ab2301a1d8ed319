//! The on-screen quality overlay: a display branch of the capture pipeline that draws the
//! latest quality score, a colour-coded bar, the reason a frame is bad and the number of
//! frames kept in this procedure onto the live video (see `docs/overlay.md`).
//!
//! The branch hangs off a `tee` after the source, behind its own leaky queue, so it never
//! slows the scoring branch; the `overlaycomposition` element calls [`attach`]'s `draw`
//! handler for every frame, which reads the lock-free [`OverlayState`] written by the score
//! thread and returns a cached `VideoOverlayComposition`. The panel's pixels are re-rendered
//! only when what it shows changes. The video is never waited on: it shows whatever score is
//! latest, and how old that score is goes into `endo_agent_overlay_score_age_seconds`.
//!
//! Pixels outside [`Layout::rect`] are untouched. The panel is aligned to even pixels so
//! that blending into 4:2:0 video does not touch a chroma sample shared with a pixel outside.

use crate::artifact::Artifact;
use crate::config::{DisplayConfig, OverlayPosition};
use crate::font::glyph;
use crate::frame::Rect;
use crate::metrics::DurationWindow;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Bar colour (RGB) for a score at or above `select.threshold_high`.
pub const COLOUR_GOOD: [u8; 3] = [0, 200, 80];
/// Bar colour (RGB) for a score between the two thresholds.
pub const COLOUR_FAIR: [u8; 3] = [255, 176, 0];
/// Bar colour (RGB) for a score below `select.threshold_low`; also the reason's colour.
pub const COLOUR_BAD: [u8; 3] = [230, 40, 40];
/// The unfilled part of the bar (RGB).
pub const COLOUR_BAR_EMPTY: [u8; 3] = [96, 96, 96];
/// Text colour (RGB).
pub const COLOUR_TEXT: [u8; 3] = [255, 255, 255];
/// Panel background (RGB) and its opacity (straight alpha, 0..255). Text and bar are opaque.
pub const COLOUR_BACKGROUND: [u8; 3] = [16, 16, 16];
pub const BACKGROUND_ALPHA: u8 = 176;

/// Element names of the display branch (the supervisor recognises its errors by them).
pub const OVERLAY_ELEMENT: &str = "agent_overlay";
pub const QUEUE_ELEMENT: &str = "display_queue";
pub const SINK_ELEMENT: &str = "display_sink";

/// Panel geometry in font units (1 unit = `scale` pixels): the widest line is
/// "OUTSIDE BODY" (12 characters of 6 units, minus the last gap).
const PAD: u32 = 4;
const CONTENT_W: u32 = 12 * 6 - 1;
const GLYPH_H: u32 = 7;
const GAP: u32 = 3;
const BAR_H: u32 = 6;
const PANEL_W: u32 = CONTENT_W + 2 * PAD;
const PANEL_H: u32 = PAD + GLYPH_H + GAP + BAR_H + GAP + GLYPH_H + GAP + GLYPH_H + PAD;
/// Distance of the panel from the frame's edges.
const EDGE: u32 = 8;

/// Buffers in flight in the display branch that the delay probes can match by PTS.
const INFLIGHT: usize = 16;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn ns_since_epoch(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

/// Entry times of the last few buffers that entered the display branch, keyed by PTS.
struct Inflight {
    pts: [AtomicU64; INFLIGHT],
    at: [AtomicU64; INFLIGHT],
    next: AtomicUsize,
}

const NO_PTS: u64 = u64::MAX;

impl Inflight {
    fn new() -> Self {
        Inflight {
            pts: std::array::from_fn(|_| AtomicU64::new(NO_PTS)),
            at: std::array::from_fn(|_| AtomicU64::new(0)),
            next: AtomicUsize::new(0),
        }
    }
    fn put(&self, pts: u64, at_ns: u64) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % INFLIGHT;
        self.pts[i].store(NO_PTS, Ordering::Release);
        self.at[i].store(at_ns, Ordering::Release);
        self.pts[i].store(pts, Ordering::Release);
    }
    fn take(&self, pts: u64) -> Option<u64> {
        (0..INFLIGHT).find_map(|i| {
            if self.pts[i].load(Ordering::Acquire) != pts {
                return None;
            }
            let at = self.at[i].load(Ordering::Acquire);
            self.pts[i]
                .compare_exchange(pts, NO_PTS, Ordering::AcqRel, Ordering::Relaxed)
                .ok()
                .map(|_| at)
        })
    }
}

/// What the overlay shows, written by the score thread and read by the draw callback.
/// Atomics only: neither side ever waits for the other.
pub struct OverlayState {
    low: f32,
    high: f32,
    /// bit 63: a score exists; bits 32..40: reason code (0 = none); bits 0..32: f32 quality.
    score: AtomicU64,
    /// Arrival of the scored frame at the appsink, ns since the module's epoch.
    arrived_ns: AtomicU64,
    kept: AtomicU64,
    rendered: AtomicU64,
    delay: DurationWindow,
    age: DurationWindow,
    inflight: Inflight,
}

const HAS_SCORE: u64 = 1 << 63;

fn reason_code(a: Option<Artifact>) -> u64 {
    a.and_then(|a| Artifact::ALL.iter().position(|x| *x == a))
        .map_or(0, |i| i as u64 + 1)
}

fn reason_of(code: u64) -> Option<Artifact> {
    (code as usize)
        .checked_sub(1)
        .and_then(|i| Artifact::ALL.get(i).copied())
}

/// The operator's word for an artifact, as shown on the panel.
pub fn reason_label(a: Artifact) -> &'static str {
    match a {
        Artifact::Blur => "BLURRED",
        Artifact::Dark => "TOO DARK",
        Artifact::Overexposed => "OVEREXPOSED",
        Artifact::Glare => "GLARE",
        Artifact::Outside => "OUTSIDE BODY",
        Artifact::Noise => "NOISY",
    }
}

impl OverlayState {
    /// Thresholds from `[select]`: the bar is red below `threshold_low`, amber between,
    /// green at or above `threshold_high`; the reason is shown below `threshold_low`.
    pub fn new(threshold_low: f32, threshold_high: f32) -> Arc<OverlayState> {
        epoch();
        Arc::new(OverlayState {
            low: threshold_low,
            high: threshold_high,
            score: AtomicU64::new(0),
            arrived_ns: AtomicU64::new(0),
            kept: AtomicU64::new(0),
            rendered: AtomicU64::new(0),
            delay: DurationWindow::default(),
            age: DurationWindow::default(),
            inflight: Inflight::new(),
        })
    }

    /// Called by the score thread for every scored frame: `reason` is the primary reason
    /// when the frame is bad, `arrived` when the frame reached the agent's appsink.
    pub fn set_score(&self, quality: f32, reason: Option<Artifact>, arrived: Instant) {
        let q = if quality.is_nan() {
            0.0
        } else {
            quality.clamp(0.0, 1.0)
        };
        self.arrived_ns
            .store(ns_since_epoch(arrived), Ordering::Release);
        self.score.store(
            HAS_SCORE | reason_code(reason) << 32 | q.to_bits() as u64,
            Ordering::Release,
        );
    }

    /// Frames kept in this procedure (set on every selection, 0 on a new session).
    pub fn set_kept(&self, n: u64) {
        self.kept.store(n, Ordering::Relaxed);
    }

    /// The latest score and its primary reason, if any frame was scored yet.
    pub fn score(&self) -> Option<(f32, Option<Artifact>)> {
        let s = self.score.load(Ordering::Acquire);
        (s & HAS_SCORE != 0).then(|| (f32::from_bits(s as u32), reason_of((s >> 32) & 0xFF)))
    }

    /// The q-quantile (0..1) of the delay the display branch added to recent frames: from a
    /// buffer entering the branch to it reaching the video sink. Exact, over the last 8192.
    pub fn delay_quantile(&self, q: f64) -> Option<Duration> {
        self.delay.quantile(q)
    }

    /// The q-quantile of the displayed score's age (now − arrival of the scored frame) at
    /// draw time, over the last 8192 frames drawn with a score.
    pub fn score_age_quantile(&self, q: f64) -> Option<Duration> {
        self.age.quantile(q)
    }

    /// Frames that got the overlay.
    pub fn frames_rendered(&self) -> u64 {
        self.rendered.load(Ordering::Relaxed)
    }

    fn colour(&self, q: f32) -> Colour {
        if q < self.low {
            Colour::Bad
        } else if q < self.high {
            Colour::Fair
        } else {
            Colour::Good
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Colour {
    Bad,
    Fair,
    Good,
}

impl Colour {
    fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Bad => COLOUR_BAD,
            Colour::Fair => COLOUR_FAIR,
            Colour::Good => COLOUR_GOOD,
        }
    }
}

/// Where the panel and its parts sit, in frame (or render window) pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The whole panel: nothing outside it is changed.
    pub rect: Rect,
    /// The bar's full extent; its first `round(quality × bar.width)` columns are filled.
    pub bar: Rect,
    /// Pixels per font pixel.
    pub scale: u32,
}

fn even_down(v: u32) -> u32 {
    v & !1
}

/// The panel's rectangle for a frame of `width` × `height` (corner and scale from `cfg`).
/// `cfg.scale = 0` means height / 270 (at least 1); the scale shrinks if the panel would
/// not fit. The panel's corners are on even pixels.
pub fn layout(width: u32, height: u32, cfg: &DisplayConfig) -> Layout {
    let mut s = if cfg.scale == 0 {
        (height / 270).max(1)
    } else {
        cfg.scale
    };
    while s > 1 && ((PANEL_W + 2 * EDGE) * s > width || (PANEL_H + 2 * EDGE) * s > height) {
        s -= 1;
    }
    let w = (PANEL_W * s).next_multiple_of(2).min(even_down(width));
    let h = (PANEL_H * s).next_multiple_of(2).min(even_down(height));
    let edge = |room: u32, size: u32| even_down((EDGE * s).min(room.saturating_sub(size) / 2));
    let (ex, ey) = (edge(width, w), edge(height, h));
    let left = matches!(
        cfg.position,
        OverlayPosition::TopLeft | OverlayPosition::BottomLeft
    );
    let top = matches!(
        cfg.position,
        OverlayPosition::TopLeft | OverlayPosition::TopRight
    );
    let x = if left {
        ex
    } else {
        even_down(width.saturating_sub(w + ex))
    };
    let y = if top {
        ey
    } else {
        even_down(height.saturating_sub(h + ey))
    };
    let rect = Rect::new(x, y, w, h);
    let bar_y = (PAD + GLYPH_H + GAP) * s;
    let bar = Rect::new(
        x + PAD * s,
        y + bar_y,
        (CONTENT_W * s).min(w.saturating_sub(PAD * s)),
        (BAR_H * s).min(h.saturating_sub(bar_y)),
    );
    Layout {
        rect,
        bar,
        scale: s,
    }
}

/// The display branch, appended to the pipeline after the `agent_tee`: its own leaky
/// queue (the scoring branch never waits for the display), the overlay, a conversion to
/// whatever the sink takes (a pass-through when it takes the source's format), the sink.
pub fn branch_description(cfg: &DisplayConfig) -> String {
    format!(
        "agent_tee. ! queue name={QUEUE_ELEMENT} leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0 \
         ! overlaycomposition name={OVERLAY_ELEMENT} ! videoconvert name=display_convert \
         ! {} name={SINK_ELEMENT}",
        cfg.sink.trim()
    )
}

/// Whether a pipeline error message (from the capture supervisor) comes from the display
/// branch rather than the source or the scoring branch.
pub fn is_display_error(msg: &str) -> bool {
    [
        QUEUE_ELEMENT,
        OVERLAY_ELEMENT,
        "display_convert",
        SINK_ELEMENT,
    ]
    .iter()
    .any(|n| msg.contains(&format!(":{n}")))
}

/// What the panel shows; the pixels are re-rendered only when this changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shown {
    /// Quality in hundredths; None before the first score.
    centi: Option<u32>,
    filled: u32,
    colour: Colour,
    reason: Option<Artifact>,
    kept: u64,
}

/// The draw side: the layout for the current caps, the cached composition and its pixels.
/// Only the element's streaming thread touches it (the mutex is never contended).
#[derive(Default)]
struct Renderer {
    layout: Option<Layout>,
    shown: Option<Shown>,
    composition: Option<gst_video::VideoOverlayComposition>,
    /// The panel's BGRA pixels, reused when no rectangle still holds them.
    pixels: Option<gst::Buffer>,
}

impl Renderer {
    fn composition(&mut self, state: &OverlayState) -> Option<gst_video::VideoOverlayComposition> {
        let layout = self.layout?;
        let score = state.score();
        let shown = Shown {
            centi: score.map(|(q, _)| (q * 100.0).round() as u32),
            filled: score.map_or(0, |(q, _)| (q * layout.bar.width as f32).round() as u32),
            colour: score.map_or(Colour::Bad, |(q, _)| state.colour(q)),
            reason: score.and_then(|(q, r)| r.filter(|_| q < state.low)),
            kept: state.kept.load(Ordering::Relaxed),
        };
        if self.shown != Some(shown) || self.composition.is_none() {
            self.render(&layout, &shown);
            self.shown = Some(shown);
        }
        self.composition.clone()
    }

    fn render(&mut self, layout: &Layout, shown: &Shown) {
        // Release our reference first, so the pixel buffer can be reused once the sink
        // has released its frames.
        self.composition = None;
        let (w, h) = (layout.rect.width, layout.rect.height);
        if w == 0 || h == 0 {
            return;
        }
        let size = (w * h * 4) as usize;
        let mut buffer = match self.pixels.take() {
            Some(b) if b.is_writable() && b.size() == size => b,
            _ => {
                let mut b = match gst::Buffer::with_size(size) {
                    Ok(b) => b,
                    Err(_) => return,
                };
                let meta = gst_video::VideoMeta::add(
                    b.get_mut().expect("new buffer"),
                    gst_video::VideoFrameFlags::empty(),
                    gst_video::VideoFormat::Bgra,
                    w,
                    h,
                );
                if meta.is_err() {
                    return;
                }
                b
            }
        };
        {
            let Some(b) = buffer.get_mut() else { return };
            let Ok(mut map) = b.map_writable() else {
                return;
            };
            paint(map.as_mut_slice(), layout, shown);
        }
        let rect = gst_video::VideoOverlayRectangle::new_raw(
            &buffer,
            layout.rect.x as i32,
            layout.rect.y as i32,
            w,
            h,
            gst_video::VideoOverlayFormatFlags::empty(),
        );
        self.pixels = Some(buffer);
        self.composition = gst_video::VideoOverlayComposition::new([&rect]).ok();
    }
}

/// Paint the panel (BGRA, straight alpha, stride = width × 4).
fn paint(px: &mut [u8], layout: &Layout, shown: &Shown) {
    let (w, s) = (layout.rect.width as usize, layout.scale);
    let bgra = |rgb: [u8; 3], a: u8| [rgb[2], rgb[1], rgb[0], a];
    let bg = bgra(COLOUR_BACKGROUND, BACKGROUND_ALPHA);
    for p in px.chunks_exact_mut(4) {
        p.copy_from_slice(&bg);
    }
    let mut fill = |x: u32, y: u32, rw: u32, rh: u32, c: [u8; 4]| {
        let rows = px.len() / (w * 4);
        for row in (y as usize..(y + rh) as usize).take_while(|r| *r < rows) {
            let x1 = ((x + rw) as usize).min(w);
            for p in px[(row * w + x as usize) * 4..(row * w + x1) * 4].chunks_exact_mut(4) {
                p.copy_from_slice(&c);
            }
        }
    };
    let mut text = |t: &[u8], x: u32, y: u32, c: [u8; 4]| {
        for (i, ch) in t.iter().enumerate() {
            let gx = x + i as u32 * 6 * s;
            for (r, bits) in glyph(*ch).iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        fill(gx + col * s, y + r as u32 * s, s, s, c);
                    }
                }
            }
        }
    };
    let mut line = [0u8; 16];
    let (x0, y0) = (PAD * s, PAD * s);
    let q = match shown.centi {
        Some(c) => fmt_into(&mut line, format_args!("Q {}.{:02}", c / 100, c % 100)),
        None => b"Q --".as_slice(),
    };
    text(q, x0, y0, bgra(COLOUR_TEXT, 255));
    if let Some(r) = shown.reason {
        let y = (PAD + GLYPH_H + GAP + BAR_H + GAP) * s;
        text(reason_label(r).as_bytes(), x0, y, bgra(COLOUR_BAD, 255));
    }
    let y = (PAD + GLYPH_H + GAP + BAR_H + GAP + GLYPH_H + GAP) * s;
    let kept = fmt_into(
        &mut line,
        format_args!("KEPT {}", shown.kept.min(9_999_999)),
    );
    text(kept, x0, y, bgra(COLOUR_TEXT, 255));
    // The bar last, in frame coordinates relative to the panel.
    let (bx, by) = (layout.bar.x - layout.rect.x, layout.bar.y - layout.rect.y);
    let filled = shown.filled.min(layout.bar.width);
    fill(
        bx,
        by,
        filled,
        layout.bar.height,
        bgra(shown.colour.rgb(), 255),
    );
    fill(
        bx + filled,
        by,
        layout.bar.width - filled,
        layout.bar.height,
        bgra(COLOUR_BAR_EMPTY, 255),
    );
}

/// Format into a fixed buffer (no allocation); returns the bytes written.
fn fmt_into<'a>(buf: &'a mut [u8; 16], args: std::fmt::Arguments) -> &'a [u8] {
    use std::io::Write;
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = cur.write_fmt(args);
    let n = cur.position() as usize;
    &buf[..n]
}

/// Connect the overlay to the `overlaycomposition` element named `agent_overlay` in
/// `pipeline` ("caps-changed" and "draw"), and the delay probes around the display branch.
/// Does nothing (but log) when the pipeline has no such element. Keeps nothing the caller
/// must hold: the handlers live as long as the pipeline.
pub fn attach(pipeline: &gst::Pipeline, state: Arc<OverlayState>, cfg: &DisplayConfig) {
    let Some(overlay) = pipeline.by_name(OVERLAY_ELEMENT) else {
        tracing::warn!("no {OVERLAY_ELEMENT} element in the pipeline; the overlay is not drawn");
        return;
    };
    let rendered = metrics::counter!("endo_agent_overlay_frames_rendered_total");
    let render_time = metrics::histogram!("endo_agent_overlay_render_seconds");
    let delay_h = metrics::histogram!("endo_agent_overlay_delay_seconds");
    let age_h = metrics::histogram!("endo_agent_overlay_score_age_seconds");
    rendered.increment(0);

    let renderer = Arc::new(Mutex::new(Renderer::default()));
    let display = cfg.clone();
    let r = renderer.clone();
    overlay.connect("caps-changed", false, move |args| {
        // (element, caps, window width, window height): draw in window coordinates, which
        // are the video's own unless the sink composes the overlay itself at another size.
        let w = args.get(2).and_then(|v| v.get::<u32>().ok()).unwrap_or(0);
        let h = args.get(3).and_then(|v| v.get::<u32>().ok()).unwrap_or(0);
        if let Ok(mut r) = r.lock() {
            *r = Renderer {
                layout: (w > 0 && h > 0).then(|| layout(w, h, &display)),
                pixels: r.pixels.take(),
                ..Renderer::default()
            };
        }
        None
    });
    let st = state.clone();
    overlay.connect("draw", false, move |_args| {
        let t0 = Instant::now();
        let composition = renderer.lock().ok().and_then(|mut r| r.composition(&st));
        if composition.is_some() {
            st.rendered.fetch_add(1, Ordering::Relaxed);
            rendered.increment(1);
        }
        if st.score.load(Ordering::Acquire) & HAS_SCORE != 0 {
            let arrived = st.arrived_ns.load(Ordering::Acquire);
            let age = Duration::from_nanos(ns_since_epoch(t0).saturating_sub(arrived));
            st.age.push(age);
            age_h.record(age.as_secs_f64());
        }
        render_time.record(t0.elapsed().as_secs_f64());
        Some(composition.to_value())
    });

    // Added delay: a buffer entering the branch (the display queue, else the overlay)
    // until it reaches the video sink (else leaves the overlay), matched by PTS.
    let entry = pipeline
        .by_name(QUEUE_ELEMENT)
        .unwrap_or_else(|| overlay.clone())
        .static_pad("sink");
    let exit = match pipeline.by_name(SINK_ELEMENT) {
        Some(sink) => sink.static_pad("sink"),
        None => overlay.static_pad("src"),
    };
    if let (Some(entry), Some(exit)) = (entry, exit) {
        let st = state.clone();
        entry.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
                st.inflight
                    .put(pts.nseconds(), ns_since_epoch(Instant::now()));
            }
            gst::PadProbeReturn::Ok
        });
        exit.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
                if let Some(at) = state.inflight.take(pts.nseconds()) {
                    let d = Duration::from_nanos(ns_since_epoch(Instant::now()).saturating_sub(at));
                    state.delay.push(d);
                    delay_h.record(d.as_secs_f64());
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(position: OverlayPosition, scale: u32) -> DisplayConfig {
        DisplayConfig {
            enabled: true,
            sink: "fakesink".into(),
            position,
            scale,
        }
    }

    const POSITIONS: [OverlayPosition; 4] = [
        OverlayPosition::TopLeft,
        OverlayPosition::TopRight,
        OverlayPosition::BottomLeft,
        OverlayPosition::BottomRight,
    ];

    fn inside(inner: Rect, outer: Rect) -> bool {
        inner.x >= outer.x
            && inner.y >= outer.y
            && inner.x + inner.width <= outer.x + outer.width
            && inner.y + inner.height <= outer.y + outer.height
    }

    #[test]
    fn the_panel_lies_inside_the_frame_in_every_corner_at_1080p_and_720p() {
        for (w, h, scale) in [(1920, 1080, 4), (1280, 720, 2)] {
            for p in POSITIONS {
                let l = layout(w, h, &cfg(p, 0));
                assert_eq!(l.scale, scale, "{w}x{h}");
                assert!(
                    inside(l.rect, Rect::new(0, 0, w, h)),
                    "{w}x{h} {p:?}: {l:?}"
                );
                assert!(inside(l.bar, l.rect), "{w}x{h} {p:?}: {l:?}");
                assert_eq!(l.bar.width, CONTENT_W * scale);
                assert!(l.rect.x.is_multiple_of(2) && l.rect.y.is_multiple_of(2));
                assert!(l.rect.width.is_multiple_of(2) && l.rect.height.is_multiple_of(2));
                let (left, top) = (l.rect.x < w / 2, l.rect.y < h / 2);
                assert_eq!(
                    (left, top),
                    match p {
                        OverlayPosition::TopLeft => (true, true),
                        OverlayPosition::TopRight => (false, true),
                        OverlayPosition::BottomLeft => (true, false),
                        OverlayPosition::BottomRight => (false, false),
                    },
                    "{p:?}"
                );
            }
        }
    }

    #[test]
    fn the_scale_shrinks_to_fit_a_small_frame_and_odd_scales_stay_even_aligned() {
        let l = layout(320, 240, &cfg(OverlayPosition::BottomRight, 9));
        assert!(inside(l.rect, Rect::new(0, 0, 320, 240)), "{l:?}");
        assert!(l.scale < 9);
        let l = layout(641, 361, &cfg(OverlayPosition::BottomRight, 1));
        assert_eq!((l.rect.x % 2, l.rect.y % 2, l.rect.width % 2), (0, 0, 0));
        assert!(inside(l.rect, Rect::new(0, 0, 641, 361)));
    }

    #[test]
    fn score_reason_and_colour_round_trip_through_the_atomics() {
        let s = OverlayState::new(0.5, 0.6);
        assert_eq!(s.score(), None);
        s.set_score(0.25, Some(Artifact::Outside), Instant::now());
        assert_eq!(s.score(), Some((0.25, Some(Artifact::Outside))));
        assert_eq!(s.colour(0.25), Colour::Bad);
        assert_eq!(s.colour(0.55), Colour::Fair);
        assert_eq!(s.colour(0.6), Colour::Good);
        s.set_score(1.5, None, Instant::now());
        assert_eq!(s.score(), Some((1.0, None)));
    }

    #[test]
    fn delays_are_matched_by_pts_and_quantiles_are_exact() {
        let s = OverlayState::new(0.5, 0.6);
        assert_eq!(s.delay_quantile(0.5), None);
        for i in 0..100u64 {
            s.inflight.put(i, 1_000);
            let at = s.inflight.take(i).unwrap();
            s.delay.push(Duration::from_nanos(at + i));
        }
        assert_eq!(s.inflight.take(3), None, "taken once");
        assert_eq!(s.delay_quantile(0.0), Some(Duration::from_nanos(1_000)));
        assert_eq!(s.delay_quantile(1.0), Some(Duration::from_nanos(1_099)));
    }

    #[test]
    fn the_panel_text_fits_the_panel() {
        for a in Artifact::ALL {
            assert!(reason_label(a).len() as u32 * 6 - 1 <= CONTENT_W);
        }
        let mut b = [0u8; 16];
        assert!(
            fmt_into(&mut b, format_args!("KEPT {}", 9_999_999)).len() * 6 - 1
                <= CONTENT_W as usize
        );
    }
}
