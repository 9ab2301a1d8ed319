//! The phantom: a procedural, deterministic generator of NBI-like endoscopy video with a
//! scripted degradation schedule and ground-truth labels.
//!
//! It feeds the demo (live GStreamer source), the tests and benchmarks (known good and bad
//! frames) and model training (stills + `labels.csv`). Frame `i` depends only on
//! (config, seed, i): the raw frames behind stills, video files and a live feed of the same
//! config agree byte for byte, and any frame can be rendered on its own. Indices past the end
//! of the schedule loop.
//!
//! Module map: [`schedule`] (segments, text form, labels), `texture` (the precomputed worlds),
//! `render` (per-frame pipeline and field-of-view geometry), `blur`, `osd` (burned-in text),
//! [`output`] (stills + CSV, video files, live `appsrc` feed), [`processor`] (screen layouts of
//! real video processors, for testing the field-of-view locator).

mod blur;
pub(crate) mod osd;
pub mod output;
pub mod processor;
mod render;
pub mod schedule;
mod texture;

use crate::frame::{I420Image, Rect};

pub use output::{
    spawn_live_feed, write_labelled, write_stills, write_video, LiveFeed, LiveOpts, OutputError,
    StillFormat,
};
pub use render::{FovShape, I420PlanesMut};
pub use schedule::{Degradation, FrameLabel, Schedule, ScheduleError, Segment};
pub use texture::Palette;

use render::{Fov, Pan, SensorNoise};

/// Everything that defines a phantom video.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PhantomConfig {
    /// Frame size; both must be even (I420) and at least 64.
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub seed: u64,
    pub schedule: Schedule,
    pub fov_shape: FovShape,
    pub palette: Palette,
    /// Burn fake patient data and a clock into the left border.
    pub osd: bool,
}

impl Default for PhantomConfig {
    fn default() -> Self {
        PhantomConfig {
            width: 1280,
            height: 720,
            fps: 30,
            seed: 1,
            schedule: Schedule::default(),
            fov_shape: FovShape::Circle,
            palette: Palette::Nbi,
            osd: true,
        }
    }
}

/// A configuration the phantom cannot render.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PhantomError {
    #[error("phantom frame size {width}x{height} is invalid: width and height must be even and at least 64")]
    Size { width: u32, height: u32 },
    #[error("phantom fps {0} is invalid: must be 1..=240")]
    Fps(u32),
    #[error("phantom schedule is empty or shorter than one frame")]
    Schedule,
}

/// A ready-to-render phantom. Immutable and `Sync`: share it with `Arc` between threads.
pub struct Phantom {
    cfg: PhantomConfig,
    /// Frame height / 1080: the factor applied to every size given "at 1080p".
    scale: f32,
    fov: Fov,
    world: I420Image,
    outside: I420Image,
    pan: Pan,
    noise: SensorNoise,
    /// First frame of each segment, then the total number of frames.
    seg_start: Vec<u64>,
    osd: Option<osd::Osd>,
}

impl Phantom {
    /// Build a phantom, precomputing the worlds (the expensive part: ~0.12 s at 720p and
    /// ~0.25 s at 1080p optimised). Panics on an invalid config; see [`Phantom::try_new`].
    pub fn new(cfg: PhantomConfig) -> Phantom {
        Phantom::try_new(cfg).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_new(cfg: PhantomConfig) -> Result<Phantom, PhantomError> {
        let (w, h) = (cfg.width, cfg.height);
        if w < 64 || h < 64 || w % 2 == 1 || h % 2 == 1 {
            return Err(PhantomError::Size {
                width: w,
                height: h,
            });
        }
        if cfg.fps == 0 || cfg.fps > 240 {
            return Err(PhantomError::Fps(cfg.fps));
        }
        let mut seg_start = Vec::with_capacity(cfg.schedule.segments.len() + 1);
        let mut acc = 0f64;
        for s in &cfg.schedule.segments {
            seg_start.push((acc * cfg.fps as f64).round() as u64);
            acc += s.seconds as f64;
        }
        seg_start.push((acc * cfg.fps as f64).round() as u64);
        if cfg.schedule.segments.is_empty() || *seg_start.last().unwrap_or(&0) == 0 {
            return Err(PhantomError::Schedule);
        }

        let scale = h as f32 / 1080.0;
        let (fov_rect, osd_scale) = layout(&cfg);
        let fov = Fov::new(cfg.fov_shape, fov_rect);
        // The world is 30 % larger than the field of view on each side, for the camera to pan.
        let world_size = (
            even_up(fov_rect.width * 13 / 10),
            even_up(fov_rect.height * 13 / 10),
        );
        let world = texture::mucosa(world_size.0, world_size.1, scale, cfg.seed, cfg.palette);
        let outside = texture::outside(world_size.0, world_size.1, scale, cfg.seed);
        let noise = SensorNoise::new(cfg.seed, fov_rect.width);
        let pan = Pan::new(cfg.seed, world_size, (fov_rect.width, fov_rect.height));
        let mode = match cfg.palette {
            Palette::Nbi => "NBI",
            Palette::WhiteLight => "WLI",
        };
        let osd = osd_scale
            .filter(|_| cfg.osd)
            .map(|s| osd::Osd::new(s, mode));
        Ok(Phantom {
            cfg,
            scale,
            fov,
            world,
            outside,
            pan,
            noise,
            seg_start,
            osd,
        })
    }

    pub fn config(&self) -> &PhantomConfig {
        &self.cfg
    }

    /// Length of one loop of the schedule, in frames.
    pub fn num_frames(&self) -> u64 {
        *self.seg_start.last().expect("at least one segment")
    }

    /// The frames (of the first loop) that belong to segment `segment`.
    pub fn segment_frames(&self, segment: usize) -> std::ops::Range<u64> {
        self.seg_start[segment]..self.seg_start[segment + 1]
    }

    /// Ground truth of frame `index` (looped, like [`Phantom::render`]).
    pub fn label(&self, index: u64) -> FrameLabel {
        let idx = index % self.num_frames();
        let n = self.cfg.schedule.segments.len();
        // The last segment starting at or before idx (zero-length segments are skipped).
        let segment = self.seg_start[..n].partition_point(|&s| s <= idx) - 1;
        FrameLabel::new(
            index,
            segment,
            self.cfg.schedule.segments[segment].degradation,
        )
    }

    /// Bounding rectangle of the endoscopic field of view (even coordinates and sizes).
    pub fn fov_rect(&self) -> Rect {
        self.fov.rect
    }

    /// Is the pixel (x, y) inside the field of view (not the black border)?
    pub fn in_fov(&self, x: u32, y: u32) -> bool {
        self.fov.contains(x, y)
    }

    /// Where burned-in text is drawn (one rectangle per line; empty when the OSD is off or
    /// does not fit). Always entirely outside [`Phantom::fov_rect`].
    pub fn osd_rects(&self) -> Vec<Rect> {
        self.osd
            .as_ref()
            .map_or_else(Vec::new, |o| o.rects().to_vec())
    }

    /// Render frame `index` into `out`, which must have the configured size. Does not
    /// allocate (blur line buffers are reused per thread after first use).
    pub fn render_into(&self, index: u64, out: &mut I420Image) {
        assert!(
            out.width == self.cfg.width && out.height == self.cfg.height,
            "phantom renders {}x{}, got a {}x{} image",
            self.cfg.width,
            self.cfg.height,
            out.width,
            out.height
        );
        let (ys, cs) = (out.width as usize, out.width as usize / 2);
        self.render_planes(
            index,
            &mut I420PlanesMut {
                y: &mut out.y,
                u: &mut out.u,
                v: &mut out.v,
                y_stride: ys,
                uv_stride: cs,
            },
        );
    }

    /// Render frame `index` into a new image.
    pub fn render(&self, index: u64) -> I420Image {
        let mut img = I420Image::new(self.cfg.width, self.cfg.height);
        self.render_into(index, &mut img);
        img
    }
}

fn even_up(v: u32) -> u32 {
    (v + 1) & !1
}

fn even_round(v: f32) -> u32 {
    ((v / 2.0).round() as u32) * 2
}

/// Place the field of view and choose the OSD scale.
///
/// Like a real video processor the image is 94 % of the frame height, vertically centred and
/// shifted right of centre, leaving the left border for the patient data. The OSD scale is
/// ~height/270; it is reduced (or the OSD dropped) if the text would not fit left of the image.
fn layout(cfg: &PhantomConfig) -> (Rect, Option<u32>) {
    let (w, h) = (cfg.width, cfg.height);
    let mut fh = even_round(0.94 * h as f32).min(h);
    let mut fw = match cfg.fov_shape {
        FovShape::Circle => fh,
        FovShape::Octagon => even_round(1.12 * fh as f32),
    };
    if fw > w {
        fw = w & !1;
        if cfg.fov_shape == FovShape::Circle {
            fh = fw;
        }
    }
    let max_x = w - fw;
    let preferred = even_round(0.56 * w as f32 - fw as f32 / 2.0).min(max_x);
    let y = ((h - fh) / 2) & !1;
    let mut osd_scale = None;
    let mut x = preferred;
    // The space for the OSD is reserved even when it is off, so that switching it does not
    // move the image.
    {
        let top = ((h as f32 / 270.0).round() as u32).max(1);
        for s in (1..=top).rev() {
            let need = even_up(osd::needed_width(s) + 2 * s);
            if need <= max_x && osd::needed_height(s) <= h {
                osd_scale = Some(s);
                x = preferred.max(need);
                break;
            }
        }
    }
    (Rect::new(x, y, fw, fh), osd_scale)
}

#[cfg(test)]
mod tests;
