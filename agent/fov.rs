//! The endoscopic field of view (FOV) and the privacy masks.
//!
//! Endoscopy processors draw patient name, ID and date on the black border around the
//! round endoscopic image. Every later stage sees only the FOV: the scorer measures
//! inside it, and the encoder writes only the cropped rectangle, with pixels outside the
//! inscribed ellipse (shape `circle`) and inside any configured mask painted black. So
//! nothing outside the FOV is ever written to the datalake.
//!
//! The FOV is fixed in the config (clipped to the frame; refused loudly when it does not
//! overlap it), the whole frame, or found automatically by [`FovLocator`].
//!
//! ## Finding the FOV (`fov.mode = "auto"`) — privacy first
//!
//! The locator keeps the per-cell maximum luma of the frames it sees on a 4-pixel grid
//! (one sample per cell: 82 k cells at 1280×1024). Once `auto_frames` frames are in, it
//! looks for the FOV in that grid at every frame and locks only a candidate that passes
//! every check; a refused candidate is counted by reason and the frame waits
//! (`fov_pending`):
//!
//! 1. *lit* cells are above `min(auto_threshold, black + 16)` (at least `black + 8`), black
//!    being the grid's 3rd percentile, so a dim rim still counts as image;
//! 2. the image is the largest 4-connected lit region: text and the status bar, apart from
//!    it on the black border, are other regions (`dark` when no region is big enough);
//! 3. the columns must agree on one vertical centre (at most 15 % may not) and, scanning out
//!    from the centre row, every row must stay centred on the median of the rows' left +
//!    right and must not widen again: a convex shape symmetric about its centre — circle,
//!    octagon, circle clipped by the top and bottom of the screen. A circle cut flat at both
//!    ends (a fifth of the columns start on its top row and a fifth end on its bottom row)
//!    need not be centred between the cuts — a processor may cut it at the screen's top
//!    edge and above its status bar —: its centre row is then the band's middle, and only
//!    the columns that end on neither cut must agree, on the circle's own centre. A view
//!    lit only in part, or text touching the image, fails (`asymmetric`);
//! 4. plausible: ≥ 30 % of the frame wide and ≥ 40 % tall (`too_small`); centre within the
//!    middle half of the width and the middle 40 % of the height (`off_centre`); aspect
//!    0.75–1.6, top and bottom rows narrower than 90 % of the widest, 60–97 % of its bounding
//!    box filled (`not_round`);
//! 5. the FOV that would be locked (the bounding box less `auto_margin` on each side, with
//!    the configured shape) must lie inside the lit region row by row (`not_filled`):
//!    nothing that is not lit image is ever visible;
//! 6. no text-like cells (thin bright strokes with video black on both sides) inside that
//!    visible shape, masked areas excepted (`text_inside`).
//!
//! After the lock, every `auto_recheck_frames` frames the locator looks at a fresh window
//! (the maximum of every second frame since the last check). A valid FOV that differs from
//! the locked one by more than 4 px, seen in two windows in a row, is re-locked (the view
//! lit up further; the processor changed its layout). Text-like cells inside the locked
//! shape unlock it: frames wait again until a valid FOV is found. The re-check allocates
//! nothing: the grid and every buffer are sized once per frame geometry.
//!
//! Telemetry: `endo_agent_fov_locks_total{event}`, `endo_agent_fov_rejections_total{reason}`,
//! `endo_agent_fov_locked`, `endo_agent_fov_rect_pixels{edge}`; every lock, re-lock and
//! unlock is logged with its rectangle, refusals with their reason (rate-limited).

use crate::config::{FovConfig, FovMode, FovShape};
use crate::frame::{I420View, Rect};
use metrics::{counter, gauge, Counter, Gauge};

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

/// The half-open span of row `row` of a `w` × `h` box inside the shape inscribed in it.
fn shape_span(shape: FovShape, row: u32, w: u32, h: u32) -> (u32, u32) {
    match shape {
        FovShape::Rect => (0, w),
        FovShape::Circle => {
            let dy = (row as f32 + 0.5 - h as f32 / 2.0) / (h as f32 / 2.0);
            if dy.abs() >= 1.0 {
                return (0, 0);
            }
            let half = w as f32 / 2.0 * (1.0 - dy * dy).sqrt();
            let x0 = (w as f32 / 2.0 - half).ceil().max(0.0) as u32;
            let x1 = ((w as f32 / 2.0 + half).floor() as u32).min(w);
            (x0, x1.max(x0))
        }
    }
}

impl Fov {
    /// A FOV at `rect` (clamped to the frame, made even) with masks given in frame pixels;
    /// a mask partly outside the FOV is clipped to it. The result may be empty: check
    /// [`Fov::usable`] before cropping with it ([`FovLocator`] hands out only usable ones).
    pub fn new(rect: Rect, shape: FovShape, masks: &[Rect], frame_w: u32, frame_h: u32) -> Fov {
        let rect = rect.intersect(&Rect::new(0, 0, frame_w, frame_h)).even();
        let (w, h) = (rect.width, rect.height);
        let spans = (0..h).map(|r| shape_span(shape, r, w, h)).collect();
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

    /// The same field of view in a frame that is only its rectangle (the crop kept on its
    /// own): the rectangle moved to (0, 0); spans and masks are relative to the crop
    /// already, so they stay.
    pub fn at_origin(&self) -> Fov {
        Fov {
            rect: Rect::new(0, 0, self.rect.width, self.rect.height),
            ..self.clone()
        }
    }

    /// Whether this FOV can be cut out of a `width` × `height` frame: at least 16×16 and
    /// inside it.
    pub fn usable(&self, width: u32, height: u32) -> bool {
        self.rect.inside_frame(width, height) && self.rect.width >= 16 && self.rect.height >= 16
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
    /// The configured FOV does not fit this frame geometry; the frame must not be used.
    Refused,
}

/// Why a candidate field of view was not locked. Label values of
/// `endo_agent_fov_rejections_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    Dark,
    TooSmall,
    OffCentre,
    Asymmetric,
    NotRound,
    NotFilled,
    TextInside,
    OutsideFrame,
}

impl Reject {
    pub const ALL: [Reject; 8] = [
        Reject::Dark,
        Reject::TooSmall,
        Reject::OffCentre,
        Reject::Asymmetric,
        Reject::NotRound,
        Reject::NotFilled,
        Reject::TextInside,
        Reject::OutsideFrame,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Dark => "dark",
            Reject::TooSmall => "too_small",
            Reject::OffCentre => "off_centre",
            Reject::Asymmetric => "asymmetric",
            Reject::NotRound => "not_round",
            Reject::NotFilled => "not_filled",
            Reject::TextInside => "text_inside",
            Reject::OutsideFrame => "outside_frame",
        }
    }
    fn explain(self) -> &'static str {
        match self {
            Reject::Dark => "no lit image region yet: is the scope connected and lit?",
            Reject::TooSmall => "the lit region is too small to be the endoscopic image",
            Reject::OffCentre => "the lit region is too far off the centre of the screen",
            Reject::Asymmetric => {
                "the lit region is not symmetric: only part of the view is lit, or text touches it"
            }
            Reject::NotRound => "the lit region is not a circle, octagon or clipped circle",
            Reject::NotFilled => "the field of view would show pixels outside the lit image",
            Reject::TextInside => "text-like marks inside the field of view",
            Reject::OutsideFrame => "fov.rect does not overlap the frame",
        }
    }
}

/// Lock events: label values of `endo_agent_fov_locks_total{event}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LockEvent {
    Lock = 0,
    Relock = 1,
    Unlock = 2,
}

/// Counters and gauges, looked up once: telemetry that logs and counts at once.
struct Telemetry {
    rejected: [Counter; 8],
    locks: [Counter; 3],
    locked: Gauge,
    rect: [Gauge; 4],
}

impl Telemetry {
    fn new() -> Telemetry {
        let t = Telemetry {
            rejected: Reject::ALL
                .map(|r| counter!("endo_agent_fov_rejections_total", "reason" => r.as_str())),
            locks: ["lock", "relock", "unlock"]
                .map(|e| counter!("endo_agent_fov_locks_total", "event" => e)),
            locked: gauge!("endo_agent_fov_locked"),
            rect: ["x", "y", "width", "height"]
                .map(|e| gauge!("endo_agent_fov_rect_pixels", "edge" => e)),
        };
        t.set(None);
        t
    }
    fn set(&self, rect: Option<Rect>) {
        self.locked.set(rect.is_some() as u8 as f64);
        let r = rect.unwrap_or(Rect::new(0, 0, 0, 0));
        for (g, v) in self.rect.iter().zip([r.x, r.y, r.width, r.height]) {
            g.set(v as f64);
        }
    }
}

/// Grid cell size in pixels; one sample per cell, at its centre.
const CELL: u32 = 4;

/// The per-cell maximum luma and the buffers detection works in, sized once per geometry.
struct Grid {
    gw: usize,
    gh: usize,
    max: Vec<u8>,
    label: Vec<u32>,
    stack: Vec<u32>,
    /// Per row: leftmost and rightmost cell of the image region (i32::MAX, -1 when none).
    rows: Vec<(i32, i32)>,
    /// Per column: topmost and bottommost cell.
    cols: Vec<(i32, i32)>,
    scratch: Vec<i32>,
}

impl Grid {
    fn new(w: u32, h: u32) -> Grid {
        let (gw, gh) = ((w / CELL) as usize, (h / CELL) as usize);
        let n = gw * gh;
        Grid {
            gw,
            gh,
            max: vec![0; n],
            label: vec![0; n],
            stack: Vec::with_capacity(n),
            rows: vec![(0, 0); gh],
            cols: vec![(0, 0); gw],
            scratch: Vec::with_capacity(gw.max(gh)),
        }
    }

    fn accumulate(&mut self, frame: &I420View) {
        if self.gw == 0 {
            return;
        }
        let half = (CELL / 2) as usize;
        for (gy, cells) in self.max.chunks_exact_mut(self.gw).enumerate() {
            let row = frame.y_row(gy as u32 * CELL + CELL / 2);
            for (gx, c) in cells.iter_mut().enumerate() {
                *c = (*c).max(row[gx * CELL as usize + half]);
            }
        }
    }

    /// Video black (the 3rd percentile) and the lit threshold.
    fn levels(&self, auto_threshold: u8) -> (u8, u8) {
        let mut hist = [0u32; 256];
        for &v in &self.max {
            hist[v as usize] += 1;
        }
        let target = (self.max.len() * 3 / 100) as u32;
        let mut acc = 0;
        let mut black = 0u8;
        for (v, &c) in hist.iter().enumerate() {
            acc += c;
            if acc > target {
                black = v as u8;
                break;
            }
        }
        let b = black as u32;
        let thr = (b + 16).min(auto_threshold as u32).max(b + 8).min(254);
        (black, thr as u8)
    }

    /// Label the largest 4-connected region of cells above `thr`; returns its label and size.
    fn largest_region(&mut self, thr: u8) -> (u32, usize) {
        for (l, &v) in self.label.iter_mut().zip(&self.max) {
            *l = (v > thr) as u32;
        }
        let (gw, gh) = (self.gw, self.gh);
        let mut best = (0u32, 0usize);
        let mut id = 1u32;
        for start in 0..self.label.len() {
            if self.label[start] != 1 {
                continue;
            }
            id += 1;
            self.label[start] = id;
            self.stack.clear();
            self.stack.push(start as u32);
            let mut size = 0usize;
            while let Some(c) = self.stack.pop() {
                size += 1;
                let c = c as usize;
                let (x, y) = (c % gw, c / gw);
                let mut visit = |i: usize| {
                    if self.label[i] == 1 {
                        self.label[i] = id;
                        // Never reallocates: every cell is pushed at most once.
                        self.stack.push(i as u32);
                    }
                };
                if x > 0 {
                    visit(c - 1);
                }
                if x + 1 < gw {
                    visit(c + 1);
                }
                if y > 0 {
                    visit(c - gw);
                }
                if y + 1 < gh {
                    visit(c + gw);
                }
            }
            if size > best.1 {
                best = (id, size);
            }
        }
        best
    }

    fn median(&mut self, values: impl Iterator<Item = i32>) -> Option<i32> {
        self.scratch.clear();
        self.scratch.extend(values);
        if self.scratch.is_empty() {
            return None;
        }
        let mid = self.scratch.len() / 2;
        Some(*self.scratch.select_nth_unstable(mid).1)
    }

    /// Text-like cells inside the visible part of `rect` (with `shape`, outside `masks`):
    /// bright cells with dark cells on both sides (at most two cells away) along the row or
    /// the column — glyph strokes on the black border, not tissue. Returns (text-like cells, visible cells).
    fn text_cells(
        &self,
        (black, thr): (u8, u8),
        rect: Rect,
        shape: FovShape,
        masks: &[Rect],
    ) -> (usize, usize) {
        let bright = black.saturating_add(150).min(250);
        let (gw, gh) = (self.gw as i64, self.gh as i64);
        let dark = |x: i64, y: i64| {
            x >= 0 && y >= 0 && x < gw && y < gh && self.max[(y * gw + x) as usize] <= thr
        };
        let (mut text, mut visible) = (0, 0);
        for gy in 0..self.gh {
            let py = gy as u32 * CELL + CELL / 2;
            if py < rect.y || py >= rect.bottom() {
                continue;
            }
            let (x0, x1) = shape_span(shape, py - rect.y, rect.width, rect.height);
            for gx in 0..self.gw {
                let px = gx as u32 * CELL + CELL / 2;
                if px < rect.x + x0 || px >= rect.x + x1 || masks.iter().any(|m| m.contains(px, py))
                {
                    continue;
                }
                visible += 1;
                if self.max[gy * self.gw + gx] < bright {
                    continue;
                }
                // A thin stroke: dark on both sides along the row or along the column.
                // Tissue by a dark lumen has tissue on its other side.
                let (x, y) = (gx as i64, gy as i64);
                let across =
                    (dark(x - 1, y) || dark(x - 2, y)) && (dark(x + 1, y) || dark(x + 2, y));
                let down = (dark(x, y - 1) || dark(x, y - 2)) && (dark(x, y + 1) || dark(x, y + 2));
                if across || down {
                    text += 1;
                }
            }
        }
        (text, visible)
    }
}

/// Too many text-like cells for `visible` cells: a few may be specular spots by a lumen.
fn too_much_text(text: usize, visible: usize) -> bool {
    text > (visible / 500).max(3)
}

/// Find the field of view in `g` (see the module header for the checks). Returns the
/// rectangle to lock, in frame pixels.
fn detect(
    g: &mut Grid,
    cfg: &FovConfig,
    masks: &[Rect],
    (w, h): (u32, u32),
) -> Result<Rect, Reject> {
    if g.gw == 0 || g.gh == 0 {
        return Err(Reject::TooSmall);
    }
    let levels = g.levels(cfg.auto_threshold);
    let (main, size) = g.largest_region(levels.1);
    if size < g.max.len() / 50 {
        return Err(Reject::Dark);
    }
    // Extents of the image region per row and per column.
    g.rows.fill((i32::MAX, -1));
    g.cols.fill((i32::MAX, -1));
    for (y, cells) in g.label.chunks_exact(g.gw).enumerate() {
        for (x, &l) in cells.iter().enumerate() {
            if l == main {
                let (xi, yi) = (x as i32, y as i32);
                let r = &mut g.rows[y];
                *r = (r.0.min(xi), r.1.max(xi));
                let c = &mut g.cols[x];
                *c = (c.0.min(yi), c.1.max(yi));
            }
        }
    }
    let rows = std::mem::take(&mut g.rows);
    let cols = std::mem::take(&mut g.cols);
    let result = fit(g, &rows, &cols, levels, cfg, masks, (w, h));
    g.rows = rows;
    g.cols = cols;
    result
}

/// Twice the region's centre row, in cells, from its columns' extents `cols`; refused
/// (`asymmetric`) when more than 15 % of the columns disagree with it by over 1.5 cells.
fn vertical_centre(g: &mut Grid, cols: &[(i32, i32)]) -> Result<i32, Reject> {
    const TOL: i32 = 3;
    let n_cols = cols.iter().filter(|e| e.1 >= 0).count();
    let (cy2, asym_cols) = match flat_clips(cols, n_cols) {
        // Clipped by the top and bottom of the screen: the shape's vertical centre is
        // the band's, and the columns that end on neither cut must agree on the circle's
        // own centre, which need not be the band's (a processor may cut its image at the
        // screen's top edge and above its status bar).
        Some((t, b)) => {
            let free = |e: &&(i32, i32)| e.1 >= 0 && e.0 != t && e.1 != b;
            let centre = g.median(cols.iter().filter(free).filter_map(|&e| sum(e)));
            let off = |s: i32| centre.is_some_and(|c| (s - c).abs() > TOL);
            let asym = cols.iter().filter(free).filter_map(|&e| sum(e));
            (t + b, asym.filter(|&s| off(s)).count())
        }
        None => {
            let cy2 = g
                .median(cols.iter().filter_map(|&e| sum(e)))
                .ok_or(Reject::Dark)?;
            let asym = cols.iter().filter_map(|&e| sum(e));
            (cy2, asym.filter(|s| (s - cy2).abs() > TOL).count())
        }
    };
    if asym_cols * 100 > n_cols * 15 {
        return Err(Reject::Asymmetric);
    }
    Ok(cy2)
}

/// The top and bottom rows (in cells) of a region cut flat by both: at least a fifth of
/// its `n_cols` columns start on its topmost row, and a fifth end on its bottommost.
/// None for a shape that is round (or cut) at either end.
fn flat_clips(cols: &[(i32, i32)], n_cols: usize) -> Option<(i32, i32)> {
    let lit = || cols.iter().filter(|e| e.1 >= 0);
    let (t, b) = (lit().map(|e| e.0).min()?, lit().map(|e| e.1).max()?);
    let many = |n: usize| n * 5 >= n_cols;
    (many(lit().filter(|e| e.0 == t).count()) && many(lit().filter(|e| e.1 == b).count()))
        .then_some((t, b))
}

/// Twice the centre, in cells: (left + right) of a row, (top + bottom) of a column.
fn sum(e: (i32, i32)) -> Option<i32> {
    (e.1 >= 0).then_some(e.0 + e.1)
}

fn fit(
    g: &mut Grid,
    rows: &[(i32, i32)],
    cols: &[(i32, i32)],
    levels: (u8, u8),
    cfg: &FovConfig,
    masks: &[Rect],
    (w, h): (u32, u32),
) -> Result<Rect, Reject> {
    const TOL: i32 = 3; // in (left + right) units: 1.5 cells
    let cx2 = g
        .median(rows.iter().filter_map(|&e| sum(e)))
        .ok_or(Reject::Dark)?;
    let cy2 = vertical_centre(g, cols)?;
    let sym = |j: usize| symmetric(rows[j], cx2);
    let jc = (cy2 / 2) as usize;
    if jc >= rows.len() || !centred(rows[jc], cx2) {
        return Err(Reject::Asymmetric);
    }
    let (top, bottom) = (scan(rows, jc, cx2, -1), scan(rows, jc, cx2, 1));
    if ((top + bottom) as i32 - cy2).abs() > TOL {
        return Err(Reject::Asymmetric);
    }
    let n_rows = bottom - top + 1;
    let outside = (0..rows.len())
        .filter(|&j| (j < top || j > bottom) && rows[j].1 >= 0)
        .count();
    if outside * 10 > n_rows {
        return Err(Reject::Asymmetric);
    }
    let sym_width = |j: usize| sym(j).map_or(0, |(l, r)| r - l + 1);
    let Outline {
        left,
        right,
        top_px,
        bottom_px,
        cxp,
    } = outline(&sym, cx2, (top, bottom), (w, h))?;

    let m = cfg.auto_margin as f32;
    let rect = match cfg.shape {
        FovShape::Circle => pixel_rect(left + m, top_px + m, right - m, bottom_px - m),
        FovShape::Rect => {
            let (bw, k) = largest_centred_rect(&sym_width, jc, top, bottom);
            let bw = (CELL as i32 * bw) as f32;
            pixel_rect(
                cxp - bw / 2.0 + m,
                (CELL as usize * (jc - k)) as f32 + 0.5 + m,
                cxp + bw / 2.0 - m,
                (CELL as usize * (jc + k)) as f32 + 4.5 - m,
            )
        }
    };
    let rect = rect.intersect(&Rect::new(0, 0, w, h)).even();
    if rect.width < 16 || rect.height < 16 {
        return Err(Reject::TooSmall);
    }
    // Everything the locked FOV would show lies inside the lit region, row by row.
    let lit = |gy: usize| sym(gy).filter(|_| (top..=bottom).contains(&gy));
    if !inside_lit_rows(rows.len(), &lit, rect, cfg.shape) {
        return Err(Reject::NotFilled);
    }
    let (text, visible) = g.text_cells(levels, rect, cfg.shape, masks);
    if too_much_text(text, visible) {
        return Err(Reject::TextInside);
    }
    Ok(rect)
}

/// The lit shape's outline in pixels.
struct Outline {
    left: f32,
    right: f32,
    top_px: f32,
    bottom_px: f32,
    /// The centre column.
    cxp: f32,
}

/// The outline of the symmetric lit rows top..=bottom in pixels, refused when too small,
/// off centre, or not round (aspect, fill, corners).
fn outline(
    sym: &dyn Fn(usize) -> Option<(i32, i32)>,
    cx2: i32,
    (top, bottom): (usize, usize),
    (w, h): (u32, u32),
) -> Result<Outline, Reject> {
    let mut widest = 0;
    let mut area = 0;
    for j in top..=bottom {
        let (l, r) = sym(j).unwrap_or((0, -1));
        widest = widest.max(r - l + 1);
        area += (r - l + 1).max(0);
    }
    let sym_width = |j: usize| sym(j).map_or(0, |(l, r)| r - l + 1);
    let n_rows = bottom - top + 1;

    // In pixels. A row's lit extent [4l + 0.5, 4r + 4.5) is its edge to ±1.5 px.
    let cxp = 2.0 * cx2 as f32 + 2.5;
    let width_px = (CELL as i32 * widest) as f32;
    let (left, right) = (
        (cxp - width_px / 2.0).max(0.0),
        (cxp + width_px / 2.0).min(w as f32),
    );
    let (top_px, bottom_px) = (
        (CELL as usize * top) as f32 + 0.5,
        (CELL as usize * bottom) as f32 + 4.5,
    );
    let (fw, fh) = (right - left, bottom_px - top_px);
    let cyp = (top_px + bottom_px) / 2.0;
    if fw < 0.3 * w as f32 || fh < 0.4 * h as f32 {
        return Err(Reject::TooSmall);
    }
    if (cxp - w as f32 / 2.0).abs() > 0.25 * w as f32
        || (cyp - h as f32 / 2.0).abs() > 0.2 * h as f32
    {
        return Err(Reject::OffCentre);
    }
    let fill = area as f32 / (widest as f32 * n_rows as f32);
    let corners_cut = |j: usize| sym_width(j) * 10 <= widest * 9;
    if !(0.75..=1.6).contains(&(fw / fh))
        || !(0.6..=0.97).contains(&fill)
        || !corners_cut(top)
        || !corners_cut(bottom)
    {
        return Err(Reject::NotRound);
    }
    Ok(Outline {
        left,
        right,
        top_px,
        bottom_px,
        cxp,
    })
}

/// The symmetric part of a row's lit extent: what its mirror image about the centre
/// (`cx2` = left + right of the centre, in cells) also covers.
fn symmetric((l, r): (i32, i32), cx2: i32) -> Option<(i32, i32)> {
    (r >= 0).then(|| (l.max(cx2 - r), r.min(cx2 - l)))
}

/// Whether a row's lit extent is centred on `cx2` (within 1.5 cells).
fn centred(row: (i32, i32), cx2: i32) -> bool {
    sum(row).is_some_and(|s| (s - cx2).abs() <= 3)
}

/// Scan out from the centre row `jc` by `step` while rows stay centred and do not widen
/// again; one odd row (text touching the image) is tolerated, two in a row end the shape.
/// The last row of the shape.
fn scan(rows: &[(i32, i32)], jc: usize, cx2: i32, step: isize) -> usize {
    let width = |j: usize| rows[j].1 - rows[j].0 + 1;
    let (mut last, mut narrowest, mut odd) = (jc, width(jc), 0);
    let mut j = jc as isize + step;
    while j >= 0 && (j as usize) < rows.len() && rows[j as usize].1 >= 0 {
        let ju = j as usize;
        if centred(rows[ju], cx2) && width(ju) <= narrowest + 2 {
            last = ju;
            narrowest = narrowest.min(width(ju));
            odd = 0;
        } else {
            odd += 1;
            if odd == 2 {
                break;
            }
        }
        j += step;
    }
    last
}

/// The largest rectangle centred on the centre row `jc` inside the lit rows top..=bottom:
/// its width in cells and its half-height in rows.
fn largest_centred_rect(
    sym_width: &dyn Fn(usize) -> i32,
    jc: usize,
    top: usize,
    bottom: usize,
) -> (i32, usize) {
    let (mut best, mut narrowest, mut k) = ((0, 0), i32::MAX, 0usize);
    while jc >= top + k && jc + k <= bottom {
        narrowest = narrowest.min(sym_width(jc - k)).min(sym_width(jc + k));
        if narrowest * (2 * k as i32 + 1) > best.0 * (2 * best.1 as i32 + 1) {
            best = (narrowest, k);
        }
        k += 1;
    }
    best
}

/// Whether every pixel the FOV `rect` of `shape` would show lies within the lit extent
/// of its cell row (`lit`, in cells; None = not lit), to ±2 px.
fn inside_lit_rows(
    n_rows: usize,
    lit: &dyn Fn(usize) -> Option<(i32, i32)>,
    rect: Rect,
    shape: FovShape,
) -> bool {
    for gy in 0..n_rows {
        let py = gy as u32 * CELL + CELL / 2;
        if py < rect.y || py >= rect.bottom() {
            continue;
        }
        let (x0, x1) = shape_span(shape, py - rect.y, rect.width, rect.height);
        if x1 <= x0 {
            continue;
        }
        let Some((l, r)) = lit(gy) else {
            return false;
        };
        let (lo, hi) = (
            (CELL as i32 * l) as f32 + 0.5 - 2.0,
            (CELL as i32 * r) as f32 + 4.5 + 2.0,
        );
        if ((rect.x + x0) as f32) < lo || ((rect.x + x1) as f32) > hi {
            return false;
        }
    }
    true
}

/// The pixel rectangle inside the edges x0..x1, y0..y1 (rounded inwards).
fn pixel_rect(x0: f32, y0: f32, x1: f32, y1: f32) -> Rect {
    let (x0, y0) = (x0.max(0.0).ceil() as u32, y0.max(0.0).ceil() as u32);
    let (x1, y1) = (x1.max(0.0).floor() as u32, y1.max(0.0).floor() as u32);
    Rect::new(x0, y0, x1.saturating_sub(x0), y1.saturating_sub(y0))
}

/// The largest distance between corresponding edges of two rectangles, in pixels.
pub fn rect_distance(a: Rect, b: Rect) -> u32 {
    [
        a.x.abs_diff(b.x),
        a.y.abs_diff(b.y),
        a.right().abs_diff(b.right()),
        a.bottom().abs_diff(b.bottom()),
    ]
    .into_iter()
    .max()
    .unwrap_or(0)
}

/// Finds (or holds) the FOV for the current frame geometry. Re-runs detection when the
/// frame size changes (the capture card renegotiated).
pub struct FovLocator {
    cfg: FovConfig,
    masks: Vec<Rect>,
    geometry: (u32, u32),
    locked: Option<Fov>,
    /// The configured FOV does not fit the frame (fixed or full mode).
    refused: bool,
    /// Frames accumulated while looking.
    seen: u32,
    /// Frames since the last re-check (after the lock).
    since_check: u32,
    /// A different valid FOV seen at the last re-check, awaiting confirmation.
    relock: Option<Rect>,
    grid: Grid,
    last_reject: Option<Reject>,
    rejections: u64,
    tel: Telemetry,
}

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
            refused: false,
            seen: 0,
            since_check: 0,
            relock: None,
            grid: Grid::new(0, 0),
            last_reject: None,
            rejections: 0,
            tel: Telemetry::new(),
        }
    }

    /// The locked FOV, if any.
    pub fn fov(&self) -> Option<&Fov> {
        self.locked.as_ref()
    }

    /// Why the last candidate was refused (cleared by a lock).
    pub fn last_rejection(&self) -> Option<Reject> {
        self.last_reject
    }

    /// Look at one frame; lock, re-check or re-lock the FOV.
    pub fn observe(&mut self, frame: &I420View) -> Locate<'_> {
        let geometry = (frame.width, frame.height);
        if geometry != self.geometry {
            if self.geometry != (0, 0) {
                tracing::info!(
                    width = frame.width,
                    height = frame.height,
                    "frame size changed: finding the field of view again"
                );
            }
            self.start(geometry);
        }
        if self.cfg.mode == FovMode::Auto {
            self.auto(frame);
        }
        match &self.locked {
            Some(f) => Locate::Locked(f),
            None if self.refused => Locate::Refused,
            None => Locate::Pending,
        }
    }

    fn start(&mut self, (w, h): (u32, u32)) {
        self.geometry = (w, h);
        self.locked = None;
        self.refused = false;
        self.seen = 0;
        self.since_check = 0;
        self.relock = None;
        self.last_reject = None;
        self.tel.set(None);
        let frame = Rect::new(0, 0, w, h);
        let wanted = match self.cfg.mode {
            FovMode::Auto => {
                self.grid = Grid::new(w, h);
                return;
            }
            FovMode::Full => frame,
            FovMode::Fixed => {
                let [x, y, rw, rh] = self.cfg.rect.unwrap_or([0, 0, w, h]);
                Rect::new(x, y, rw, rh)
            }
        };
        let fov = Fov::new(wanted, self.cfg.shape, &self.masks, w, h);
        if !fov.usable(w, h) {
            // check-config cannot know the frame size: this is where a wrong rect is caught.
            tracing::error!(
                rect = ?wanted,
                width = w,
                height = h,
                "fov.rect does not overlap the {w}x{h} frame (at least 16x16 must): frames are not scored"
            );
            self.tel.rejected[Reject::OutsideFrame as usize].increment(1);
            self.last_reject = Some(Reject::OutsideFrame);
            self.refused = true;
            return;
        }
        if wanted.intersect(&frame) != wanted {
            tracing::warn!(rect = ?wanted, used = ?fov.rect, "fov.rect is partly outside the {w}x{h} frame; clipped");
        }
        self.set_locked(fov, LockEvent::Lock);
    }

    fn auto(&mut self, frame: &I420View) {
        let geometry = self.geometry;
        if self.locked.is_none() {
            self.grid.accumulate(frame);
            self.seen = self.seen.saturating_add(1);
            if self.seen < self.cfg.auto_frames {
                return;
            }
            match detect(&mut self.grid, &self.cfg, &self.masks, geometry) {
                Ok(rect) => self.lock(rect, LockEvent::Lock),
                Err(r) => self.reject(r),
            }
            return;
        }
        let every = self.cfg.auto_recheck_frames;
        if every == 0 {
            return;
        }
        self.since_check += 1;
        if self.since_check % 2 == 1 {
            self.grid.accumulate(frame);
        }
        if self.since_check < every {
            return;
        }
        self.since_check = 0;
        let locked = self
            .locked
            .as_ref()
            .map_or(Rect::new(0, 0, 0, 0), |f| f.rect);
        // Privacy first: text inside what is locked unlocks it at once.
        let levels = self.grid.levels(self.cfg.auto_threshold);
        let (text, visible) = self
            .grid
            .text_cells(levels, locked, self.cfg.shape, &self.masks);
        let found = detect(&mut self.grid, &self.cfg, &self.masks, geometry);
        if too_much_text(text, visible) {
            tracing::error!(
                x = locked.x,
                y = locked.y,
                width = locked.width,
                height = locked.height,
                text_cells = text,
                "text-like marks inside the locked field of view: unlocked; frames wait until a field of view without them is found"
            );
            self.tel.locks[LockEvent::Unlock as usize].increment(1);
            self.tel.set(None);
            self.locked = None;
            self.seen = 0;
            if let Ok(r) = found {
                self.lock(r, LockEvent::Lock);
            }
            return;
        }
        match found {
            Ok(r) if rect_distance(r, locked) > 4 => {
                if self.relock.is_some_and(|p| rect_distance(p, r) <= 4) {
                    self.lock(r, LockEvent::Relock);
                } else {
                    self.relock = Some(r);
                }
            }
            _ => self.relock = None,
        }
        self.grid.max.fill(0);
    }

    fn lock(&mut self, rect: Rect, event: LockEvent) {
        let (w, h) = self.geometry;
        let fov = Fov::new(rect, self.cfg.shape, &self.masks, w, h);
        if !fov.usable(w, h) {
            self.reject(Reject::TooSmall);
            return;
        }
        self.set_locked(fov, event);
        self.grid.max.fill(0);
    }

    fn set_locked(&mut self, fov: Fov, event: LockEvent) {
        let r = fov.rect;
        match (event, &self.locked) {
            (LockEvent::Relock, Some(old)) => tracing::warn!(
                x = r.x,
                y = r.y,
                width = r.width,
                height = r.height,
                was = ?old.rect,
                "field of view re-locked"
            ),
            _ => tracing::info!(
                x = r.x,
                y = r.y,
                width = r.width,
                height = r.height,
                frames = self.seen,
                "field of view locked"
            ),
        }
        self.tel.locks[event as usize].increment(1);
        self.tel.set(Some(r));
        self.locked = Some(fov);
        self.since_check = 0;
        self.relock = None;
        self.last_reject = None;
    }

    fn reject(&mut self, why: Reject) {
        self.tel.rejected[why as usize].increment(1);
        self.rejections += 1;
        if self.last_reject != Some(why) {
            tracing::info!(
                reason = why.as_str(),
                frames = self.seen,
                "field of view not locked: {}",
                why.explain()
            );
        } else if self.rejections.is_multiple_of(300) {
            tracing::warn!(
                reason = why.as_str(),
                frames = self.seen,
                "field of view still not found: {}",
                why.explain()
            );
        }
        self.last_reject = Some(why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::I420Image;
    use crate::phantom::processor::{Layout, Lighting};

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

    /// A layout with its frames rendered once, and its text pixels.
    struct Screen {
        name: &'static str,
        layout: Layout,
        lit: Vec<I420Image>,
        dark: I420Image,
        third: I420Image,
        half: I420Image,
        lumen: I420Image,
        text: Vec<(u32, u32)>,
    }

    impl Screen {
        fn new(name: &'static str, layout: Layout) -> Screen {
            let mut text = Vec::new();
            for y in 0..layout.height {
                for x in 0..layout.width {
                    if layout.is_text(x, y) {
                        text.push((x, y));
                    }
                }
            }
            Screen {
                name,
                lit: (0..3).map(|s| layout.render(Lighting::Lit, s)).collect(),
                dark: layout.render(Lighting::Dark, 0),
                third: layout.render(Lighting::LeftPart(1.0 / 3.0), 0),
                half: layout.render(Lighting::LeftPart(0.5), 0),
                lumen: layout.render(Lighting::DarkLumen, 0),
                layout,
                text,
            }
        }

        /// Privacy: no text or status-bar pixel is visible through `fov`, and everything
        /// visible is image.
        fn assert_private(&self, fov: &Fov, when: &str) {
            let r = fov.rect;
            for &(x, y) in &self.text {
                if r.contains(x, y) {
                    assert!(
                        !fov.visible(x - r.x, y - r.y),
                        "{} {when}: text pixel ({x},{y}) visible through {r:?}",
                        self.name
                    );
                }
            }
            for y in (0..r.height).step_by(2) {
                let (x0, x1) = fov.span(y);
                for x in [x0, x1.saturating_sub(1)] {
                    if x1 > x0 {
                        let d = self.layout.edge_distance(r.x + x, r.y + y);
                        assert!(
                            d < 2.0,
                            "{} {when}: ({},{}) shown, {d:.1} px outside the image; {r:?}",
                            self.name,
                            r.x + x,
                            r.y + y
                        );
                    }
                }
            }
        }
    }

    fn screens() -> Vec<Screen> {
        vec![
            Screen::new("clipped 1280x1024", Layout::clipped_circle_1280x1024()),
            Screen::new("circle 1280x720", Layout::centred_circle(1280, 720)),
            Screen::new("circle 1920x1080", Layout::centred_circle(1920, 1080)),
            Screen::new("octagon 1280x720", Layout::octagon(1280, 720)),
            Screen::new("right 1280x720", Layout::right_of_centre(1280, 720)),
            Screen::new(
                "dim rim 1280x1024",
                Layout::clipped_circle_1280x1024().with_rim(34),
            ),
            Screen::new(
                "clip off centre",
                Layout::clipped_circle_1280x1024().with_centre_row(512.0),
            ),
            Screen::new(
                "clip off centre up",
                Layout::clipped_circle_1280x1024().with_centre_row(450.0),
            ),
        ]
    }

    #[derive(Clone, Copy, Debug)]
    enum Frame {
        Lit,
        Dark,
        Third,
        Half,
    }

    /// Run `frames` through a locator; every locked FOV is checked for privacy. Returns the
    /// final locked rect and the frame it was first locked at.
    fn run(s: &Screen, cfg: &FovConfig, frames: &[Frame], start: &str) -> (Option<Rect>, usize) {
        let mut loc = FovLocator::new(cfg);
        let mut checked: Vec<Rect> = Vec::new();
        let mut first = usize::MAX;
        for (i, f) in frames.iter().enumerate() {
            let img = match f {
                Frame::Lit => &s.lit[i % 3],
                Frame::Dark => &s.dark,
                Frame::Third => &s.third,
                Frame::Half => &s.half,
            };
            if let Locate::Locked(fov) = loc.observe(&img.view()) {
                first = first.min(i + 1);
                if !checked.contains(&fov.rect) {
                    s.assert_private(fov, &format!("{start} frame {i} ({f:?})"));
                    checked.push(fov.rect);
                }
            }
        }
        (loc.fov().map(|f| f.rect), first)
    }

    fn seq(parts: &[(Frame, usize)]) -> Vec<Frame> {
        parts
            .iter()
            .flat_map(|&(f, n)| std::iter::repeat_n(f, n))
            .collect()
    }

    #[test]
    fn every_start_on_every_layout_ends_locked_within_8_px_and_never_shows_text() {
        use Frame::*;
        let cfg = FovConfig::default();
        let flicker: Vec<Frame> = (0..24)
            .map(|i| [Dark, Lit, Half, Dark, Third, Dark][i % 6])
            .chain(std::iter::repeat_n(Lit, 40))
            .collect();
        let starts: [(&str, Vec<Frame>); 4] = [
            ("lit", seq(&[(Lit, 40)])),
            ("dark", seq(&[(Dark, 30), (Lit, 40)])),
            ("partial", seq(&[(Third, 12), (Lit, 40)])),
            ("flicker", flicker),
        ];
        for s in screens() {
            let truth = s.layout.fov_rect();
            for (start, frames) in &starts {
                let (rect, first) = run(&s, &cfg, frames, start);
                let rect = rect.unwrap_or_else(|| panic!("{} {start}: never locked", s.name));
                let err = rect_distance(rect, truth);
                eprintln!(
                    "fov-table | {:<18} | {start:<7} | {rect:?} | truth {truth:?} | error {err} px | locked at frame {first}",
                    s.name
                );
                assert!(err <= 8, "{} {start}: {rect:?} vs truth {truth:?}", s.name);
                assert_eq!(rect.intersect(&truth), rect, "{} {start}", s.name);
            }
        }
    }

    #[test]
    fn dark_and_partial_views_alone_never_lock() {
        use Frame::*;
        let cfg = FovConfig::default();
        for s in screens() {
            for (what, f) in [("dark", Dark), ("left third", Third), ("left half", Half)] {
                let (rect, _) = run(&s, &cfg, &seq(&[(f, 20)]), what);
                assert_eq!(rect, None, "{} {what}", s.name);
            }
        }
    }

    #[test]
    fn stills_lock_within_8_px_and_a_dark_lumen_locks_correctly_or_refuses() {
        let cfg = FovConfig {
            auto_frames: 1,
            ..FovConfig::default()
        };
        for s in screens() {
            let truth = s.layout.fov_rect();
            for (what, img) in [("lit", &s.lit[0]), ("dark lumen", &s.lumen)] {
                let mut loc = FovLocator::new(&cfg);
                match loc.observe(&img.view()) {
                    Locate::Locked(f) => {
                        s.assert_private(f, what);
                        let err = rect_distance(f.rect, truth);
                        eprintln!(
                            "fov-table | {:<18} | still {what} | {:?} | error {err} px",
                            s.name, f.rect
                        );
                        assert!(err <= 8, "{} {what}: {:?} vs {truth:?}", s.name, f.rect);
                    }
                    _ => {
                        eprintln!(
                            "fov-table | {:<18} | still {what} | refused: {:?}",
                            s.name,
                            loc.last_rejection()
                        );
                        assert_ne!(what, "lit", "{}: a lit still must lock", s.name);
                    }
                }
            }
        }
    }

    #[test]
    fn a_status_bar_touching_the_image_is_never_shown() {
        let mut layout = Layout::clipped_circle_1280x1024();
        layout.bar = Some(Rect::new(0, 956, 1280, 60));
        let s = Screen::new("bar touching", layout);
        let (rect, _) = run(&s, &FovConfig::default(), &seq(&[(Frame::Lit, 12)]), "lit");
        eprintln!("fov-table | bar touching | lit | {rect:?}");
    }

    #[test]
    fn a_new_layout_with_text_where_the_image_was_is_unlocked_then_relocked() {
        let cfg = FovConfig {
            auto_recheck_frames: 10,
            ..FovConfig::default()
        };
        let big = Layout::centred_circle(1280, 720);
        let moved = Screen::new("right 1280x720", Layout::right_of_centre(1280, 720));
        let mut loc = FovLocator::new(&cfg);
        let first = big.render(Lighting::Lit, 1);
        for _ in 0..8 {
            loc.observe(&first.view());
        }
        assert!(loc.fov().is_some());
        let mut events = Vec::new();
        for i in 0..40 {
            let img = &moved.lit[i % 3];
            let r = match loc.observe(&img.view()) {
                Locate::Locked(f) => Some(f.rect),
                _ => None,
            };
            if events.last() != Some(&r) {
                events.push(r);
            }
        }
        let end = loc.fov().expect("locked on the new layout");
        moved.assert_private(end, "after the change");
        assert!(
            rect_distance(end.rect, moved.layout.fov_rect()) <= 8,
            "{:?}",
            end.rect
        );
        assert!(events.len() >= 2, "{events:?}");
    }

    #[test]
    fn a_view_that_lights_up_further_after_the_lock_is_relocked() {
        // A smaller circle (an image-size setting), then the full one: the re-check moves.
        let cfg = FovConfig {
            auto_recheck_frames: 10,
            ..FovConfig::default()
        };
        let mut small = Layout::centred_circle(1280, 720);
        if let crate::phantom::processor::Shape::Circle { r, .. } = &mut small.shape {
            *r = 250.0;
        }
        let big = Layout::centred_circle(1280, 720);
        let mut loc = FovLocator::new(&cfg);
        let a = small.render(Lighting::Lit, 1);
        let b = big.render(Lighting::Lit, 2);
        for _ in 0..8 {
            loc.observe(&a.view());
        }
        let before = loc.fov().unwrap().rect;
        assert!(rect_distance(before, small.fov_rect()) <= 8);
        for _ in 0..30 {
            loc.observe(&b.view());
        }
        let after = loc.fov().unwrap().rect;
        assert!(
            rect_distance(after, big.fov_rect()) <= 8,
            "{before:?} → {after:?}"
        );
    }

    #[test]
    fn the_recheck_after_the_lock_allocates_nothing_new() {
        let s = Layout::centred_circle(640, 360);
        let cfg = FovConfig {
            auto_recheck_frames: 4,
            ..FovConfig::default()
        };
        let img = s.render(Lighting::Lit, 1);
        let mut loc = FovLocator::new(&cfg);
        for _ in 0..8 {
            loc.observe(&img.view());
        }
        let caps = |l: &FovLocator| {
            (
                l.grid.max.as_ptr(),
                l.grid.stack.capacity(),
                l.grid.scratch.capacity(),
                l.grid.rows.as_ptr(),
            )
        };
        let before = caps(&loc);
        for _ in 0..40 {
            assert!(matches!(loc.observe(&img.view()), Locate::Locked(_)));
        }
        assert_eq!(before, caps(&loc));
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
    fn a_rect_shape_locks_inside_the_lit_image() {
        let s = Screen::new("octagon", Layout::octagon(1280, 720));
        let cfg = FovConfig {
            shape: FovShape::Rect,
            ..FovConfig::default()
        };
        let (rect, _) = run(&s, &cfg, &seq(&[(Frame::Lit, 10)]), "rect");
        let r = rect.expect("locked");
        assert!(r.width > 500 && r.height > 400, "{r:?}");
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
        assert_eq!(loc.last_rejection(), Some(Reject::Dark));
    }

    #[test]
    fn a_fixed_rect_outside_the_frame_is_refused_and_one_partly_outside_is_clipped() {
        // Issue 12 item 4: [5000, 5000, 100, 100] on 1280x720 panicked the score thread.
        let img = I420Image::new(1280, 720);
        let fixed = |rect| FovConfig {
            mode: FovMode::Fixed,
            rect: Some(rect),
            ..FovConfig::default()
        };
        let mut loc = FovLocator::new(&fixed([5000, 5000, 100, 100]));
        assert!(matches!(loc.observe(&img.view()), Locate::Refused));
        assert!(matches!(loc.observe(&img.view()), Locate::Refused));
        assert_eq!(loc.last_rejection(), Some(Reject::OutsideFrame));
        let mut loc = FovLocator::new(&fixed([1270, 710, 100, 100]));
        assert!(
            matches!(loc.observe(&img.view()), Locate::Refused),
            "10x10 left"
        );
        let mut loc = FovLocator::new(&fixed([1000, 600, 1000, 1000]));
        let Locate::Locked(f) = loc.observe(&img.view()) else {
            panic!("a rect partly inside is clipped")
        };
        assert_eq!(f.rect, Rect::new(1000, 600, 280, 120));
        assert!(f.usable(1280, 720));
    }

    #[test]
    fn a_mask_partly_outside_the_frame_is_clipped_not_dropped() {
        // Issue 12 item 3: the mask's x + width wrapped and it was dropped.
        for m in [
            Rect::new(1, 0, u32::MAX, 200),
            Rect::new(1000, 0, 5000, 200),
        ] {
            let fov = Fov::new(Rect::new(0, 0, 1280, 720), FovShape::Rect, &[m], 1280, 720);
            assert_eq!(fov.masks.len(), 1, "{m:?}");
            assert!(!fov.visible(1100, 100) && fov.visible(1100, 300) && fov.visible(0, 0));
            let mut rgb = vec![200u8; 1280 * 720 * 3];
            fov.redact_rgb(&mut rgb);
            assert_eq!(rgb[(100 * 1280 + 1279) * 3], 0);
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
