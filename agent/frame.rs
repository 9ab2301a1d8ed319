//! Frames as the agent sees them: planar I420 (Y, then U and V at half resolution).
//!
//! Capture hands the scorer refcounted GStreamer buffers; everything downstream reads
//! them through [`I420View`], which carries strides so that padded rows from real
//! capture cards are respected. [`I420Image`] is the owned form used by the phantom
//! generator, the offline `score` command and tests.
//!
//! Both carry the frame's [`Colour`]: how its YCbCr codes map to RGB, from the caps'
//! colorimetry (matrix BT.601, BT.709 or BT.2020; limited 16–235 or full 0–255 range).
//! Every conversion to RGB — the datalake JPEG, the web preview, the model's input —
//! honours it: GStreamer marks HD raw video BT.709, and `jpegdec` (MJPEG capture cards)
//! hands out full-range BT.601, so one fixed matrix gets exactly those sources wrong.

/// A rectangle in pixel coordinates (x, y = top-left corner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    pub const fn new(x: u32, y: u32, width: u32, height: u32) -> Self {
        Rect {
            x,
            y,
            width,
            height,
        }
    }
    /// `x + width`, saturating: geometry comes from config files and must never wrap
    /// (a wrapped mask would silently cover nothing).
    pub fn right(&self) -> u32 {
        self.x.saturating_add(self.width)
    }
    /// `y + height`, saturating.
    pub fn bottom(&self) -> u32 {
        self.y.saturating_add(self.height)
    }
    /// Whether `x + width` and `y + height` fit in a u32 (config validation refuses others).
    pub fn fits_u32(&self) -> bool {
        self.x.checked_add(self.width).is_some() && self.y.checked_add(self.height).is_some()
    }
    /// Not empty and entirely inside a `width` × `height` frame: safe to crop.
    pub fn inside_frame(&self, width: u32, height: u32) -> bool {
        !self.is_empty() && self.right() <= width && self.bottom() <= height
    }
    /// The part of `self` inside `other` (may be empty).
    pub fn intersect(&self, other: &Rect) -> Rect {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = self.right().min(other.right());
        let y1 = self.bottom().min(other.bottom());
        if x1 <= x0 || y1 <= y0 {
            Rect::new(x0, y0, 0, 0)
        } else {
            Rect::new(x0, y0, x1 - x0, y1 - y0)
        }
    }
    pub fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }
    /// Round to even coordinates and sizes so that I420 chroma planes crop cleanly.
    pub fn even(&self) -> Rect {
        let x = self.x & !1;
        let y = self.y & !1;
        Rect::new(x, y, (self.right() - x) & !1, (self.bottom() - y) & !1)
    }
    pub fn contains(&self, x: u32, y: u32) -> bool {
        x >= self.x && x < self.right() && y >= self.y && y < self.bottom()
    }
}

/// The YCbCr → RGB matrix of a frame (ITU-R BT.601, BT.709 or BT.2020 luma weights).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Matrix {
    #[default]
    Bt601,
    Bt709,
    Bt2020,
}

impl Matrix {
    /// The luma weights (Kr, Kb).
    fn weights(self) -> (f64, f64) {
        match self {
            Matrix::Bt601 => (0.299, 0.114),
            Matrix::Bt709 => (0.2126, 0.0722),
            Matrix::Bt2020 => (0.2627, 0.0593),
        }
    }
}

/// How a frame's codes map to RGB: its matrix and whether it uses the full 0–255 range
/// (JPEG, `jpegdec`) or the limited one (luma 16–235, chroma 16–240: broadcast video).
/// The default, BT.601 limited range, is what [`rgb_to_yuv`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Colour {
    pub matrix: Matrix,
    pub full_range: bool,
}

impl Colour {
    pub const BT601: Colour = Colour {
        matrix: Matrix::Bt601,
        full_range: false,
    };

    /// Fixed-point conversion coefficients (see [`RgbCoeffs`]).
    pub fn coeffs(self) -> RgbCoeffs {
        let (kr, kb) = self.matrix.weights();
        let kg = 1.0 - kr - kb;
        let (ys, cs, y0) = if self.full_range {
            (1.0, 1.0, 0)
        } else {
            (255.0 / 219.0, 255.0 / 224.0, 16)
        };
        let f = |x: f64| (x * (1 << RgbCoeffs::SHIFT) as f64).round() as i32;
        RgbCoeffs {
            y0,
            y: f(ys),
            r_v: f(cs * 2.0 * (1.0 - kr)),
            g_u: f(cs * 2.0 * kb * (1.0 - kb) / kg),
            g_v: f(cs * 2.0 * kr * (1.0 - kr) / kg),
            b_u: f(cs * 2.0 * (1.0 - kb)),
        }
    }

    /// Luma code `y` of this range as a limited-range code (16 black, 235 white), the
    /// scale the classical measures and their thresholds use.
    pub fn limited_luma(self, y: f32) -> f32 {
        if self.full_range {
            16.0 + y * (219.0 / 255.0)
        } else {
            y
        }
    }

    /// The inverse of [`Colour::limited_luma`]: a limited-range luma level in this range.
    pub fn luma_level(self, limited: u8) -> u8 {
        if self.full_range {
            ((limited as f32 - 16.0) * (255.0 / 219.0))
                .round()
                .clamp(0.0, 255.0) as u8
        } else {
            limited
        }
    }

    /// Scale of a luma difference (or σ) of this range in limited-range codes.
    pub fn luma_scale(self) -> f32 {
        if self.full_range {
            219.0 / 255.0
        } else {
            1.0
        }
    }

    /// Scale of a chroma difference of this range in limited-range codes.
    pub fn chroma_scale(self) -> f32 {
        if self.full_range {
            224.0 / 255.0
        } else {
            1.0
        }
    }
}

/// YCbCr → RGB in fixed point for one [`Colour`]: R = y·(Y − y0) + r_v·(V − 128),
/// G = y·(Y − y0) − g_u·(U − 128) − g_v·(V − 128), B = y·(Y − y0) + b_u·(U − 128), each
/// scaled by 2^SHIFT, rounded and clamped. Computed once per frame, not per pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RgbCoeffs {
    y0: i32,
    y: i32,
    r_v: i32,
    g_u: i32,
    g_v: i32,
    b_u: i32,
}

impl RgbCoeffs {
    const SHIFT: u32 = 14;

    #[inline]
    pub fn rgb(&self, y: u8, u: u8, v: u8) -> [u8; 3] {
        let c = (y as i32 - self.y0) * self.y + (1 << (Self::SHIFT - 1));
        let (d, e) = (u as i32 - 128, v as i32 - 128);
        let r = (c + self.r_v * e) >> Self::SHIFT;
        let g = (c - self.g_u * d - self.g_v * e) >> Self::SHIFT;
        let b = (c + self.b_u * d) >> Self::SHIFT;
        [
            r.clamp(0, 255) as u8,
            g.clamp(0, 255) as u8,
            b.clamp(0, 255) as u8,
        ]
    }
}

/// A borrowed 4:2:0 frame: planar I420, or NV12 (one plane of interleaved Cb, Cr), read
/// in place either way. Plane slices start at the first pixel of the frame; for NV12, `u`
/// starts at the first Cb and `v` one byte on, at the first Cr, and `uv_step` is 2.
#[derive(Clone, Copy)]
pub struct I420View<'a> {
    pub width: u32,
    pub height: u32,
    pub y: &'a [u8],
    pub u: &'a [u8],
    pub v: &'a [u8],
    pub y_stride: usize,
    pub uv_stride: usize,
    /// Bytes from one chroma sample to the next in a row: 1 (I420) or 2 (NV12).
    pub uv_step: usize,
    /// How the codes map to RGB (the caps' colorimetry).
    pub colour: Colour,
}

/// One row of chroma: chroma column `cx`'s Cb and Cr are `u[cx * step]`, `v[cx * step]`.
#[derive(Clone, Copy)]
pub struct ChromaRow<'a> {
    pub u: &'a [u8],
    pub v: &'a [u8],
    pub step: usize,
}

impl ChromaRow<'_> {
    /// (Cb, Cr) of chroma column `cx` (the pixels `2 cx` and `2 cx + 1`).
    #[inline]
    pub fn at(&self, cx: usize) -> (u8, u8) {
        (self.u[cx * self.step], self.v[cx * self.step])
    }
}

impl<'a> I420View<'a> {
    /// Luma value at (x, y).
    #[inline]
    pub fn luma(&self, x: u32, y: u32) -> u8 {
        self.y[y as usize * self.y_stride + x as usize]
    }
    /// One luma row.
    #[inline]
    pub fn y_row(&self, row: u32) -> &'a [u8] {
        let s = row as usize * self.y_stride;
        &self.y[s..s + self.width as usize]
    }
    /// Chroma row `row` (of `height / 2`).
    #[inline]
    pub fn chroma_row(&self, row: u32) -> ChromaRow<'a> {
        let s = row as usize * self.uv_stride;
        let len = (self.width.div_ceil(2) as usize - 1) * self.uv_step + 1;
        ChromaRow {
            u: &self.u[s..s + len],
            v: &self.v[s..s + len],
            step: self.uv_step,
        }
    }
    /// A view of a sub-rectangle; `r` must lie inside the frame and have even x and y
    /// (callers check with [`Rect::inside_frame`]; [`crate::fov::FovLocator`] never hands
    /// out a FOV that does not).
    pub fn crop(&self, r: Rect) -> I420View<'a> {
        assert!(
            r.inside_frame(self.width, self.height),
            "crop {r:?} outside the {}x{} frame",
            self.width,
            self.height
        );
        debug_assert!(r.x.is_multiple_of(2) && r.y.is_multiple_of(2));
        let yo = r.y as usize * self.y_stride + r.x as usize;
        let co = (r.y / 2) as usize * self.uv_stride + (r.x / 2) as usize * self.uv_step;
        I420View {
            width: r.width,
            height: r.height,
            y: &self.y[yo..],
            u: &self.u[co..],
            v: &self.v[co..],
            y_stride: self.y_stride,
            uv_stride: self.uv_stride,
            uv_step: self.uv_step,
            colour: self.colour,
        }
    }
    /// Copy into an owned, tightly packed planar image (keeping its colour).
    pub fn to_owned_image(&self) -> I420Image {
        let mut img = I420Image::new(self.width, self.height);
        img.colour = self.colour;
        let cw = self.width.div_ceil(2) as usize;
        for r in 0..self.height {
            let w = self.width as usize;
            img.y[r as usize * w..(r as usize + 1) * w].copy_from_slice(self.y_row(r));
        }
        for r in 0..self.height.div_ceil(2) {
            let d = r as usize * cw;
            let c = self.chroma_row(r);
            if c.step == 1 {
                img.u[d..d + cw].copy_from_slice(&c.u[..cw]);
                img.v[d..d + cw].copy_from_slice(&c.v[..cw]);
            } else {
                for cx in 0..cw {
                    (img.u[d + cx], img.v[d + cx]) = c.at(cx);
                }
            }
        }
        img
    }

    /// Convert to packed RGB8 with the frame's own [`Colour`] (chroma of each 2 × 2 block
    /// shared by its four pixels).
    pub fn to_rgb(&self) -> Vec<u8> {
        let (w, h) = (self.width as usize, self.height as usize);
        let k = self.colour.coeffs();
        let mut out = vec![0u8; w * h * 3];
        for row in 0..h {
            let yr = self.y_row(row as u32);
            let c = self.chroma_row(row as u32 / 2);
            let o = &mut out[row * w * 3..(row + 1) * w * 3];
            for x in 0..w {
                let (u, v) = c.at(x / 2);
                let [r, g, b] = k.rgb(yr[x], u, v);
                o[x * 3] = r;
                o[x * 3 + 1] = g;
                o[x * 3 + 2] = b;
            }
        }
        out
    }
}

/// BT.601 limited-range YCbCr → RGB (the inverse of [`rgb_to_yuv`]). Frames of other
/// colorimetry convert with their own [`Colour::coeffs`].
#[inline]
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    BT601_COEFFS.rgb(y, u, v)
}

static BT601_COEFFS: std::sync::LazyLock<RgbCoeffs> =
    std::sync::LazyLock::new(|| Colour::BT601.coeffs());

/// RGB → BT.601 limited-range YCbCr, integer arithmetic.
#[inline]
pub fn rgb_to_yuv(r: u8, g: u8, b: u8) -> [u8; 3] {
    let (r, g, b) = (r as i32, g as i32, b as i32);
    let y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16;
    let u = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128;
    let v = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128;
    [
        y.clamp(0, 255) as u8,
        u.clamp(0, 255) as u8,
        v.clamp(0, 255) as u8,
    ]
}

/// An owned, tightly packed I420 image (strides = width and ceil(width/2)).
#[derive(Clone, Debug, PartialEq)]
pub struct I420Image {
    pub width: u32,
    pub height: u32,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
    /// BT.601 limited range unless set otherwise ([`I420Image::from_rgb`] produces that).
    pub colour: Colour,
}

impl I420Image {
    /// A black frame (Y=16, U=V=128).
    pub fn new(width: u32, height: u32) -> Self {
        let (w, h) = (width as usize, height as usize);
        let c = width.div_ceil(2) as usize * height.div_ceil(2) as usize;
        I420Image {
            width,
            height,
            y: vec![16; w * h],
            u: vec![128; c],
            v: vec![128; c],
            colour: Colour::BT601,
        }
    }
    pub fn view(&self) -> I420View<'_> {
        I420View {
            width: self.width,
            height: self.height,
            y: &self.y,
            u: &self.u,
            v: &self.v,
            y_stride: self.width as usize,
            uv_stride: self.width.div_ceil(2) as usize,
            uv_step: 1,
            colour: self.colour,
        }
    }
    /// Convert packed RGB8 to I420 (chroma averaged over 2×2 blocks).
    pub fn from_rgb(width: u32, height: u32, rgb: &[u8]) -> Self {
        let mut img = I420Image::new(width, height);
        let (w, h) = (width as usize, height as usize);
        let cw = width.div_ceil(2) as usize;
        for row in 0..h {
            for x in 0..w {
                let p = &rgb[(row * w + x) * 3..(row * w + x) * 3 + 3];
                img.y[row * w + x] = rgb_to_yuv(p[0], p[1], p[2])[0];
            }
        }
        for cy in 0..height.div_ceil(2) as usize {
            for cx in 0..cw {
                let (mut su, mut sv, mut n) = (0u32, 0u32, 0u32);
                for dy in 0..2 {
                    for dx in 0..2 {
                        let (x, y) = (cx * 2 + dx, cy * 2 + dy);
                        if x < w && y < h {
                            let p = &rgb[(y * w + x) * 3..(y * w + x) * 3 + 3];
                            let [_, u, v] = rgb_to_yuv(p[0], p[1], p[2]);
                            su += u as u32;
                            sv += v as u32;
                            n += 1;
                        }
                    }
                }
                img.u[cy * cw + cx] = ((su + n / 2) / n) as u8;
                img.v[cy * cw + cx] = ((sv + n / 2) / n) as u8;
            }
        }
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_roundtrip_is_close() {
        for &(r, g, b) in &[
            (0u8, 0u8, 0u8),
            (255, 255, 255),
            (150, 90, 60),
            (40, 120, 130),
        ] {
            let [y, u, v] = rgb_to_yuv(r, g, b);
            let [r2, g2, b2] = yuv_to_rgb(y, u, v);
            assert!((r as i32 - r2 as i32).abs() <= 3, "{r} {r2}");
            assert!((g as i32 - g2 as i32).abs() <= 3, "{g} {g2}");
            assert!((b as i32 - b2 as i32).abs() <= 3, "{b} {b2}");
        }
    }

    #[test]
    fn each_colour_converts_by_its_standard() {
        let near = |got: [u8; 3], want: [f64; 3]| {
            got.iter()
                .zip(want)
                .all(|(&g, w)| (g as f64 - w.clamp(0.0, 255.0)).abs() <= 0.6)
        };
        // Y 200, Cb 110, Cr 106 by each standard's equations.
        let cases = [
            (Colour::BT601, [179.14, 239.19, 177.94]),
            (
                Colour {
                    matrix: Matrix::Bt709,
                    full_range: false,
                },
                [174.81, 229.81, 176.23],
            ),
            (
                Colour {
                    matrix: Matrix::Bt601,
                    full_range: true,
                },
                [169.16, 221.91, 168.10],
            ),
        ];
        for (c, want) in cases {
            let got = c.coeffs().rgb(200, 110, 106);
            assert!(near(got, want), "{c:?}: {got:?} vs {want:?}");
        }
        // Black and white of each range.
        let full = Colour {
            matrix: Matrix::Bt709,
            full_range: true,
        };
        assert_eq!(full.coeffs().rgb(0, 128, 128), [0, 0, 0]);
        assert_eq!(full.coeffs().rgb(255, 128, 128), [255, 255, 255]);
        assert_eq!(Colour::BT601.coeffs().rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(Colour::BT601.coeffs().rgb(235, 128, 128), [255, 255, 255]);
        assert_eq!(full.luma_level(16), 0);
        assert_eq!(full.luma_level(235), 255);
        assert!((full.limited_luma(255.0) - 235.0).abs() < 1e-3);
    }

    #[test]
    fn crop_view_reads_the_right_pixels() {
        let mut img = I420Image::new(8, 8);
        img.y[3 * 8 + 4] = 200;
        let v = img.view().crop(Rect::new(2, 2, 4, 4));
        assert_eq!(v.luma(2, 1), 200);
        assert_eq!(v.to_owned_image().y.len(), 16);
    }

    #[test]
    fn rect_intersection() {
        let a = Rect::new(0, 0, 10, 10);
        assert_eq!(a.intersect(&Rect::new(5, 5, 10, 10)), Rect::new(5, 5, 5, 5));
        assert!(a.intersect(&Rect::new(20, 20, 1, 1)).is_empty());
        assert_eq!(Rect::new(3, 3, 5, 5).even(), Rect::new(2, 2, 6, 6));
    }

    #[test]
    fn geometry_from_input_saturates_instead_of_wrapping() {
        // Issue 12 item 3: `x + width` wrapped to 0 and the mask covered nothing.
        let huge = Rect::new(1, 0, u32::MAX, 200);
        assert_eq!(huge.right(), u32::MAX);
        assert!(!huge.fits_u32());
        let frame = Rect::new(0, 0, 1280, 720);
        assert_eq!(huge.intersect(&frame), Rect::new(1, 0, 1279, 200));
        assert!(huge.contains(1000, 100));
        assert!(!Rect::new(5000, 5000, 100, 100).inside_frame(1280, 720));
        assert!(Rect::new(0, 0, 1280, 720).inside_frame(1280, 720));
        assert!(!Rect::new(0, 0, 0, 720).inside_frame(1280, 720));
    }
}
