//! The burned-in on-screen display: fake patient data and a running clock, drawn in white on
//! the black border left of the field of view, as a video processor does.
//!
//! It exists so that the agent's redaction (no patient data may leave the room) can be tested
//! against frames that really contain text. The font is a built-in 5×7 bitmap, scaled by an
//! integer factor (~height/270) — [`crate::font`], so no font files or rendering libraries are needed.

use crate::font::glyph;
use crate::frame::Rect;

/// Luma of the text: the nominal white of limited-range video.
pub(crate) const TEXT_Y: u8 = 235;

/// Fake patient data, one entry per line; `None` marks where the clock goes.
const LINES: [Option<&str>; 7] = [
    Some("DOE^JANE"),
    Some("ID 0012345"),
    Some("F 63Y"),
    Some("1961-03-14"),
    Some(" "),
    None,
    Some("NBI"),
];
const CLOCK_CHARS: u32 = 8; // HH:MM:SS
/// The clock starts at 09:41:07 on frame 0.
const CLOCK_START_S: u64 = 9 * 3600 + 41 * 60 + 7;

/// Text cell geometry at a given integer scale: 6 columns per character (5 + gap),
/// 10 rows per line (7 + gap), margins of 8 units.
fn advance(scale: u32) -> u32 {
    6 * scale
}
fn line_height(scale: u32) -> u32 {
    10 * scale
}
fn margin(scale: u32) -> u32 {
    8 * scale
}
fn text_width(chars: u32, scale: u32) -> u32 {
    (chars * advance(scale)).saturating_sub(scale)
}

/// Width of the frame's left strip the OSD needs at `scale` (margins included).
pub(crate) fn needed_width(scale: u32) -> u32 {
    let chars = LINES
        .iter()
        .map(|l| l.map_or(CLOCK_CHARS, |s| s.len() as u32))
        .max()
        .unwrap_or(0);
    2 * margin(scale) + text_width(chars, scale)
}

/// Height the OSD needs at `scale`.
pub(crate) fn needed_height(scale: u32) -> u32 {
    2 * margin(scale) + LINES.len() as u32 * line_height(scale)
}

/// The laid-out OSD: static text as precomputed horizontal runs, plus the clock position.
pub(crate) struct Osd {
    scale: u32,
    /// (row, x0, x1) luma runs of the static text.
    runs: Vec<(u32, u32, u32)>,
    clock_at: (u32, u32),
    rects: Vec<Rect>,
}

impl Osd {
    /// Lay out the text at the top left with the given scale; `mode` replaces the "NBI" tag.
    pub fn new(scale: u32, mode: &str) -> Osd {
        let (m, lh) = (margin(scale), line_height(scale));
        let mut osd = Osd {
            scale,
            runs: Vec::new(),
            clock_at: (m, m),
            rects: Vec::new(),
        };
        for (i, line) in LINES.iter().enumerate() {
            let y = m + i as u32 * lh;
            let text = match line {
                None => {
                    osd.clock_at = (m, y);
                    osd.rects
                        .push(Rect::new(m, y, text_width(CLOCK_CHARS, scale), 7 * scale));
                    continue;
                }
                Some("NBI") => mode,
                Some(t) => t,
            };
            if text.trim().is_empty() {
                continue;
            }
            osd.rects.push(Rect::new(
                m,
                y,
                text_width(text.len() as u32, scale),
                7 * scale,
            ));
            for_each_run(text.as_bytes(), m, y, scale, |row, x0, x1| {
                osd.runs.push((row, x0, x1))
            });
        }
        osd
    }

    pub fn rects(&self) -> &[Rect] {
        &self.rects
    }

    /// Burn the text into the luma plane; the clock shows `seconds` after the start time.
    /// Chroma is left alone: the text sits on the border, whose chroma is already neutral.
    pub fn draw(&self, y_plane: &mut [u8], stride: usize, seconds: u64) {
        for &(row, x0, x1) in &self.runs {
            let o = row as usize * stride;
            y_plane[o + x0 as usize..o + x1 as usize].fill(TEXT_Y);
        }
        let t = (CLOCK_START_S + seconds) % 86_400;
        let (h, mi, s) = (t / 3600, t / 60 % 60, t % 60);
        let d = |v: u64| b'0' + v as u8;
        let clock = [
            d(h / 10),
            d(h % 10),
            b':',
            d(mi / 10),
            d(mi % 10),
            b':',
            d(s / 10),
            d(s % 10),
        ];
        let (cx, cy) = self.clock_at;
        for_each_run(&clock, cx, cy, self.scale, |row, x0, x1| {
            let o = row as usize * stride;
            y_plane[o + x0 as usize..o + x1 as usize].fill(TEXT_Y);
        });
    }
}

/// Call `f(row, x0, x1)` for every horizontal run of lit pixels of `text` drawn at (x, y).
fn for_each_run(text: &[u8], x: u32, y: u32, scale: u32, mut f: impl FnMut(u32, u32, u32)) {
    for (ci, &c) in text.iter().enumerate() {
        let gx = x + ci as u32 * advance(scale);
        for (gr, bits) in glyph(c).iter().enumerate() {
            let mut col = 0u32;
            while col < 5 {
                if bits & (0x10 >> col) == 0 {
                    col += 1;
                    continue;
                }
                let start = col;
                while col < 5 && bits & (0x10 >> col) != 0 {
                    col += 1;
                }
                for sr in 0..scale {
                    f(
                        y + gr as u32 * scale + sr,
                        gx + start * scale,
                        gx + col * scale,
                    );
                }
            }
        }
    }
}
