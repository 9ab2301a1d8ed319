//! White light or narrow-band imaging: which light the processor shows, told from the
//! colour of the field of view, so that a training set knows which frames are which and
//! `select.light` can forward one mode only.
//!
//! # The rule
//!
//! White light shows mucosa pink-red: its mean chroma over the field of view lies along
//! +Cr (red) with Cb near neutral or a little below (pink: blue about as strong as
//! green). Narrow-band imaging has no red illumination: the processor maps the green
//! band to red and the blue band to green and blue, so mucosa reads brown (Cr positive,
//! but Cb far below neutral: little blue), or teal-grey (Cr near neutral or below).
//!
//! With `cb`, `cr` the mean chroma offsets from neutral in limited-range codes
//! ([`crate::score::classical::Measures::mean_cb`]): **white** when
//! `cr ≥ WHITE_MIN_CR` and `cr + WHITE_CB_WEIGHT · cb ≥ 0` (the mean lies in the pink-red
//! sector), **nbi** otherwise. Two numbers, set on the phantom's two palettes and the
//! real-image evaluation set (`docs/scoring.md`, "Light"). A frame with too little
//! colour to judge (`|cb| + |cr| < MIN_CHROMA`), or one the scorer finds dark,
//! over-exposed, glaring (colour lost) or outside the body (the room's light, not the
//! processor's), keeps the light of the frame before ([`LightTracker`]), so such a moment
//! never flips the tag. A stream's first frames, before any could tell, are white light.

use serde::{Deserialize, Serialize};

/// The least mean red-difference chroma of a white-light view (limited-range codes).
pub const WHITE_MIN_CR: f32 = 8.0;
/// How much a blue deficit (negative Cb) counts against red: brown, not pink.
pub const WHITE_CB_WEIGHT: f32 = 1.3;
/// Below this much chroma (|cb| + |cr|) the colour says nothing of the light.
pub const MIN_CHROMA: f32 = 4.0;

/// The light a frame was captured under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Light {
    Nbi,
    White,
}

impl Light {
    pub const ALL: [Light; 2] = [Light::Nbi, Light::White];

    pub fn as_str(self) -> &'static str {
        match self {
            Light::Nbi => "nbi",
            Light::White => "white",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The light of a field of view whose mean chroma offsets are `cb`, `cr`, or None
    /// when it has too little colour to tell.
    pub fn classify(cb: f32, cr: f32) -> Option<Light> {
        if cb.abs() + cr.abs() < MIN_CHROMA {
            return None;
        }
        Some(if cr >= WHITE_MIN_CR && cr + WHITE_CB_WEIGHT * cb >= 0.0 {
            Light::White
        } else {
            Light::Nbi
        })
    }
}

/// Which light `select.light` forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LightFilter {
    #[default]
    Any,
    Nbi,
    White,
}

impl LightFilter {
    pub fn admits(self, light: Light) -> bool {
        match self {
            LightFilter::Any => true,
            LightFilter::Nbi => light == Light::Nbi,
            LightFilter::White => light == Light::White,
        }
    }
}

/// The light of a stream's frames: a colourless frame keeps the last light told
/// (white light before any frame could tell: what a scope starts in).
#[derive(Debug, Clone, Copy)]
pub struct LightTracker {
    last: Light,
}

impl Default for LightTracker {
    fn default() -> Self {
        LightTracker { last: Light::White }
    }
}

impl LightTracker {
    /// The light of a frame with mean chroma `cb`, `cr`; `tells` false (a frame that
    /// shows no mucosa, such as a scope outside the body) keeps the last light.
    pub fn observe(&mut self, cb: f32, cr: f32, tells: bool) -> Light {
        if let Some(l) = Light::classify(cb, cr).filter(|_| tells) {
            self.last = l;
        }
        self.last
    }

    pub fn reset(&mut self) {
        *self = LightTracker::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean chroma offsets of an RGB colour (BT.601, limited range).
    fn chroma(rgb: [f32; 3]) -> (f32, f32) {
        let [r, g, b] = rgb;
        let cb = (-0.148 * r - 0.291 * g + 0.439 * b) * 1.0;
        let cr = (0.439 * r - 0.368 * g - 0.071 * b) * 1.0;
        (cb, cr)
    }

    #[test]
    fn the_phantom_palettes_base_colours_read_as_their_light() {
        let (cb, cr) = chroma([150.0, 95.0, 60.0]);
        assert_eq!(Light::classify(cb, cr), Some(Light::Nbi), "{cb} {cr}");
        let (cb, cr) = chroma([205.0, 105.0, 95.0]);
        assert_eq!(Light::classify(cb, cr), Some(Light::White), "{cb} {cr}");
    }

    #[test]
    fn teal_narrow_band_mucosa_is_nbi_and_grey_keeps_the_last_light() {
        let (cb, cr) = chroma([90.0, 120.0, 115.0]);
        assert_eq!(Light::classify(cb, cr), Some(Light::Nbi));
        let mut t = LightTracker::default();
        assert_eq!(t.observe(cb, cr, true), Light::Nbi);
        assert_eq!(
            t.observe(1.0, -1.5, true),
            Light::Nbi,
            "grey keeps the last"
        );
        let (cb, cr) = chroma([205.0, 105.0, 95.0]);
        assert_eq!(t.observe(cb, cr, true), Light::White);
        let (cb, cr) = chroma([150.0, 95.0, 60.0]);
        assert_eq!(t.observe(cb, cr, true), Light::Nbi);
        let (cb, cr) = chroma([205.0, 105.0, 95.0]);
        assert_eq!(
            t.observe(cb, cr, false),
            Light::Nbi,
            "a frame that cannot tell keeps it"
        );
        t.reset();
        assert_eq!(t.observe(0.0, 0.0, true), Light::White);
    }

    #[test]
    fn the_filter_admits_its_light_only() {
        for l in Light::ALL {
            assert!(LightFilter::Any.admits(l));
        }
        assert!(LightFilter::Nbi.admits(Light::Nbi) && !LightFilter::Nbi.admits(Light::White));
        assert!(LightFilter::White.admits(Light::White) && !LightFilter::White.admits(Light::Nbi));
    }
}
