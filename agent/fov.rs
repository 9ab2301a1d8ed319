//! The endoscopic field of view (FOV) and the privacy masks.
//!
//! Endoscopy processors draw patient name, ID and date on the black border around the
//! round endoscopic image. Every later stage sees only the FOV: the scorer measures
//! inside it, and the encoder writes only the cropped rectangle, with pixels outside the
//! inscribed ellipse (shape `circle`) and inside any configured mask painted black. So
//! nothing outside the FOV is ever written to the datalake.
//!
//! The FOV is fixed in the config, the whole frame, or found automatically: [`FovLocator`]
//! takes the per-pixel maximum luma of the first few frames on a coarse grid, keeps the
//! columns and rows where a good share of pixels are brighter than the border, and locks
//! the rectangle they span (trimmed by a margin). Thin burned-in text does not fill enough
//! of a column to count. Until it locks, frames are not scored and are counted as
//! `fov_pending`.

use crate::config::{FovConfig, FovMode, FovShape};
use crate::frame::{I420View, Rect};

/// A locked field of view for one frame geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct Fov {
    /// The crop rectangle in frame pixels (even coordinates and size).
    pub rect: Rect,
    pub shape: FovShape,
    /// Per row of the crop: the half-open span [x0, x1) of pixels inside the FOV.
    spans: Vec<(u32, u32)>,
    /// Mask rectangles relative to the crop.
    pub masks: Vec<Rect>,
}

impl Fov {
    /// A FOV at `rect` (clamped to the frame, made even) with masks given in frame pixels.
    pub fn new(rect: Rect, shape: FovShape, masks: &[Rect], frame_w: u32, frame_h: u32) -> Fov {
        let rect = rect.intersect(&Rect::new(0, 0, frame_w, frame_h)).even();
        let (w, h) = (rect.width, rect.height);
        let spans = (0..h)
            .map(|r| match shape {
                FovShape::Rect => (0, w),
                FovShape::Circle => {
                    let dy = (r as f32 + 0.5 - h as f32 / 2.0) / (h as f32 / 2.0);
                    if dy.abs() >= 1.0 {
                        return (0, 0);
                    }
                    let half = w as f32 / 2.0 * (1.0 - dy * dy).sqrt();
                    let x0 = (w as f32 / 2.0 - half).ceil().max(0.0) as u32;
                    let x1 = ((w as f32 / 2.0 + half).floor() as u32).min(w);
                    (x0, x1.max(x0))
                }
            })
            .collect();
        let masks = masks
            .iter()
            .map(|m| m.intersect(&rect))
            .filter(|m| !m.is_empty())
            .map(|m| Rect::new(m.x - rect.x, m.y - rect.y, m.width, m.height))
            .collect();
        Fov {
            rect,
            shape,
            spans,
            masks,
        }
    }

    /// The span of FOV pixels in crop row `row`.
    #[inline]
    pub fn span(&self, row: u32) -> (u32, u32) {
        self.spans[row as usize]
    }

    /// Whether crop pixel (x, y) may be written: inside the shape and not masked.
    pub fn visible(&self, x: u32, y: u32) -> bool {
        let (x0, x1) = self.span(y);
        x >= x0 && x < x1 && !self.masks.iter().any(|m| m.contains(x, y))
    }

    /// The central region used for sharpness: inside the shape for both rect and circle
    /// (70 % of each side), away from the FOV's own sharp edge.
    pub fn inner(&self) -> Rect {
        let (w, h) = (self.rect.width, self.rect.height);
        Rect::new(w * 15 / 100, h * 15 / 100, w * 70 / 100, h * 70 / 100)
    }

    /// Paint everything that must not leave the device black, in a packed RGB8 crop.
    pub fn redact_rgb(&self, rgb: &mut [u8]) {
        let w = self.rect.width as usize;
        for y in 0..self.rect.height {
            let row = &mut rgb[y as usize * w * 3..(y as usize + 1) * w * 3];
            let (x0, x1) = self.span(y);
            row[..x0 as usize * 3].fill(0);
            row[x1 as usize * 3..].fill(0);
            for m in &self.masks {
                if y >= m.y && y < m.bottom() {
                    row[m.x as usize * 3..m.right() as usize * 3].fill(0);
                }
            }
        }
    }
}

/// What the locator says about the frame it was given.
pub enum Locate<'a> {
    /// The FOV is known.
    Locked(&'a Fov),
    /// Still looking; the frame must not be used.
    Pending,
}

/// Finds (or holds) the FOV for the current frame geometry. Re-runs detection when the
/// frame size changes (the capture card renegotiated).
pub struct FovLocator {
    cfg: FovConfig,
    masks: Vec<Rect>,
    geometry: (u32, u32),
    locked: Option<Fov>,
    seen: u32,
    /// Per-cell max luma on a `GRID`-pixel grid.
    max_luma: Vec<u8>,
}

const GRID: u32 = 4;

impl FovLocator {
    pub fn new(cfg: &FovConfig) -> FovLocator {
        let masks = cfg
            .masks
            .iter()
            .map(|&[x, y, w, h]| Rect::new(x, y, w, h))
            .collect();
        FovLocator {
            cfg: cfg.clone(),
            masks,
            geometry: (0, 0),
            locked: None,
            seen: 0,
            max_luma: Vec::new(),
        }
    }

    /// The locked FOV, if any.
    pub fn fov(&self) -> Option<&Fov> {
        self.locked.as_ref()
    }

    /// Look at one frame; lock the FOV when enough frames were seen.
    pub fn observe(&mut self, frame: &I420View) -> Locate<'_> {
        let geometry = (frame.width, frame.height);
        if geometry != self.geometry {
            self.geometry = geometry;
            self.locked = None;
            self.seen = 0;
            self.max_luma.clear();
        }
        if self.locked.is_none() {
            let (w, h) = geometry;
            let full = Rect::new(0, 0, w, h);
            match self.cfg.mode {
                FovMode::Full => {
                    self.locked = Some(Fov::new(full, self.cfg.shape, &self.masks, w, h))
                }
                FovMode::Fixed => {
                    let [x, y, rw, rh] = self.cfg.rect.unwrap_or([0, 0, w, h]);
                    let r = Rect::new(x, y, rw, rh);
                    self.locked = Some(Fov::new(r, self.cfg.shape, &self.masks, w, h));
                }
                FovMode::Auto => {
                    self.accumulate(frame);
                    if self.seen >= self.cfg.auto_frames {
                        if let Some(r) = self.detect() {
                            tracing::info!(
                                x = r.x,
                                y = r.y,
                                width = r.width,
                                height = r.height,
                                "field of view locked"
                            );
                            self.locked = Some(Fov::new(r, self.cfg.shape, &self.masks, w, h));
                        } else if self.seen.is_multiple_of(self.cfg.auto_frames * 30) {
                            tracing::warn!(
                                frames = self.seen,
                                "field of view not found yet: is the scope connected and lit?"
                            );
                        }
                    }
                }
            }
        }
        match &self.locked {
            Some(f) => Locate::Locked(f),
            None => Locate::Pending,
        }
    }

    fn accumulate(&mut self, frame: &I420View) {
        let (gw, gh) = (frame.width / GRID, frame.height / GRID);
        if self.max_luma.is_empty() {
            self.max_luma = vec![0; (gw * gh) as usize];
        }
        for gy in 0..gh {
            let row = frame.y_row(gy * GRID + GRID / 2);
            let cells = &mut self.max_luma[(gy * gw) as usize..((gy + 1) * gw) as usize];
            for (gx, c) in cells.iter_mut().enumerate() {
                *c = (*c).max(row[gx * GRID as usize + GRID as usize / 2]);
            }
        }
        self.seen += 1;
    }

    /// The rectangle spanned by columns and rows that are mostly bright.
    fn detect(&self) -> Option<Rect> {
        let (w, h) = self.geometry;
        let (gw, gh) = ((w / GRID) as usize, (h / GRID) as usize);
        let thr = self.cfg.auto_threshold;
        let mut cols = vec![0u32; gw];
        let mut rows = vec![0u32; gh];
        for (row, cells) in rows.iter_mut().zip(self.max_luma.chunks_exact(gw)) {
            for (col, &cell) in cols.iter_mut().zip(cells) {
                if cell > thr {
                    *col += 1;
                    *row += 1;
                }
            }
        }
        // A column belongs to the image when at least 15 % of its cells are bright;
        // burned-in text lines fill far less of a column than that.
        let span = |counts: &[u32], len: usize| {
            let need = (len as u32 * 15 / 100).max(1);
            let first = counts.iter().position(|&c| c >= need)?;
            let last = counts.iter().rposition(|&c| c >= need)?;
            Some((first as u32 * GRID, (last as u32 + 1) * GRID))
        };
        let (x0, x1) = span(&cols, gh)?;
        let (y0, y1) = span(&rows, gw)?;
        let m = self.cfg.auto_margin;
        let r = Rect::new(
            x0 + m,
            y0 + m,
            (x1 - x0).saturating_sub(2 * m),
            (y1 - y0).saturating_sub(2 * m),
        );
        // Something smaller than a tenth of the frame each way is not an endoscopic image.
        (r.width >= w / 10 && r.height >= h / 10).then_some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::I420Image;

    fn disc_frame(w: u32, h: u32, cx: u32, cy: u32, r: u32) -> I420Image {
        let mut img = I420Image::new(w, h);
        for y in 0..h {
            for x in 0..w {
                let (dx, dy) = (x as i64 - cx as i64, y as i64 - cy as i64);
                if dx * dx + dy * dy <= (r * r) as i64 {
                    img.y[(y * w + x) as usize] = 120;
                }
            }
        }
        // burned-in "text" on the left border
        for y in 20..30 {
            for x in 10..80 {
                img.y[(y * w + x) as usize] = 235;
            }
        }
        img
    }

    #[test]
    fn auto_mode_finds_the_disc_and_ignores_border_text() {
        let img = disc_frame(640, 360, 380, 180, 150);
        let cfg = FovConfig {
            auto_frames: 2,
            ..FovConfig::default()
        };
        let mut loc = FovLocator::new(&cfg);
        assert!(matches!(loc.observe(&img.view()), Locate::Pending));
        let Locate::Locked(f) = loc.observe(&img.view()) else {
            panic!("not locked")
        };
        let r = f.rect;
        assert!(r.x >= 230 && r.x <= 250, "{r:?}");
        assert!(r.right() >= 510 && r.right() <= 530, "{r:?}");
        assert!(r.y <= 45 && r.bottom() >= 315, "{r:?}");
        assert!(!r.contains(40, 25), "text inside fov {r:?}");
    }

    #[test]
    fn a_black_frame_never_locks() {
        let img = I420Image::new(320, 240);
        let cfg = FovConfig {
            auto_frames: 1,
            ..FovConfig::default()
        };
        let mut loc = FovLocator::new(&cfg);
        for _ in 0..5 {
            assert!(matches!(loc.observe(&img.view()), Locate::Pending));
        }
    }

    #[test]
    fn circle_redaction_blackens_corners_and_masks() {
        let fov = Fov::new(
            Rect::new(0, 0, 100, 100),
            FovShape::Circle,
            &[Rect::new(40, 40, 10, 10)],
            200,
            200,
        );
        let mut rgb = vec![200u8; 100 * 100 * 3];
        fov.redact_rgb(&mut rgb);
        assert_eq!(rgb[0], 0, "corner");
        assert_eq!(rgb[(50 * 100 + 50) * 3], 200, "centre");
        assert_eq!(rgb[(45 * 100 + 45) * 3], 0, "mask");
        assert!(!fov.visible(45, 45) && fov.visible(60, 60) && !fov.visible(1, 1));
    }

    #[test]
    fn geometry_change_relocks() {
        let cfg = FovConfig {
            mode: FovMode::Full,
            ..FovConfig::default()
        };
        let mut loc = FovLocator::new(&cfg);
        let a = I420Image::new(64, 64);
        let b = I420Image::new(128, 64);
        assert!(matches!(loc.observe(&a.view()), Locate::Locked(f) if f.rect.width == 64));
        assert!(matches!(loc.observe(&b.view()), Locate::Locked(f) if f.rect.width == 128));
    }
}
