//! The blur degradations: defocus (Gaussian) and motion (directional box), on 8-bit planes.
//!
//! Everything is built from one primitive, an "extended box": `2r+1` full taps plus one
//! fractional tap of weight `alpha` at each end. Computed with running sums its cost does not
//! depend on the size, and the fractional ends give a continuous choice of width:
//! - motion blur of length L = one extended box of total weight L;
//! - defocus of σ = three extended boxes per direction, each of variance σ²/3 (three box
//!   passes approximate a Gaussian well, and the fractional ends keep σ exact for the small
//!   values, 0.5–2 px, that matter for a "slightly soft" frame).
//!
//! Horizontal and vertical passes run *down the columns*, with one running sum per column,
//! so the inner loop has no loop-carried dependency and vectorises (horizontal passes
//! transpose the block first). Diagonal motion gathers each diagonal into a padded line
//! buffer and runs a serial running sum along it.

use std::cell::RefCell;

/// One extended box filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BoxK {
    r: usize,
    /// Weight of each end tap, in [0, 1).
    alpha: f32,
    /// 1 / (2r + 1 + 2·alpha), the normalisation.
    inv: f32,
}

impl BoxK {
    fn new(r: usize, alpha: f32) -> BoxK {
        // The 16-bit column sums hold up to 255 taps (r ≤ 127): longer blurs are capped.
        let (r, alpha) = if r > 127 { (127, 0.0) } else { (r, alpha) };
        // Quantise alpha so that equal requests give bit-identical filters.
        let alpha = (alpha.clamp(0.0, 1.0) * 256.0).round().min(255.0) / 256.0;
        BoxK {
            r,
            alpha,
            inv: 1.0 / (2.0 * r as f32 + 1.0 + 2.0 * alpha),
        }
    }

    /// Does nothing.
    pub fn is_identity(&self) -> bool {
        self.r == 0 && self.alpha == 0.0
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

    #[inline]
    fn out(&self, inner: u32, ends: u32) -> u8 {
        ((inner as f32 + self.alpha * ends as f32) * self.inv + 0.5) as u8
    }

    /// Filter `src[pad..pad+n]` into `dst[pad..pad+n]`; both have `pad >= r+1` replicated
    /// edge pixels on each side.
    fn apply_line(&self, src: &[u8], dst: &mut [u8], pad: usize, n: usize) {
        let r = self.r;
        debug_assert!(pad > r && src.len() >= n + 2 * pad && dst.len() >= n + 2 * pad);
        let mut inner: u32 = src[pad - r..=pad + r].iter().map(|&v| v as u32).sum();
        for i in 0..n {
            let c = pad + i;
            let ends = src[c - r - 1] as u32 + src[c + r + 1] as u32;
            dst[c] = self.out(inner, ends);
            inner = inner
                .wrapping_add(src[c + r + 1] as u32)
                .wrapping_sub(src[c - r] as u32);
        }
    }

    /// Filter the columns of a `w`×`h` block: rows of `src` at `so + j·ss` → rows of `dst` at
    /// `do_ + j·ds`, edges replicated. `acc` (≥ w) holds one running sum per column.
    ///
    /// Column sums are 16-bit (≤ 255·(2r+1) fits for r ≤ 127) and weights Q16, so the
    /// weighting is a 16×16→32-bit multiply-add, which SSE2 does eight columns at a time.
    #[allow(clippy::too_many_arguments)]
    fn apply_columns(
        &self,
        src: &[u8],
        so: usize,
        ss: usize,
        dst: &mut [u8],
        do_: usize,
        ds: usize,
        w: usize,
        h: usize,
        acc: &mut [u16],
    ) {
        debug_assert!(self.r <= 127);
        let r = self.r as isize;
        let row = |j: isize| {
            let j = j.clamp(0, h as isize - 1) as usize;
            &src[so + j * ss..so + j * ss + w]
        };
        let acc = &mut acc[..w];
        acc.fill(0);
        for j in -r..=r {
            for (a, &v) in acc.iter_mut().zip(row(j)) {
                *a += v as u16;
            }
        }
        let wi = ((self.inv * 65536.0).round() as u32).min(65535);
        let we = ((self.alpha * self.inv * 65536.0).round() as u32).min(65535);
        for y in 0..h as isize {
            let (top, bot, leaving) = (row(y - r - 1), row(y + r + 1), row(y - r));
            let o = do_ + y as usize * ds;
            let out = &mut dst[o..o + w];
            for ((((o, a), &t), &b), &l) in out
                .iter_mut()
                .zip(acc.iter_mut())
                .zip(top)
                .zip(bot)
                .zip(leaving)
            {
                // Wrapping ops: nothing can overflow (see above), and unchecked arithmetic
                // keeps the loop vectorised even in builds with overflow checks (tests).
                let ends = (t as u32).wrapping_add(b as u32).wrapping_mul(we);
                let v = (*a as u32)
                    .wrapping_mul(wi)
                    .wrapping_add(ends)
                    .wrapping_add(32768)
                    >> 16;
                *o = v.min(255) as u8;
                *a = a.wrapping_add(b as u16).wrapping_sub(l as u16);
            }
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

impl PlaneRect<'_> {
    fn row(&self, j: usize) -> std::ops::Range<usize> {
        let o = (self.y + j) * self.stride + self.x;
        o..o + self.width
    }
}

#[derive(Default)]
struct Scratch {
    a: Vec<u8>,
    b: Vec<u8>,
    acc: Vec<u16>,
}

impl Scratch {
    fn reserve(&mut self, bytes: usize, sums: usize) {
        for v in [&mut self.a, &mut self.b] {
            if v.len() < bytes {
                v.resize(bytes, 0);
            }
        }
        if self.acc.len() < sums {
            self.acc.resize(sums, 0);
        }
    }
}

thread_local! {
    // Reused buffers: blurring allocates only the first time a thread needs a given size.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Transpose a `w`×`h` block (`src` rows of `src_stride`) into `dst` (rows of `dst_stride`).
/// Whole 8×8 tiles go through registers as eight u64 words; the ragged edges byte by byte.
#[allow(clippy::too_many_arguments)]
fn transpose(
    src: &[u8],
    src_off: usize,
    src_stride: usize,
    w: usize,
    h: usize,
    dst: &mut [u8],
    dst_off: usize,
    dst_stride: usize,
) {
    let (w8, h8) = (w & !7, h & !7);
    for by in (0..h8).step_by(8) {
        for bx in (0..w8).step_by(8) {
            let mut a = [0u64; 8];
            for (r, word) in a.iter_mut().enumerate() {
                let o = src_off + (by + r) * src_stride + bx;
                *word = u64::from_le_bytes(src[o..o + 8].try_into().expect("8 bytes"));
            }
            transpose8x8(&mut a);
            for (c, word) in a.iter().enumerate() {
                let o = dst_off + (bx + c) * dst_stride + by;
                dst[o..o + 8].copy_from_slice(&word.to_le_bytes());
            }
        }
    }
    let mut scalar =
        |y: usize, x: usize| dst[dst_off + x * dst_stride + y] = src[src_off + y * src_stride + x];
    for y in 0..h8 {
        (w8..w).for_each(|x| scalar(y, x));
    }
    for y in h8..h {
        (0..w).for_each(|x| scalar(y, x));
    }
}

/// Transpose an 8×8 byte matrix held as eight little-endian rows: swap the off-diagonal
/// 4×4 blocks, then 2×2 blocks, then single bytes.
#[inline]
fn transpose8x8(a: &mut [u64; 8]) {
    for (shift, mask, pairs) in [
        (
            32,
            0x0000_0000_FFFF_FFFFu64,
            [(0, 4), (1, 5), (2, 6), (3, 7)],
        ),
        (16, 0x0000_FFFF_0000_FFFF, [(0, 2), (1, 3), (4, 6), (5, 7)]),
        (8, 0x00FF_00FF_00FF_00FF, [(0, 1), (2, 3), (4, 5), (6, 7)]),
    ] {
        for (i, j) in pairs {
            let t = ((a[i] >> shift) ^ a[j]) & mask;
            a[i] ^= t << shift;
            a[j] ^= t;
        }
    }
}

/// Run `passes` along `dir` (horizontal or vertical) over the whole rectangle.
fn separable(rect: &mut PlaneRect<'_>, dir: Dir, passes: &[BoxK]) {
    let (w, h) = (rect.width, rect.height);
    if passes.iter().all(BoxK::is_identity) || w == 0 || h == 0 {
        return;
    }
    SCRATCH.with(|cell| {
        let s = &mut *cell.borrow_mut();
        s.reserve(w * h, w.max(h));
        let base = rect.y * rect.stride + rect.x;
        let live = || passes.iter().filter(|k| !k.is_identity());
        let n = live().count();
        match dir {
            // Vertical: the first pass reads the plane, the last writes it back.
            Dir::Vertical => {
                for (i, k) in live().enumerate() {
                    let (first, last) = (i == 0, i + 1 == n);
                    match (first, last) {
                        (true, true) => {
                            k.apply_columns(
                                rect.data,
                                base,
                                rect.stride,
                                &mut s.a,
                                0,
                                w,
                                w,
                                h,
                                &mut s.acc,
                            );
                            for j in 0..h {
                                let r = rect.row(j);
                                rect.data[r].copy_from_slice(&s.a[j * w..j * w + w]);
                            }
                        }
                        (true, false) => k.apply_columns(
                            rect.data,
                            base,
                            rect.stride,
                            &mut s.a,
                            0,
                            w,
                            w,
                            h,
                            &mut s.acc,
                        ),
                        (false, true) => k.apply_columns(
                            &s.a,
                            0,
                            w,
                            rect.data,
                            base,
                            rect.stride,
                            w,
                            h,
                            &mut s.acc,
                        ),
                        (false, false) => {
                            k.apply_columns(&s.a, 0, w, &mut s.b, 0, w, w, h, &mut s.acc);
                            std::mem::swap(&mut s.a, &mut s.b);
                        }
                    }
                }
            }
            // Horizontal: transpose so that rows become columns, filter, transpose back.
            _ => {
                transpose(rect.data, base, rect.stride, w, h, &mut s.a, 0, h);
                for k in live() {
                    k.apply_columns(&s.a, 0, h, &mut s.b, 0, h, h, w, &mut s.acc);
                    std::mem::swap(&mut s.a, &mut s.b);
                }
                transpose(&s.a, 0, h, h, w, rect.data, base, rect.stride);
            }
        }
    });
}

fn pad_edges(buf: &mut [u8], pad: usize, n: usize) {
    let (first, last) = (buf[pad], buf[pad + n - 1]);
    buf[..pad].fill(first);
    buf[pad + n..pad + n + pad].fill(last);
}

/// One extended box along every diagonal line of the rectangle.
fn diagonal(rect: &mut PlaneRect<'_>, dir: Dir, k: BoxK) {
    let (w, h, st) = (rect.width, rect.height, rect.stride);
    if k.is_identity() || w == 0 || h == 0 {
        return;
    }
    let pad = k.r + 1;
    SCRATCH.with(|cell| {
        let s = &mut *cell.borrow_mut();
        s.reserve(w.min(h) + 2 * pad, 0);
        let base = rect.y * st + rect.x;
        let data = &mut *rect.data;
        // Gather the line starting at `start` with `step` between pixels, filter, scatter.
        let mut line = |start: usize, step: isize, n: usize| {
            let mut o = start as isize;
            for d in &mut s.a[pad..pad + n] {
                *d = data[o as usize];
                o += step;
            }
            pad_edges(&mut s.a, pad, n);
            k.apply_line(&s.a, &mut s.b, pad, n);
            let mut o = start as isize;
            for &v in &s.b[pad..pad + n] {
                data[o as usize] = v;
                o += step;
            }
        };
        match dir {
            Dir::DownRight => {
                let step = st as isize + 1;
                (0..h).for_each(|j| line(base + j * st, step, (h - j).min(w)));
                (1..w).for_each(|i| line(base + i, step, (w - i).min(h)));
            }
            _ => {
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
    separable(rect, Dir::Vertical, &[k; 3]);
    separable(rect, Dir::Horizontal, &[k; 3]);
}

/// Uniform motion of `length` px along `dir` (length measured along the motion, so diagonal
/// lines use length/√2 taps).
pub(crate) fn motion(rect: &mut PlaneRect<'_>, dir: Dir, length: f32) {
    if dir.is_diagonal() {
        diagonal(
            rect,
            dir,
            BoxK::from_length(length / std::f32::consts::SQRT_2),
        );
    } else {
        separable(rect, dir, &[BoxK::from_length(length)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variance_of(k: BoxK) -> f64 {
        let a = k.alpha as f64;
        let r = k.r as f64;
        let s: f64 =
            (1..=k.r).map(|i| 2.0 * (i * i) as f64).sum::<f64>() + 2.0 * a * (r + 1.0).powi(2);
        s / (2.0 * r + 1.0 + 2.0 * a)
    }

    #[test]
    fn extended_box_hits_the_requested_variance() {
        for var in [0.08f32, 0.3, 0.75, 1.0, 2.25, 5.0, 12.0] {
            let got = variance_of(BoxK::from_variance(var));
            assert!(
                (got - var as f64).abs() < 0.02 * var as f64 + 0.005,
                "{var} {got}"
            );
        }
        assert!(BoxK::from_length(1.0).is_identity());
        assert_eq!(BoxK::from_length(5.0).r, 2);
    }

    #[test]
    fn transpose_handles_tiles_and_ragged_edges() {
        for (w, h) in [(8usize, 8usize), (19, 13), (5, 21), (16, 24)] {
            let src: Vec<u8> = (0..w * h).map(|i| (i * 37 % 256) as u8).collect();
            let mut dst = vec![0u8; w * h];
            transpose(&src, 0, w, w, h, &mut dst, 0, h);
            for y in 0..h {
                for x in 0..w {
                    assert_eq!(dst[x * h + y], src[y * w + x], "{w}x{h} at {x},{y}");
                }
            }
        }
    }

    #[test]
    fn blur_preserves_flat_areas_and_spreads_an_impulse() {
        let (w, h) = (21usize, 21usize);
        let mut data = vec![100u8; w * h];
        data[10 * w + 10] = 255;
        let mut r = PlaneRect {
            data: &mut data,
            stride: w,
            x: 0,
            y: 0,
            width: w,
            height: h,
        };
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
            let mut r = PlaneRect {
                data: &mut data,
                stride: w,
                x: 0,
                y: 0,
                width: w,
                height: h,
            };
            motion(&mut r, Dir::nearest(angle), 7.0);
            let at = |(y, x): (usize, usize)| data[y * w + x];
            assert!(at(along) > 0, "angle {angle}");
            assert_eq!(at(across), 0, "angle {angle}");
        }
    }
}
