//! Detection and false-finding rates: k of n with a Wilson score interval.
//!
//! The Wilson interval stays inside [0, 1] and is honest for small n and for k = 0 or
//! k = n, where the normal approximation claims certainty: 3 of 3 gives a 95% interval
//! of [0.44, 1], so a canary gated on the interval's lower bound does not pass a 90% bar
//! by luck. To clear a bar b with no miss at all takes n >= z^2 b / (1 - b) repetitions
//! (35 for 90%, 9 for 70%).

use serde::{Deserialize, Serialize};

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// k of n, with its Wilson 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Repetitions where it happened.
    pub k: u32,
    /// Repetitions that completed (harness errors are not counted).
    pub n: u32,
    /// k / n (0 when n is 0).
    pub rate: f64,
    /// Lower bound of the 95% interval (0 when n is 0).
    pub low: f64,
    /// Upper bound of the 95% interval (1 when n is 0).
    pub high: f64,
}

impl Rate {
    /// k of n with its interval.
    pub fn new(k: u32, n: u32) -> Rate {
        let (low, high) = wilson(k, n, Z95);
        Rate {
            k,
            n,
            rate: if n == 0 {
                0.0
            } else {
                f64::from(k) / f64::from(n)
            },
            low,
            high,
        }
    }

    /// `3/10 (0.30, 95% 0.11-0.60)`.
    pub fn describe(&self) -> String {
        format!(
            "{}/{} ({:.2}, 95% {:.2}-{:.2})",
            self.k, self.n, self.rate, self.low, self.high
        )
    }

    /// Whether two intervals share no point: the rates differ beyond what chance explains
    /// at this many repetitions.
    pub fn disjoint(&self, other: &Rate) -> bool {
        self.n > 0 && other.n > 0 && (self.low > other.high || other.low > self.high)
    }
}

/// The Wilson score interval for k successes in n trials at normal quantile `z`;
/// `(0, 1)` for n = 0 (nothing is known).
pub fn wilson(k: u32, n: u32, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = f64::from(n);
    let p = f64::from(k.min(n as u32)) / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    let denom = 1.0 + z2 / n;
    (
        ((centre - spread) / denom).clamp(0.0, 1.0),
        ((centre + spread) / denom).clamp(0.0, 1.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    /// Values from the closed form, as tabulated by Newcombe (1998, Table I) and
    /// statsmodels' `proportion_confint(method="wilson")`.
    #[test]
    fn wilson_matches_known_values() {
        for (k, n, low, high) in [
            (0, 10, 0.0, 0.2775),
            (10, 10, 0.7225, 1.0),
            (5, 10, 0.2366, 0.7634),
            (3, 3, 0.4385, 1.0),
            (1, 50, 0.0035, 0.1050),
            (81, 263, 0.2553, 0.3662),
            (15, 148, 0.0624, 0.1605),
        ] {
            let r = Rate::new(k, n);
            assert!(
                close(r.low, low) && close(r.high, high),
                "{k}/{n}: got {:.4}-{:.4}, want {low}-{high}",
                r.low,
                r.high
            );
        }
    }

    #[test]
    fn a_lucky_three_of_three_does_not_clear_ninety_percent() {
        assert!(Rate::new(3, 3).low < 0.9);
        assert!(Rate::new(34, 34).low < 0.9);
        assert!(Rate::new(35, 35).low >= 0.9);
    }

    #[test]
    fn nothing_known_is_the_whole_range() {
        let r = Rate::new(0, 0);
        assert_eq!((r.low, r.high, r.rate), (0.0, 1.0, 0.0));
        assert!(!r.disjoint(&Rate::new(10, 10)));
        assert!(Rate::new(0, 10).disjoint(&Rate::new(10, 10)));
        assert!(!Rate::new(4, 10).disjoint(&Rate::new(6, 10)));
    }
}
