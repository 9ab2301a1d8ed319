//! The scripted degradation schedule of the phantom and the ground-truth labels it implies.
//!
//! A schedule is a list of timed segments, each either good or carrying one degradation.
//! It has a compact text form (used on the command line, in configs and in `labels.csv`):
//!
//! ```text
//! good 2s; motion 1s len=24 angle=30; defocus 1s sigma=1.5; dark 1s gain=0.25;
//! overexposed 1s gain=2.5; glare 1s area=0.06; outside 1s
//! ```
//!
//! Pixel parameters (`len`, `sigma`) are given for a 1080-line frame and scaled by
//! `height / 1080` when rendering, so a schedule describes the same *look* at every
//! resolution and the labels (severity) do not depend on the output size.
//!
//! Severity rule (`0` = perfect, `1` = unusable; `quality = 1 - severity`). The schedule only
//! expresses good and clearly bad segments, so every degraded segment has severity ≥ 0.5 and
//! "bad" ⇔ `severity >= 0.5` ⇔ `expected.is_some()`:
//! - good: 0;
//! - blur: σ-equivalent in 1080p pixels (defocus: σ; motion: `len / √12`, the standard
//!   deviation of a box of that length), severity `1 - 2^(-σ)` (σ=1 → 0.5, σ=1.5 → 0.65,
//!   σ=3 → 0.875);
//! - dark (gain g < 1): `1 - g`;
//! - overexposed (gain g > 1): `1 - 1/g`;
//! - glare (FOV area fraction a): `a / (a + 0.03)` (3 % → 0.5, 6 % → 0.67);
//! - outside: 1;
//!
//! each then clamped to `[0.5, 1]`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::artifact::Artifact;

/// What is done to the frames of one segment. Pixel sizes refer to a 1080-line frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Degradation {
    /// A good frame: sharp, well exposed, no glare.
    #[serde(rename = "good")]
    None,
    /// Directional box blur of `length_px`; `angle_deg` counter-clockwise from the x axis
    /// (rendered along the nearest of 0/45/90/135°).
    #[serde(rename = "motion")]
    MotionBlur { length_px: f32, angle_deg: f32 },
    /// Gaussian defocus of standard deviation `sigma_px`.
    Defocus { sigma_px: f32 },
    /// Luma scaled toward black (and chroma toward grey) by `gain` < 1.
    #[serde(rename = "dark")]
    UnderExposure { gain: f32 },
    /// Brightness multiplied by `gain` > 1 and clipped.
    #[serde(rename = "overexposed")]
    OverExposure { gain: f32 },
    /// Specular highlights covering `area` (fraction) of the field of view.
    Glare { area: f32 },
    /// The scope is out of the body: room light instead of mucosa.
    Outside,
}

impl Degradation {
    /// The schedule keyword of this degradation.
    pub fn keyword(&self) -> &'static str {
        match self {
            Degradation::None => "good",
            Degradation::MotionBlur { .. } => "motion",
            Degradation::Defocus { .. } => "defocus",
            Degradation::UnderExposure { .. } => "dark",
            Degradation::OverExposure { .. } => "overexposed",
            Degradation::Glare { .. } => "glare",
            Degradation::Outside => "outside",
        }
    }

    /// The artifact a scorer should report for a frame with this degradation (`None` = good).
    pub fn expected(&self) -> Option<Artifact> {
        match self {
            Degradation::None => None,
            Degradation::MotionBlur { .. } | Degradation::Defocus { .. } => Some(Artifact::Blur),
            Degradation::UnderExposure { .. } => Some(Artifact::Dark),
            Degradation::OverExposure { .. } => Some(Artifact::Overexposed),
            Degradation::Glare { .. } => Some(Artifact::Glare),
            Degradation::Outside => Some(Artifact::Outside),
        }
    }

    /// Ground-truth severity, see the module documentation for the rule.
    pub fn severity(&self) -> f32 {
        let raw = match *self {
            Degradation::None => return 0.0,
            Degradation::Outside => return 1.0,
            Degradation::MotionBlur { .. } | Degradation::Defocus { .. } => {
                1.0 - 2f32.powf(-self.blur_sigma_equiv())
            }
            Degradation::UnderExposure { gain } => 1.0 - gain,
            Degradation::OverExposure { gain } => 1.0 - 1.0 / gain,
            Degradation::Glare { area } => area / (area + 0.03),
        };
        raw.clamp(0.5, 1.0)
    }

    /// Standard deviation (1080p pixels) of the blur kernel; 0 for non-blur degradations.
    pub fn blur_sigma_equiv(&self) -> f32 {
        match *self {
            Degradation::Defocus { sigma_px } => sigma_px,
            Degradation::MotionBlur { length_px, .. } => length_px / 12f32.sqrt(),
            _ => 0.0,
        }
    }

    fn params(&self) -> Vec<(&'static str, f32)> {
        match *self {
            Degradation::None | Degradation::Outside => vec![],
            Degradation::MotionBlur {
                length_px,
                angle_deg,
            } => vec![("len", length_px), ("angle", angle_deg)],
            Degradation::Defocus { sigma_px } => vec![("sigma", sigma_px)],
            Degradation::UnderExposure { gain } | Degradation::OverExposure { gain } => {
                vec![("gain", gain)]
            }
            Degradation::Glare { area } => vec![("area", area)],
        }
    }

    fn write_params(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in self.params() {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

/// `keyword [key=value ...]`, e.g. `motion len=24 angle=30` (the form used in `labels.csv`).
impl fmt::Display for Degradation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())?;
        self.write_params(f)
    }
}

/// One timed part of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub degradation: Degradation,
    pub seconds: f32,
}

impl Segment {
    pub const fn new(degradation: Degradation, seconds: f32) -> Self {
        Segment {
            degradation,
            seconds,
        }
    }
}

/// `keyword Ns [key=value ...]`, e.g. `motion 1s len=24 angle=30`.
impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}s", self.degradation.keyword(), self.seconds)?;
        self.degradation.write_params(f)
    }
}

/// Why a schedule text was rejected. Segment numbers are 1-based.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule has no segments")]
    Empty,
    #[error("schedule segment {number} `{text}`: {problem}")]
    Segment {
        number: usize,
        text: String,
        problem: String,
    },
}

/// A looping list of segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub segments: Vec<Segment>,
}

impl Schedule {
    /// Parse the text form (segments separated by `;`, see the module documentation).
    /// Missing parameters take the demo defaults (len=24 angle=0, sigma=3, dark gain=0.25,
    /// overexposed gain=2.5, area=0.06).
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let mut segments = Vec::new();
        for (i, part) in text.split(';').enumerate() {
            let part = part.trim();
            if part.is_empty() {
                // Tolerate a trailing `;` but not an empty segment in the middle.
                if text.split(';').skip(i + 1).all(|p| p.trim().is_empty()) {
                    continue;
                }
            }
            let seg = parse_segment(part).map_err(|problem| ScheduleError::Segment {
                number: i + 1,
                text: part.to_string(),
                problem,
            })?;
            segments.push(seg);
        }
        if segments.is_empty() {
            return Err(ScheduleError::Empty);
        }
        Ok(Schedule { segments })
    }

    /// Total length of one loop of the schedule.
    pub fn total_seconds(&self) -> f32 {
        self.segments.iter().map(|s| s.seconds).sum()
    }

    /// A single-segment schedule (handy for tests and stills of one condition).
    pub fn single(degradation: Degradation, seconds: f32) -> Schedule {
        Schedule {
            segments: vec![Segment::new(degradation, seconds)],
        }
    }
}

/// The demo schedule (21 s): each degradation once, separated by good stretches of ≥ 2 s.
/// The defocus is deliberately mild (σ = 1.5 px at 1080p) to exercise the scorer's threshold.
impl Default for Schedule {
    fn default() -> Self {
        use Degradation::*;
        let good = Segment::new(None, 2.0);
        Schedule {
            segments: vec![
                good,
                Segment::new(
                    MotionBlur {
                        length_px: 24.0,
                        angle_deg: 30.0,
                    },
                    1.5,
                ),
                good,
                Segment::new(Defocus { sigma_px: 1.5 }, 1.5),
                good,
                Segment::new(UnderExposure { gain: 0.3 }, 1.5),
                good,
                Segment::new(OverExposure { gain: 2.5 }, 1.5),
                good,
                Segment::new(Glare { area: 0.05 }, 1.5),
                good,
                Segment::new(Outside, 1.5),
            ],
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

// In configs a schedule is its text form, so that it reads the same everywhere.
impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Schedule::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The `key=value` parameters of a segment of kind `keyword`: numbers, each once, each
/// one the kind takes.
fn parse_params<'a>(
    words: impl Iterator<Item = &'a str>,
    keyword: &str,
) -> Result<Vec<(&'a str, f32)>, String> {
    let mut params: Vec<(&str, f32)> = Vec::new();
    for w in words {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| format!("expected key=value, found `{w}`"))?;
        let v: f32 = v
            .parse()
            .ok()
            .filter(|v: &f32| v.is_finite())
            .ok_or_else(|| format!("value of `{k}` is not a number: `{v}`"))?;
        if params.iter().any(|(pk, _)| *pk == k) {
            return Err(format!("parameter `{k}` given twice"));
        }
        params.push((k, v));
    }
    let allowed: &[&str] = match keyword {
        "good" | "outside" => &[],
        "motion" => &["len", "angle"],
        "defocus" => &["sigma"],
        "dark" | "overexposed" => &["gain"],
        "glare" => &["area"],
        other => {
            return Err(format!(
                "unknown kind `{other}` (expected good, motion, defocus, dark, overexposed, glare or outside)"
            ))
        }
    };
    if let Some((k, _)) = params.iter().find(|(k, _)| !allowed.contains(k)) {
        return Err(if allowed.is_empty() {
            format!("`{keyword}` takes no parameters, found `{k}`")
        } else {
            format!(
                "unknown parameter `{k}` for `{keyword}` (allowed: {})",
                allowed.join(", ")
            )
        });
    }
    Ok(params)
}

fn parse_segment(part: &str) -> Result<Segment, String> {
    let mut words = part.split_whitespace();
    let keyword = words.next().ok_or("empty segment")?;
    let dur = words
        .next()
        .ok_or_else(|| format!("missing duration after `{keyword}` (e.g. `{keyword} 2s`)"))?;
    let seconds = dur
        .strip_suffix('s')
        .and_then(|n| n.parse::<f32>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .ok_or_else(|| format!("duration `{dur}` is not a positive number of seconds like `2s`"))?;

    let params = parse_params(words, keyword)?;
    let get = |k: &str, default: f32| {
        params
            .iter()
            .find(|(pk, _)| *pk == k)
            .map_or(default, |p| p.1)
    };
    let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_string()) };
    let degradation = match keyword {
        "good" => Degradation::None,
        "outside" => Degradation::Outside,
        "motion" => {
            let length_px = get("len", 24.0);
            check(
                length_px > 0.0 && length_px <= 250.0,
                "len must be in (0, 250] (pixels at 1080p)",
            )?;
            Degradation::MotionBlur {
                length_px,
                angle_deg: get("angle", 0.0),
            }
        }
        "defocus" => {
            let sigma_px = get("sigma", 3.0);
            check(
                sigma_px > 0.0 && sigma_px <= 50.0,
                "sigma must be in (0, 50] (pixels at 1080p)",
            )?;
            Degradation::Defocus { sigma_px }
        }
        "dark" => {
            let gain = get("gain", 0.25);
            check(gain > 0.0 && gain < 1.0, "dark gain must be in (0, 1)")?;
            Degradation::UnderExposure { gain }
        }
        "overexposed" => {
            let gain = get("gain", 2.5);
            check(
                gain > 1.0 && gain <= 16.0,
                "overexposed gain must be in (1, 16]",
            )?;
            Degradation::OverExposure { gain }
        }
        "glare" => {
            let area = get("area", 0.06);
            check(area > 0.0 && area <= 0.5, "glare area must be in (0, 0.5]")?;
            Degradation::Glare { area }
        }
        _ => unreachable!("keyword checked above"),
    };
    Ok(Segment::new(degradation, seconds))
}

/// Ground truth for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrameLabel {
    /// The frame index as requested (the schedule position is `index % num_frames`).
    pub index: u64,
    /// Index of the schedule segment the frame falls in.
    pub segment: usize,
    pub degradation: Degradation,
    /// What a scorer should report; `None` = a good frame.
    pub expected: Option<Artifact>,
    /// 0 = perfect .. 1 = unusable (rule in the module documentation).
    pub severity: f32,
}

impl FrameLabel {
    pub fn new(index: u64, segment: usize, degradation: Degradation) -> Self {
        FrameLabel {
            index,
            segment,
            degradation,
            expected: degradation.expected(),
            severity: degradation.severity(),
        }
    }
    /// Ground-truth quality, `1 - severity`.
    pub fn quality(&self) -> f32 {
        1.0 - self.severity
    }
    pub fn is_good(&self) -> bool {
        self.expected.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "good 2s; motion 1s len=24 angle=30; defocus 1s sigma=1.5; dark 1s gain=0.25; overexposed 1s gain=2.5; glare 1s area=0.06; outside 1s";

    #[test]
    fn parse_then_display_round_trips() {
        let s = Schedule::parse(EXAMPLE).unwrap();
        assert_eq!(s.segments.len(), 7);
        assert_eq!(s.to_string(), EXAMPLE);
        assert_eq!(Schedule::parse(&s.to_string()).unwrap(), s);
        let d = Schedule::default();
        assert_eq!(Schedule::parse(&d.to_string()).unwrap(), d);
    }

    #[test]
    fn parse_fills_defaults_and_accepts_fractional_seconds() {
        let s = Schedule::parse(" motion 0.5s ;defocus 1s;").unwrap();
        assert_eq!(s.segments[0].seconds, 0.5);
        assert_eq!(
            s.segments[0].degradation,
            Degradation::MotionBlur {
                length_px: 24.0,
                angle_deg: 0.0
            }
        );
        assert_eq!(s.segments.len(), 2);
    }

    #[test]
    fn parse_errors_name_the_bad_segment_and_the_problem() {
        let cases = [
            ("good 2s; blurry 1s", 2, "unknown kind `blurry`"),
            ("good 2s; dark 1s gain=2", 2, "dark gain"),
            ("defocus 1s sigma=abc", 1, "not a number"),
            ("good 2s; good; glare 1s", 2, "missing duration"),
            ("good 2x", 1, "duration `2x`"),
            (
                "good 1s; motion 1s len=3 foo=2",
                2,
                "unknown parameter `foo`",
            ),
            ("good 1s;; good 1s", 2, "empty segment"),
            ("outside 1s area=0.1", 1, "takes no parameters"),
        ];
        for (text, number, needle) in cases {
            let err = Schedule::parse(text).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(&err, ScheduleError::Segment { number: n, .. } if *n == number),
                "{text}: {msg}"
            );
            assert!(msg.contains(needle), "{text}: {msg}");
            assert!(msg.contains(&format!("segment {number}")), "{msg}");
        }
        assert_eq!(Schedule::parse(" ; ").unwrap_err(), ScheduleError::Empty);
    }

    #[test]
    fn degradations_map_to_artifacts_and_bad_means_severity_at_least_half() {
        for seg in Schedule::parse(EXAMPLE).unwrap().segments {
            let d = seg.degradation;
            let bad = d.expected().is_some();
            assert_eq!(bad, d.severity() >= 0.5, "{d}");
            assert!((0.0..=1.0).contains(&d.severity()));
        }
        assert_eq!(
            Degradation::Defocus { sigma_px: 1.0 }.expected(),
            Some(Artifact::Blur)
        );
        assert!((Degradation::Defocus { sigma_px: 1.0 }.severity() - 0.5).abs() < 1e-6);
        assert_eq!(Degradation::Outside.expected(), Some(Artifact::Outside));
        let l = FrameLabel::new(3, 0, Degradation::None);
        assert_eq!((l.quality(), l.is_good()), (1.0, true));
    }

    #[test]
    fn default_schedule_is_about_twenty_seconds_with_every_artifact() {
        let s = Schedule::default();
        assert!((18.0..=24.0).contains(&s.total_seconds()));
        // The phantom renders every artifact but sensor noise and compression (which the
        // real-image set, models/realset, covers).
        for a in Artifact::ALL.into_iter().filter(|a| *a != Artifact::Noise) {
            assert!(s
                .segments
                .iter()
                .any(|g| g.degradation.expected() == Some(a)));
        }
        for g in &s.segments {
            if g.degradation == Degradation::None {
                assert!(g.seconds >= 2.0);
            }
        }
    }
}
