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
//! * **isotropy** (relative): for each perpendicular pair of directions (horizontal and
//!   vertical, the two diagonals), the fine-scale anisotropy — the noise-free energy
//!   g₂ − g₁ along one direction over the perpendicular one — divided by the same pair's
//!   anisotropy at a coarse step of 16 px (g₁₆, every second sampled row); min(q, 1/q) of
//!   the worse pair. Much real texture is anisotropic (grain, folds) about equally at both
//!   scales, so it reads ≈ 1; a motion smear takes the fine energy along it away and
//!   leaves more of the coarse one, so it reads low. Not all: sharp sand ripples, bark and
//!   fur read 0.3–0.6, so the default ramp (0.4–0.2) flags only strong smears. blur = max(defocus from sharpness, motion
//!   from isotropy), scaled by (1 − the largest other artifact): a dark, washed-out,
//!   glaring or outside view has no mucosa texture to judge focus on.
//! * **dark / clipped fraction**: share of FOV pixels with luma below `dark_level` or at or
//!   above `clip_level` (sampled every third pixel of every third row).
//! * **specular fraction**: share of FOV pixels that are clipped *and* colourless
//!   (|Cb−128| + |Cr−128| ≤ 16): glare from the light source on wet mucosa. Glare is
//!   scaled by (1 − overexposed): a frame clipped over a large area is over-exposed.
//! * **cast** = mean Cb − mean Cr: mucosa is red-dominant (negative), a scope outside the
//!   body sees the room's blue-white light (positive). The two means themselves
//!   (**mean_cb**, **mean_cr**, as offsets from neutral 128) tell white light from
//!   narrow-band imaging ([`crate::light`]).
//! * **noise σ**: the inner region is cut into a 12 × 12 grid of blocks; in each, the mean
//!   square of the Laplacian-difference mask [1 −2 1; −2 4 −2; 1 −2 1] over 36 (the mask
//!   passes nothing of a locally linear image and 36 σ² of white noise; Immerkær 1996).
//!   Texture raises it too, so the estimate is the 10th percentile over the blocks that are
//!   neither dark nor clipped: the flattest parts of the view, where only noise is left.
//!   In code values of luma.
//! * **blockiness**: mean absolute luma step between neighbouring pixels, binned by the
//!   position modulo 8 (columns for horizontal steps, rows for vertical ones); the largest
//!   bin over the median bin, averaged over the two directions. JPEG/MJPEG quantises 8 × 8
//!   blocks independently, so their boundaries step more than their insides; a frame with
//!   no 8-pixel grid reads ≈ 1. Phase-free, so the crop's offset does not matter.
//!   noise = the larger of the two ramps: both are texture that is not the mucosa's.
//!
//! Luma levels, σ and chroma are in limited-range codes (black 16, white 235) whatever the
//! source's range: a full-range frame's are converted ([`crate::frame::Colour`]), so one set
//! of thresholds fits every capture card.
//!
//! Each measure maps to an artifact value in 0..1 by two configured points (`scoring.*` in
//! the config): focus and the outside cast by a linear ramp (0 at one point, 1 at the
//! other), exposure, glare and noise by a [`soft`] curve (0 at the first, 0.5 at the
//! second, towards 1 beyond), which keeps ranking frames that are all clearly bad.

use crate::artifact::Artifact;
use crate::config::ScoringConfig;
use crate::fov::Fov;
use crate::frame::I420View;

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
    /// Mean Cb − 128 over the FOV (blue-difference chroma; negative: yellow-red).
    pub mean_cb: f32,
    /// Mean Cr − 128 over the FOV (red-difference chroma; positive: red).
    pub mean_cr: f32,
    /// Estimated sensor noise σ in luma code values (flattest blocks).
    pub noise_sigma: f32,
    /// 8-pixel block-grid strength (≈ 1: none; JPEG at low quality: 3 and more).
    pub blockiness: f32,
    /// The session's sharpness reference this frame was judged against (0: none yet).
    pub sharpness_reference: f32,
}

/// Linear ramp: 0 at `lo`, 1 at `hi`, clamped.
#[inline]
pub fn ramp(x: f32, lo: f32, hi: f32) -> f32 {
    ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
}

/// Soft curve: 0 at or before `zero`, 0.5 at `half`, then towards 1 (each further
/// `half − zero` halves what is left): 0.75 at `zero + 2 (half − zero)`, 0.875 at 3×.
/// `half < zero` reads the other way (for measures that get worse as they fall, such as
/// mean luma). Unlike a ramp clamped at 1, it never ties two bad frames at 0: a frame twice
/// as noisy as another still scores below it.
#[inline]
pub fn soft(x: f32, zero: f32, half: f32) -> f32 {
    let t = (x - zero) / (half - zero);
    if t > 0.0 {
        1.0 - (-t).exp2()
    } else {
        0.0
    }
}

/// Measure the cropped frame `crop` whose geometry is `fov`.
pub fn measure(crop: &I420View, fov: &Fov, cfg: &ScoringConfig) -> Measures {
    let (sharpness, isotropy) = sharpness(crop, fov, cfg.sharpness_row_step);
    let mut m = Measures {
        sharpness,
        isotropy,
        ..Measures::default()
    };
    let c = crop.colour;
    exposure(
        crop,
        fov,
        c.luma_level(cfg.dark_level),
        c.luma_level(cfg.clip_level),
        &mut m,
    );
    // Reported in limited-range codes whatever the source's range, so that one set of
    // thresholds fits every capture card.
    m.mean_luma = c.limited_luma(m.mean_luma);
    m.cast *= c.chroma_scale();
    m.mean_cb *= c.chroma_scale();
    m.mean_cr *= c.chroma_scale();
    m.noise_sigma = noise_sigma(crop, fov) * c.luma_scale();
    m.blockiness = blockiness(crop, fov);
    m
}

/// Blocks per axis of the noise estimate's grid.
const NOISE_GRID: usize = 12;

/// The noise grid's column bounds: column j holds the sampled columns x0 + d (d even,
/// d < bw) with ⌊d · GRID / bw⌋ = j, i.e. d from the first even value ≥ j · bw / GRID.
/// Computed once per frame, so the per-pixel loop has no division.
fn grid_columns(x0: usize, bw: u64) -> [usize; NOISE_GRID + 1] {
    std::array::from_fn(|j| {
        let d = (j as u64 * bw).div_ceil(NOISE_GRID as u64) as usize;
        x0 + d + (d & 1)
    })
}

/// Noise σ (see the module header): every second pixel of every second row of the inner
/// region, no allocation. On an x86-64 CPU with AVX2 the mask runs eight pixels wide (the
/// same integer arithmetic, so the same result to the bit).
pub fn noise_sigma(crop: &I420View, fov: &Fov) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { noise_sigma_avx2(crop, fov) };
    }
    noise_sigma_grid(crop, fov)
}

/// [`noise_sigma_grid`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn noise_sigma_avx2(crop: &I420View, fov: &Fov) -> f32 {
    noise_sigma_grid(crop, fov)
}

/// Columns of one run of the mask (even, so a run keeps the sampled columns' parity).
const NOISE_RUN: usize = 256;

/// The mask's squared response at every column of `x0..x1` on the row `b` (between `a`
/// above and `c` below) into `sq`, then the sums over every second column from `x0`:
/// (Σ response², Σ luma, samples). The mask is separable: a vertical second difference
/// per column, then a horizontal one of those; computed at every column in straight runs
/// (which vectorise) and summed at every second.
#[inline(always)]
fn mask_run(
    rows: [&[u8]; 3],
    x0: usize,
    x1: usize,
    (vert, sq): (&mut [i16; NOISE_RUN + 2], &mut [u32; NOISE_RUN]),
) -> (u64, u64, u32) {
    let [a, b, c] = rows;
    let n = x1 - x0;
    let span = x0 - 1..x1 + 1;
    for (((v, &p), &q), &r) in vert
        .iter_mut()
        .zip(&a[span.clone()])
        .zip(&b[span.clone()])
        .zip(&c[span])
    {
        *v = p as i16 - 2 * q as i16 + r as i16;
    }
    for (i, s) in sq[..n].iter_mut().enumerate() {
        let resp = vert[i] as i32 - 2 * vert[i + 1] as i32 + vert[i + 2] as i32;
        *s = (resp * resp) as u32;
    }
    let e = sq[..n].iter().step_by(2).map(|&s| s as u64).sum();
    let l = b[x0..x1].iter().step_by(2).map(|&y| y as u64).sum();
    (e, l, n.div_ceil(2) as u32)
}

/// [`mask_run`] over one block's sampled columns `x0`, `x0 + 2`, … below `x1`, in runs of
/// at most [`NOISE_RUN`] columns (a block is wider only in frames over ~4,400 pixels).
#[inline(always)]
fn mask_block(
    rows: [&[u8]; 3],
    x0: usize,
    x1: usize,
    scratch: (&mut [i16; NOISE_RUN + 2], &mut [u32; NOISE_RUN]),
) -> (u64, u64, u32) {
    let (vert, sq) = scratch;
    let (mut e, mut l, mut n) = (0, 0, 0);
    let mut x = x0;
    while x < x1 {
        let end = x1.min(x + NOISE_RUN);
        let run = mask_run(rows, x, end, (&mut *vert, &mut *sq));
        (e, l, n) = (e + run.0, l + run.1, n + run.2);
        x = end;
    }
    (e, l, n)
}

/// The body of [`noise_sigma`], inlined into each instruction-set variant.
#[inline(always)]
fn noise_sigma_grid(crop: &I420View, fov: &Fov) -> f32 {
    let inner = fov.inner();
    if inner.width < 2 * NOISE_GRID as u32 || inner.height < 2 * NOISE_GRID as u32 {
        return 0.0;
    }
    let (x0, x1) = (inner.x as usize + 1, inner.right() as usize - 1);
    let (y0, y1) = (inner.y + 1, inner.bottom() - 1);
    let (bw, bh) = ((x1 - x0) as u64, (y1 - y0) as u64);
    let mut energy = [0u64; NOISE_GRID * NOISE_GRID];
    let mut luma = [0u64; NOISE_GRID * NOISE_GRID];
    let mut count = [0u32; NOISE_GRID * NOISE_GRID];
    let bounds = grid_columns(x0, bw);
    // Scratch for one run of the mask, reused (zeroing it per run cost more than the mask).
    let (mut vert, mut sq) = ([0i16; NOISE_RUN + 2], [0u32; NOISE_RUN]);
    let mut r = y0;
    while r < y1 {
        let rows = [crop.y_row(r - 1), crop.y_row(r), crop.y_row(r + 1)];
        let by = ((r - y0) as u64 * NOISE_GRID as u64 / bh) as usize * NOISE_GRID;
        for j in 0..NOISE_GRID {
            let (e, l, n) = mask_block(rows, bounds[j], bounds[j + 1], (&mut vert, &mut sq));
            energy[by + j] += e;
            luma[by + j] += l;
            count[by + j] += n;
        }
        r += 2;
    }
    let mut v = [0f32; NOISE_GRID * NOISE_GRID];
    let mut n = 0;
    for i in 0..v.len() {
        if count[i] == 0 {
            continue;
        }
        let mean = crop.colour.limited_luma(luma[i] as f32 / count[i] as f32);
        // Dark and clipped blocks hide noise (clipping flattens it): not flat mucosa.
        if (24.0..230.0).contains(&mean) {
            v[n] = energy[i] as f32 / count[i] as f32 / 36.0;
            n += 1;
        }
    }
    if n == 0 {
        return 0.0;
    }
    let k = (n - 1) / 10;
    let (_, x, _) = v[..n].select_nth_unstable_by(k, f32::total_cmp);
    x.sqrt()
}

/// Block-grid strength (see the module header) over the inner region: every third row,
/// horizontal steps at every column, vertical steps at every second column.
pub fn blockiness(crop: &I420View, fov: &Fov) -> f32 {
    let inner = fov.inner();
    if inner.width < 32 || inner.height < 32 {
        return 1.0;
    }
    let (x0, x1) = (inner.x as usize, inner.right() as usize - 1);
    let mut h = [0u64; 8];
    let mut v = [0u64; 8];
    let (mut nh, mut nv) = ([0u64; 8], [0u64; 8]);
    // Every third row: 3 and 8 are coprime, so every row phase is sampled.
    let mut r = inner.y;
    while r + 1 < inner.bottom() {
        let (row, next) = (crop.y_row(r), crop.y_row(r + 1));
        horizontal_steps(&row[x0..=x1], x0, &mut h, &mut nh);
        let phase = r as usize % 8;
        let (sum, n) = vertical_steps(&row[x0..x1], &next[x0..x1]);
        v[phase] += sum;
        nv[phase] += n;
        r += 3;
    }
    let strength = |sum: &[u64; 8], n: &[u64; 8]| -> Option<f32> {
        let mut m = [0f32; 8];
        for k in 0..8 {
            if n[k] == 0 {
                return None;
            }
            m[k] = sum[k] as f32 / n[k] as f32;
        }
        m.sort_by(f32::total_cmp);
        let median = 0.5 * (m[3] + m[4]);
        // A flat view (or a clipped one) has no steps to compare; blocks flattened inside
        // (the extreme of quantisation) step only at their boundaries.
        (m[7] >= 0.5).then(|| m[7] / median.max(0.25))
    };
    match (strength(&h, &nh), strength(&v, &nv)) {
        (Some(a), Some(b)) => 0.5 * (a + b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => 1.0,
    }
}

/// Adds |steps[i + 1] − steps[i]| to `h[(x0 + i) % 8]` and one to `nh[(x0 + i) % 8]` for
/// every i: the horizontal steps of one row binned by column phase (`steps` starts at
/// column `x0`).
fn horizontal_steps(steps: &[u8], x0: usize, h: &mut [u64; 8], nh: &mut [u64; 8]) {
    let n = steps.len().saturating_sub(1);
    let (lanes, done) = phase_steps_simd(steps);
    for (k, lane) in lanes.iter().enumerate() {
        h[(x0 + k) % 8] += lane;
        nh[(x0 + k) % 8] += done as u64 / 8;
    }
    for i in done..n {
        h[(x0 + i) % 8] += steps[i + 1].abs_diff(steps[i]) as u64;
        nh[(x0 + i) % 8] += 1;
    }
}

/// The SIMD part of [`horizontal_steps`], SSE2 (every x86_64 CPU): |a − b| of 16 bytes
/// and their right neighbours at a time, widened to two 8-lane u16 halves whose lane k
/// is column phase k either way (16 is two phases' worth), summed in u16 and flushed to
/// u64 every 64 blocks (64 × 2 × 255 < 65 536). Returns the sums by lane and how many
/// steps (a multiple of 16) they cover.
#[cfg(target_arch = "x86_64")]
fn phase_steps_simd(steps: &[u8]) -> ([u64; 8], usize) {
    use std::arch::x86_64::*;
    let mut lanes = [0u64; 8];
    let mut done = 0;
    // SAFETY: SSE2 is part of the x86_64 baseline; the loads read steps[done..done + 17],
    // inside the slice (done + 17 <= len).
    unsafe {
        let zero = _mm_setzero_si128();
        while done + 17 <= steps.len() {
            let mut acc = zero;
            let mut blocks = 0;
            while blocks < 64 && done + 17 <= steps.len() {
                let a = _mm_loadu_si128(steps.as_ptr().add(done) as *const __m128i);
                let b = _mm_loadu_si128(steps.as_ptr().add(done + 1) as *const __m128i);
                let d = _mm_or_si128(_mm_subs_epu8(a, b), _mm_subs_epu8(b, a));
                let pair = _mm_add_epi16(_mm_unpacklo_epi8(d, zero), _mm_unpackhi_epi8(d, zero));
                acc = _mm_add_epi16(acc, pair);
                done += 16;
                blocks += 1;
            }
            let mut sums = [0u16; 8];
            _mm_storeu_si128(sums.as_mut_ptr() as *mut __m128i, acc);
            for (l, s) in lanes.iter_mut().zip(sums) {
                *l += s as u64;
            }
        }
    }
    (lanes, done)
}

#[cfg(not(target_arch = "x86_64"))]
fn phase_steps_simd(_steps: &[u8]) -> ([u64; 8], usize) {
    ([0; 8], 0)
}

/// Σ |next − row| over every second column of two rows from their first, and how many
/// columns.
fn vertical_steps(row: &[u8], next: &[u8]) -> (u64, u64) {
    let len = row.len().min(next.len());
    let (mut sum, done) = even_steps_simd(&row[..len], &next[..len]);
    for x in (done..len).step_by(2) {
        sum += row[x].abs_diff(next[x]) as u64;
    }
    (sum, len.div_ceil(2) as u64)
}

/// The SIMD part of [`vertical_steps`]: SSE2's sum of absolute differences (`psadbw`, in
/// every x86_64 CPU) over 16 bytes at a time, the odd columns masked to 0 in both rows.
/// Returns the sum and how many leading columns it covered. `row` and `next` are as long.
#[cfg(target_arch = "x86_64")]
fn even_steps_simd(row: &[u8], next: &[u8]) -> (u64, usize) {
    use std::arch::x86_64::*;
    assert_eq!(row.len(), next.len());
    let mut done = 0;
    let mut halves = [0u64; 2];
    // SAFETY: SSE2 is part of the x86_64 baseline; each load reads 16 bytes at `done`,
    // inside both slices (done + 16 <= len, the same for both).
    unsafe {
        let even = _mm_set1_epi16(0x00ff);
        let mut acc = _mm_setzero_si128();
        while done + 16 <= row.len() {
            let a = _mm_loadu_si128(row.as_ptr().add(done) as *const __m128i);
            let b = _mm_loadu_si128(next.as_ptr().add(done) as *const __m128i);
            let d = _mm_sad_epu8(_mm_and_si128(a, even), _mm_and_si128(b, even));
            acc = _mm_add_epi64(acc, d);
            done += 16;
        }
        _mm_storeu_si128(halves.as_mut_ptr() as *mut __m128i, acc);
    }
    (halves[0] + halves[1], done)
}

#[cfg(not(target_arch = "x86_64"))]
fn even_steps_simd(_row: &[u8], _next: &[u8]) -> (u64, usize) {
    (0, 0)
}

/// Step, in pixels, of the coarse-scale differences that isotropy compares the fine-scale
/// anisotropy with: longer than most smears an operator would keep, short enough to see
/// the same texture.
const COARSE: u32 = 16;

/// Sharpness and isotropy (see the module header) over the inner region.
fn sharpness(crop: &I420View, fov: &Fov, row_step: u32) -> (f32, f32) {
    let inner = fov.inner();
    if inner.width < 8 || inner.height < 8 {
        return (0.0, 0.0);
    }
    // The coarse differences are centred on the sample: they reach COARSE/2 beyond it,
    // which the margin around the inner region must hold. A field of view too small for
    // that gets no coarse differences (0), which reads as "no smear".
    let margin = inner
        .x
        .min(inner.y)
        .min(crop.width - inner.right())
        .min(crop.height - inner.bottom());
    let half = if margin >= COARSE / 2 + 3 {
        COARSE / 2
    } else {
        0
    };
    let span = (inner.x as usize + 3, inner.right() as usize - 3);
    let rows = (inner.y + 3, inner.bottom());
    let (sums, n) = sharpness_sums(crop, rows, span, half, row_step);
    if n[0] == 0 {
        return (0.0, 0.0);
    }
    focus_measures(&sums, n)
}

/// The per-direction sums of [`sharpness`] over the sampled rows `rows.0`, `rows.0 +
/// row_step`, … below `rows.1` (each with the three rows under it) and every second column
/// of `span`, and their sample counts (all, and those of the coarse differences). A field
/// of view with the coarse step's margin and a row of at most [`SPLIT_N`] samples takes
/// [`split_sums`] (compiled for AVX2 when the CPU has it); the others the strided loop.
/// Both compute the same integers.
fn sharpness_sums(
    crop: &I420View,
    rows: (u32, u32),
    span: (usize, usize),
    half: u32,
    row_step: u32,
) -> ([[u64; 4]; 4], [u64; 2]) {
    let samples = (span.1.saturating_sub(span.0)).div_ceil(2);
    if half == COARSE / 2 && samples <= SPLIT_N {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { split_sums_avx2(crop, rows, span, row_step) };
        }
        return split_sums(crop, rows, span, row_step);
    }
    strided_sums(crop, rows, span, half, row_step)
}

/// The strided loop of [`sharpness_sums`]: [`row_sums`] per sampled row.
fn strided_sums(
    crop: &I420View,
    (first, bottom): (u32, u32),
    span: (usize, usize),
    half: u32,
    row_step: u32,
) -> ([[u64; 4]; 4], [u64; 2]) {
    // The coarse differences on every second sampled row only: a smear is global, half
    // the rows measure it as well, for half the cost.
    let mut sums = [[0u64; 4]; 4];
    let mut n = [0u64; 2];
    let mut r = first;
    let mut far_row = true;
    while r + 3 < bottom {
        let rows: [&[u8]; 4] = std::array::from_fn(|k| crop.y_row(r + k as u32));
        let (acc, samples) = if far_row {
            let far = (crop.y_row(r - half), crop.y_row(r + half));
            row_sums::<true>(rows, far, span, half as usize)
        } else {
            row_sums::<false>(rows, (rows[0], rows[0]), span, 0)
        };
        add_row(&mut sums, acc);
        n[0] += samples;
        n[1] += if far_row { samples } else { 0 };
        far_row = !far_row;
        r += row_step;
    }
    (sums, n)
}

#[inline(always)]
fn add_row(sums: &mut [[u64; 4]; 4], acc: [[u32; 4]; 4]) {
    for (s, a) in sums.iter_mut().zip(acc) {
        for (s, a) in s.iter_mut().zip(a) {
            *s += a as u64;
        }
    }
}

/// Most samples per row the split kernel takes (inner rows up to ≈ 2,000 px wide).
const SPLIT_N: usize = 1024;
/// Columns of each parity kept beyond the samples: the coarse step reaches 4 even
/// columns to each side.
const SPLIT_PAD: usize = 8;

/// One sampled row and the rows it is compared with, split by column parity so that every
/// difference [`row_sums`] takes is a straight run (which vectorises): with
/// `base` = the first sample's column − 8, column `base + 2j` is `e[j]` and `base + 2j + 1`
/// is `o[j]`, so sample i (column `base + 2(i + 4)`) is `e[·][i + 4]`. `e[k]`, `o[k]`: the
/// row k below the sampled one; `above`, `below`: even columns of the rows 8 px away.
struct Split {
    e: [[u8; SPLIT_N + SPLIT_PAD]; 4],
    o: [[u8; SPLIT_N + SPLIT_PAD]; 4],
    above: [u8; SPLIT_N + SPLIT_PAD],
    below: [u8; SPLIT_N + SPLIT_PAD],
}

/// [`split_sums`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn split_sums_avx2(
    crop: &I420View,
    rows: (u32, u32),
    span: (usize, usize),
    row_step: u32,
) -> ([[u64; 4]; 4], [u64; 2]) {
    split_sums(crop, rows, span, row_step)
}

/// [`strided_sums`] with the coarse step `COARSE / 2`, over rows split by parity
/// ([`Split`]): the same samples and differences, so the same sums. It reads the columns
/// the strided loop reads, and one odd column more to the right (inside the margin the
/// coarse step needs).
#[inline(always)]
fn split_sums(
    crop: &I420View,
    (first, bottom): (u32, u32),
    (x0, x1): (usize, usize),
    row_step: u32,
) -> ([[u64; 4]; 4], [u64; 2]) {
    let half = COARSE / 2;
    let n = (x1.saturating_sub(x0)).div_ceil(2);
    let (base, m) = (x0 - 2 * 4, n + SPLIT_PAD);
    let mut s = Split {
        e: [[0; SPLIT_N + SPLIT_PAD]; 4],
        o: [[0; SPLIT_N + SPLIT_PAD]; 4],
        above: [0; SPLIT_N + SPLIT_PAD],
        below: [0; SPLIT_N + SPLIT_PAD],
    };
    let mut sums = [[0u64; 4]; 4];
    let mut samples = [0u64; 2];
    let mut r = first;
    let mut far_row = true;
    while r + 3 < bottom {
        for k in 0..4 {
            let row = &crop.y_row(r + k as u32)[base..base + 2 * m];
            for ((e, o), p) in s.e[k][..m]
                .iter_mut()
                .zip(&mut s.o[k][..m])
                .zip(row.chunks_exact(2))
            {
                (*e, *o) = (p[0], p[1]);
            }
        }
        if far_row {
            for (dst, row) in [(&mut s.above, r - half), (&mut s.below, r + half)] {
                let row = &crop.y_row(row)[base..base + 2 * m - 1];
                for (e, p) in dst[..m].iter_mut().zip(row.iter().step_by(2)) {
                    *e = *p;
                }
            }
            add_row(&mut sums, split_row_sums::<true>(&s, n));
            samples[1] += n as u64;
        } else {
            add_row(&mut sums, split_row_sums::<false>(&s, n));
        }
        samples[0] += n as u64;
        far_row = !far_row;
        r += row_step;
    }
    (sums, samples)
}

/// Σ (b − a)² over two runs of the same length.
#[inline(always)]
fn sq_sum(a: &[u8], b: &[u8]) -> u32 {
    a.iter()
        .zip(b)
        .map(|(&a, &b)| {
            let d = b as i32 - a as i32;
            (d * d) as u32
        })
        .sum()
}

/// One sampled row's sums from its split rows ([`Split`]; `n` samples): the differences
/// of [`row_sums`], each a run at a fixed offset.
#[inline(always)]
fn split_row_sums<'s, const FAR: bool>(s: &'s Split, n: usize) -> [[u32; 4]; 4] {
    // The run of `n` samples starting at even (or odd) index `at`.
    let run = |a: &'s [u8; SPLIT_N + SPLIT_PAD], at: usize| -> &'s [u8] { &a[at..at + n] };
    let c = run(&s.e[0], 4);
    let mut acc = [[0u32; 4]; 4];
    // Horizontal: columns x + 1, x + 2, x + 3 of the row.
    acc[0][0] = sq_sum(c, run(&s.o[0], 4));
    acc[0][1] = sq_sum(c, run(&s.e[0], 5));
    acc[0][2] = sq_sum(c, run(&s.o[0], 5));
    for k in 1..4 {
        // Vertical: column x of row k.
        acc[1][k - 1] = sq_sum(c, run(&s.e[k], 4));
    }
    // "\\": column x + k of row k; "/": column x − k of row k.
    acc[2][0] = sq_sum(c, run(&s.o[1], 4));
    acc[2][1] = sq_sum(c, run(&s.e[2], 5));
    acc[2][2] = sq_sum(c, run(&s.o[3], 5));
    acc[3][0] = sq_sum(c, run(&s.o[1], 3));
    acc[3][1] = sq_sum(c, run(&s.e[2], 3));
    acc[3][2] = sq_sum(c, run(&s.o[3], 2));
    if FAR {
        // Centred coarse differences, 8 px (4 even columns) each side.
        acc[0][3] = sq_sum(run(&s.e[0], 0), run(&s.e[0], 8));
        acc[1][3] = sq_sum(run(&s.above, 4), run(&s.below, 4));
        acc[2][3] = sq_sum(run(&s.above, 0), run(&s.below, 8));
        acc[3][3] = sq_sum(run(&s.above, 8), run(&s.below, 0));
    }
    acc
}

/// One sampled row's sums (see [`sharpness`]): `rows` are the row and the three below it,
/// `far` the rows `half` above and below it (used only with `FAR`), `span` the columns;
/// every second column, so the differences stay at native resolution. Returns the sums and
/// the sample count.
#[inline]
fn row_sums<const FAR: bool>(
    rows: [&[u8]; 4],
    (above, below): (&[u8], &[u8]),
    (x0, x1): (usize, usize),
    half: usize,
) -> ([[u32; 4]; 4], u64) {
    let mut acc = [[0u32; 4]; 4];
    let mut n = 0;
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
        if FAR {
            let far = [
                rows[0][x + half] as i32 - rows[0][x - half] as i32,
                below[x] as i32 - above[x] as i32,
                below[x + half] as i32 - above[x - half] as i32,
                below[x - half] as i32 - above[x + half] as i32,
            ];
            for (a, d) in acc.iter_mut().zip(far) {
                a[3] += (d * d) as u32;
            }
        }
        n += 1;
        x += 2;
    }
    (acc, n)
}

/// Sharpness and isotropy from the per-direction sums of `n[0]` samples (the coarse sums:
/// `n[1]`).
fn focus_measures(sums: &[[u64; 4]; 4], n: [u64; 2]) -> (f32, f32) {
    let mean = |v: u64| v as f64 / n[0] as f64;
    let mut sharpness = f64::INFINITY;
    let mut fine = [0.0f64; 4];
    let mut coarse = [0.0f64; 4];
    for (d, s) in sums.iter().enumerate() {
        let (g1, g2, g3) = (mean(s[0]), mean(s[1]), mean(s[2]));
        // Sensor noise adds the same 2σ² to every g_k: differences of them are noise-free.
        fine[d] = (g2 - g1).max(0.0);
        coarse[d] = s[3] as f64 / n[1].max(1) as f64;
        // g₃ ≈ g₁: nothing is correlated beyond one pixel (a texture as fine as the pixel
        // grid, or noise alone); nothing in it is smooth, so nothing reads as blur.
        let ratio = if g3 - g1 > 0.02 * g1 + 0.05 {
            ((g2 - g1) / (g3 - g1)).clamp(0.0, 1.0)
        } else {
            1.0
        };
        sharpness = sharpness.min(ratio);
    }
    (sharpness as f32, relative_isotropy(fine, coarse) as f32)
}

/// The fine-scale anisotropy of each perpendicular pair of directions relative to its
/// coarse-scale anisotropy, the worse pair: min(q, 1/q) with
/// q = (fine_a / fine_b) / (coarse_a / coarse_b). Much texture is about as anisotropic at
/// 16 px as at 1 px (grain, a fold), so its q is ≈ 1; a smear takes the fine energy along
/// it away and leaves more of the coarse one. Not all: sand ripples, bark and fur read
/// 0.3–0.6 sharp (docs/scoring.md), so the default ramp only flags strong smears.
fn relative_isotropy(fine: [f64; 4], coarse: [f64; 4]) -> f64 {
    let mut worst = 1.0f64;
    for (a, b) in [(0, 1), (2, 3)] {
        let (fa, fb, ca, cb) = (fine[a], fine[b], coarse[a], coarse[b]);
        // Nothing to judge (a flat or black view): no evidence of a smear.
        if fa.max(fb) < 0.05 || ca.min(cb) <= 0.0 {
            continue;
        }
        let q = (fa * cb) / (fb * ca).max(1e-9);
        worst = worst.min(q.min(1.0 / q.max(1e-9)));
    }
    worst
}

const EXPOSURE_STEP: u32 = 3;

/// Exposure, glare and colour cast over the FOV shape, sampled on a 3-pixel grid
/// (about 90 000 samples at 1080p: fractions to well under 1 %).
fn exposure(crop: &I420View, fov: &Fov, dark_level: u8, clip_level: u8, m: &mut Measures) {
    let (mut n, mut sum, mut dark, mut clipped, mut spec) = (0u64, 0u64, 0u64, 0u64, 0u64);
    // Colourless: |Cb − 128| + |Cr − 128| ≤ 16 limited-range codes.
    let grey = (16.0 / crop.colour.chroma_scale()).round() as i32;
    let (mut cb, mut cr) = (0i64, 0i64);
    let mut r = 0;
    while r < crop.height {
        let (x0, x1) = fov.span(r);
        let yr = crop.y_row(r);
        let c = crop.chroma_row(r / 2);
        let mut x = x0;
        while x < x1 {
            let y = yr[x as usize];
            let (u, v) = c.at(x as usize / 2);
            let (u, v) = (u as i32, v as i32);
            n += 1;
            sum += y as u64;
            dark += (y < dark_level) as u64;
            let clip = y >= clip_level;
            clipped += clip as u64;
            spec += (clip && (u - 128).abs() + (v - 128).abs() <= grey) as u64;
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
    m.mean_cb = cb as f32 / nf - 128.0;
    m.mean_cr = cr as f32 / nf - 128.0;
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
    // Exposure, glare and noise are physics, not content: soft curves calibrated so that
    // an artifact value reads about as the degradation's severity (docs/scoring.md).
    let [dim_half, dim_zero] = cfg.dark_mean_luma;
    a[Artifact::Dark.index()] = soft(m.dark_fraction, cfg.dark_fraction[0], cfg.dark_fraction[1])
        .max(soft(m.mean_luma, dim_zero, dim_half));
    let over = soft(
        m.clipped_fraction,
        cfg.clipped_fraction[0],
        cfg.clipped_fraction[1],
    )
    .max(soft(
        m.mean_luma,
        cfg.overexposed_mean_luma[0],
        cfg.overexposed_mean_luma[1],
    ));
    a[Artifact::Overexposed.index()] = over;
    // Large colourless clipped areas are over-exposure, not glare.
    a[Artifact::Glare.index()] = soft(
        m.specular_fraction,
        cfg.specular_fraction[0],
        cfg.specular_fraction[1],
    ) * (1.0 - over);
    a[Artifact::Outside.index()] = ramp(m.cast, cfg.outside_cast[0], cfg.outside_cast[1]);
    a[Artifact::Noise.index()] = soft(m.noise_sigma, cfg.noise_sigma[0], cfg.noise_sigma[1])
        .max(soft(m.blockiness, cfg.blockiness[0], cfg.blockiness[1]));
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

    /// A smooth luma pattern (nothing at the pixel scale) plus white noise of σ `sigma`.
    fn smooth_plus_noise(w: u32, h: u32, sigma: f32) -> I420Image {
        let mut img = I420Image::new(w, h);
        let mut state = 987_654_321u32;
        let mut gauss = || {
            // Sum of 12 uniforms − 6: mean 0, σ 1.
            (0..12)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (state >> 8) as f32 / (1u32 << 24) as f32
                })
                .sum::<f32>()
                - 6.0
        };
        for y in 0..h {
            for x in 0..w {
                let v = 120.0 + 30.0 * ((x as f32 / 23.0).sin() * (y as f32 / 31.0).cos());
                img.y[(y * w + x) as usize] = (v + sigma * gauss()).round().clamp(0.0, 255.0) as u8;
            }
        }
        img
    }

    #[test]
    fn the_noise_grid_columns_are_the_per_pixel_block_index() {
        for bw in [24u64, 25, 97, 500, 701, 1016] {
            let b = grid_columns(5, bw);
            for d in (0..bw as usize).step_by(2) {
                let j = (d as u64 * NOISE_GRID as u64 / bw) as usize;
                assert!(b[j] <= 5 + d && 5 + d < b[j + 1], "bw {bw} d {d}");
            }
            assert!(b[NOISE_GRID] >= 5 + bw as usize && b[NOISE_GRID] <= 6 + bw as usize);
        }
    }

    #[test]
    fn noise_sigma_tracks_added_noise_and_not_smooth_texture() {
        let f = fov(320, 320);
        let clean = measure(&smooth_plus_noise(320, 320, 0.0).view(), &f, &cfg(1));
        assert!(clean.noise_sigma < 1.0, "{clean:?}");
        for sigma in [4.0f32, 8.0, 16.0] {
            let m = measure(&smooth_plus_noise(320, 320, sigma).view(), &f, &cfg(1));
            assert!(
                (m.noise_sigma - sigma).abs() < 0.2 * sigma,
                "σ {sigma}: estimated {}",
                m.noise_sigma
            );
            assert!(m.blockiness < 1.2, "noise is not a block grid: {m:?}");
        }
        let noisy = measure(&smooth_plus_noise(320, 320, 16.0).view(), &f, &cfg(1));
        let a = artifacts(&noisy, &ScoringConfig::default(), None);
        // σ 16 is severity 0.66 on the real-image set's scale: a reason, well past 0.5.
        assert!(a[Artifact::Noise.index()] > 0.6, "{a:?}");
        assert_eq!(
            artifacts(&clean, &ScoringConfig::default(), None)[Artifact::Noise.index()],
            0.0
        );
    }

    #[test]
    fn horizontal_steps_bin_by_column_phase_as_a_plain_loop_does() {
        // Lengths around the 16-byte blocks and past the 64-block flush, every phase.
        for len in [0usize, 1, 2, 16, 17, 18, 33, 1000, 1025, 1041, 4200] {
            for x0 in [0usize, 3, 8, 13] {
                let steps: Vec<u8> = (0..len).map(|i| (i * 151 % 256) as u8).collect();
                let (mut h, mut nh) = ([0u64; 8], [0u64; 8]);
                horizontal_steps(&steps, x0, &mut h, &mut nh);
                let (mut eh, mut enh) = ([0u64; 8], [0u64; 8]);
                for i in 0..len.saturating_sub(1) {
                    eh[(x0 + i) % 8] += steps[i + 1].abs_diff(steps[i]) as u64;
                    enh[(x0 + i) % 8] += 1;
                }
                assert_eq!((h, nh), (eh, enh), "length {len}, x0 {x0}");
            }
        }
    }

    #[test]
    fn vertical_steps_sum_every_second_column_as_a_strided_loop_does() {
        for len in [0usize, 1, 15, 16, 17, 31, 33, 1000, 1001] {
            let row: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let next: Vec<u8> = (0..len).map(|i| (255 - i * 11 % 256) as u8).collect();
            let (mut sum, mut n) = (0u64, 0u64);
            for x in (0..len).step_by(2) {
                sum += (next[x] as i32 - row[x] as i32).unsigned_abs() as u64;
                n += 1;
            }
            assert_eq!(vertical_steps(&row, &next), (sum, n), "length {len}");
        }
    }

    #[test]
    fn an_8_pixel_block_grid_reads_as_compression_whatever_its_offset() {
        let base = smooth_plus_noise(320, 320, 2.0);
        for offset in [0u32, 3, 5] {
            // Each 8×8 block (grid shifted by `offset`) flattened to its mean: the extreme
            // of JPEG quantisation.
            let mut blocky = base.clone();
            for by in 0..41u32 {
                for bx in 0..41u32 {
                    let xs: Vec<u32> = (0..8)
                        .map(|k| (bx * 8 + k).wrapping_sub(offset))
                        .filter(|&x| x < 320)
                        .collect();
                    let ys: Vec<u32> = (0..8)
                        .map(|k| (by * 8 + k).wrapping_sub(offset))
                        .filter(|&y| y < 320)
                        .collect();
                    if xs.is_empty() || ys.is_empty() {
                        continue;
                    }
                    let n = (xs.len() * ys.len()) as u32;
                    let sum: u32 = ys
                        .iter()
                        .flat_map(|&y| xs.iter().map(move |&x| (x, y)))
                        .map(|(x, y)| base.y[(y * 320 + x) as usize] as u32)
                        .sum();
                    for &y in &ys {
                        for &x in &xs {
                            blocky.y[(y * 320 + x) as usize] = (sum / n) as u8;
                        }
                    }
                }
            }
            let f = fov(320, 320);
            let clean = measure(&base.view(), &f, &cfg(1)).blockiness;
            let b = measure(&blocky.view(), &f, &cfg(1)).blockiness;
            assert!(clean < 1.15, "no grid: {clean}");
            assert!(b > 3.0, "offset {offset}: {b}");
        }
    }

    /// Multi-octave blocky value noise: random steps at every scale from 1 to 256 px (a
    /// structure function growing as a power of the lag, as in photographs of textured
    /// surfaces), its x axis stretched by `stretch` (> 1: anisotropic by the same factor
    /// at every scale, as grass or bark), then smeared by a horizontal box of `smear` px
    /// (1: none).
    fn octave_texture(w: u32, h: u32, stretch: f32, smear: usize) -> I420Image {
        // splitmix64 of the cell's (column, row, octave): independent values per cell.
        let hash = |i: i64, j: i64, o: u32| {
            let key = (i as u64 & 0x1F_FFFF) | (j as u64 & 0x1F_FFFF) << 21 | (o as u64) << 42;
            let mut v = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
            v = (v ^ (v >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            v = (v ^ (v >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            v ^= v >> 31;
            (v >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let mut plain = vec![0f32; (w * h) as usize];
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f32 / stretch, y as f32);
                let mut v = 0.0;
                for o in 0..9u32 {
                    let cell = (1u32 << o) as f32;
                    // Each octave's grid at its own phase: no cell edge shared by all.
                    let phase = (o as f32 * 0.618_034).fract() * cell;
                    let (u, t) = ((fx + phase) / cell, (fy + 1.7 * phase) / cell);
                    let (i, j) = (u.floor() as i64, t.floor() as i64);
                    v += hash(i, j, o) * cell.sqrt();
                }
                plain[(y * w + x) as usize] = 2.0 * v;
            }
        }
        let mut img = I420Image::new(w, h);
        for y in 0..h as usize {
            for x in 0..w as usize {
                let row = &plain[y * w as usize..(y + 1) * w as usize];
                let lo = x.saturating_sub(smear / 2);
                let hi = (lo + smear).min(w as usize);
                let v = row[lo..hi].iter().sum::<f32>() / (hi - lo) as f32;
                img.y[y * w as usize + x] = (128.0 + v).clamp(16.0, 235.0) as u8;
            }
        }
        img
    }

    #[test]
    fn isotropy_tells_a_smear_from_texture_that_is_anisotropic_at_every_scale() {
        let (w, h) = (320u32, 320u32);
        let f = fov(w, h);
        let iso = |img: &I420Image| measure(&img.view(), &f, &cfg(1)).isotropy;
        let plain = iso(&octave_texture(w, h, 1.0, 1));
        let grain = iso(&octave_texture(w, h, 3.0, 1));
        let smeared = iso(&octave_texture(w, h, 1.0, 9));
        let smeared_more = iso(&octave_texture(w, h, 1.0, 21));
        assert!(plain > 0.8, "isotropic texture {plain}");
        // Stretched 3× along x: the plain gradient balance would read about 1/3 here.
        assert!(grain > 0.75, "texture anisotropic at every scale {grain}");
        assert!(smeared < 0.5, "9 px smear {smeared}");
        assert!(
            smeared_more < smeared,
            "21 px {smeared_more} vs 9 px {smeared}"
        );
        let cfg = ScoringConfig::default();
        let motion = |i: f32| {
            let m = Measures {
                sharpness: 0.6,
                isotropy: i,
                mean_luma: 105.0,
                ..Measures::default()
            };
            artifacts(&m, &cfg, None)[Artifact::Blur.index()]
        };
        assert!(motion(grain) < 0.1, "grain {}", motion(grain));
        assert!(motion(smeared_more) > 0.5, "21 px {}", motion(smeared_more));
    }

    #[test]
    fn the_mask_in_runs_sums_what_the_direct_3x3_mask_does() {
        // A block of 601 columns: two whole runs and an odd remainder.
        let img = smooth_plus_noise(700, 3, 9.0);
        let row = |r: usize| &img.y[r * 700..(r + 1) * 700];
        let rows = [row(0), row(1), row(2)];
        let (x0, x1) = (41, 642);
        let p = |r: usize, x: usize| rows[r][x] as i64;
        let (mut e, mut l, mut n) = (0u64, 0u64, 0u32);
        for x in (x0..x1).step_by(2) {
            let resp = p(0, x - 1) - 2 * p(0, x) + p(0, x + 1) - 2 * p(1, x - 1) + 4 * p(1, x)
                - 2 * p(1, x + 1)
                + p(2, x - 1)
                - 2 * p(2, x)
                + p(2, x + 1);
            (e, l, n) = (e + (resp * resp) as u64, l + p(1, x) as u64, n + 1);
        }
        assert!(e > 0 && n == 301);
        let mut scratch = ([0i16; NOISE_RUN + 2], [0u32; NOISE_RUN]);
        let got = mask_block(rows, x0, x1, (&mut scratch.0, &mut scratch.1));
        assert_eq!(got, (e, l, n));
    }

    #[test]
    fn the_wide_and_the_portable_noise_estimates_agree_to_the_bit() {
        // On a CPU without AVX2 only the portable path exists.
        let (w, h) = (642u32, 410u32);
        let f = fov(w, h);
        let noisy = smooth_plus_noise(w, h, 6.0);
        let portable = noise_sigma_grid(&noisy.view(), &f);
        assert!(portable > 3.0, "{portable}");
        assert_eq!(noise_sigma(&noisy.view(), &f), portable);
    }

    /// The split kernel (portable and AVX2) sums exactly what the strided loop does, for
    /// FOVs of either parity and offset, each row step, and a row of the widest it takes.
    #[test]
    fn the_split_and_the_strided_sharpness_sums_agree_to_the_bit() {
        let cases = [
            (642u32, 410u32, 0u32, 0u32),
            (517, 333, 3, 5),
            (3200, 120, 1, 2),
        ];
        for (w, h, dx, dy) in cases {
            let img = smooth_plus_noise(w + dx, h + dy, 9.0);
            let frame = img.view();
            let f = Fov::new(Rect::new(dx, dy, w, h), FovShape::Rect, &[], w + dx, h + dy);
            let crop = frame.crop(f.rect);
            let inner = f.inner();
            let span = (inner.x as usize + 3, inner.right() as usize - 3);
            let rows = (inner.y + 3, inner.bottom());
            let samples = (span.1 - span.0).div_ceil(2);
            assert!(samples <= SPLIT_N || w == 3200, "{w}: {samples}");
            for step in 1..=3 {
                let strided = strided_sums(&crop, rows, span, COARSE / 2, step);
                assert!(strided.1[0] > 0 && strided.0[0][3] > 0, "{w}x{h}");
                assert_eq!(sharpness_sums(&crop, rows, span, COARSE / 2, step), strided);
                if samples <= SPLIT_N {
                    assert_eq!(
                        split_sums(&crop, rows, span, step),
                        strided,
                        "{w}x{h} step {step}"
                    );
                }
            }
        }
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
        let cfg = ScoringConfig::default();
        let a = artifacts(&m, &cfg, None);
        let (over, glare) = (a[Artifact::Overexposed.index()], a[Artifact::Glare.index()]);
        assert!(over > 0.7, "half the frame clipped: {a:?}");
        assert!(
            glare < cfg.reason_threshold && glare < over / 2.0,
            "over-exposure is not glare: {a:?}"
        );
        let small = Measures {
            specular_fraction: 0.05,
            clipped_fraction: 0.05,
            ..m
        };
        let a = artifacts(&small, &cfg, None);
        assert!(a[Artifact::Glare.index()] > 0.85, "{a:?}");
        assert_eq!(a[Artifact::Overexposed.index()], 0.0, "{a:?}");
    }

    #[test]
    fn soft_curves_start_at_zero_halve_at_the_second_point_and_keep_ranking() {
        assert_eq!(soft(3.0, 4.0, 10.0), 0.0);
        assert_eq!(soft(4.0, 4.0, 10.0), 0.0);
        assert!((soft(10.0, 4.0, 10.0) - 0.5).abs() < 1e-6);
        assert!((soft(16.0, 4.0, 10.0) - 0.75).abs() < 1e-6);
        // Falling measures (mean luma): 0 at or above 80, 0.5 at 60.
        assert_eq!(soft(90.0, 80.0, 60.0), 0.0);
        assert!((soft(60.0, 80.0, 60.0) - 0.5).abs() < 1e-6);
        assert!(soft(20.0, 80.0, 60.0) > soft(40.0, 80.0, 60.0));
        // Bad and worse never tie, as a ramp clamped at 1 would.
        let (bad, worse) = (soft(30.0, 4.0, 10.0), soft(40.0, 4.0, 10.0));
        assert!(bad < worse && worse < 1.0, "{bad} {worse}");
    }

    #[test]
    fn each_exposure_and_noise_artifact_reads_as_its_severity_scale() {
        // The points are set so that artifact ≈ severity of the real-image set's scale
        // (models/realset/compose.py): e.g. added noise σ 10 ≈ 0.49, 24 ≈ 0.80 (measured
        // σ 9.7 and 20.4 on its validation split).
        let cfg = ScoringConfig::default();
        let base = Measures {
            sharpness: 0.6,
            isotropy: 0.8,
            mean_luma: 105.0,
            noise_sigma: 1.4,
            blockiness: 1.02,
            cast: -40.0,
            ..Measures::default()
        };
        assert!(
            artifacts(&base, &cfg, None).iter().all(|a| *a < 0.02),
            "clean"
        );
        #[rustfmt::skip]
        let cases = [
            ("noise σ 9.7", Measures { noise_sigma: 9.7, ..base }, Artifact::Noise, 0.49),
            ("noise σ 20.4", Measures { noise_sigma: 20.4, ..base }, Artifact::Noise, 0.80),
            ("mean luma 47", Measures { mean_luma: 47.0, ..base }, Artifact::Dark, 0.65),
            ("mean luma 27", Measures { mean_luma: 27.0, ..base }, Artifact::Dark, 0.88),
            ("blockiness 2.44", Measures { blockiness: 2.44, ..base }, Artifact::Noise, 0.55),
            ("blockiness 4.86", Measures { blockiness: 4.86, ..base }, Artifact::Noise, 0.85),
        ];
        for (what, m, k, sev) in cases {
            let a = artifacts(&m, &cfg, None)[k.index()];
            assert!((a - sev).abs() < 0.06, "{what}: {a} vs severity {sev}");
        }
    }

    #[test]
    fn a_full_range_frame_measures_as_its_limited_range_twin() {
        // The same picture from a card that sends full-range codes (jpegdec, many UVC
        // cards): the measures are reported in limited-range codes, so they match.
        let (w, h) = (320u32, 320u32);
        let mut limited = smooth_plus_noise(w, h, 6.0);
        for (i, v) in limited.u.iter_mut().enumerate() {
            *v = 110 + (i % 7) as u8;
        }
        for (i, v) in limited.v.iter_mut().enumerate() {
            *v = 150 + (i % 5) as u8;
        }
        // A glare blob, colourless and clipped, and a dark corner.
        for y in 100..140 {
            for x in 100..140 {
                limited.y[(y * w + x) as usize] = 240;
                limited.u[((y / 2) * (w / 2) + x / 2) as usize] = 128;
                limited.v[((y / 2) * (w / 2) + x / 2) as usize] = 128;
            }
        }
        for y in 0..60 {
            for x in 0..60 {
                limited.y[(y * w + x) as usize] = 20;
            }
        }
        let mut full = limited.clone();
        full.colour.full_range = true;
        let luma = |y: u8| {
            ((y as f32 - 16.0) * 255.0 / 219.0)
                .round()
                .clamp(0.0, 255.0) as u8
        };
        let chroma = |c: u8| (128.0 + (c as f32 - 128.0) * 255.0 / 224.0).round() as u8;
        full.y.iter_mut().for_each(|v| *v = luma(*v));
        full.u.iter_mut().for_each(|v| *v = chroma(*v));
        full.v.iter_mut().for_each(|v| *v = chroma(*v));
        let f = fov(w, h);
        let (a, b) = (
            measure(&limited.view(), &f, &cfg(1)),
            measure(&full.view(), &f, &cfg(1)),
        );
        let close = |x: f32, y: f32, tol: f32| (x - y).abs() <= tol;
        assert!(close(a.mean_luma, b.mean_luma, 0.5), "{a:?}\n{b:?}");
        assert!(close(a.cast, b.cast, 0.5), "{a:?}\n{b:?}");
        assert!(
            close(a.noise_sigma, b.noise_sigma, 0.1 * a.noise_sigma),
            "{a:?}\n{b:?}"
        );
        assert!(
            close(a.dark_fraction, b.dark_fraction, 0.002),
            "{a:?}\n{b:?}"
        );
        assert!(
            close(a.clipped_fraction, b.clipped_fraction, 0.002),
            "{a:?}\n{b:?}"
        );
        assert!(a.specular_fraction > 0.01, "{a:?}");
        assert!(
            close(a.specular_fraction, b.specular_fraction, 0.002),
            "{a:?}\n{b:?}"
        );
        assert!(close(a.sharpness, b.sharpness, 0.01), "{a:?}\n{b:?}");
        // Read as limited range, the full-range frame has 16 % more contrast and noise.
        let mut misread = full.clone();
        misread.colour.full_range = false;
        let c = measure(&misread.view(), &f, &cfg(1));
        assert!(c.noise_sigma > 1.1 * a.noise_sigma, "{c:?}");
    }
}
