//! The precomputed "worlds" the phantom camera pans over: NBI-like (or white-light) gastric
//! mucosa, and the room seen when the scope is outside the body.
//!
//! Both are generated once in `Phantom::new` and stored directly as I420 planes, so that a
//! frame is a window copy plus cheap per-pixel arithmetic, with no colour conversion.
//!
//! The mucosa is built from layers whose sizes scale with the frame height (`scale` =
//! height / 1080), so the scene looks the same at every resolution:
//! - low-frequency brightness/colour variation (value noise on a coarse lattice);
//! - a pit pattern: irregular cells (Worley noise, domain-warped) each with a darker pit
//!   opening, a lighter rim (marginal crypt epithelium) and a thin brown capillary along the
//!   cell border. Cells are ~16 px at 1080p with 1-3 px details: this is what gives the image
//!   energy at the frequencies a σ = 1.5 px defocus removes;
//! - a per-pixel grain fixed to the surface (moves with the camera, unlike sensor noise);
//! - branching vessels drawn by random walks: thin brown superficial ones and wide, soft
//!   cyan/teal deeper ones (how NBI renders vessels at different depths).

use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::frame::{rgb_to_yuv, I420Image};

/// Colour scheme of the mucosa.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Palette {
    /// Narrow-band imaging: brown mucosa, brown capillaries, cyan deep vessels.
    #[default]
    Nbi,
    /// White light: pink/red mucosa, red vessels.
    WhiteLight,
}

/// RGB anchor colours of one palette, in 0..255 floats.
struct Colours {
    base: [f32; 3],
    rim: [f32; 3],
    pit: [f32; 3],
    capillary: [f32; 3],
    vessel: [f32; 3],
    deep: [f32; 3],
}

impl Palette {
    fn colours(self) -> Colours {
        match self {
            Palette::Nbi => Colours {
                base: [150.0, 95.0, 60.0],
                rim: [188.0, 142.0, 102.0],
                pit: [118.0, 70.0, 44.0],
                capillary: [100.0, 52.0, 30.0],
                vessel: [88.0, 42.0, 24.0],
                deep: [40.0, 110.0, 120.0],
            },
            Palette::WhiteLight => Colours {
                base: [205.0, 105.0, 95.0],
                rim: [228.0, 145.0, 128.0],
                pit: [178.0, 84.0, 78.0],
                capillary: [168.0, 52.0, 52.0],
                vessel: [150.0, 38.0, 45.0],
                deep: [140.0, 80.0, 118.0],
            },
        }
    }
}

/// SplitMix64 finaliser: a good 64-bit mixer, used for every positional hash.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[inline]
fn hash2(seed: u64, x: i64, y: i64) -> u64 {
    mix64(seed ^ mix64(x as u64 ^ mix64(y as u64)))
}

/// Uniform in [0, 1) from the top 24 bits.
#[inline]
pub(crate) fn unit(h: u64) -> f32 {
    (h >> 40) as f32 * (1.0 / 16_777_216.0)
}

/// Value noise with a precomputed lattice (so sampling costs no hashing): smooth, in [-1, 1].
struct NoiseGrid {
    cell: f32,
    cols: usize,
    values: Vec<f32>,
}

impl NoiseGrid {
    fn new(seed: u64, width: u32, height: u32, cell: f32) -> Self {
        let cols = (width as f32 / cell) as usize + 3;
        let rows = (height as f32 / cell) as usize + 3;
        let values = (0..rows * cols)
            .map(|i| unit(hash2(seed, (i % cols) as i64, (i / cols) as i64)) * 2.0 - 1.0)
            .collect();
        NoiseGrid { cell, cols, values }
    }

    #[inline]
    fn sample(&self, x: f32, y: f32) -> f32 {
        let fx = x.max(0.0) / self.cell;
        let fy = y.max(0.0) / self.cell;
        let (ix, iy) = (fx as usize, fy as usize);
        let (tx, ty) = (smooth(fx - ix as f32), smooth(fy - iy as f32));
        let i = iy * self.cols + ix;
        let v = &self.values;
        let top = v[i] + (v[i + 1] - v[i]) * tx;
        let bot = v[i + self.cols] + (v[i + self.cols + 1] - v[i + self.cols]) * tx;
        top + (bot - top) * ty
    }
}

#[inline]
fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Jittered feature points, one per square cell, for Worley (cellular) noise.
struct CellGrid {
    cell: f32,
    cols: i64,
    rows: i64,
    points: Vec<(f32, f32, f32)>, // x, y (pixels) and a per-cell random in [0,1)
}

impl CellGrid {
    fn new(seed: u64, width: u32, height: u32, cell: f32) -> Self {
        let cols = (width as f32 / cell) as i64 + 4;
        let rows = (height as f32 / cell) as i64 + 4;
        let mut points = Vec::with_capacity((cols * rows) as usize);
        for j in 0..rows {
            for i in 0..cols {
                let h = hash2(seed, i, j);
                // Jitter within [0.1, 0.9] of the cell keeps cells from degenerating.
                let jx = 0.1 + 0.8 * unit(h);
                let jy = 0.1 + 0.8 * unit(mix64(h));
                let r = unit(mix64(h ^ 0x55));
                points.push((
                    ((i - 1) as f32 + jx) * cell,
                    ((j - 1) as f32 + jy) * cell,
                    r,
                ));
            }
        }
        CellGrid {
            cell,
            cols,
            rows,
            points,
        }
    }

    /// Distances to the nearest and second-nearest feature points, and the nearest's random.
    #[inline]
    fn sample(&self, x: f32, y: f32) -> (f32, f32, f32) {
        // Grid index is offset by one cell so that neighbours of the border cells exist.
        let ci = ((x / self.cell) as i64 + 1).clamp(1, self.cols - 2);
        let cj = ((y / self.cell) as i64 + 1).clamp(1, self.rows - 2);
        let (mut d1, mut d2, mut r1) = (f32::MAX, f32::MAX, 0.0);
        for j in cj - 1..=cj + 1 {
            let row = (j * self.cols) as usize;
            for i in ci - 1..=ci + 1 {
                let (px, py, r) = self.points[row + i as usize];
                let d = (px - x) * (px - x) + (py - y) * (py - y);
                if d < d1 {
                    d2 = d1;
                    d1 = d;
                    r1 = r;
                } else if d < d2 {
                    d2 = d;
                }
            }
        }
        (d1.sqrt(), d2.sqrt(), r1)
    }
}

#[inline]
fn mix3(c: [f32; 3], target: [f32; 3], t: f32) -> [f32; 3] {
    [
        c[0] + (target[0] - c[0]) * t,
        c[1] + (target[1] - c[1]) * t,
        c[2] + (target[2] - c[2]) * t,
    ]
}

#[inline]
fn clamp01(t: f32) -> f32 {
    t.clamp(0.0, 1.0)
}

/// Convert a full-resolution RGB function to a tightly packed I420 image, two rows at a time
/// (chroma = mean of each 2×2 block). `width` and `height` must be even.
fn rasterise(width: u32, height: u32, mut rgb: impl FnMut(u32, u32) -> [f32; 3]) -> I420Image {
    debug_assert!(width.is_multiple_of(2) && height.is_multiple_of(2));
    let mut img = I420Image::new(width, height);
    let (w, cw) = (width as usize, width as usize / 2);
    let mut acc = vec![(0u32, 0u32); cw];
    for y in 0..height {
        let row = y as usize * w;
        for x in 0..width {
            let [r, g, b] = rgb(x, y).map(|c| c.round().clamp(0.0, 255.0) as u8);
            let [yy, u, v] = rgb_to_yuv(r, g, b);
            img.y[row + x as usize] = yy;
            let a = &mut acc[x as usize / 2];
            a.0 += u as u32;
            a.1 += v as u32;
        }
        if y % 2 == 1 {
            let crow = (y as usize / 2) * cw;
            for (i, a) in acc.iter_mut().enumerate() {
                img.u[crow + i] = ((a.0 + 2) / 4) as u8;
                img.v[crow + i] = ((a.1 + 2) / 4) as u8;
                *a = (0, 0);
            }
        }
    }
    img
}

/// A branching vessel layer: per-pixel opacity in [0, 1].
struct VesselLayer {
    width: usize,
    height: usize,
    alpha: Vec<f32>,
}

impl VesselLayer {
    fn new(width: u32, height: u32) -> Self {
        VesselLayer {
            width: width as usize,
            height: height as usize,
            alpha: vec![0.0; width as usize * height as usize],
        }
    }

    /// A soft disc: full opacity within 60 % of the radius, fading to 0 at the radius + 0.5.
    fn stamp(&mut self, cx: f32, cy: f32, radius: f32, opacity: f32) {
        let reach = radius + 1.0;
        let x0 = (cx - reach).floor().max(0.0) as usize;
        let y0 = (cy - reach).floor().max(0.0) as usize;
        let x1 = ((cx + reach).ceil() as usize).min(self.width);
        let y1 = ((cy + reach).ceil() as usize).min(self.height);
        let inner = radius * 0.6;
        let fade = 1.0 / (radius - inner + 0.5);
        for y in y0..y1 {
            let dy = y as f32 + 0.5 - cy;
            for x in x0..x1 {
                let dx = x as f32 + 0.5 - cx;
                let d = (dx * dx + dy * dy).sqrt();
                let a = opacity * clamp01(1.0 - (d - inner) * fade);
                let p = &mut self.alpha[y * self.width + x];
                if a > *p {
                    *p = a;
                }
            }
        }
    }

    /// Random-walk vessel trees: tortuous paths that taper and occasionally branch.
    fn grow(
        &mut self,
        rng: &mut Xoshiro256PlusPlus,
        trees: usize,
        width_px: (f32, f32),
        scale: f32,
        opacity: f32,
    ) {
        let uni = |rng: &mut Xoshiro256PlusPlus| unit(rng.next_u64());
        let min_r = (0.5 * scale).max(0.45);
        for _ in 0..trees {
            let start = (
                uni(rng) * self.width as f32,
                uni(rng) * self.height as f32,
                uni(rng) * std::f32::consts::TAU,
                0.5 * (width_px.0 + (width_px.1 - width_px.0) * uni(rng)) * scale,
            );
            let mut stack = vec![start];
            let mut budget = 4000usize; // bounds the work per tree
            while let Some((mut x, mut y, mut th, mut r)) = stack.pop() {
                let step = (0.8 * r).max(0.7);
                // Curvature (rad per step) that random-walks back toward straight, keeping
                // the radius of curvature above ~25 px at 1080p: vessels meander, not coil.
                let max_turn = step / (25.0 * scale);
                let mut turn = 0.0f32;
                while r >= min_r && budget > 0 {
                    budget -= 1;
                    self.stamp(x, y, r, opacity);
                    // Smoothly varying curvature: the turn rate itself random-walks.
                    turn = (0.95 * turn + (uni(rng) - 0.5) * 0.3 * max_turn)
                        .clamp(-max_turn, max_turn);
                    th += turn;
                    x += th.cos() * step;
                    y += th.sin() * step;
                    r *= 0.997;
                    let out = x < -20.0 || y < -20.0;
                    if out || x > self.width as f32 + 20.0 || y > self.height as f32 + 20.0 {
                        break;
                    }
                    if uni(rng) < 0.012 && stack.len() < 16 {
                        let side = if uni(rng) < 0.5 { -1.0 } else { 1.0 };
                        stack.push((x, y, th + side * (0.5 + 0.5 * uni(rng)), r * 0.7));
                        r *= 0.9;
                    }
                }
            }
        }
    }
}

/// The mucosa world, `width`×`height` (even), features sized by `scale` = frame height / 1080.
pub(crate) fn mucosa(
    width: u32,
    height: u32,
    scale: f32,
    seed: u64,
    palette: Palette,
) -> I420Image {
    let c = palette.colours();
    let s = scale.max(0.05);
    let seed = mix64(seed ^ 0x6D75_636F_7361);
    let low1 = NoiseGrid::new(seed ^ 1, width, height, 260.0 * s);
    let low2 = NoiseGrid::new(seed ^ 2, width, height, 90.0 * s);
    let warp_x = NoiseGrid::new(seed ^ 3, width, height, 45.0 * s);
    let warp_y = NoiseGrid::new(seed ^ 4, width, height, 45.0 * s);
    let contrast = NoiseGrid::new(seed ^ 5, width, height, 180.0 * s);
    let cell = 16.0 * s;
    let pits = CellGrid::new(seed ^ 6, width, height, cell);

    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 7);
    let area_k = (width as f32 * height as f32) / (1000.0 * s * 1000.0 * s);
    let mut deep = VesselLayer::new(width, height);
    deep.grow(
        &mut rng,
        (4.0 * area_k).ceil() as usize,
        (7.0, 12.0),
        s,
        0.6,
    );
    let mut brown = VesselLayer::new(width, height);
    brown.grow(
        &mut rng,
        (9.0 * area_k).ceil() as usize,
        (2.0, 4.5),
        s,
        0.75,
    );

    let warp = 5.0 * s;
    let pit_r = 0.22 * cell;
    let cap_w = (1.1 * s).max(0.6);
    rasterise(width, height, |x, y| {
        let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
        let l = 0.10 * low1.sample(fx, fy) + 0.05 * low2.sample(fx, fy);
        let mut col = c.base.map(|v| v * (1.0 + l));
        // Pit pattern, with contrast varying over the surface (some areas flatter).
        let k = 0.65 + 0.35 * contrast.sample(fx, fy);
        let (d1, d2, r) = pits.sample(
            fx + warp * warp_x.sample(fx, fy),
            fy + warp * warp_y.sample(fx, fy),
        );
        let border = 0.5 * (d2 - d1); // ≈ distance to the cell border
        let pit = clamp01((pit_r * (0.7 + 0.6 * r) - d1) / (0.35 * pit_r) + 0.5);
        let rim = clamp01(1.0 - (border - 1.5 * cap_w) / (2.5 * s).max(0.8)) * (1.0 - pit);
        let cap = clamp01(1.0 - border / cap_w);
        col = mix3(col, c.rim, 0.55 * k * rim);
        col = mix3(col, c.pit, 0.7 * k * pit);
        col = mix3(col, c.capillary, 0.8 * k * cap);
        let (idx, dw) = (y as usize * width as usize + x as usize, deep.width);
        debug_assert_eq!(dw, width as usize);
        col = mix3(col, c.deep, deep.alpha[idx]);
        col = mix3(col, c.vessel, brown.alpha[idx]);
        // Surface grain fixed to the world (± 4 levels).
        let g = (unit(hash2(seed, x as i64, y as i64)) - 0.5) * 8.0;
        col.map(|v| v + g)
    })
}

/// The room seen from outside the body: bright, bluish-grey, smooth, little red.
pub(crate) fn outside(width: u32, height: u32, scale: f32, seed: u64) -> I420Image {
    let s = scale.max(0.05);
    let seed = mix64(seed ^ 0x006F_7574_7369_6465);
    let low = NoiseGrid::new(seed ^ 1, width, height, 300.0 * s);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 2);
    let lamp = (
        unit(rng.next_u64()) * width as f32,
        unit(rng.next_u64()) * height as f32 * 0.5,
        (250.0 + 150.0 * unit(rng.next_u64())) * s,
    );
    // A drape edge: a soft diagonal boundary to a blue-green region.
    let drape_angle = 0.3 + 0.6 * unit(rng.next_u64());
    let (dc, ds) = (drape_angle.cos(), drape_angle.sin());
    let drape_off = (0.55 + 0.2 * unit(rng.next_u64())) * (width + height) as f32 * 0.5;
    let ceiling = [214.0, 224.0, 238.0];
    let floor = [150.0, 170.0, 196.0];
    let drape = [110.0, 156.0, 172.0];
    let lamp_col = [246.0, 248.0, 252.0];
    rasterise(width, height, |x, y| {
        let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
        let mut col = mix3(ceiling, floor, fy / height as f32);
        let d = fx * dc + fy * ds - drape_off;
        col = mix3(col, drape, 0.8 * clamp01(d / (40.0 * s) + 0.5));
        let (lx, ly) = (fx - lamp.0, fy - lamp.1);
        let l = (-(lx * lx + ly * ly) / (lamp.2 * lamp.2)).exp();
        col = mix3(col, lamp_col, 0.9 * l);
        let n = 1.0 + 0.05 * low.sample(fx, fy);
        let g = (unit(hash2(seed, x as i64, y as i64)) - 0.5) * 2.0;
        col.map(|v| v * n + g)
    })
}
