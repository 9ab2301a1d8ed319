//! `calibration.png`: one histogram panel per series, the current thresholds in blue
//! (dashed), the suggested ones in orange, each labelled with its key and value.
//!
//! Drawn directly into an RGB buffer with the `image` crate the agent already uses and the
//! project's 5×7 bitmap font ([`crate::font`], plus the punctuation a report
//! needs): no font files, fontconfig or plotting library on the device image.

use image::{Rgb, RgbImage};
use serde_json::Value;

use super::suggest::{Frames, Suggestion};
use super::Analysis;

const COLS: u32 = 4;
const PANEL_W: u32 = 480;
const PANEL_H: u32 = 300;
const HEADER_H: u32 = 92;
const BINS: usize = 40;
/// Text scale: 5×7 glyphs drawn at 2× (12 px per character with spacing).
const S: u32 = 2;
const CHAR_W: u32 = 6 * S;
const LINE_H: u32 = 9 * S;

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([30, 30, 30]);
const FRAME: Rgb<u8> = Rgb([190, 190, 190]);
const BARS: Rgb<u8> = Rgb([185, 185, 185]);
const SUBSET: Rgb<u8> = Rgb([20, 130, 60]);
const CURRENT: Rgb<u8> = Rgb([30, 80, 220]);
const SUGGESTED: Rgb<u8> = Rgb([235, 120, 0]);

/// A threshold drawn on a panel.
#[derive(Debug, Clone)]
pub struct Line {
    pub value: f32,
    pub suggested: bool,
    pub label: String,
}

/// One histogram.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    /// Every scored frame (grey bars).
    pub all: Vec<f32>,
    /// The frames the suggestion was based on, when not all of them (green outline).
    pub subset: Option<(Frames, Vec<f32>)>,
    pub lines: Vec<Line>,
    /// Draw over [0, 1] (qualities, artifacts) rather than the data's own range.
    pub unit_range: bool,
}

/// The panels for an analysis: one per plotted series, thresholds from its suggestions.
pub fn panels(an: &Analysis) -> Vec<Panel> {
    an.names
        .iter()
        .filter(|n| super::plotted(n))
        .map(|name| {
            let get = |f: Frames| {
                an.dists
                    .get(&(name.clone(), f))
                    .map(|d| d.values().to_vec())
            };
            let own: Vec<&Suggestion> =
                an.suggestions.iter().filter(|s| s.series == name).collect();
            let subset = own
                .iter()
                .map(|s| s.frames)
                .find(|f| *f != Frames::All)
                .and_then(|f| get(f).map(|v| (f, v)));
            let mut lines = Vec::new();
            for s in &own {
                let short = s.key.split_once('.').map_or(s.key, |(_, n)| n);
                let (cur, new) = (numbers(&s.current), numbers(&s.suggested));
                let ends = ["", ""];
                let ends = if cur.len() == 2 { ["[0]", "[1]"] } else { ends };
                for (i, v) in cur.iter().enumerate() {
                    let kept = if s.changed { "" } else { " kept" };
                    lines.push(Line {
                        value: *v,
                        suggested: false,
                        label: format!("{short}{} {}{kept}", ends[i], fmt(*v)),
                    });
                }
                if s.changed {
                    for (i, v) in new.iter().enumerate() {
                        lines.push(Line {
                            value: *v,
                            suggested: true,
                            label: format!("{short}{} {}", ends[i], fmt(*v)),
                        });
                    }
                }
            }
            Panel {
                title: name.clone(),
                all: get(Frames::All).unwrap_or_default(),
                subset,
                lines,
                unit_range: !name.starts_with("measures."),
            }
        })
        .collect()
}

fn numbers(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(xs) => xs
            .iter()
            .filter_map(Value::as_f64)
            .map(|x| x as f32)
            .collect(),
        x => x.as_f64().map(|x| x as f32).into_iter().collect(),
    }
}

fn fmt(v: f32) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The whole figure: header lines, a legend, then the panels in a grid.
pub fn render(panels: &[Panel], header: &[String]) -> RgbImage {
    let rows = (panels.len() as u32).div_ceil(COLS).max(1);
    let mut img = RgbImage::from_pixel(COLS * PANEL_W, HEADER_H + rows * PANEL_H, WHITE);
    for (i, line) in header.iter().enumerate() {
        text(&mut img, 10, 8 + i as u32 * LINE_H, line, INK);
    }
    let y = 8 + header.len() as u32 * LINE_H + 6;
    let mut x = 10;
    for (label, colour) in [
        ("all scored frames", BARS),
        ("frames the suggestion used", SUBSET),
        ("current", CURRENT),
        ("suggested", SUGGESTED),
    ] {
        fill(&mut img, x, y, 28, 14, colour);
        x += 36;
        text(&mut img, x, y, label, INK);
        x += label.len() as u32 * CHAR_W + 28;
    }
    for (i, p) in panels.iter().enumerate() {
        let (c, r) = (i as u32 % COLS, i as u32 / COLS);
        draw_panel(&mut img, c * PANEL_W, HEADER_H + r * PANEL_H, p);
    }
    img
}

/// A panel's plot area in image pixels, and the value range its x axis spans.
#[derive(Clone, Copy)]
struct Area {
    px: u32,
    py: u32,
    pw: u32,
    ph: u32,
    lo: f32,
    hi: f32,
}

impl Area {
    fn x_of(&self, v: f32) -> u32 {
        let t = ((v - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0);
        self.px + (t * (self.pw - 1) as f32) as u32
    }

    /// Counts per histogram bin.
    fn counts(&self, vals: &[f32]) -> [u32; BINS] {
        let mut c = [0u32; BINS];
        for v in vals {
            let b = ((v - self.lo) / (self.hi - self.lo) * BINS as f32).floor();
            c[(b.max(0.0) as usize).min(BINS - 1)] += 1;
        }
        c
    }
}

/// One panel: a measure's histogram (all frames as bars, the subset as a step outline),
/// its axis, and the current (dashed) and suggested (solid) thresholds.
fn draw_panel(img: &mut RgbImage, x0: u32, y0: u32, p: &Panel) {
    let (w, h) = (PANEL_W, PANEL_H);
    outline(img, x0 + 4, y0 + 4, w - 8, h - 8, FRAME);
    let title = format!("{}  n={}", p.title, p.all.len());
    text(img, x0 + 12, y0 + 10, &title, INK);
    // Plot area: below the title and one row per threshold label, above the tick labels.
    let label_rows = p.lines.len().min(4) as u32;
    let (px, pw) = (x0 + 16, w - 32);
    let py = y0 + 12 + LINE_H + label_rows * LINE_H + 6;
    let ph = (y0 + h - 4 - 2 * LINE_H) - py;
    let (lo, hi) = range(p);
    let area = Area {
        px,
        py,
        pw,
        ph,
        lo,
        hi,
    };
    let top = draw_histogram(img, area, p);
    draw_axis(img, area);
    // The tallest bar's count, where the title leaves room.
    if (title.len() as u32 + 10) * CHAR_W + 24 <= w {
        text(
            img,
            x0 + w - 12 - 8 * CHAR_W,
            y0 + 10,
            &format!("max {top:>4}"),
            BARS,
        );
    }
    draw_thresholds(img, (x0, y0), area, p);
}

/// The bars of every frame and the subset's outline; the tallest bar's count.
fn draw_histogram(img: &mut RgbImage, a: Area, p: &Panel) -> u32 {
    let (px, py, pw, ph) = (a.px, a.py, a.pw, a.ph);
    let all = a.counts(&p.all);
    let top = all.iter().copied().max().unwrap_or(0).max(1);
    let bin_w = pw as f32 / BINS as f32;
    let bar_h = |n: u32| (n as f32 / top as f32 * ph as f32).round() as u32;
    for (b, n) in all.iter().enumerate() {
        let bh = bar_h(*n);
        let bx = px + (b as f32 * bin_w) as u32;
        let bw = ((b + 1) as f32 * bin_w) as u32 - (b as f32 * bin_w) as u32;
        fill(img, bx, py + ph - bh, bw.saturating_sub(1).max(1), bh, BARS);
    }
    if let Some((_, vals)) = &p.subset {
        // A step outline of the subset's histogram, on the same count scale.
        let sub = a.counts(vals);
        let mut prev_y = py + ph;
        for (b, n) in sub.iter().enumerate() {
            let y = py + ph - bar_h(*n).min(ph);
            let bx0 = px + (b as f32 * bin_w) as u32;
            let bx1 = px + ((b + 1) as f32 * bin_w) as u32;
            vline(img, bx0, prev_y.min(y), prev_y.max(y) + 1, SUBSET, 2);
            fill(img, bx0, y.saturating_sub(1), bx1 - bx0 + 1, 2, SUBSET);
            prev_y = y;
        }
        vline(img, px + pw - 1, prev_y, py + ph, SUBSET, 2);
    }
    top
}

/// The x axis with ticks at both ends and the middle.
fn draw_axis(img: &mut RgbImage, a: Area) {
    let (px, py, pw, ph) = (a.px, a.py, a.pw, a.ph);
    fill(img, px, py + ph, pw, 1, INK);
    for (i, v) in [a.lo, (a.lo + a.hi) / 2.0, a.hi].into_iter().enumerate() {
        let x = a.x_of(v);
        fill(img, x.min(px + pw - 1), py + ph, 1, 5, INK);
        let s = fmt(v);
        let tw = s.len() as u32 * CHAR_W;
        let tx = match i {
            0 => x,
            1 => x.saturating_sub(tw / 2),
            _ => x.saturating_sub(tw),
        };
        text(img, tx, py + ph + 8, &s, INK);
    }
}

/// Thresholds: current dashed, suggested solid, each label on its own row.
fn draw_thresholds(img: &mut RgbImage, (x0, y0): (u32, u32), a: Area, p: &Panel) {
    let (py, ph, w) = (a.py, a.ph, PANEL_W);
    for (i, l) in p.lines.iter().enumerate() {
        let x = a.x_of(l.value);
        let colour = if l.suggested { SUGGESTED } else { CURRENT };
        if l.suggested {
            vline(img, x.saturating_sub(1), py, py + ph, colour, 3);
        } else {
            let mut y = py;
            while y < py + ph {
                vline(img, x, y, (y + 6).min(py + ph), colour, 2);
                y += 10;
            }
        }
        let row = (i as u32).min(3);
        let ly = y0 + 12 + LINE_H + row * LINE_H;
        let tw = l.label.len() as u32 * CHAR_W;
        let lx = if x + 4 + tw <= x0 + w - 8 {
            x + 4
        } else {
            x.saturating_sub(tw + 4).max(x0 + 8)
        };
        text(img, lx, ly, &l.label, colour);
        vline(img, x, ly + LINE_H - 4, py, colour, 1);
    }
}

/// The x range: [0, 1] for unit series, else the data and thresholds with a margin.
fn range(p: &Panel) -> (f32, f32) {
    if p.unit_range {
        return (0.0, 1.0);
    }
    let vals = p.all.iter().chain(p.lines.iter().map(|l| &l.value));
    let (mut lo, mut hi) = vals.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
        (a.min(*v), b.max(*v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).max(0.05 * hi.abs().max(1.0));
    let mid = (lo + hi) / 2.0;
    lo = mid - span * 0.55;
    hi = mid + span * 0.55;
    (lo, hi)
}

fn fill(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, c: Rgb<u8>) {
    for yy in y..(y + h).min(img.height()) {
        for xx in x..(x + w).min(img.width()) {
            img.put_pixel(xx, yy, c);
        }
    }
}

fn vline(img: &mut RgbImage, x: u32, y0: u32, y1: u32, c: Rgb<u8>, width: u32) {
    fill(img, x, y0, width, y1.saturating_sub(y0), c);
}

fn outline(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, c: Rgb<u8>) {
    fill(img, x, y, w, 1, c);
    fill(img, x, y + h - 1, w, 1, c);
    fill(img, x, y, 1, h, c);
    fill(img, x + w - 1, y, 1, h, c);
}

fn text(img: &mut RgbImage, x: u32, y: u32, s: &str, c: Rgb<u8>) {
    for (i, ch) in s.bytes().enumerate() {
        let gx = x + i as u32 * CHAR_W;
        for (r, bits) in crate::font::glyph(ch).iter().enumerate() {
            for col in 0..5u32 {
                if bits & (0x10 >> col) != 0 {
                    fill(img, gx + col * S, y + r as u32 * S, S, S, c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panel_draws_its_thresholds_in_their_colours() {
        let p = Panel {
            title: "measures.sharpness".into(),
            all: (0..100).map(|i| 0.4 + i as f32 * 0.003).collect(),
            subset: None,
            lines: vec![
                Line {
                    value: 0.5,
                    suggested: false,
                    label: "sharpness_good 0.5".into(),
                },
                Line {
                    value: 0.6,
                    suggested: true,
                    label: "sharpness_good 0.6".into(),
                },
            ],
            unit_range: false,
        };
        let img = render(&[p], &["header".into()]);
        assert_eq!(img.dimensions(), (COLS * PANEL_W, HEADER_H + PANEL_H));
        let count = |c: Rgb<u8>| img.pixels().filter(|p| **p == c).count();
        assert!(count(CURRENT) > 100 && count(SUGGESTED) > 100);
        assert!(count(BARS) > 1000);
    }
}
