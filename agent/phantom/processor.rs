//! Processor-like screen layouts for testing the field-of-view locator.
//!
//! A real video processor does not send the endoscopic image alone: it draws it on a black
//! screen as a circle (often wider than the screen is tall, so clipped by its top and
//! bottom), an octagon or a centred circle, and burns text into the corners (timer,
//! settings, scope serial, patient name and ID) and a status bar along the bottom.
//! [`Layout`] describes such a screen with its ground truth (which pixels are the image,
//! which are text) and renders frames of it under different lighting: dark, only part
//! of the view lit, a dark lumen, a dim rim. Text pixels are drawn only outside the image,
//! at least [`Layout::TEXT_GAP`] pixels from it, as processors do.

use crate::frame::{I420Image, Rect};

/// The shape of the image on the screen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// A circle of radius `r` centred at (`cx`, `cy`), clipped to rows `clip.0..clip.1`.
    Circle {
        cx: f32,
        cy: f32,
        r: f32,
        clip: (u32, u32),
    },
    /// An axis-aligned octagon: `rect` with 45° corners cut `cut` pixels deep.
    Octagon { rect: Rect, cut: u32 },
}

/// How the view is lit in one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lighting {
    /// Normal mucosa, lit everywhere.
    Lit,
    /// The image is black (scope in a dark lumen, light source off); text is still drawn.
    Dark,
    /// Only the left `f` (0..1) of the image's width is lit.
    LeftPart(f32),
    /// Lit, with a black lumen covering the middle.
    DarkLumen,
}

/// A processor screen layout and its ground truth.
#[derive(Debug, Clone)]
pub struct Layout {
    pub width: u32,
    pub height: u32,
    pub shape: Shape,
    /// Boxes in which text glyphs are drawn (only where outside the image).
    pub text: Vec<Rect>,
    /// A status bar (grey background with text), if any.
    pub bar: Option<Rect>,
    /// Luma of the image at its very edge (the vignetted rim); the centre is ~150.
    pub rim_luma: u8,
    /// The border's luma (16 is video black).
    pub black: u8,
}

/// Luma of burned-in text.
pub const TEXT_LUMA: u8 = 235;

impl Layout {
    /// Text is never drawn closer than this to the image.
    pub const TEXT_GAP: f32 = 6.0;

    /// Like a Fujifilm VP-7000 at 1280×1024: a 1240 px circle clipped by rows 4..956, text
    /// in all four corners, a status bar along the bottom.
    pub fn clipped_circle_1280x1024() -> Layout {
        let (w, h) = (1280, 1024);
        Layout {
            width: w,
            height: h,
            shape: Shape::Circle {
                cx: 640.0,
                cy: 480.0,
                r: 620.0,
                clip: (4, 956),
            },
            text: corners(w, 956, 260, 220),
            bar: Some(Rect::new(0, 970, w, 46)),
            rim_luma: 70,
            black: 16,
        }
    }

    /// A centred circle 94 % of the height, text in the corners (1280×720, 1920×1080).
    pub fn centred_circle(w: u32, h: u32) -> Layout {
        let r = 0.47 * h as f32;
        Layout {
            width: w,
            height: h,
            shape: Shape::Circle {
                cx: w as f32 / 2.0,
                cy: h as f32 / 2.0,
                r,
                clip: (0, h),
            },
            text: corners(w, h, w * 3 / 10, h * 4 / 10),
            bar: None,
            rim_luma: 70,
            black: 16,
        }
    }

    /// A centred octagon (1.12 × 0.9 h), text in the corners, a bar at the bottom.
    pub fn octagon(w: u32, h: u32) -> Layout {
        let fh = (0.86 * h as f32) as u32 & !1;
        let fw = (1.12 * fh as f32) as u32 & !1;
        let rect = Rect::new((w - fw) / 2, (h - fh) / 2 - h / 40, fw, fh);
        Layout {
            width: w,
            height: h,
            shape: Shape::Octagon {
                rect,
                cut: fh * 22 / 100,
            },
            text: corners(w, h, w * 3 / 10, h * 4 / 10),
            bar: Some(Rect::new(w / 8, h - h / 22, w * 3 / 4, h / 30)),
            rim_luma: 70,
            black: 16,
        }
    }

    /// A circle right of centre with a column of patient data on the left (1280×720).
    pub fn right_of_centre(w: u32, h: u32) -> Layout {
        let r = 0.47 * h as f32;
        Layout {
            width: w,
            height: h,
            shape: Shape::Circle {
                cx: 0.6 * w as f32,
                cy: h as f32 / 2.0,
                r,
                clip: (0, h),
            },
            text: vec![
                Rect::new(16, 24, (0.6 * w as f32 - r) as u32, h * 6 / 10),
                Rect::new(16, h - h / 6, w / 4, h / 8),
            ],
            bar: None,
            rim_luma: 70,
            black: 16,
        }
    }

    /// The same clipped circle centred on row `cy` instead: a processor that cuts its image
    /// at the screen's top edge and above its status bar need not centre it between the
    /// two cuts.
    pub fn with_centre_row(mut self, row: f32) -> Layout {
        if let Shape::Circle { ref mut cy, .. } = self.shape {
            *cy = row;
        }
        self
    }

    /// The same layout with a dim rim: the image fades to `rim` at its edge.
    pub fn with_rim(mut self, rim: u8) -> Layout {
        self.rim_luma = rim;
        self
    }

    /// Signed distance in pixels from the image's edge (negative inside), for the pixel
    /// centre (x + 0.5, y + 0.5).
    pub fn edge_distance(&self, x: u32, y: u32) -> f32 {
        let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
        match self.shape {
            Shape::Circle { cx, cy, r, clip } => {
                let d = ((px - cx).powi(2) + (py - cy).powi(2)).sqrt() - r;
                let dc = (clip.0 as f32 - py).max(py - clip.1 as f32);
                d.max(dc)
            }
            Shape::Octagon { rect, cut } => {
                let (hx, hy) = (rect.width as f32 / 2.0, rect.height as f32 / 2.0);
                let (cx, cy) = (rect.x as f32 + hx, rect.y as f32 + hy);
                let (dx, dy) = ((px - cx).abs(), (py - cy).abs());
                let diag = (dx + dy - (hx + hy - cut as f32)) / std::f32::consts::SQRT_2;
                (dx - hx).max(dy - hy).max(diag)
            }
        }
    }

    /// Is (x, y) part of the endoscopic image?
    pub fn in_fov(&self, x: u32, y: u32) -> bool {
        self.edge_distance(x, y) < 0.0
    }

    /// The bounding rectangle of the image: the right answer for the locator.
    pub fn fov_rect(&self) -> Rect {
        match self.shape {
            Shape::Circle { cx, cy, r, clip } => {
                let x0 = (cx - r).max(0.0).round() as u32;
                let x1 = ((cx + r).round() as u32).min(self.width);
                let y0 = ((cy - r).max(0.0).round() as u32).max(clip.0);
                let y1 = ((cy + r).round() as u32).min(clip.1).min(self.height);
                Rect::new(x0, y0, x1 - x0, y1 - y0)
            }
            Shape::Octagon { rect, .. } => rect,
        }
    }

    /// Is (x, y) a burned-in text or status-bar pixel?
    pub fn is_text(&self, x: u32, y: u32) -> bool {
        if self.bar.is_some_and(|b| b.contains(x, y)) {
            return true;
        }
        self.text.iter().any(|t| t.contains(x, y))
            && self.edge_distance(x, y) >= Self::TEXT_GAP
            && glyph_pixel(x, y)
    }

    /// Render one frame.
    pub fn render(&self, lighting: Lighting, seed: u32) -> I420Image {
        let (w, h) = (self.width, self.height);
        let mut img = I420Image::new(w, h);
        let fov = self.fov_rect();
        let (fcx, fcy) = (
            fov.x as f32 + fov.width as f32 / 2.0,
            fov.y as f32 + fov.height as f32 / 2.0,
        );
        let reach = fov.width.max(fov.height) as f32 / 2.0;
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) as usize;
                let d = self.edge_distance(x, y);
                img.y[i] = if d < 0.0 {
                    let lit = match lighting {
                        Lighting::Lit | Lighting::DarkLumen => true,
                        Lighting::Dark => false,
                        Lighting::LeftPart(f) => (x as f32) < fov.x as f32 + f * fov.width as f32,
                    };
                    let (dx, dy) = (x as f32 - fcx, y as f32 - fcy);
                    let lumen = lighting == Lighting::DarkLumen
                        && (dx + 40.0).powi(2) + (dy + 20.0).powi(2) < (0.3 * reach).powi(2);
                    if lit && !lumen {
                        mucosa(x, y, seed, -d, self.rim_luma)
                    } else {
                        self.black.saturating_add(2)
                    }
                } else if self.bar.is_some_and(|b| b.contains(x, y)) {
                    if glyph_pixel(x, y) {
                        200
                    } else {
                        52
                    }
                } else if self.is_text(x, y) {
                    TEXT_LUMA
                } else {
                    self.black
                };
            }
        }
        img
    }
}

/// Text boxes in the four corners of a `w` × `h` area.
fn corners(w: u32, h: u32, bw: u32, bh: u32) -> Vec<Rect> {
    vec![
        Rect::new(6, 6, bw, bh),
        Rect::new(w - bw - 6, 6, bw, bh),
        Rect::new(6, h - bh - 6, bw, bh),
        Rect::new(w - bw - 6, h - bh - 6, bw, bh),
    ]
}

/// A pseudo-font: 10×18 px character cells on 24 px lines, 2 px strokes; about a third of
/// the cells are spaces.
fn glyph_pixel(x: u32, y: u32) -> bool {
    let (cx, cy) = (x / 10, y / 24);
    let (gx, gy) = (x % 10, y % 24);
    if gy >= 18 || gx >= 8 {
        return false;
    }
    let code = hash(cx.wrapping_mul(7919) ^ cy.wrapping_mul(104_729));
    if code.is_multiple_of(3) {
        return false;
    }
    // Strokes: top, middle, bottom bars and left/right posts, chosen by the code's bits.
    let bits = code >> 2;
    (gy < 2 && bits & 1 != 0)
        || ((8..10).contains(&gy) && bits & 2 != 0)
        || (gy >= 16 && bits & 4 != 0)
        || (gx < 2 && bits & 8 != 0)
        || (gx >= 6 && bits & 16 != 0)
}

fn hash(mut v: u32) -> u32 {
    v ^= v >> 16;
    v = v.wrapping_mul(0x7feb_352d);
    v ^= v >> 15;
    v = v.wrapping_mul(0x846c_a68b);
    v ^ (v >> 16)
}

/// Mucosa-like luma `depth` pixels inside the edge: folds and vessels (a few octaves of
/// value noise), a few specular spots, vignetted from ~150 in the middle to `rim` at the edge.
fn mucosa(x: u32, y: u32, seed: u32, depth: f32, rim: u8) -> u8 {
    let noise = |scale: u32| {
        let (gx, gy) = (x / scale, y / scale);
        let (fx, fy) = (
            (x % scale) as f32 / scale as f32,
            (y % scale) as f32 / scale as f32,
        );
        let v =
            |i: u32, j: u32| (hash(i.wrapping_mul(31) ^ j.wrapping_mul(7331) ^ seed) % 256) as f32;
        let top = v(gx, gy) * (1.0 - fx) + v(gx + 1, gy) * fx;
        let bottom = v(gx, gy + 1) * (1.0 - fx) + v(gx + 1, gy + 1) * fx;
        top * (1.0 - fy) + bottom * fy - 128.0
    };
    let texture = 0.18 * noise(48) + 0.12 * noise(12) + 0.06 * noise(3);
    let ramp = (depth / 60.0).min(1.0);
    let base = rim as f32 + (150.0 - rim as f32) * ramp;
    let spec =
        hash((x / 6) ^ (y / 6).wrapping_mul(65_537) ^ seed.wrapping_mul(3)).is_multiple_of(900);
    if spec && depth > 30.0 {
        return 250;
    }
    (base + texture * ramp.max(0.25)).clamp(rim as f32 * 0.8, 245.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_outside_the_image_and_the_truth_bounds_it() {
        for l in [
            Layout::clipped_circle_1280x1024(),
            Layout::centred_circle(1280, 720),
            Layout::octagon(1280, 720),
            Layout::right_of_centre(1280, 720),
        ] {
            let img = l.render(Lighting::Lit, 1);
            let truth = l.fov_rect();
            let mut text = 0;
            for y in 0..l.height {
                for x in 0..l.width {
                    if l.in_fov(x, y) {
                        assert!(truth.contains(x, y), "{x},{y} outside {truth:?}");
                        assert!(img.y[(y * l.width + x) as usize] > 40, "{x},{y} dark");
                        assert!(!l.is_text(x, y));
                    }
                    text += l.is_text(x, y) as u32;
                }
            }
            assert!(text > 2000, "{truth:?}: only {text} text pixels");
        }
    }
}
