//! Per-frame rendering: field-of-view geometry, camera pan, and the frame pipeline
//! (window copy → blur → exposure, vignetting, sensor noise and black border → glare → OSD).
//!
//! Everything that does not depend on the frame index (row spans of the field of view,
//! vignetting gains, worlds, OSD runs) is computed once in `Phantom::new`; a frame is then a
//! few passes of integer arithmetic over the planes, with no allocation.
//!
//! Blur is applied to the scene *before* the field-of-view mask and the vignette, as in the
//! optics of a real scope (the field stop stays sharp when the lens is out of focus).

use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::blur::{self, Dir, PlaneRect};
use super::schedule::Degradation;
use super::texture::{mix64, unit};
use super::Phantom;
use crate::frame::Rect;

/// Black level of the border (limited-range video black and neutral chroma).
pub(crate) const BLACK_Y: u8 = 16;
pub(crate) const NEUTRAL_C: u8 = 128;
/// Luma of the core of a specular highlight.
const GLARE_Y: u8 = 252;

/// Outline of the endoscopic image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FovShape {
    /// A round image (most video processors).
    #[default]
    Circle,
    /// A rectangle with cut corners (some processors' "wide" display modes).
    Octagon,
}

/// Destination planes of one I420 frame, with strides (as in a mapped GStreamer buffer).
pub struct I420PlanesMut<'a> {
    pub y: &'a mut [u8],
    pub u: &'a mut [u8],
    pub v: &'a mut [u8],
    pub y_stride: usize,
    pub uv_stride: usize,
}

/// The field of view: its bounding rectangle, per-row spans and vignetting gains.
pub(crate) struct Fov {
    pub rect: Rect,
    /// Per luma row of `rect`: the inside pixels `[x0, x1)` in frame coordinates.
    pub spans: Vec<(u32, u32)>,
    /// Per chroma row of `rect` (rect.height / 2 rows): inside chroma columns `[x0, x1)`.
    pub cspans: Vec<(u32, u32)>,
    /// Vignetting gain (Q8, 256 = 1) per luma pixel of `rect`, row-major.
    pub vig: Vec<u16>,
    /// Vignetting gain per chroma pixel of `rect`.
    pub cvig: Vec<u16>,
    /// Number of luma pixels inside the field of view.
    pub pixels: u64,
    centre: (f32, f32),
    half: (f32, f32),
    cut: f32,
    shape: FovShape,
}

impl Fov {
    /// `rect` must have even coordinates and sizes.
    pub fn new(shape: FovShape, rect: Rect) -> Fov {
        let half = (rect.width as f32 / 2.0, rect.height as f32 / 2.0);
        let mut fov = Fov {
            rect,
            spans: Vec::with_capacity(rect.height as usize),
            cspans: Vec::with_capacity(rect.height as usize / 2),
            vig: Vec::with_capacity((rect.width * rect.height) as usize),
            cvig: Vec::with_capacity((rect.width * rect.height / 4) as usize),
            pixels: 0,
            centre: (rect.x as f32 + half.0, rect.y as f32 + half.1),
            half,
            cut: 0.35 * half.0.min(half.1),
            shape,
        };
        // Normalise the vignette radius so that the farthest inside point is at 1.
        let rho_max = match shape {
            FovShape::Circle => 1.0,
            FovShape::Octagon => {
                let (a, b) = half;
                let corner_y = b - fov.cut; // the cut edge meets x = ±a at |dy| = b - cut
                (1.0 + (corner_y / b).powi(2))
                    .sqrt()
                    .max((((a - fov.cut) / a).powi(2) + 1.0).sqrt())
            }
        };
        let (cx, cy) = fov.centre;
        let gain = |px: f32, py: f32| {
            let rho =
                (((px - cx) / half.0).powi(2) + ((py - cy) / half.1).powi(2)).sqrt() / rho_max;
            // Brightest in the middle, ~55 % at the edge: the light guide lights the centre best.
            let g = 1.0 - 0.45 * rho.min(1.0).powf(2.2);
            (g * 256.0).round() as u16
        };
        for j in 0..rect.height {
            let yc = (rect.y + j) as f32 + 0.5;
            let span = match fov.half_width(yc - cy) {
                Some(hw) => {
                    let x0 = (cx - hw - 0.5).ceil().max(rect.x as f32) as u32;
                    let x1 = ((cx + hw - 0.5).floor() + 1.0).min(rect.right() as f32) as u32;
                    (x0, x1.max(x0))
                }
                None => (rect.x, rect.x),
            };
            fov.pixels += (span.1 - span.0) as u64;
            fov.spans.push(span);
            for i in 0..rect.width {
                fov.vig.push(gain((rect.x + i) as f32 + 0.5, yc));
            }
        }
        let (crx, crw) = (rect.x / 2, rect.width / 2);
        for cj in 0..rect.height / 2 {
            // A chroma sample sits at the centre of its 2×2 luma block.
            let yc = (rect.y + 2 * cj) as f32 + 1.0;
            let span = match fov.half_width(yc - cy) {
                Some(hw) => {
                    let x0 = ((cx - hw - 1.0) / 2.0).ceil().max(crx as f32) as u32;
                    let x1 = (((cx + hw - 1.0) / 2.0).floor() + 1.0).min((crx + crw) as f32) as u32;
                    (x0, x1.max(x0))
                }
                None => (crx, crx),
            };
            fov.cspans.push(span);
            for ci in 0..crw {
                fov.cvig.push(gain((2 * (crx + ci)) as f32 + 1.0, yc));
            }
        }
        fov
    }

    /// Half the width of the field of view at vertical distance `dy` from its centre.
    fn half_width(&self, dy: f32) -> Option<f32> {
        let (a, b) = self.half;
        let t = dy.abs();
        if t > b {
            return None;
        }
        Some(match self.shape {
            FovShape::Circle => a * (1.0 - (t / b).powi(2)).max(0.0).sqrt(),
            FovShape::Octagon => a.min(a + b - self.cut - t),
        })
    }

    /// Is the luma pixel (x, y) inside?
    pub fn contains(&self, x: u32, y: u32) -> bool {
        if !self.rect.contains(x, y) {
            return false;
        }
        let (x0, x1) = self.spans[(y - self.rect.y) as usize];
        x >= x0 && x < x1
    }
}

/// Temporal sensor noise: faint (σ ≈ 1.4 luma levels), added after exposure so that blur
/// never removes it, as in a real camera (it gives sharpness measures a realistic floor).
/// A table of `NOISE_ROWS` rows, each `NOISE_SHIFT` wider than the field of view, is read at
/// a per-frame offset, which is as good as fresh noise at the cost of a sequential read.
pub(crate) struct SensorNoise {
    cols: usize,
    table: Vec<i8>,
}

const NOISE_ROWS: usize = 256;
const NOISE_SHIFT: usize = 256;

impl SensorNoise {
    pub fn new(seed: u64, fov_width: u32) -> SensorNoise {
        let cols = fov_width as usize + NOISE_SHIFT;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix64(seed ^ 0x006E_6F69_7365));
        let table = (0..cols * NOISE_ROWS)
            .map(|_| {
                // Sum of four uniforms: close to Gaussian, σ = 1.2·√(4/3) ≈ 1.4.
                let s: f32 = (0..4).map(|_| unit(rng.next_u64()) * 2.0 - 1.0).sum();
                (1.2 * s).round() as i8
            })
            .collect();
        SensorNoise { cols, table }
    }

    /// Noise for row `j` of the field of view from column `x` on, for the frame offset `at`.
    #[inline]
    fn row(&self, at: (usize, usize), j: usize, x: usize) -> &[i8] {
        let start = ((j + at.1) % NOISE_ROWS) * self.cols + at.0 + x;
        &self.table[start..(start - at.0 - x) + self.cols]
    }
}

/// Smooth deterministic camera motion: each axis a sum of two slow sinusoids with seeded
/// phases, giving the world-window offset for a time.
pub(crate) struct Pan {
    /// Largest offset on each axis (world size - window size).
    max: (u32, u32),
    phases: [f32; 4],
}

impl Pan {
    pub fn new(seed: u64, world: (u32, u32), window: (u32, u32)) -> Pan {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix64(seed ^ 0x70616E));
        let mut phase = || unit(rng.next_u64()) * std::f32::consts::TAU;
        Pan {
            max: (world.0 - window.0, world.1 - window.1),
            phases: [phase(), phase(), phase(), phase()],
        }
    }

    /// Top-left of the window in the world at time `t` seconds (even, for chroma alignment).
    pub fn offset(&self, t: f64) -> (u32, u32) {
        use std::f64::consts::TAU;
        let p = |i: usize| self.phases[i] as f64;
        // Periods of ~21 s and ~8 s: a gentle drift with some wobble, tens of px/s at 1080p.
        let sx = 0.65 * (TAU * 0.047 * t + p(0)).sin() + 0.35 * (TAU * 0.13 * t + p(1)).sin();
        let sy = 0.65 * (TAU * 0.039 * t + p(2)).sin() + 0.35 * (TAU * 0.11 * t + p(3)).sin();
        let axis = |s: f64, max: u32| {
            let v = (max as f64 / 2.0) * (1.0 + 0.98 * s);
            ((v / 2.0).round() as u32 * 2).min(max & !1)
        };
        (axis(sx, self.max.0), axis(sy, self.max.1))
    }
}

impl Phantom {
    /// Render frame `index` (looped) into strided planes of the configured size.
    ///
    /// Panics if the planes are too small for the configured size and strides.
    pub fn render_planes(&self, index: u64, dst: &mut I420PlanesMut<'_>) {
        let (w, h) = (self.cfg.width as usize, self.cfg.height as usize);
        let (cw, ch) = (w / 2, h / 2);
        assert!(
            dst.y_stride >= w
                && dst.uv_stride >= cw
                && dst.y.len() >= dst.y_stride * (h - 1) + w
                && dst.u.len() >= dst.uv_stride * (ch - 1) + cw
                && dst.v.len() >= dst.uv_stride * (ch - 1) + cw,
            "phantom: destination planes too small for {w}x{h}"
        );
        let idx = index % self.num_frames();
        let degradation = self.label(idx).degradation;
        let t = idx as f64 / self.cfg.fps as f64;
        let s = self.scale;

        // 1. The scene: a window of the world (or of the room, when outside).
        let world = match degradation {
            Degradation::Outside => &self.outside,
            _ => &self.world,
        };
        copy_scene(world, self.pan.offset(t), self.fov.rect, dst);

        // 2. Optical degradations of the scene. Pixel sizes are given at 1080p.
        match degradation {
            Degradation::Defocus { sigma_px } => {
                self.for_each_plane_rect(dst, |p, sub| blur::defocus(p, sigma_px * s / sub as f32))
            }
            Degradation::MotionBlur {
                length_px,
                angle_deg,
            } => {
                let dir = Dir::nearest(angle_deg);
                self.for_each_plane_rect(dst, |p, sub| {
                    blur::motion(p, dir, length_px * s / sub as f32)
                })
            }
            _ => {}
        }

        // 3. Exposure, vignetting and the black border, in one pass per plane.
        let gain = match degradation {
            Degradation::UnderExposure { gain } | Degradation::OverExposure { gain } => gain,
            _ => 1.0,
        };
        let gain_q8 = (gain * 256.0).round().clamp(0.0, 65_535.0) as u32;
        // Sensor noise is read from a precomputed table at a per-frame offset.
        let key = mix64(self.cfg.seed ^ mix64(idx ^ 0x006E_6F69_7365));
        let noise_at = ((key & 0xFF) as usize, ((key >> 16) & 0xFF) as usize);
        self.tone_luma(dst, gain_q8, noise_at);
        let desaturate = matches!(degradation, Degradation::OverExposure { .. });
        self.tone_chroma(dst, gain_q8, desaturate);

        // 4. Specular highlights, on top of the exposed image.
        if let Degradation::Glare { area } = degradation {
            self.draw_glare(dst, idx, area);
        }

        // 5. Burned-in text on the border.
        if let Some(osd) = &self.osd {
            osd.draw(dst.y, dst.y_stride, idx / self.cfg.fps as u64);
        }
    }

    /// Run `f` on the field-of-view rectangle of each plane, with the plane's subsampling.
    fn for_each_plane_rect(
        &self,
        dst: &mut I420PlanesMut<'_>,
        mut f: impl FnMut(&mut PlaneRect<'_>, u32),
    ) {
        let r = self.fov.rect;
        let rect = |data, stride, sub: u32| PlaneRect {
            data,
            stride,
            x: (r.x / sub) as usize,
            y: (r.y / sub) as usize,
            width: (r.width / sub) as usize,
            height: (r.height / sub) as usize,
        };
        f(&mut rect(&mut *dst.y, dst.y_stride, 1), 1);
        f(&mut rect(&mut *dst.u, dst.uv_stride, 2), 2);
        f(&mut rect(&mut *dst.v, dst.uv_stride, 2), 2);
    }

    /// Vignetting and exposure gain, sensor noise, and the black border, for the luma plane.
    fn tone_luma(&self, dst: &mut I420PlanesMut<'_>, gain_q8: u32, noise_at: (usize, usize)) {
        let (w, h) = (self.cfg.width as usize, self.cfg.height as usize);
        let r = self.fov.rect;
        let fw = r.width as usize;
        for y in 0..h {
            let row = &mut dst.y[y * dst.y_stride..y * dst.y_stride + w];
            let j = y.wrapping_sub(r.y as usize);
            let (x0, x1) = if j < r.height as usize {
                let (a, b) = self.fov.spans[j];
                (a as usize, b as usize)
            } else {
                (0, 0)
            };
            if x0 == x1 {
                row.fill(BLACK_Y);
                continue;
            }
            row[..x0].fill(BLACK_Y);
            row[x1..].fill(BLACK_Y);
            let vig = &self.fov.vig[j * fw + (x0 - r.x as usize)..j * fw + (x1 - r.x as usize)];
            let noise = self.noise.row(noise_at, j, x0 - r.x as usize);
            let px = &mut row[x0..x1];
            if gain_q8 == 256 {
                // Wrapping ops cannot overflow here (≤ 255·256); they keep the loop
                // vectorised in builds with overflow checks.
                for ((p, &m), &n) in px.iter_mut().zip(vig).zip(noise) {
                    let v = (*p as u32).saturating_sub(16).wrapping_mul(m as u32);
                    let y = (v.wrapping_add(128) >> 8) as i32;
                    *p = y.wrapping_add(16 + n as i32).clamp(0, 255) as u8;
                }
            } else {
                for ((p, &m), &n) in px.iter_mut().zip(vig).zip(noise) {
                    let v = (*p as u32)
                        .saturating_sub(16)
                        .wrapping_mul(exposure_gain(m, gain_q8));
                    let y = (v.wrapping_add(128) >> 8) as i32;
                    *p = y.wrapping_add(16 + n as i32).clamp(0, 255) as u8;
                }
            }
        }
    }

    /// Chroma follows the same gain toward neutral; when over-exposed, chroma also fades to
    /// neutral where the luma clips (clipped sensor channels are white, not coloured).
    fn tone_chroma(&self, dst: &mut I420PlanesMut<'_>, gain_q8: u32, desaturate: bool) {
        let (cw, ch) = (self.cfg.width as usize / 2, self.cfg.height as usize / 2);
        let r = self.fov.rect;
        let (crx, cry, crw, crh) = (
            (r.x / 2) as usize,
            (r.y / 2) as usize,
            (r.width / 2) as usize,
            (r.height / 2) as usize,
        );
        for cy in 0..ch {
            let j = cy.wrapping_sub(cry);
            let (x0, x1) = if j < crh {
                let (a, b) = self.fov.cspans[j];
                (a as usize, b as usize)
            } else {
                (0, 0)
            };
            let luma_row = 2 * cy * dst.y_stride;
            for plane in [&mut *dst.u, &mut *dst.v] {
                let row = &mut plane[cy * dst.uv_stride..cy * dst.uv_stride + cw];
                if x0 == x1 {
                    row.fill(NEUTRAL_C);
                    continue;
                }
                row[..x0].fill(NEUTRAL_C);
                row[x1..].fill(NEUTRAL_C);
                let vig = &self.fov.cvig[j * crw + (x0 - crx)..j * crw + (x1 - crx)];
                for (i, (p, &m)) in row[x0..x1].iter_mut().zip(vig).enumerate() {
                    let m = exposure_gain(m, gain_q8) as i32;
                    let mut c = ((*p as i32 - 128) * m) >> 8;
                    if desaturate {
                        let l = dst.y[luma_row + 2 * (x0 + i)] as i32;
                        // Full colour up to luma 215, none at 255.
                        let keep = ((255 - l) * 256 / 40).clamp(0, 256);
                        c = (c * keep) >> 8;
                    }
                    *p = (128 + c).clamp(0, 255) as u8;
                }
            }
        }
    }

    /// Several saturated, colourless, elliptical highlights with a soft rim. Their cores
    /// cover ≈ `area` of the field of view; positions and shapes are seeded per frame.
    fn draw_glare(&self, dst: &mut I420PlanesMut<'_>, idx: u64, area: f32) {
        let mut rng =
            Xoshiro256PlusPlus::seed_from_u64(mix64(self.cfg.seed ^ mix64(idx ^ 0x676C617265)));
        let mut uni = || unit(rng.next_u64());
        let n = 3 + (uni() * 5.0) as usize; // 3..=7 highlights
        let mut weights = [0f32; 8];
        for wgt in weights.iter_mut().take(n) {
            *wgt = 0.3 + uni();
        }
        let total_w: f32 = weights.iter().sum();
        // The rim adds ~5 % of near-white pixels around each core: compensate.
        let target = area * self.fov.pixels as f32 / 1.05;
        let (fcx, fcy) = self.fov.centre;
        let (fa, fb) = self.fov.half;
        let mut placed: [(f32, f32, f32); 8] = [(0.0, 0.0, 0.0); 8];
        for k in 0..n {
            let a_k = target * weights[k] / total_w;
            let aspect = 1.0 + 1.5 * uni();
            let theta = uni() * std::f32::consts::PI;
            let a = (a_k * aspect / std::f32::consts::PI).sqrt();
            let b = a / aspect;
            // Uniform in the inner 70 % of the field, avoiding earlier highlights.
            let mut c = (fcx, fcy);
            for _ in 0..30 {
                let (rr, ang) = (0.7 * uni().sqrt(), uni() * std::f32::consts::TAU);
                c = (fcx + rr * fa * ang.cos(), fcy + rr * fb * ang.sin());
                let clear = placed[..k].iter().all(|&(px, py, pr)| {
                    ((px - c.0).powi(2) + (py - c.1).powi(2)).sqrt() > 1.4 * (pr + a) + 2.0
                });
                if clear {
                    break;
                }
            }
            placed[k] = (c.0, c.1, a);
            let wobble = [uni() * std::f32::consts::TAU, uni() * std::f32::consts::TAU];
            self.draw_highlight(dst, c, (a, b), theta, wobble);
        }
    }

    /// One highlight: an ellipse (semi-axes `ab`, rotated by `theta`) whose outline wobbles
    /// with two seeded harmonics, so it reads as a reflection on a wet, uneven surface.
    fn draw_highlight(
        &self,
        dst: &mut I420PlanesMut<'_>,
        c: (f32, f32),
        (a, b): (f32, f32),
        theta: f32,
        wobble: [f32; 2],
    ) {
        let (sin, cos) = theta.sin_cos();
        let shape = Highlight {
            c,
            inv: (1.0 / a, 1.0 / b),
            rot: (sin, cos),
            w3: wobble[0].sin_cos(),
            w5: wobble[1].sin_cos(),
        };
        let rho = |x: f32, y: f32| shape.rho(x, y);
        // Half-extents of the bounding box of the rotated ellipse, grown to the outer limit.
        let reach_x = OUTER * ((a * cos).powi(2) + (b * sin).powi(2)).sqrt() + 1.0;
        let reach_y = OUTER * ((a * sin).powi(2) + (b * cos).powi(2)).sqrt() + 1.0;
        let r = self.fov.rect;
        let y0 = ((c.1 - reach_y).floor().max(r.y as f32)) as u32;
        let y1 = ((c.1 + reach_y).ceil().min(r.bottom() as f32)) as u32;
        for y in y0..y1 {
            let (sx0, sx1) = self.fov.spans[(y - r.y) as usize];
            let x0 = ((c.0 - reach_x).floor().max(sx0 as f32)) as u32;
            let x1 = ((c.0 + reach_x).ceil().min(sx1 as f32)) as u32;
            let row = y as usize * dst.y_stride;
            for x in x0..x1 {
                let q = rho(x as f32 + 0.5, y as f32 + 0.5);
                if q >= 1.0 + RIM {
                    continue;
                }
                let p = &mut dst.y[row + x as usize];
                *p = if q <= 1.0 {
                    GLARE_Y
                } else {
                    let t = (1.0 + RIM - q) / RIM;
                    (*p as f32 + (GLARE_Y as f32 - *p as f32) * t * t) as u8
                };
            }
        }
        for cy in y0 / 2..y1.div_ceil(2) {
            let Some(&(sx0, sx1)) = self.fov.cspans.get((cy - r.y / 2) as usize) else {
                continue;
            };
            let x0 = (((c.0 - reach_x) / 2.0).floor().max(sx0 as f32)) as u32;
            let x1 = (((c.0 + reach_x) / 2.0).ceil().min(sx1 as f32)) as u32;
            for x in x0..x1 {
                let q = rho(2.0 * x as f32 + 1.0, 2.0 * cy as f32 + 1.0);
                if q >= 1.0 + RIM {
                    continue;
                }
                let t = if q <= 1.0 { 1.0 } else { (1.0 + RIM - q) / RIM };
                for plane in [&mut *dst.u, &mut *dst.v] {
                    let p = &mut plane[cy as usize * dst.uv_stride + x as usize];
                    *p = (*p as f32 + (NEUTRAL_C as f32 - *p as f32) * t) as u8;
                }
            }
        }
    }
}

/// Rim width of a specular highlight, relative to its radius.
const RIM: f32 = 0.35;
/// Beyond this normalised radius a highlight leaves pixels untouched.
const OUTER: f32 = 1.24 * (1.0 + RIM);

/// A specular highlight's outline: a rotated ellipse with a wobbly rim.
struct Highlight {
    c: (f32, f32),
    /// 1 / semi-axes.
    inv: (f32, f32),
    /// sin and cos of the rotation.
    rot: (f32, f32),
    /// sin and cos of the 3rd and 5th harmonics' phases.
    w3: (f32, f32),
    w5: (f32, f32),
}

impl Highlight {
    /// Normalised radius at (x, y): < 1 in the core, 1..1+RIM in the rim. The outline is
    /// 1 + 0.16·sin(3φ + w₀) + 0.08·sin(5φ + w₁), with the harmonics of the polar angle φ
    /// taken as powers of the unit complex number (u + iv)/ρ instead of calling trig per
    /// pixel.
    #[inline]
    fn rho(&self, x: f32, y: f32) -> f32 {
        let ((sin, cos), (inv_a, inv_b)) = (self.rot, self.inv);
        let (dx, dy) = (x - self.c.0, y - self.c.1);
        let (u, v) = (
            (dx * cos + dy * sin) * inv_a,
            (-dx * sin + dy * cos) * inv_b,
        );
        let r2 = u * u + v * v;
        // The outline lies within [0.76, 1.24]: only the band between needs harmonics.
        if r2 >= OUTER * OUTER {
            return OUTER;
        }
        if r2 <= 0.76 * 0.76 {
            return 0.0;
        }
        let r = r2.sqrt();
        let (zc, zs) = (u / r, v / r);
        let (z2c, z2s) = (zc * zc - zs * zs, 2.0 * zc * zs);
        let (z3c, z3s) = (z2c * zc - z2s * zs, z2c * zs + z2s * zc);
        let (z5c, z5s) = (z3c * z2c - z3s * z2s, z3c * z2s + z3s * z2c);
        let ((w3s, w3c), (w5s, w5c)) = (self.w3, self.w5);
        let outline = 1.0 + 0.16 * (z3s * w3c + z3c * w3s) + 0.08 * (z5s * w5c + z5c * w5s);
        r / outline
    }
}

/// Combined gain (Q8) of vignetting `vig` and exposure `gain` (both Q8).
///
/// Under-exposure simply scales. Over-exposure happens when the tip is close to the mucosa,
/// where the light is both stronger and more even, so the gain is *added* to the vignette
/// (`vig + gain - 1`): the edge darkening shrinks relative to the centre and large areas clip.
#[inline]
fn exposure_gain(vig: u16, gain_q8: u32) -> u32 {
    if gain_q8 > 256 {
        vig as u32 + gain_q8 - 256
    } else {
        (vig as u32 * gain_q8 + 128) >> 8
    }
}

/// Copy the `rect`-sized window at `origin` (luma coordinates) of a tightly packed world
/// plane into `rect` of a destination plane; `sub` = 1 for luma, 2 for chroma.
fn copy_window(
    world_stride: usize,
    world: &[u8],
    origin: (u32, u32),
    rect: Rect,
    sub: u32,
    dst: &mut [u8],
    dst_stride: usize,
) {
    let (ox, oy) = ((origin.0 / sub) as usize, (origin.1 / sub) as usize);
    let (rx, ry) = ((rect.x / sub) as usize, (rect.y / sub) as usize);
    let (w, h) = ((rect.width / sub) as usize, (rect.height / sub) as usize);
    for j in 0..h {
        let s = (oy + j) * world_stride + ox;
        let d = (ry + j) * dst_stride + rx;
        dst[d..d + w].copy_from_slice(&world[s..s + w]);
    }
}

/// Copy the window of `world` at `offset` into the field of view `r` of every plane.
fn copy_scene(
    world: &crate::frame::I420Image,
    offset: (u32, u32),
    r: Rect,
    dst: &mut I420PlanesMut<'_>,
) {
    let ww = world.width as usize;
    copy_window(ww, &world.y, offset, r, 1, dst.y, dst.y_stride);
    copy_window(ww / 2, &world.u, offset, r, 2, dst.u, dst.uv_stride);
    copy_window(ww / 2, &world.v, offset, r, 2, dst.v, dst.uv_stride);
}
