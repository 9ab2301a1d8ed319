//! The suggestion rule of `endo-agent calibrate`: distributions of measures in, config
//! values out. Pure (no I/O, no capture): the tables below *are* the rule, so adapting it to
//! new `[scoring]` keys is editing a row. The rule is documented in `docs/scoring.md`
//! ("Calibrating for a site").
//!
//! Three tables, applied in order by [`super::analyse`]:
//!
//! 1. [`EXPOSURE`] over all scored frames: a ramp `[lo, hi]` moves only when the site's
//!    *typical* frame (the 75th percentile) already reaches `lo`, i.e. when the default
//!    would flag ordinary procedure video; then `lo` = that percentile, the spread is kept.
//! 2. [`FOCUS`] over well-exposed frames (no dark / overexposed / glare / outside artifact
//!    under the exposure keys of step 1): thresholds relative to the site's best frames
//!    (the 90th percentile), with factors that reproduce the shipped defaults on the
//!    phantom the defaults were tuned on.
//! 3. [`SELECT`] over all scored frames, on the quality the agent would give them with the
//!    suggested `[scoring]` keys: `threshold_high` is 0.9 × the quality the stated share
//!    of frames reaches (so at least that share passes),
//!    `threshold_low` keeps the current low/high ratio (the hysteresis).

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Percentiles printed and written for every distribution.
pub const PERCENTILES: [u8; 7] = [1, 5, 25, 50, 75, 95, 99];

/// Which frames a distribution is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Frames {
    /// Every frame scored (the field of view locked).
    All,
    /// Frames with no exposure, glare or outside artifact.
    WellExposed,
    /// Every frame scored, its quality recomputed with the suggested `[scoring]` keys.
    Rescored,
}

impl Frames {
    pub fn as_str(self) -> &'static str {
        match self {
            Frames::All => "all",
            Frames::WellExposed => "well_exposed",
            Frames::Rescored => "rescored",
        }
    }
}

/// The sorted values of one series over one set of frames.
#[derive(Debug, Clone, Default)]
pub struct Distribution {
    sorted: Vec<f32>,
}

impl Distribution {
    pub fn new(mut values: Vec<f32>) -> Distribution {
        values.retain(|v| v.is_finite());
        values.sort_by(f32::total_cmp);
        Distribution { sorted: values }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    pub fn values(&self) -> &[f32] {
        &self.sorted
    }

    /// The `p`-th percentile (0..100), linear between order statistics.
    pub fn percentile(&self, p: f32) -> Option<f32> {
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        let pos = (p / 100.0).clamp(0.0, 1.0) * (n - 1) as f32;
        let (i, frac) = (pos.floor() as usize, pos.fract());
        let next = self.sorted[(i + 1).min(n - 1)];
        Some(self.sorted[i] + frac * (next - self.sorted[i]))
    }

    /// Share of values at or above `x`.
    pub fn share_at_or_above(&self, x: f32) -> f32 {
        if self.sorted.is_empty() {
            return 0.0;
        }
        let below = self.sorted.partition_point(|v| *v < x);
        (self.sorted.len() - below) as f32 / self.sorted.len() as f32
    }

    /// n, min, mean, max and [`PERCENTILES`], for the report.
    pub fn summary(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("n".into(), self.sorted.len().into());
        if let (Some(lo), Some(hi)) = (self.sorted.first(), self.sorted.last()) {
            let mean = self.sorted.iter().map(|v| *v as f64).sum::<f64>() / self.len() as f64;
            m.insert("min".into(), round(*lo, 4).into());
            m.insert("mean".into(), round(mean as f32, 4).into());
            m.insert("max".into(), round(*hi, 4).into());
            for p in PERCENTILES {
                let v = self.percentile(p as f32).expect("not empty");
                m.insert(format!("p{p}"), round(v, 4).into());
            }
        }
        Value::Object(m)
    }
}

/// Distributions by series name (`measures.sharpness`, `quality`, …) and frame set.
pub type Dists = BTreeMap<(String, Frames), Distribution>;

/// How a rule turns a distribution into a value.
#[derive(Debug, Clone, Copy)]
pub enum How {
    /// `factor` × the `pct` percentile: relative to the site's best frames.
    OfBest { pct: f32, factor: f32 },
    /// A `[lo, hi]` pair (a ramp, or a soft curve's 0 and 0.5 points; `lo` is where the
    /// artifact starts): unchanged unless the `pct` percentile reaches `lo`; then `lo` =
    /// that percentile and `hi` = `lo` + the current spread, both at most `max`.
    RaiseIfTypical { pct: f32, max: f32 },
    /// `margin` × the value at or above which `Params::pass_share` of the frames lie: at
    /// least that share passes, and frames a little worse than the typical one are not
    /// cut (good frames' qualities cluster tightly near 1, so the percentile alone sits
    /// inside the cluster and fails half of it).
    PassShare { margin: f32 },
    /// The suggested value of key `of` × (this key's current value / `of`'s current value).
    KeepRatio { of: &'static str },
}

/// One row of a suggestion table.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The config key, `section.name`.
    pub key: &'static str,
    /// The series it is derived from (see [`super::series`]).
    pub series: &'static str,
    pub frames: Frames,
    pub how: How,
}

#[rustfmt::skip]
pub const EXPOSURE: &[Rule] = &[
    Rule { key: "scoring.dark_fraction", series: "measures.dark_fraction", frames: Frames::All, how: How::RaiseIfTypical { pct: 75.0, max: 1.0 } },
    Rule { key: "scoring.clipped_fraction", series: "measures.clipped_fraction", frames: Frames::All, how: How::RaiseIfTypical { pct: 75.0, max: 1.0 } },
    Rule { key: "scoring.specular_fraction", series: "measures.specular_fraction", frames: Frames::All, how: How::RaiseIfTypical { pct: 75.0, max: 1.0 } },
    Rule { key: "scoring.outside_cast", series: "measures.cast", frames: Frames::All, how: How::RaiseIfTypical { pct: 75.0, max: 255.0 } },
    Rule { key: "scoring.noise_sigma", series: "measures.noise_sigma", frames: Frames::All, how: How::RaiseIfTypical { pct: 75.0, max: 255.0 } },
    Rule { key: "scoring.blockiness", series: "measures.blockiness", frames: Frames::All, how: How::RaiseIfTypical { pct: 75.0, max: 100.0 } },
];

/// The sharpness factors put the 1080p phantom's sharp frames (sharpness p90 ≈ 0.72) near
/// the phantom-calibrated ramp of earlier releases (0.66 / 0.56). The shipped defaults are
/// lower now (docs/scoring.md: absolute sharpness depends on the content), so on a site's
/// own recording this suggests the site's own, stricter absolute ramp. The isotropy factor
/// puts real sharp content (p90 ≈ 0.95 on the real-image train split) at the shipped
/// default 0.4: a site whose best frames read lower (a texture anisotropic at fine scale)
/// gets a lower ramp.
#[rustfmt::skip]
pub const FOCUS: &[Rule] = &[
    Rule { key: "scoring.sharpness_good", series: "measures.sharpness", frames: Frames::WellExposed, how: How::OfBest { pct: 90.0, factor: 0.92 } },
    Rule { key: "scoring.sharpness_bad", series: "measures.sharpness", frames: Frames::WellExposed, how: How::OfBest { pct: 90.0, factor: 0.80 } },
    Rule { key: "scoring.isotropy_good", series: "measures.isotropy", frames: Frames::WellExposed, how: How::OfBest { pct: 90.0, factor: 0.42 } },
    Rule { key: "scoring.isotropy_bad", series: "measures.isotropy", frames: Frames::WellExposed, how: How::KeepRatio { of: "scoring.isotropy_good" } },
];

#[rustfmt::skip]
pub const SELECT: &[Rule] = &[
    Rule { key: "select.threshold_high", series: "quality", frames: Frames::Rescored, how: How::PassShare { margin: 0.9 } },
    Rule { key: "select.threshold_low", series: "quality", frames: Frames::Rescored, how: How::KeepRatio { of: "select.threshold_high" } },
];

/// What the integrator states about the recording.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Params {
    /// Share of the recording's frames that should pass `select.threshold_high`.
    pub pass_share: f32,
}

/// One suggested key.
#[derive(Debug, Clone, Serialize)]
pub struct Suggestion {
    pub key: &'static str,
    pub current: Value,
    pub suggested: Value,
    pub changed: bool,
    pub series: &'static str,
    pub frames: Frames,
    /// How many frames the value was derived from.
    pub based_on: usize,
    pub why: String,
}

/// Apply `rules` in order. `current` is the config as JSON (`{"scoring": …, "select": …}`);
/// a rule whose distribution is empty, or whose key is not in `current`, is skipped.
pub fn suggest(rules: &[Rule], dists: &Dists, current: &Value, params: &Params) -> Vec<Suggestion> {
    let mut out: Vec<Suggestion> = Vec::new();
    for r in rules {
        let (Some(cur), Some(d)) = (
            lookup(current, r.key),
            dists.get(&(r.series.to_string(), r.frames)),
        ) else {
            continue;
        };
        if d.is_empty() {
            continue;
        }
        let at = |p: f32| d.percentile(p).expect("not empty");
        let (value, why) = match r.how {
            How::OfBest { pct, factor } => {
                let best = at(pct);
                (
                    Value::from(round(best * factor, 3)),
                    format!("{factor} × p{pct} ({best:.3})"),
                )
            }
            How::RaiseIfTypical { pct, max } => {
                let Some([lo, hi]) = pair(cur) else { continue };
                let typical = at(pct);
                if typical < lo {
                    (
                        cur.clone(),
                        format!("p{pct} = {typical:.3} is below {lo}: the default fits"),
                    )
                } else {
                    let new_lo = round(typical.min(max), 3);
                    let new_hi = round((new_lo as f32 + (hi - lo)).min(max), 3);
                    (
                        Value::from(vec![new_lo, new_hi]),
                        format!(
                            "p{pct} = {typical:.3} reaches {lo}: typical frames would be flagged"
                        ),
                    )
                }
            }
            How::PassShare { margin } => {
                let v = margin * at(100.0 * (1.0 - params.pass_share));
                (
                    Value::from(round(v, 3)),
                    format!(
                        "{margin} × the value {:.0} % of frames reach",
                        params.pass_share * 100.0
                    ),
                )
            }
            How::KeepRatio { of } => {
                let (Some(base_now), Some(base_new)) = (
                    lookup(current, of).and_then(Value::as_f64),
                    out.iter()
                        .find(|s| s.key == of)
                        .and_then(|s| s.suggested.as_f64()),
                ) else {
                    continue;
                };
                let ratio = cur.as_f64().unwrap_or(0.0) / base_now.max(1e-6);
                (
                    Value::from(round((base_new * ratio) as f32, 3)),
                    format!("{of} × {ratio:.3} (the current ratio)"),
                )
            }
        };
        out.push(Suggestion {
            key: r.key,
            changed: !same(cur, &value),
            current: cur.clone(),
            suggested: value,
            series: r.series,
            frames: r.frames,
            based_on: d.len(),
            why,
        });
    }
    out
}

/// Write suggested values into `config` (the same JSON shape as `current`).
pub fn apply(config: &mut Value, suggestions: &[Suggestion]) {
    for s in suggestions {
        let (section, name) = s.key.split_once('.').expect("keys are section.name");
        if let Some(obj) = config.get_mut(section).and_then(Value::as_object_mut) {
            obj.insert(name.to_string(), s.suggested.clone());
        }
    }
}

/// The suggestions as TOML lines to paste, by section; unchanged keys are marked.
pub fn toml_snippet(suggestions: &[Suggestion]) -> String {
    let mut out = String::new();
    let mut section = "";
    for s in suggestions {
        let (sec, name) = s.key.split_once('.').expect("keys are section.name");
        if sec != section {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!("[{sec}]\n"));
            section = sec;
        }
        let note = if s.changed {
            format!("was {}; {}", s.current, s.why)
        } else {
            "unchanged".to_string()
        };
        out.push_str(&format!("{name} = {}  # {note}\n", s.suggested));
    }
    out
}

/// `v` with every number rounded to 4 decimals (f32 config values read as f64 otherwise
/// print as 0.6000000238418579).
pub fn tidy(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => Value::from(round(n.as_f64().unwrap_or(0.0) as f32, 4)),
        Value::Array(xs) => Value::Array(xs.iter().map(tidy).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), tidy(x))).collect()),
        x => x.clone(),
    }
}

fn lookup<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let (section, name) = key.split_once('.')?;
    v.get(section)?.get(name)
}

fn pair(v: &Value) -> Option<[f32; 2]> {
    match v.as_array()?.as_slice() {
        [a, b] => Some([a.as_f64()? as f32, b.as_f64()? as f32]),
        _ => None,
    }
}

fn same(a: &Value, b: &Value) -> bool {
    let nums = |v: &Value| -> Vec<f64> {
        match v {
            Value::Array(xs) => xs.iter().filter_map(Value::as_f64).collect(),
            x => x.as_f64().into_iter().collect(),
        }
    };
    let (x, y) = (nums(a), nums(b));
    x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| (p - q).abs() < 1e-4)
}

pub fn round(v: f32, places: i32) -> f64 {
    let k = 10f64.powi(places);
    (v as f64 * k).round() / k
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dists(series: &str, frames: Frames, values: Vec<f32>) -> Dists {
        Dists::from([((series.to_string(), frames), Distribution::new(values))])
    }

    fn current() -> Value {
        json!({
            "scoring": {"sharpness_good": 0.66, "sharpness_bad": 0.56, "dark_fraction": [0.25, 0.6]},
            "select": {"threshold_high": 0.6, "threshold_low": 0.5},
        })
    }

    #[test]
    fn percentiles_interpolate_between_order_statistics() {
        let d = Distribution::new(vec![4.0, 0.0, 2.0, 1.0, 3.0]);
        assert_eq!(d.percentile(0.0), Some(0.0));
        assert_eq!(d.percentile(50.0), Some(2.0));
        assert_eq!(d.percentile(100.0), Some(4.0));
        assert_eq!(d.percentile(62.5), Some(2.5));
        assert_eq!(d.share_at_or_above(3.0), 0.4);
        assert!(Distribution::new(vec![]).percentile(50.0).is_none());
    }

    #[test]
    fn sharpness_follows_the_sites_best_frames() {
        // A site whose sharp frames read 0.50 (not the phantom's 0.72), a quarter blurred.
        let mut v: Vec<f32> = (0..75).map(|i| 0.48 + 0.0004 * i as f32).collect();
        v.extend((0..25).map(|_| 0.40));
        let s = suggest(
            FOCUS,
            &dists("measures.sharpness", Frames::WellExposed, v),
            &current(),
            &Params { pass_share: 0.7 },
        );
        let good = s[0].suggested.as_f64().unwrap();
        let bad = s[1].suggested.as_f64().unwrap();
        assert!((0.44..0.48).contains(&good), "{good}");
        assert!((bad / good - 0.80 / 0.92).abs() < 0.01, "{bad}");
        assert!(s[0].changed && s[0].based_on == 100);
    }

    #[test]
    fn an_exposure_ramp_moves_only_when_typical_frames_would_be_flagged() {
        let p = Params { pass_share: 0.7 };
        let fine = dists("measures.dark_fraction", Frames::All, vec![0.05; 50]);
        let s = suggest(EXPOSURE, &fine, &current(), &p);
        assert_eq!(
            s.len(),
            1,
            "only dark_fraction has a distribution and a current value"
        );
        assert!(!s[0].changed);
        // A processor whose field of view includes a dark vignette: 30 % dark everywhere.
        let dim = dists("measures.dark_fraction", Frames::All, vec![0.3; 50]);
        let s = suggest(EXPOSURE, &dim, &current(), &p);
        assert!(s[0].changed);
        assert_eq!(s[0].suggested, json!([0.3, 0.65]));
    }

    #[test]
    fn the_stated_share_passes_threshold_high() {
        let q: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        let d = dists("quality", Frames::Rescored, q.clone());
        let s = suggest(SELECT, &d, &current(), &Params { pass_share: 0.7 });
        let high = s[0].suggested.as_f64().unwrap() as f32;
        assert!((high - 0.9 * 0.3).abs() <= 0.011, "{high}");
        let passed = Distribution::new(q.clone()).share_at_or_above(high);
        assert!((0.7..=0.75).contains(&passed), "{passed}");
        // Good frames clustered just under 1 (the usual case): the whole cluster passes.
        let mut tight: Vec<f32> = (0..75).map(|i| 0.990 + 0.0001 * i as f32).collect();
        tight.extend(vec![0.0; 25]);
        let t = suggest(
            SELECT,
            &dists("quality", Frames::Rescored, tight.clone()),
            &current(),
            &Params { pass_share: 0.7 },
        );
        let cut = t[0].suggested.as_f64().unwrap() as f32;
        assert_eq!(
            Distribution::new(tight).share_at_or_above(cut),
            0.75,
            "{cut}"
        );
        let low = s[1].suggested.as_f64().unwrap() as f32;
        assert!((low - high * 0.5 / 0.6).abs() < 1e-3);
        let mut cfg = current();
        apply(&mut cfg, &s);
        assert_eq!(cfg["select"]["threshold_high"], s[0].suggested);
        let snippet = toml_snippet(&s);
        let first = snippet.lines().nth(1).unwrap_or_default();
        let value: f32 = first
            .strip_prefix("threshold_high = ")
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f32::NAN);
        assert!(
            snippet.starts_with("[select]\n") && (value - high).abs() < 0.001,
            "{snippet}"
        );
    }
}
