//! Classical image measures, computed in Rust on the cropped frame at native resolution.
//!
//! Mild defocus (σ ≈ 1–2 px at 1080p) is invisible after a downscale to 224², so sharpness
//! is measured before any scaling, on the luma plane of the central 70 % of the field of
//! view (away from the FOV's own edge):
//!
//! * **sharpness**: with g_k the mean squared luma difference between pixels k apart along
//!   one direction, sharpness = (g₂ − g₁) / (g₃ − g₁), the smallest over four directions
//!   (horizontal, vertical, both diagonals). White sensor noise adds the same 2σ² to every
//!   g_k, so it cancels; exposure gain scales numerator and denominator alike. A smooth
//!   (defocused) texture tends to 3/8, a texture with detail at the pixel scale to about
//!   0.7 and above.
//! * **isotropy**: the noise-free gradient energy g₂ − g₁ along one direction over the
//!   perpendicular one (smaller over larger), for horizontal/vertical and for the two
//!   diagonals, the smaller pair. Mucosa texture is about isotropic (≈ 1); motion blur
//!   smears one direction. blur = max(defocus from sharpness, motion from isotropy),
//!   scaled by (1 − the largest other artifact): a dark, washed-out, glaring or outside
//!   view has no mucosa texture to judge focus on.
//! * **dark / clipped fraction**: share of FOV pixels with luma below `dark_level` or at or
//!   above `clip_level` (sampled every third pixel of every third row).
//! * **specular fraction**: share of FOV pixels that are clipped *and* colourless
//!   (|Cb−128| + |Cr−128| ≤ 16): glare from the light source on wet mucosa. Glare is
//!   scaled by (1 − overexposed): a frame clipped over a large area is over-exposed.
//! * **cast** = mean Cb − mean Cr: mucosa is red-dominant (negative), a scope outside the
//!   body sees the room's blue-white light (positive).
//!
//! Each measure maps to an artifact value in 0..1 by a linear ramp between two configured
//! points (`scoring.*` in the config).

use crate::config::ScoringConfig;
use crate::fov::Fov;
use crate::frame::I420View;
use crate::score::artifact::Artifact;

/// Raw measures of one frame's field of view.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Measures {
    pub sharpness: f32,
    pub isotropy: f32,
    pub mean_luma: f32,
    pub dark_fraction: f32,
    pub clipped_fraction: f32,
    pub specular_fraction: f32,
    pub cast: f32,
    /// The session's sharpness reference this frame was judged against (0: none yet).
    pub sharpness_reference: f32,
}

/// Linear ramp: 0 at `lo`, 1 at `hi`, clamped.
#[inline]
pub fn ramp(x: f32, lo: f32, hi: f32) -> f32 {
    ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
}

/// Measure the cropped frame `crop` whose geometry is `fov`.
pub fn measure(crop: &I420View, fov: &Fov, cfg: &ScoringConfig) -> Measures {
    let (sharpness, isotropy) = sharpness(crop, fov, cfg.sharpness_row_step);
    let mut m = Measures {
        sharpness,
        isotropy,
        ..Measures::default()
    };
    exposure(crop, fov, cfg.dark_level, cfg.clip_level, &mut m);
    m
}

/// Sharpness and isotropy (see the module header) over the inner region.
fn sharpness(crop: &I420View, fov: &Fov, row_step: u32) -> (f32, f32) {
    let inner = fov.inner();
    if inner.width < 8 || inner.height < 8 {
        return (0.0, 0.0);
    }
    let (x0, x1) = (inner.x as usize + 3, inner.right() as usize - 3);
    // Per direction (horizontal, vertical, "\\", "/"), sums of squared differences at
    // steps 1, 2 and 3 pixels along it.
    let mut sums = [[0u64; 3]; 4];
    let mut n = 0u64;
    let mut r = inner.y + 3;
    while r + 3 < inner.bottom() {
        let rows: [&[u8]; 4] = std::array::from_fn(|k| crop.y_row(r + k as u32));
        let mut acc = [[0u32; 3]; 4];
        // Every second column: the differences stay at native resolution.
        let mut x = x0;
        while x < x1 {
            let c = rows[0][x] as i32;
            for k in 1..=3 {
                let h = rows[0][x + k] as i32 - c;
                let v = rows[k][x] as i32 - c;
                let d1 = rows[k][x + k] as i32 - c;
                let d2 = rows[k][x - k] as i32 - c;
                acc[0][k - 1] += (h * h) as u32;
                acc[1][k - 1] += (v * v) as u32;
                acc[2][k - 1] += (d1 * d1) as u32;
                acc[3][k - 1] += (d2 * d2) as u32;
            }
            n += 1;
            x += 2;
        }
        for (s, a) in sums.iter_mut().zip(acc) {
            for k in 0..3 {
                s[k] += a[k] as u64;
            }
        }
        r += row_step;
    }
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = |v: u64| v as f64 / n as f64;
    let mut sharpness = f64::INFINITY;
    let mut energy = [0.0f64; 4];
    for (d, s) in sums.iter().enumerate() {
        let (g1, g2, g3) = (mean(s[0]), mean(s[1]), mean(s[2]));
        // Sensor noise adds the same 2σ² to every g_k: differences of them are noise-free.
        energy[d] = (g2 - g1).max(0.0);
        // g₃ ≈ g₁: nothing is correlated beyond one pixel (a texture as fine as the pixel
        // grid, or noise alone); nothing in it is smooth, so nothing reads as blur.
        let ratio = if g3 - g1 > 0.02 * g1 + 0.05 {
            ((g2 - g1) / (g3 - g1)).clamp(0.0, 1.0)
        } else {
            1.0
        };
        sharpness = sharpness.min(ratio);
    }
    let balance = |a: f64, b: f64| {
        if a.max(b) <= 0.0 {
            1.0
        } else {
            a.min(b) / a.max(b)
        }
    };
    let isotropy = balance(energy[0], energy[1]).min(balance(energy[2], energy[3]));
    (sharpness as f32, isotropy as f32)
}

const EXPOSURE_STEP: u32 = 3;

/// Exposure, glare and colour cast over the FOV shape, sampled on a 3-pixel grid
/// (about 90 000 samples at 1080p: fractions to well under 1 %).
fn exposure(crop: &I420View, fov: &Fov, dark_level: u8, clip_level: u8, m: &mut Measures) {
    let (mut n, mut sum, mut dark, mut clipped, mut spec) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut cb, mut cr) = (0i64, 0i64);
    let mut r = 0;
    while r < crop.height {
        let (x0, x1) = fov.span(r);
        let yr = crop.y_row(r);
        let ur = crop.u_row(r / 2);
        let vr = crop.v_row(r / 2);
        let mut x = x0;
        while x < x1 {
            let y = yr[x as usize];
            let (u, v) = (ur[x as usize / 2] as i32, vr[x as usize / 2] as i32);
            n += 1;
            sum += y as u64;
            dark += (y < dark_level) as u64;
            let clip = y >= clip_level;
            clipped += clip as u64;
            spec += (clip && (u - 128).abs() + (v - 128).abs() <= 16) as u64;
            cb += u as i64;
            cr += v as i64;
            x += EXPOSURE_STEP;
        }
        r += EXPOSURE_STEP;
    }
    if n == 0 {
        return;
    }
    let nf = n as f32;
    m.mean_luma = sum as f32 / nf;
    m.dark_fraction = dark as f32 / nf;
    m.clipped_fraction = clipped as f32 / nf;
    m.specular_fraction = spec as f32 / nf;
    m.cast = (cb - cr) as f32 / nf;
}

/// Whether a frame's exposure lets its sharpness speak for the session: no exposure,
/// glare or outside artifact at half strength or more.
pub fn well_exposed(a: &[f32; Artifact::COUNT]) -> bool {
    [
        Artifact::Dark,
        Artifact::Overexposed,
        Artifact::Glare,
        Artifact::Outside,
    ]
    .iter()
    .all(|x| a[x.index()] < 0.5)
}

/// Artifact values in 0..1 from the measures, indexed by [`Artifact::index`].
/// `reference`: the session's sharpness reference, if it has one (see the module header).
pub fn artifacts(
    m: &Measures,
    cfg: &ScoringConfig,
    reference: Option<f32>,
) -> [f32; Artifact::COUNT] {
    let mut a = [0.0; Artifact::COUNT];
    let dim = 1.0 - ramp(m.mean_luma, cfg.dark_mean_luma[0], cfg.dark_mean_luma[1]);
    a[Artifact::Dark.index()] =
        ramp(m.dark_fraction, cfg.dark_fraction[0], cfg.dark_fraction[1]).max(dim);
    let over = ramp(
        m.clipped_fraction,
        cfg.clipped_fraction[0],
        cfg.clipped_fraction[1],
    )
    .max(ramp(
        m.mean_luma,
        cfg.overexposed_mean_luma[0],
        cfg.overexposed_mean_luma[1],
    ));
    a[Artifact::Overexposed.index()] = over;
    // Large colourless clipped areas are over-exposure, not glare.
    a[Artifact::Glare.index()] = ramp(
        m.specular_fraction,
        cfg.specular_fraction[0],
        cfg.specular_fraction[1],
    ) * (1.0 - over);
    a[Artifact::Outside.index()] = ramp(m.cast, cfg.outside_cast[0], cfg.outside_cast[1]);
    // Focus is only judged on a well-exposed view of mucosa: glare blobs, a washed-out or
    // dark frame, or the room outside have no texture to be sharp with.
    let mut defocus = 1.0 - ramp(m.sharpness, cfg.sharpness_bad, cfg.sharpness_good);
    if let Some(r) = reference.filter(|r| *r > 0.0) {
        let [bad, good] = cfg.relative_sharpness;
        defocus = defocus.max(1.0 - ramp(m.sharpness / r, bad, good));
    }
    let motion = 1.0 - ramp(m.isotropy, cfg.isotropy_bad, cfg.isotropy_good);
    let other = a.iter().fold(0.0f32, |x, &y| x.max(y));
    a[Artifact::Blur.index()] = defocus.max(motion) * (1.0 - other);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FovShape;
    use crate::frame::{I420Image, Rect};

    fn textured(w: u32, h: u32, period: u32) -> I420Image {
        let mut img = I420Image::new(w, h);
        for y in 0..h {
            for x in 0..w {
                let v = if ((x / period) + (y / period)).is_multiple_of(2) {
                    90
                } else {
                    160
                };
                img.y[(y * w + x) as usize] = v;
            }
        }
        img
    }

    fn cfg(row_step: u32) -> ScoringConfig {
        ScoringConfig {
            sharpness_row_step: row_step,
            ..ScoringConfig::default()
        }
    }

    fn fov(w: u32, h: u32) -> Fov {
        Fov::new(Rect::new(0, 0, w, h), FovShape::Rect, &[], w, h)
    }

    #[test]
    fn fine_texture_is_sharper_than_coarse() {
        let f = fov(128, 128);
        let fine = measure(&textured(128, 128, 2).view(), &f, &cfg(1)).sharpness;
        let coarse = measure(&textured(128, 128, 16).view(), &f, &cfg(1)).sharpness;
        assert!(fine > coarse, "fine {fine} coarse {coarse}");
    }

    #[test]
    fn sensor_noise_does_not_make_a_smooth_texture_look_sharp() {
        let (w, h) = (160u32, 160u32);
        let mut smooth = I420Image::new(w, h);
        let mut noisy = smooth.clone();
        let mut state = 12345u32;
        for y in 0..h {
            for x in 0..w {
                let v = 128.0 + 40.0 * ((x as f32 / 9.0).sin() + (y as f32 / 11.0).cos());
                smooth.y[(y * w + x) as usize] = v as u8;
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let n = ((state >> 16) % 17) as f32 - 8.0;
                noisy.y[(y * w + x) as usize] = (v + n).clamp(0.0, 255.0) as u8;
            }
        }
        let f = fov(w, h);
        let a = measure(&smooth.view(), &f, &cfg(1)).sharpness;
        let b = measure(&noisy.view(), &f, &cfg(1)).sharpness;
        assert!(a < 0.45 && b < 0.45, "smooth {a}, smooth + noise {b}");
    }

    #[test]
    fn sharpness_ignores_exposure_gain() {
        let f = fov(128, 128);
        let img = textured(128, 128, 3);
        let mut dim = img.clone();
        dim.y.iter_mut().for_each(|p| *p /= 2);
        let a = measure(&img.view(), &f, &cfg(1)).sharpness;
        let b = measure(&dim.view(), &f, &cfg(1)).sharpness;
        assert!((a - b).abs() < 0.05 * a, "{a} vs {b}");
    }

    #[test]
    fn fractions_follow_the_pixels() {
        let mut img = I420Image::new(100, 100);
        img.y.iter_mut().take(100 * 50).for_each(|p| *p = 250); // top half clipped, neutral
        let m = measure(&img.view(), &fov(100, 100), &cfg(1));
        assert!((m.clipped_fraction - 0.5).abs() < 0.03, "{m:?}");
        assert!((m.specular_fraction - 0.5).abs() < 0.03, "{m:?}");
        assert!((m.dark_fraction - 0.5).abs() < 0.03, "{m:?}");
        let a = artifacts(&m, &ScoringConfig::default(), None);
        assert_eq!(
            a[Artifact::Overexposed.index()],
            1.0,
            "half the frame clipped"
        );
        assert_eq!(
            a[Artifact::Glare.index()],
            0.0,
            "over-exposure is not glare"
        );
        let small = Measures {
            specular_fraction: 0.05,
            clipped_fraction: 0.05,
            ..m
        };
        assert_eq!(
            artifacts(&small, &ScoringConfig::default(), None)[Artifact::Glare.index()],
            1.0
        );
    }
}
