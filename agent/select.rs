//! Selection: which scored frames are forwarded. A pure state machine, no I/O, no clock:
//! time is the frame's timestamp, so file and phantom runs are deterministic.
//!
//! For each frame, in this order:
//! 1. **Window close.** Frames are grouped in windows of `select.window_ms` starting at the
//!    first good frame. When a frame arrives at or after the window's end (or time goes
//!    backwards, e.g. after a source restart), the window's best frame is released —
//!    unless it is within `1 / max_per_second` of the last forwarded frame (`rate_limited`)
//!    or its difference hash is within `duplicate_bits` of the last forwarded frame's
//!    (`duplicate`) while that one is less than `duplicate_resend_s` old (a still scene
//!    forwards a frame every `duplicate_resend_s`, not one in all).
//! 2. **Light.** With `select.light` = `nbi` or `white`, a frame under the other light
//!    ([`crate::light`]) is rejected as `light`; it does not move the hysteresis.
//! 3. **Threshold with hysteresis.** The selector turns good when quality ≥ `threshold_high`
//!    and bad again when quality < `threshold_low`. A frame seen while bad is rejected as
//!    `below_threshold` (quality < low) or `hysteresis` (between the thresholds).
//! 4. **Best per window.** A good frame becomes the window's candidate if it beats the
//!    current one; the loser is rejected as `not_best_in_window`.
//!
//! Every frame offered ends in exactly one outcome: forwarded or one rejection reason.

use crate::config::SelectConfig;
use crate::light::Light;

/// Why a frame was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    BelowThreshold,
    Hysteresis,
    NotBestInWindow,
    RateLimited,
    Duplicate,
    Light,
}

impl Rejection {
    pub const ALL: [Rejection; 6] = [
        Rejection::BelowThreshold,
        Rejection::Hysteresis,
        Rejection::NotBestInWindow,
        Rejection::RateLimited,
        Rejection::Duplicate,
        Rejection::Light,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::BelowThreshold => "below_threshold",
            Rejection::Hysteresis => "hysteresis",
            Rejection::NotBestInWindow => "not_best_in_window",
            Rejection::RateLimited => "rate_limited",
            Rejection::Duplicate => "duplicate",
            Rejection::Light => "light",
        }
    }
}

/// A frame the selector released.
#[derive(Debug)]
pub struct Selected<T> {
    pub item: T,
    pub t_ns: u64,
    pub quality: f32,
}

/// The outcome of one offer: at most one frame forwarded, at most two rejected
/// (the window's best when it is released and refused, and the frame offered).
#[derive(Debug)]
pub struct Step<T> {
    pub selected: Option<Selected<T>>,
    pub rejected: [Option<Rejection>; 2],
}

impl<T> Step<T> {
    fn none() -> Self {
        Step {
            selected: None,
            rejected: [None, None],
        }
    }
    fn reject(&mut self, r: Rejection) {
        let slot = self
            .rejected
            .iter_mut()
            .find(|s| s.is_none())
            .expect("two slots suffice");
        *slot = Some(r);
    }
    pub fn rejections(&self) -> impl Iterator<Item = Rejection> + '_ {
        self.rejected.iter().flatten().copied()
    }
}

struct Candidate<T> {
    item: T,
    t_ns: u64,
    quality: f32,
    dhash: u64,
}

pub struct Selector<T> {
    cfg: SelectConfig,
    good: bool,
    window_end: Option<u64>,
    best: Option<Candidate<T>>,
    last_t: Option<u64>,
    last_sent: Option<(u64, u64)>,
}

impl<T> Selector<T> {
    pub fn new(cfg: SelectConfig) -> Self {
        Selector {
            cfg,
            good: false,
            window_end: None,
            best: None,
            last_t: None,
            last_sent: None,
        }
    }

    /// Offer one scored frame at time `t_ns`.
    pub fn offer(&mut self, t_ns: u64, quality: f32, dhash: u64, light: Light, item: T) -> Step<T> {
        let mut step = Step::none();
        let went_back = self.last_t.is_some_and(|l| t_ns < l);
        if went_back {
            // A new timeline (source restarted): nothing from the old one is comparable.
            self.last_sent = None;
        }
        if went_back || self.window_end.is_some_and(|end| t_ns >= end) {
            self.close_window(&mut step);
        }
        self.last_t = Some(t_ns);
        if !self.cfg.light.admits(light) {
            step.reject(Rejection::Light);
            return step;
        }

        if self.good && quality < self.cfg.threshold_low {
            self.good = false;
        } else if !self.good && quality >= self.cfg.threshold_high {
            self.good = true;
        }
        if !self.good {
            step.reject(if quality < self.cfg.threshold_low {
                Rejection::BelowThreshold
            } else {
                Rejection::Hysteresis
            });
            return step;
        }
        if self.window_end.is_none() {
            self.window_end =
                Some(t_ns.saturating_add(self.cfg.window_ms.saturating_mul(1_000_000)));
        }
        match &self.best {
            Some(b) if b.quality >= quality => step.reject(Rejection::NotBestInWindow),
            prev => {
                if prev.is_some() {
                    step.reject(Rejection::NotBestInWindow);
                }
                self.best = Some(Candidate {
                    item,
                    t_ns,
                    quality,
                    dhash,
                });
            }
        }
        step
    }

    /// Release the pending window's best frame (end of stream, shutdown).
    pub fn flush(&mut self) -> Step<T> {
        let mut step = Step::none();
        self.close_window(&mut step);
        step
    }

    fn close_window(&mut self, step: &mut Step<T>) {
        self.window_end = None;
        let Some(best) = self.best.take() else { return };
        if let Some((t, hash)) = self.last_sent {
            let min_gap = (1e9 / self.cfg.max_per_second as f64) as u64;
            if best.t_ns.saturating_sub(t) < min_gap {
                step.reject(Rejection::RateLimited);
                return;
            }
            let resend_ns = u64::from(self.cfg.duplicate_resend_s).saturating_mul(1_000_000_000);
            let stale = resend_ns > 0 && best.t_ns.saturating_sub(t) >= resend_ns;
            if self.cfg.duplicate_bits > 0
                && (best.dhash ^ hash).count_ones() <= self.cfg.duplicate_bits
                && !stale
            {
                step.reject(Rejection::Duplicate);
                return;
            }
        }
        self.last_sent = Some((best.t_ns, best.dhash));
        step.selected = Some(Selected {
            item: best.item,
            t_ns: best.t_ns,
            quality: best.quality,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::light::LightFilter;

    const MS: u64 = 1_000_000;

    fn cfg() -> SelectConfig {
        SelectConfig {
            threshold_high: 0.6,
            threshold_low: 0.5,
            window_ms: 100,
            max_per_second: 5.0,
            duplicate_bits: 4,
            duplicate_resend_s: 10,
            light: LightFilter::Any,
        }
    }

    /// Offer frames every 10 ms with the given qualities and distinct hashes.
    fn run(sel: &mut Selector<usize>, qs: &[f32]) -> (Vec<usize>, Vec<Rejection>) {
        let (mut out, mut rej) = (vec![], vec![]);
        for (i, &q) in qs.iter().enumerate() {
            let step = sel.offer(
                i as u64 * 10 * MS,
                q,
                (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                Light::White,
                i,
            );
            rej.extend(step.rejections());
            out.extend(step.selected.map(|s| s.item));
        }
        let step = sel.flush();
        rej.extend(step.rejections());
        out.extend(step.selected.map(|s| s.item));
        (out, rej)
    }

    #[test]
    fn all_lists_rejections_in_discriminant_order() {
        // The score thread indexes its pre-registered counters with `r as usize`.
        for (i, r) in Rejection::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn every_offer_has_exactly_one_outcome() {
        let mut sel = Selector::new(cfg());
        let qs: Vec<f32> = (0..200).map(|i| ((i * 37) % 100) as f32 / 100.0).collect();
        let (out, rej) = run(&mut sel, &qs);
        assert_eq!(out.len() + rej.len(), qs.len());
    }

    #[test]
    fn hysteresis_keeps_state_between_thresholds() {
        let mut sel = Selector::new(cfg());
        let (out, rej) = run(&mut sel, &[0.55, 0.65, 0.55, 0.45, 0.55]);
        use Rejection::*;
        // 0.55 while bad; 0.65 turns good; 0.55 stays good but loses; 0.45 turns bad; 0.55 stays bad.
        assert_eq!(
            rej,
            vec![Hysteresis, NotBestInWindow, BelowThreshold, Hysteresis]
        );
        assert_eq!(out, vec![1]);
    }

    #[test]
    fn only_the_best_frame_of_a_window_is_forwarded() {
        let mut sel = Selector::new(cfg());
        // window of 100 ms = 10 frames; best is index 4
        let qs = [0.7, 0.71, 0.8, 0.75, 0.95, 0.9, 0.7, 0.7, 0.7, 0.7];
        let (out, rej) = run(&mut sel, &qs);
        assert_eq!(out, vec![4]);
        assert_eq!(
            rej.iter()
                .filter(|r| **r == Rejection::NotBestInWindow)
                .count(),
            9
        );
    }

    #[test]
    fn rate_limit_and_duplicates_are_named() {
        let mut c = cfg();
        c.window_ms = 10; // one frame per window
        c.max_per_second = 50.0; // at most one per 20 ms
        let mut sel = Selector::new(c);
        let mut rej = vec![];
        let mut out = vec![];
        for i in 0..6u64 {
            let step = sel.offer(
                i * 10 * MS,
                0.9,
                i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                Light::White,
                i,
            );
            rej.extend(step.rejections());
            out.extend(step.selected.map(|s| s.item));
        }
        assert!(rej.contains(&Rejection::RateLimited), "{rej:?}");
        assert_eq!(out, vec![0, 2, 4]);

        let mut c = cfg();
        c.window_ms = 10;
        let mut sel = Selector::new(c);
        let mut rej = vec![];
        for i in 0..4u64 {
            rej.extend(
                sel.offer(i * 300 * MS, 0.9, 0xABCD, Light::White, i)
                    .rejections(),
            );
        }
        assert_eq!(rej, vec![Rejection::Duplicate, Rejection::Duplicate]);
    }

    #[test]
    fn a_still_scene_forwards_a_duplicate_again_after_duplicate_resend_s() {
        // One identical frame every 300 ms for 25 s: windows of 10 ms, so each frame
        // closes the window of the one before.
        let run = |resend_s: u32| {
            let mut c = cfg();
            c.window_ms = 10;
            c.duplicate_resend_s = resend_s;
            let mut sel = Selector::new(c);
            let mut out = vec![];
            for i in 0..=84u64 {
                let step = sel.offer(i * 300 * MS, 0.9, 0xABCD, Light::White, i * 300);
                out.extend(step.selected.map(|s| s.item));
            }
            out
        };
        // Forwarded at 0 s, then the first duplicate at least 10 s after the last
        // forwarded one: 10.2 s, then 20.4 s.
        assert_eq!(run(10), vec![0, 10_200, 20_400]);
        // 0 = never: one frame in all, as before the key existed.
        assert_eq!(run(0), vec![0]);
    }

    #[test]
    fn a_restarted_timeline_releases_the_pending_window() {
        let mut sel = Selector::new(cfg());
        sel.offer(500 * MS, 0.9, 1, Light::White, 1usize);
        let step = sel.offer(0, 0.9, 2, Light::White, 2usize);
        assert_eq!(step.selected.map(|s| s.item), Some(1));
    }

    #[test]
    fn select_light_forwards_its_light_only_and_leaves_the_hysteresis_alone() {
        // NBI for 300 ms, white light for 300 ms, NBI again; windows of 100 ms.
        let light = |i: u64| {
            if (30..60).contains(&i) {
                Light::White
            } else {
                Light::Nbi
            }
        };
        let run = |filter: LightFilter| {
            let mut c = cfg();
            c.light = filter;
            let mut sel = Selector::new(c);
            let (mut out, mut rej) = (vec![], vec![]);
            for i in 0..90u64 {
                let step = sel.offer(
                    i * 10 * MS,
                    0.9,
                    i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    light(i),
                    i,
                );
                rej.extend(step.rejections());
                out.extend(step.selected.map(|s| s.item));
            }
            out.extend(sel.flush().selected.map(|s| s.item));
            (out, rej.iter().filter(|r| **r == Rejection::Light).count())
        };
        let (any, refused) = run(LightFilter::Any);
        assert_eq!(refused, 0);
        assert!(
            any.iter().any(|i| light(*i) == Light::White)
                && any.iter().any(|i| light(*i) == Light::Nbi)
        );
        let (white, refused) = run(LightFilter::White);
        assert_eq!(refused, 60, "every NBI frame is refused as light");
        assert!(
            !white.is_empty() && white.iter().all(|i| light(*i) == Light::White),
            "{white:?}"
        );
        let (nbi, refused) = run(LightFilter::Nbi);
        assert_eq!(refused, 30);
        assert!(
            nbi.len() >= 4 && nbi.iter().all(|i| light(*i) == Light::Nbi),
            "{nbi:?}"
        );
    }
}
