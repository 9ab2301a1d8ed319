//! Classical image measures, computed in Rust on the cropped frame at native resolution.
//!
//! Mild defocus (σ ≈ 1–2 px at 1080p) is invisible after a downscale to 224², so sharpness
//! is measured before any scaling, on the luma plane of the central 70 % of the field of
//! view (away from the FOV's own edge):
//!
//! * **sharpness**: for each of four directions (horizontal, vertical, both diagonals),
//!   Σ|second difference| / Σ|first difference| along that direction; the smallest of the
//!   four. The ratio measures how much of the texture's energy sits at the highest
//!   frequencies and is independent of exposure gain (darkening scales both sums). Defocus
//!   lowers it in every direction. A box-shaped smear (motion blur) keeps the ratio high,
//!   because the second difference of a box-filtered signal is as rough as the first
//!   difference of the original; so:
//! * **isotropy**: Σ|first difference| along one direction over the perpendicular one
//!   (smaller over larger), for horizontal/vertical and for the two diagonals, the smaller
//!   pair. Mucosa texture is about isotropic (≈ 1); motion blur smears one direction.
//!   blur = max(defocus from sharpness, motion from isotropy).
//! * **dark / clipped fraction**: share of FOV pixels with luma below `dark_level` or at or
//!   above `clip_level` (sampled every second pixel of every second row).
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
    if inner.width < 3 || inner.height < 3 {
        return (0.0, 0.0);
    }
    let (x0, x1) = (inner.x as usize, inner.right() as usize);
    // [second, first] difference sums for horizontal, vertical, "\" and "/".
    let mut sums = [[0u64; 2]; 4];
    let mut r = inner.y + 1;
    while r + 1 < inner.bottom() {
        let up = &crop.y_row(r - 1)[x0..x1];
        let mid = &crop.y_row(r)[x0..x1];
        let down = &crop.y_row(r + 1)[x0..x1];
        let mut row = [[0u32; 2]; 4];
        // Plain indexed loops over three row slices: the compiler vectorises them.
        for i in 1..mid.len() - 1 {
            let c2 = 2 * mid[i] as i32;
            let c = mid[i] as i32;
            let pairs = [
                (mid[i - 1] as i32, mid[i + 1] as i32),
                (up[i] as i32, down[i] as i32),
                (up[i - 1] as i32, down[i + 1] as i32),
                (up[i + 1] as i32, down[i - 1] as i32),
            ];
            for (acc, (a, b)) in row.iter_mut().zip(pairs) {
                acc[0] += (c2 - a - b).unsigned_abs();
                acc[1] += (b - c).unsigned_abs();
            }
        }
        for (s, r) in sums.iter_mut().zip(row) {
            s[0] += r[0] as u64;
            s[1] += r[1] as u64;
        }
        r += row_step;
    }
    let sharpness = sums
        .iter()
        .map(|[second, first]| {
            if *first == 0 {
                0.0
            } else {
                *second as f32 / *first as f32
            }
        })
        .fold(f32::INFINITY, f32::min);
    // Compare perpendicular pairs of equal step length: horizontal/vertical, and the diagonals.
    let balance = |a: u64, b: u64| {
        if a.max(b) == 0 {
            0.0
        } else {
            a.min(b) as f32 / a.max(b) as f32
        }
    };
    let isotropy = balance(sums[0][1], sums[1][1]).min(balance(sums[2][1], sums[3][1]));
    (sharpness, isotropy)
}

/// Exposure, glare and colour cast over the FOV shape, sampled on a 2-pixel grid.
fn exposure(crop: &I420View, fov: &Fov, dark_level: u8, clip_level: u8, m: &mut Measures) {
    let (mut n, mut sum, mut dark, mut clipped, mut spec) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut cb, mut cr) = (0i64, 0i64);
    let mut r = 0;
    while r < crop.height {
        let (x0, x1) = fov.span(r);
        let yr = crop.y_row(r);
        let ur = crop.u_row(r / 2);
        let vr = crop.v_row(r / 2);
        let mut x = x0 & !1;
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
            x += 2;
        }
        r += 2;
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

/// Artifact values in 0..1 from the measures, indexed by [`Artifact::index`].
pub fn artifacts(m: &Measures, cfg: &ScoringConfig) -> [f32; 5] {
    let mut a = [0.0; 5];
    let defocus = 1.0 - ramp(m.sharpness, cfg.sharpness_bad, cfg.sharpness_good);
    let motion = 1.0 - ramp(m.isotropy, cfg.isotropy_bad, cfg.isotropy_good);
    a[Artifact::Blur.index()] = defocus.max(motion);
    a[Artifact::Dark.index()] = ramp(m.dark_fraction, cfg.dark_fraction[0], cfg.dark_fraction[1]);
    let over = ramp(
        m.clipped_fraction,
        cfg.clipped_fraction[0],
        cfg.clipped_fraction[1],
    );
    a[Artifact::Overexposed.index()] = over;
    // Large colourless clipped areas are over-exposure, not glare.
    a[Artifact::Glare.index()] = ramp(
        m.specular_fraction,
        cfg.specular_fraction[0],
        cfg.specular_fraction[1],
    ) * (1.0 - over);
    a[Artifact::Outside.index()] = ramp(m.cast, cfg.outside_cast[0], cfg.outside_cast[1]);
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
                let v = if ((x / period) + (y / period)) % 2 == 0 {
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
        let a = artifacts(&m, &ScoringConfig::default());
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
            artifacts(&small, &ScoringConfig::default())[Artifact::Glare.index()],
            1.0
        );
    }
}
