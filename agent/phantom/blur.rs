//! The blur degradations: defocus (Gaussian) and motion (directional box), on 8-bit planes.
//!
//! Everything is built from one primitive, an "extended box" along a line: `2r+1` full taps
//! plus one fractional tap of weight `alpha` at each end. Computed with a running sum its cost
//! does not depend on the length, and the fractional ends give a continuous choice of width:
//! - motion blur of length L = one extended box of total weight L;
//! - defocus of σ = three extended boxes per direction, each of variance σ²/3 (three box
//!   passes approximate a Gaussian well, and the fractional ends keep σ exact for the small
//!   values, 0.5–2 px, that matter for a "slightly soft" frame).
//!
//! Lines are gathered into a padded scratch buffer (edge pixels replicated), filtered there
//! (all passes of one direction in cache) and written back.

use std::cell::RefCell;

/// One extended box filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BoxK {
    r: usize,
    /// Weight of each end tap, Q8 (0..256).
    alpha: u32,
    /// 2^32 / (256·(2r+1) + 2·alpha): multiply instead of divide in the inner loop.
    mul: u64,
}

impl BoxK {
    fn new(r: usize, alpha: f32) -> BoxK {
        let alpha = (alpha.clamp(0.0, 1.0) * 256.0).round().min(255.0) as u32;
        let norm = 256 * (2 * r as u64 + 1) + 2 * alpha as u64;
        BoxK {
            r,
            alpha,
            mul: ((1u64 << 32) + norm / 2) / norm,
        }
    }

    /// Does nothing.
    pub fn is_identity(&self) -> bool {
        self.r == 0 && self.alpha == 0
    }

    /// The extended box with the given variance (px²).
    pub fn from_variance(var: f32) -> BoxK {
        let var = var.max(0.0);
        // Full-tap box of radius r has variance r(r+1)/3; pick the largest r not above `var`.
        let mut r = 0usize;
        while ((r + 1) * (r + 2)) as f32 / 3.0 <= var {
            r += 1;
        }
        let rf = r as f32;
        let s = rf * (rf + 1.0) * (2.0 * rf + 1.0) / 3.0; // Σ k² over -r..r
        let alpha = (var * (2.0 * rf + 1.0) - s) / (2.0 * ((rf + 1.0) * (rf + 1.0) - var));
        BoxK::new(r, alpha)
    }

    /// The extended box of total length `len` px (a uniform motion of `len` px).
    pub fn from_length(len: f32) -> BoxK {
        let half = ((len.max(1.0)) - 1.0) / 2.0;
        let r = half.floor() as usize;
        BoxK::new(r, half - r as f32)
    }

    /// Filter `src[pad..pad+n]` into `dst[pad..pad+n]`; both have `pad >= r+1` replicated
    /// edge pixels on each side.
    fn apply(&self, src: &[u8], dst: &mut [u8], pad: usize, n: usize) {
        let r = self.r;
        debug_assert!(pad > r && src.len() >= n + 2 * pad && dst.len() >= n + 2 * pad);
        let mut inner: u32 = src[pad - r..=pad + r].iter().map(|&v| v as u32).sum();
        let (alpha, mul) = (self.alpha, self.mul);
        for i in 0..n {
            let c = pad + i;
            let ends = src[c - r - 1] as u32 + src[c + r + 1] as u32;
            let total = (inner * 256 + alpha * ends) as u64;
            dst[c] = ((total * mul + (1 << 31)) >> 32).min(255) as u8;
            inner = inner + src[c + r + 1] as u32 - src[c - r] as u32;
        }
    }
}

/// Direction of a line blur in image coordinates (y down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Horizontal,
    Vertical,
    /// Step (+1, +1): top-left to bottom-right (the 135° direction, y up).
    DownRight,
    /// Step (+1, -1): bottom-left to top-right (the 45° direction, y up).
    UpRight,
}

impl Dir {
    /// The nearest of the four directions to an angle in degrees, counter-clockwise from +x
    /// with y pointing up (as a viewer reads the angle on screen).
    pub fn nearest(angle_deg: f32) -> Dir {
        let a = angle_deg.rem_euclid(180.0);
        match ((a + 22.5) / 45.0) as u32 % 4 {
            0 => Dir::Horizontal,
            1 => Dir::UpRight,
            2 => Dir::Vertical,
            _ => Dir::DownRight,
        }
    }
    pub fn is_diagonal(self) -> bool {
        matches!(self, Dir::DownRight | Dir::UpRight)
    }
}

/// A rectangle of an 8-bit plane.
pub(crate) struct PlaneRect<'a> {
    pub data: &'a mut [u8],
    pub stride: usize,
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

#[derive(Default)]
struct Scratch {
    a: Vec<u8>,
    b: Vec<u8>,
}

thread_local! {
    // Reused line buffers: the blur allocates only the first time a thread needs a size.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

fn pad_edges(buf: &mut [u8], pad: usize, n: usize) {
    let (first, last) = (buf[pad], buf[pad + n - 1]);
    buf[..pad].fill(first);
    buf[pad + n..pad + n + pad].fill(last);
}

/// Run all `passes` on one gathered line held in `s.a[pad..pad+n]`; result left in `s.a`.
fn filter_line(s: &mut Scratch, pad: usize, n: usize, passes: &[BoxK]) {
    pad_edges(&mut s.a, pad, n);
    for k in passes.iter().filter(|k| !k.is_identity()) {
        k.apply(&s.a, &mut s.b, pad, n);
        pad_edges(&mut s.b, pad, n);
        std::mem::swap(&mut s.a, &mut s.b);
    }
}

/// Blur every line of `rect` in direction `dir` with the passes in sequence.
pub(crate) fn blur(rect: &mut PlaneRect<'_>, dir: Dir, passes: &[BoxK]) {
    if passes.iter().all(BoxK::is_identity) || rect.width == 0 || rect.height == 0 {
        return;
    }
    let pad = passes.iter().map(|k| k.r + 1).max().unwrap_or(1);
    let (w, h, st) = (rect.width, rect.height, rect.stride);
    let longest = match dir {
        Dir::Horizontal => w,
        Dir::Vertical => h,
        _ => w.min(h),
    };
    SCRATCH.with(|cell| {
        let s = &mut *cell.borrow_mut();
        for v in [&mut s.a, &mut s.b] {
            if v.len() < longest + 2 * pad {
                v.resize(longest + 2 * pad, 0);
            }
        }
        let base = rect.y * st + rect.x;
        let data = &mut *rect.data;
        // Each line: (first pixel offset, step between pixels, length).
        let mut line = |start: usize, step: isize, n: usize| {
            if step == 1 {
                s.a[pad..pad + n].copy_from_slice(&data[start..start + n]);
            } else {
                let mut o = start as isize;
                for d in &mut s.a[pad..pad + n] {
                    *d = data[o as usize];
                    o += step;
                }
            }
            filter_line(s, pad, n, passes);
            if step == 1 {
                data[start..start + n].copy_from_slice(&s.a[pad..pad + n]);
            } else {
                let mut o = start as isize;
                for &v in &s.a[pad..pad + n] {
                    data[o as usize] = v;
                    o += step;
                }
            }
        };
        match dir {
            Dir::Horizontal => (0..h).for_each(|j| line(base + j * st, 1, w)),
            Dir::Vertical => (0..w).for_each(|i| line(base + i, st as isize, h)),
            Dir::DownRight => {
                let step = st as isize + 1;
                (0..h).for_each(|j| line(base + j * st, step, (h - j).min(w)));
                (1..w).for_each(|i| line(base + i, step, (w - i).min(h)));
            }
            Dir::UpRight => {
                let step = 1 - st as isize;
                (0..h).for_each(|j| line(base + j * st, step, (j + 1).min(w)));
                (1..w).for_each(|i| line(base + (h - 1) * st + i, step, (w - i).min(h)));
            }
        }
    });
}

/// Gaussian defocus of `sigma` px, separable, three extended boxes per direction.
pub(crate) fn defocus(rect: &mut PlaneRect<'_>, sigma: f32) {
    let k = BoxK::from_variance(sigma * sigma / 3.0);
    blur(rect, Dir::Horizontal, &[k; 3]);
    blur(rect, Dir::Vertical, &[k; 3]);
}

/// Uniform motion of `length` px along `dir` (length measured along the motion, so diagonal
/// lines use length/√2 taps).
pub(crate) fn motion(rect: &mut PlaneRect<'_>, dir: Dir, length: f32) {
    let taps = if dir.is_diagonal() {
        length / std::f32::consts::SQRT_2
    } else {
        length
    };
    blur(rect, dir, &[BoxK::from_length(taps)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variance_of(k: BoxK) -> f64 {
        let a = k.alpha as f64 / 256.0;
        let r = k.r as f64;
        let s: f64 = (1..=k.r).map(|i| 2.0 * (i * i) as f64).sum::<f64>() + 2.0 * a * (r + 1.0).powi(2);
        s / (2.0 * r + 1.0 + 2.0 * a)
    }

    #[test]
    fn extended_box_hits_the_requested_variance() {
        for var in [0.08f32, 0.3, 0.75, 1.0, 2.25, 5.0, 12.0] {
            let got = variance_of(BoxK::from_variance(var));
            assert!((got - var as f64).abs() < 0.02 * var as f64 + 0.005, "{var} {got}");
        }
        assert!(BoxK::from_length(1.0).is_identity());
        assert_eq!(BoxK::from_length(5.0).r, 2);
    }

    #[test]
    fn blur_preserves_flat_areas_and_spreads_an_impulse() {
        let (w, h) = (21usize, 21usize);
        let mut data = vec![100u8; w * h];
        data[10 * w + 10] = 255;
        let mut r = PlaneRect { data: &mut data, stride: w, x: 0, y: 0, width: w, height: h };
        defocus(&mut r, 1.5);
        assert_eq!(data[0], 100);
        assert!(data[10 * w + 10] < 140 && data[10 * w + 12] > 100);
        // Symmetric spread.
        assert_eq!(data[10 * w + 8], data[10 * w + 12]);
        assert_eq!(data[8 * w + 10], data[12 * w + 10]);
    }

    #[test]
    fn motion_blur_smears_only_along_its_direction() {
        let (w, h) = (15usize, 15usize);
        for (angle, along, across) in [
            (0.0, (7, 10), (10, 7)),
            (90.0, (10, 7), (7, 10)),
            (45.0, (9, 5), (5, 5)),
            (135.0, (5, 5), (9, 5)),
        ] {
            let mut data = vec![0u8; w * h];
            data[7 * w + 7] = 240;
            let mut r = PlaneRect { data: &mut data, stride: w, x: 0, y: 0, width: w, height: h };
            motion(&mut r, Dir::nearest(angle), 7.0);
            let at = |(y, x): (usize, usize)| data[y * w + x];
            assert!(at(along) > 0, "angle {angle}");
            assert_eq!(at(across), 0, "angle {angle}");
        }
    }
}
