//! Preparing the model input: crop to the field of view, downscale, then convert colour.
//!
//! Scaling the three I420 planes first and converting only the small result to RGB is
//! about 2.5× cheaper than converting the full-resolution frame first (measured for
//! 1080p → 224²). The planes are resized with `fast_image_resize` (SIMD convolution with
//! a box kernel widened to the scale factor: area averaging, which antialiases). All buffers are
//! kept between frames; nothing is allocated per frame.
//!
//! With a detail channel in the contract ([`DetailSpec`]), channel 3 is a mosaic of luma
//! tiles copied from the frame at native resolution, so that mild defocus (σ ≈ 1–2 px at
//! 1080p) stays visible to the model. Copying costs a few microseconds.
//!
//! The same pass computes a 64-bit difference hash of the small luma image, which the
//! selector uses for near-duplicate suppression.

use fast_image_resize as fr;

use crate::frame::{Colour, I420View, Rect, RgbCoeffs};
use crate::score::model::{DetailSpec, InputSpec, Layout};

pub struct Preprocessor {
    spec: InputSpec,
    resizer: fr::Resizer,
    y: fr::images::Image<'static>,
    u: fr::images::Image<'static>,
    v: fr::images::Image<'static>,
    /// NV12 frames: their interleaved chroma, resized as pairs (`u`, `v` then unused).
    uv: fr::images::Image<'static>,
    /// The normalised model input.
    pub input: Vec<f32>,
    /// Difference hash of the last frame.
    pub dhash: u64,
}

impl Preprocessor {
    pub fn new(spec: &InputSpec) -> Preprocessor {
        let (h, w) = spec.size();
        let img = || fr::images::Image::new(w, h, fr::PixelType::U8);
        Preprocessor {
            spec: spec.clone(),
            resizer: fr::Resizer::new(),
            y: img(),
            u: img(),
            v: img(),
            uv: fr::images::Image::new(w, h, fr::PixelType::U8x2),
            input: vec![0.0; (w * h) as usize * spec.channels()],
            dhash: 0,
        }
    }

    /// Fill [`Preprocessor::input`] from the `fov` rectangle of `frame`.
    pub fn run(&mut self, frame: &I420View, fov: Rect) {
        let mut input = std::mem::take(&mut self.input);
        self.run_into(frame, fov, &mut input);
        self.input = input;
    }

    /// Fill `input` (the model's own input tensor on the score thread: no copy between
    /// the two) from the `fov` rectangle of `frame`; `input` is as long as
    /// [`Preprocessor::input`].
    pub fn run_into(&mut self, frame: &I420View, fov: Rect, input: &mut [f32]) {
        let (h, w) = self.spec.size();
        let len = (w * h) as usize * self.spec.channels();
        assert_eq!(input.len(), len, "the model input's length");
        let ch = frame.height.div_ceil(2);
        let c = Rect::new(fov.x / 2, fov.y / 2, fov.width / 2, fov.height / 2);
        let interleaved = frame.uv_step == 2;
        let r = &mut self.resizer;
        resize_plane(r, frame.y, frame.y_stride, frame.height, fov, &mut self.y);
        if interleaved {
            // NV12: one plane of (Cb, Cr) pairs, resized as two-channel pixels.
            resize_plane(r, frame.u, frame.uv_stride, ch, c, &mut self.uv);
        } else {
            resize_plane(r, frame.u, frame.uv_stride, ch, c, &mut self.u);
            resize_plane(r, frame.v, frame.uv_stride, ch, c, &mut self.v);
        }
        self.normalise(frame.colour, interleaved, input);
        if let Some(d) = &self.spec.detail {
            let (h, w) = self.spec.size();
            let n = (w * h) as usize;
            detail_mosaic(d, frame, fov, w, h, &mut input[3 * n..4 * n]);
        }
        self.dhash = self.small_luma_hash();
    }

    /// Only [`Preprocessor::dhash`], for a scorer without a model: the luma plane resized
    /// as [`Preprocessor::run_into`] resizes it, no chroma, no colour conversion, no
    /// detail tiles. The hash is the same bits as `run_into`'s.
    pub fn hash_only(&mut self, frame: &I420View, fov: Rect) {
        let (y, stride) = (frame.y, frame.y_stride);
        resize_plane(&mut self.resizer, y, stride, frame.height, fov, &mut self.y);
        self.dhash = self.small_luma_hash();
    }

    /// The difference hash of the resized luma's central 70 %: the FOV's round edge and
    /// vignetting look the same in every frame and would make every view a near-duplicate
    /// of every other.
    fn small_luma_hash(&self) -> u64 {
        let (w, h) = (self.y.width() as usize, self.y.height() as usize);
        let (x0, y0) = (w * 15 / 100, h * 15 / 100);
        dhash(
            &self.y.buffer()[y0 * w + x0..],
            w,
            w * 70 / 100,
            h * 70 / 100,
        )
    }

    /// RGB in the frame's own colour, then scale, mean and std; chroma from `uv` when
    /// `interleaved` (NV12), else from `u` and `v`.
    fn normalise(&self, colour: Colour, interleaved: bool, input: &mut [f32]) {
        let s = &self.spec;
        // Fold scale, mean and std into one multiply-add per channel.
        let mul: [f32; 3] = std::array::from_fn(|c| s.scale / s.std[c]);
        let add: [f32; 3] = std::array::from_fn(|c| -s.mean[c] / s.std[c]);
        let chroma = if interleaved {
            Chroma::Pairs(self.uv.buffer())
        } else {
            Chroma::Planes(self.u.buffer(), self.v.buffer())
        };
        let job = Normalise {
            k: colour.coeffs(),
            mul,
            add,
            y: self.y.buffer(),
            chroma,
            layout: s.layout,
        };
        let n = job.y.len();
        let out = &mut input[..3 * n];
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { normalise_avx2(&job, out) };
        }
        normalise_into(&job, out);
    }
}

/// The small image's chroma: I420's two planes, or NV12's (Cb, Cr) pairs.
enum Chroma<'a> {
    Planes(&'a [u8], &'a [u8]),
    Pairs(&'a [u8]),
}

/// One frame's colour conversion and normalisation (see [`Preprocessor::normalise`]).
struct Normalise<'a> {
    k: RgbCoeffs,
    mul: [f32; 3],
    add: [f32; 3],
    y: &'a [u8],
    chroma: Chroma<'a>,
    layout: Layout,
}

/// [`normalise_into`] compiled for AVX2: the integer conversion runs eight pixels wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn normalise_avx2(job: &Normalise, out: &mut [f32]) {
    normalise_into(job, out)
}

/// Convert and normalise every pixel into `out` (3 × the pixel count, in `job.layout`).
/// Straight runs per channel plane, so the compiler vectorises them (NCHW, the shipped
/// layout); the arithmetic is [`RgbCoeffs::rgb`]'s, so every variant gives the same bits.
#[inline(always)]
fn normalise_into(job: &Normalise, out: &mut [f32]) {
    let n = job.y.len();
    let (k, mul, add) = (&job.k, job.mul, job.add);
    let write =
        |rgb: [u8; 3]| -> [f32; 3] { std::array::from_fn(|c| rgb[c] as f32 * mul[c] + add[c]) };
    match job.layout {
        Layout::Nchw => {
            let (r, rest) = out.split_at_mut(n);
            let (g, b) = rest.split_at_mut(n);
            let planes = r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut());
            match job.chroma {
                Chroma::Planes(u, v) => {
                    let px = job.y.iter().zip(&u[..n]).zip(&v[..n]);
                    for (((r, g), b), ((&y, &u), &v)) in planes.zip(px) {
                        [*r, *g, *b] = write(k.rgb(y, u, v));
                    }
                }
                Chroma::Pairs(uv) => {
                    let px = job.y.iter().zip(uv[..2 * n].chunks_exact(2));
                    for (((r, g), b), (&y, c)) in planes.zip(px) {
                        [*r, *g, *b] = write(k.rgb(y, c[0], c[1]));
                    }
                }
            }
        }
        Layout::Nhwc => {
            for (i, px) in out.chunks_exact_mut(3).enumerate().take(n) {
                let (u, v) = match job.chroma {
                    Chroma::Planes(u, v) => (u[i], v[i]),
                    Chroma::Pairs(uv) => (uv[2 * i], uv[2 * i + 1]),
                };
                px.copy_from_slice(&write(k.rgb(job.y[i], u, v)));
            }
        }
    }
}

/// Area-average the `crop` of one plane (rows `stride` bytes long, `rows` of them) into
/// `dst`, whose pixel type (one byte, or NV12's Cb-Cr pair) says how to read the plane.
fn resize_plane(
    resizer: &mut fr::Resizer,
    plane: &[u8],
    stride: usize,
    rows: u32,
    crop: Rect,
    dst: &mut fr::images::Image,
) {
    let (px, bytes) = match dst.pixel_type() {
        fr::PixelType::U8x2 => (fr::PixelType::U8x2, 2),
        _ => (fr::PixelType::U8, 1),
    };
    // Rows are `stride` long; the source image is declared that wide and cropped.
    let len = stride * rows as usize;
    let src = fr::images::ImageRef::new((stride / bytes) as u32, rows, &plane[..len], px)
        .expect("plane is stride × rows bytes");
    let opts = fr::ResizeOptions::new()
        .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Box))
        .crop(
            crop.x as f64,
            crop.y as f64,
            crop.width as f64,
            crop.height as f64,
        );
    resizer
        .resize(&src, dst, &opts)
        .expect("crop lies inside the frame and pixel types match");
}

/// Top-left corner in the frame of detail tile (row `i`, column `j`), each tile being
/// `tw` × `th`: on a grid centred on the FOV (see [`DetailSpec`]), moved inside the frame.
pub fn detail_tile_origin(
    d: &DetailSpec,
    fov: Rect,
    (frame_w, frame_h): (u32, u32),
    (tw, th): (u32, u32),
    (i, j): (u32, u32),
) -> (u32, u32) {
    let pos = |k: u32| {
        if d.tiles == 1 {
            0.0
        } else {
            k as f32 / (d.tiles - 1) as f32 - 0.5
        }
    };
    let place = |start: u32, size: u32, k: u32, t: u32, limit: u32| {
        let c = start as f32 + size as f32 / 2.0 + pos(k) * d.spread * size as f32;
        ((c - t as f32 / 2.0).round().max(0.0) as u32).min(limit.saturating_sub(t))
    };
    (
        place(fov.x, fov.width, j, tw, frame_w),
        place(fov.y, fov.height, i, th, frame_h),
    )
}

/// Fill `out` (h × w, row-major) with the normalised native-resolution luma tiles.
fn detail_mosaic(d: &DetailSpec, frame: &I420View, fov: Rect, w: u32, h: u32, out: &mut [f32]) {
    let (tw, th) = (w / d.tiles, h / d.tiles);
    let (mul, add) = (d.scale / d.std, -d.mean / d.std);
    // The model was trained on limited-range luma: a full-range frame's codes are mapped
    // (y → 16 + y·219/255), folded into the affine normalisation at no per-pixel cost.
    let c = frame.colour;
    let (mul, add) = (mul * c.luma_scale(), add + mul * c.limited_luma(0.0));
    let (fw, fh) = (frame.width as usize, frame.height as usize);
    for i in 0..d.tiles {
        for j in 0..d.tiles {
            let (x0, y0) =
                detail_tile_origin(d, fov, (frame.width, frame.height), (tw, th), (i, j));
            let (x0, y0, tw, th) = (x0 as usize, y0 as usize, tw as usize, th as usize);
            for r in 0..th {
                let at = (i as usize * th + r) * w as usize + j as usize * tw;
                let dst = &mut out[at..at + tw];
                let row = &frame.y[(y0 + r).min(fh - 1) * frame.y_stride..];
                if x0 + tw <= fw {
                    // The usual case: a straight run the compiler vectorises.
                    for (v, &p) in dst.iter_mut().zip(&row[x0..x0 + tw]) {
                        *v = p as f32 * mul + add;
                    }
                } else {
                    // Only a frame narrower than a tile gets here: repeat its last column.
                    for (c, v) in dst.iter_mut().enumerate() {
                        *v = row[(x0 + c).min(fw - 1)] as f32 * mul + add;
                    }
                }
            }
        }
    }
}

/// 64-bit difference hash of a `w`×`h` window whose rows are `stride` apart: 9×8 block
/// means, one bit per horizontal neighbour pair.
pub fn dhash(luma: &[u8], stride: usize, w: usize, h: usize) -> u64 {
    let mut cells = [0u32; 72];
    let (bw, bh) = (w / 9, h / 8);
    if bw == 0 || bh == 0 {
        return 0;
    }
    for (i, cell) in cells.iter_mut().enumerate() {
        let (cx, cy) = (i % 9, i / 9);
        let mut s = 0u32;
        for y in cy * bh..(cy + 1) * bh {
            let row = &luma[y * stride + cx * bw..y * stride + (cx + 1) * bw];
            s += row.iter().map(|&p| p as u32).sum::<u32>();
        }
        *cell = s;
    }
    let mut hash = 0u64;
    for cy in 0..8 {
        for cx in 0..8 {
            hash = (hash << 1) | (cells[cy * 9 + cx] > cells[cy * 9 + cx + 1]) as u64;
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::I420Image;

    fn spec(layout: Layout) -> InputSpec {
        InputSpec {
            name: "image".into(),
            shape: if layout == Layout::Nchw {
                [1, 3, 16, 16]
            } else {
                [1, 16, 16, 3]
            },
            layout,
            color: "RGB".into(),
            scale: 1.0 / 255.0,
            mean: [0.5, 0.5, 0.5],
            std: [0.5, 0.5, 0.5],
            detail: None,
        }
    }

    #[test]
    fn uniform_frame_gives_uniform_normalised_input() {
        let img = I420Image::from_rgb(64, 48, &[200u8, 100, 50].repeat(64 * 48));
        let mut p = Preprocessor::new(&spec(Layout::Nchw));
        p.run(&img.view(), Rect::new(8, 8, 32, 32));
        let n = 16 * 16;
        let r = p.input[0];
        let g = p.input[n];
        let b = p.input[2 * n];
        assert!((r - (200.0 / 255.0 - 0.5) / 0.5).abs() < 0.03, "{r}");
        assert!((g - (100.0 / 255.0 - 0.5) / 0.5).abs() < 0.03, "{g}");
        assert!((b - (50.0 / 255.0 - 0.5) / 0.5).abs() < 0.03, "{b}");
        assert!(p.input[..n].iter().all(|&x| (x - r).abs() < 1e-6));
    }

    #[test]
    fn crop_selects_the_field_of_view() {
        // Left half black, right half white: cropping the right half gives white only.
        let mut rgb = vec![0u8; 64 * 32 * 3];
        for y in 0..32 {
            for x in 32..64 {
                rgb[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
        let img = I420Image::from_rgb(64, 32, &rgb);
        let mut p = Preprocessor::new(&spec(Layout::Nhwc));
        p.run(&img.view(), Rect::new(32, 0, 32, 32));
        // The filter may reach a source pixel past the crop edge; the rest is white.
        let mean = p.input.iter().sum::<f32>() / p.input.len() as f32;
        assert!(mean > 0.97, "mean {mean}");
        assert!((0..16).all(|y| (1..16).all(|x| p.input[(y * 16 + x) * 3] > 0.95)));
    }

    #[test]
    fn detail_channel_copies_native_resolution_luma_tiles_around_the_fov_centre() {
        // A luma ramp y = x: a tile's values tell which columns it was copied from.
        let (w, h) = (256u32, 128u32);
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        for (i, px) in rgb.chunks_mut(3).enumerate() {
            px.fill((i as u32 % w) as u8);
        }
        let img = I420Image::from_rgb(w, h, &rgb);
        let mut s = spec(Layout::Nchw);
        s.shape = [1, 4, 16, 16];
        s.detail = Some(DetailSpec {
            tiles: 2,
            spread: 0.5,
            scale: 1.0,
            mean: 0.0,
            std: 1.0,
        });
        let fov = Rect::new(64, 0, 128, 128);
        let mut p = Preprocessor::new(&s);
        p.run(&img.view(), fov);
        let d = &p.input[3 * 256..];
        // Tile columns: centres at 128 ∓ 32, 8 px wide → x0 = 92 and 156; native steps of 1.
        let y = |x: u32| img.view().y[x as usize] as f32;
        assert_eq!(
            detail_tile_origin(s.detail.as_ref().unwrap(), fov, (w, h), (8, 8), (0, 1)),
            (156, 28)
        );
        for r in [0usize, 7, 8, 15] {
            assert_eq!(d[r * 16], y(92), "row {r}");
            assert_eq!(d[r * 16 + 7], y(99));
            assert_eq!(d[r * 16 + 8], y(156));
            assert_eq!(d[r * 16 + 15], y(163));
        }
        // The same codes from a full-range card are mapped to the limited range the model
        // was trained on.
        let mut full = img.view();
        full.colour.full_range = true;
        p.run(&full, fov);
        let d = &p.input[3 * 256..];
        let limited = |x: u32| 16.0 + y(x) * 219.0 / 255.0;
        assert!((d[0] - limited(92)).abs() < 1e-3 && (d[15] - limited(163)).abs() < 1e-3);
    }

    #[test]
    fn the_hash_only_path_gives_the_full_paths_hash() {
        let (w, h) = (96u32, 64u32);
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        for (i, px) in rgb.chunks_mut(3).enumerate() {
            let (x, y) = (i as u32 % w, i as u32 / w);
            px.copy_from_slice(&[((x * 5) ^ (y * 3)) as u8, (x * 2) as u8, (y * 7) as u8]);
        }
        let img = I420Image::from_rgb(w, h, &rgb);
        let mut s = spec(Layout::Nchw);
        s.shape = [1, 3, 24, 24];
        // The hash reads the luma plane only, so the chroma layout does not matter.
        for fov in [Rect::new(8, 4, 72, 56), Rect::new(0, 0, 96, 64)] {
            let (mut full, mut hash) = (Preprocessor::new(&s), Preprocessor::new(&s));
            full.run(&img.view(), fov);
            hash.hash_only(&img.view(), fov);
            assert_ne!(full.dhash, 0, "a textured frame hashes to something");
            assert_eq!(hash.dhash, full.dhash, "{fov:?}");
        }
    }

    #[test]
    fn dhash_tells_shifted_content_apart_from_identical() {
        let mut a = vec![0u8; 90 * 80];
        for (i, p) in a.iter_mut().enumerate() {
            *p = ((i % 90) * 7 % 251) as u8 ^ ((i / 90) * 13 % 256) as u8;
        }
        let b = a.clone();
        let mut c = a.clone();
        c.rotate_left(37);
        assert_eq!(dhash(&a, 90, 90, 80), dhash(&b, 90, 90, 80));
        assert!((dhash(&a, 90, 90, 80) ^ dhash(&c, 90, 90, 80)).count_ones() > 8);
    }

    #[test]
    fn every_layout_and_chroma_converts_each_pixel_as_rgb_coeffs_does() {
        // 203 pixels: not a multiple of any vector width. Varied codes, clamping included.
        let n = 203;
        let y: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
        let u: Vec<u8> = (0..n).map(|i| (i * 91 % 256) as u8).collect();
        let v: Vec<u8> = (0..n).map(|i| (255 - i * 13 % 256) as u8).collect();
        let uv: Vec<u8> = u.iter().zip(&v).flat_map(|(&a, &b)| [a, b]).collect();
        let colour = Colour {
            matrix: crate::frame::Matrix::Bt709,
            full_range: false,
        };
        let (mul, add) = ([0.5, 0.25, 2.0], [-1.0, 0.0, 0.5]);
        let want =
            |i: usize, c: usize| colour.coeffs().rgb(y[i], u[i], v[i])[c] as f32 * mul[c] + add[c];
        for layout in [Layout::Nchw, Layout::Nhwc] {
            for chroma in [Chroma::Planes(&u, &v), Chroma::Pairs(&uv)] {
                let job = Normalise {
                    k: colour.coeffs(),
                    mul,
                    add,
                    y: &y,
                    chroma,
                    layout,
                };
                let mut out = vec![f32::NAN; 3 * n];
                normalise_into(&job, &mut out);
                for i in 0..n {
                    for c in 0..3 {
                        let at = if layout == Layout::Nchw {
                            c * n + i
                        } else {
                            3 * i + c
                        };
                        assert_eq!(out[at], want(i, c), "{layout:?} pixel {i} channel {c}");
                    }
                }
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx2") {
                    let mut wide = vec![f32::NAN; 3 * n];
                    // SAFETY: the CPU has AVX2, checked just above.
                    unsafe { normalise_avx2(&job, &mut wide) };
                    assert_eq!(wide, out, "{layout:?}");
                }
            }
        }
    }
}
