//! How precise released figures are: per-cell intervals and sums of independent noisy cells.
//!
//! This module owns the 95% interval of one noisy cell (OpenDP's own accuracy helpers), the
//! noise variance of each mechanism, and [`combine`], which sums independent noisy cells (the
//! same cell across structures, for hub or national totals) into an [`Estimate`] with its
//! variance and 95% interval. It draws no noise.

use opendp::accuracy::{
    discrete_gaussian_scale_to_accuracy, discrete_laplacian_scale_to_accuracy,
    gaussian_scale_to_accuracy,
};
use serde::Serialize;

use crate::error::PrivacyError;
use crate::release::{Mechanism, NoisyCell};

/// The significance level of every interval of this crate: 95% intervals.
pub const ALPHA: f64 = 0.05;

/// The standard normal quantile at 1 − [`ALPHA`]/2.
const Z_95: f64 = 1.959_963_984_540_054;

/// Below this σ the discrete Gaussian's variance is summed exactly; above, it equals σ² to far
/// better than f64 precision (by Poisson summation the relative gap is of order
/// σ²·e^(−2π²σ²); Canonne, Kamath and Steinke 2020 show the variance never exceeds σ²).
const EXACT_GAUSSIAN_VARIANCE_BELOW: f64 = 8.0;

/// OpenDP's exact discrete-Gaussian accuracy sums the density term by term (about 40σ terms);
/// above this σ the continuous Gaussian's accuracy, rounded up and plus one, is used instead.
const EXACT_GAUSSIAN_ACCURACY_UP_TO: f64 = 1e4;

fn check_scale(scale: f64) -> Result<(), PrivacyError> {
    if scale.is_finite() && scale >= 0.0 {
        Ok(())
    } else {
        Err(PrivacyError::InvalidScale { scale })
    }
}

/// Half-width of the 95% interval of one noisy cell: with probability at least 95%, the noise
/// added to the cell lies within ± this value.
///
/// Read from OpenDP's `discrete_laplacian_scale_to_accuracy` or
/// `discrete_gaussian_scale_to_accuracy` at α = 0.05 (OpenDP states `P[|noise| ≥ h] ≤ α`);
/// for a Gaussian σ above 10⁴, whose exact computation costs about 40σ steps, OpenDP's
/// continuous `gaussian_scale_to_accuracy` rounded up, plus one.
pub fn ci95_half_width(mechanism: Mechanism, scale: f64) -> Result<f64, PrivacyError> {
    check_scale(scale)?;
    if scale == 0.0 {
        return Ok(0.0);
    }
    match mechanism {
        Mechanism::DiscreteLaplace => discrete_laplacian_scale_to_accuracy(scale, ALPHA),
        Mechanism::DiscreteGaussian if scale <= EXACT_GAUSSIAN_ACCURACY_UP_TO => {
            discrete_gaussian_scale_to_accuracy(scale, ALPHA)
        }
        // The discrete law is the continuous one sampled at the integers (Poisson summation:
        // normalisation error ~e^(−2π²σ²)), so P[|X| ≤ k] ≈ P[|N(0, σ²)| ≤ k + ½] and
        // ⌈zσ⌉ + 1 is never below OpenDP's exact discrete answer (checked by a test at the switch).
        Mechanism::DiscreteGaussian => {
            gaussian_scale_to_accuracy(scale, ALPHA).map(|a| a.ceil() + 1.0)
        }
    }
    .map_err(PrivacyError::opendp("computing a 95% interval"))
}

/// The noise's variance and fourth cumulant.
pub(crate) fn cumulants(mechanism: Mechanism, scale: f64) -> (f64, f64) {
    if scale == 0.0 {
        return (0.0, 0.0);
    }
    match mechanism {
        Mechanism::DiscreteLaplace => {
            // P[X = x] ∝ p^|x| with p = exp(−1/b): X is the difference of two independent
            // geometric variables on {0, 1, …} of ratio p, whose cumulants are κ2 = p/q² and
            // κ4 = p(1 + 4p + p²)/q⁴ (q = 1 − p); the difference doubles even cumulants.
            let p = (-1.0 / scale).exp();
            let q = -(-1.0 / scale).exp_m1();
            let q2 = q * q;
            (2.0 * p / q2, 2.0 * p * (1.0 + 4.0 * p + p * p) / (q2 * q2))
        }
        Mechanism::DiscreteGaussian if scale < EXACT_GAUSSIAN_VARIANCE_BELOW => {
            // Weights beyond 40σ + 1 are below e^(−800): nothing left to add in f64.
            let n = (40.0 * scale).ceil() as i64 + 1;
            let (mut mass, mut second) = (1.0, 0.0);
            for x in 1..=n {
                let x = x as f64;
                let w = (-x * x / (2.0 * scale * scale)).exp();
                mass += 2.0 * w;
                second += 2.0 * x * x * w;
            }
            // The fourth cumulant is negligible next to σ⁴ for σ ≥ 1; it is left out.
            (second / mass, 0.0)
        }
        Mechanism::DiscreteGaussian => (scale * scale, 0.0),
    }
}

/// Variance of the noise a mechanism adds with this scale.
///
/// Discrete Laplace of scale b: `2p/(1 − p)²` with `p = exp(−1/b)` (≈ 2b² for large b).
/// Discrete Gaussian of scale σ: at most σ², and equal to it for σ not tiny.
pub fn noise_variance(mechanism: Mechanism, scale: f64) -> Result<f64, PrivacyError> {
    check_scale(scale)?;
    Ok(cumulants(mechanism, scale).0)
}

/// One noisy value of a sum, with the noise it carries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summand {
    /// The noisy value.
    pub value: i64,
    /// The mechanism that added its noise.
    pub mechanism: Mechanism,
    /// The noise scale (b for Laplace, σ for Gaussian).
    pub scale: f64,
}

impl From<&NoisyCell> for Summand {
    fn from(cell: &NoisyCell) -> Self {
        Self {
            value: cell.value,
            mechanism: cell.mechanism,
            scale: cell.scale,
        }
    }
}

/// A sum of independent noisy values with its uncertainty.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// The sum of the noisy values (an unbiased estimate of the sum of the true values).
    pub value: i64,
    /// The variance of the summed noise.
    pub variance: f64,
    /// Half-width of the 95% interval around `value`.
    pub ci95_half_width: f64,
}

impl Estimate {
    /// The 95% interval `(low, high)`.
    pub fn ci95(&self) -> (f64, f64) {
        let v = self.value as f64;
        (v - self.ci95_half_width, v + self.ci95_half_width)
    }
}

/// Sums independent noisy values (e.g. one cell from every structure of a hub).
///
/// The variance is the sum of the summands' variances. The 95% interval is:
///
/// * with one noisy summand (the others, if any, carrying no noise), OpenDP's exact accuracy
///   for that mechanism and scale ([`ci95_half_width`]);
/// * otherwise the normal approximation, with a Cornish–Fisher correction for the heavier tails
///   of Laplace noise, `x = sd·(z + (z³ − 3z)·γ₂/24)`, where the excess kurtosis
///   `γ₂ = Σκ₄/(Σσ²)²` shrinks like 1/n as summands are added (many summands: the plain normal
///   interval `z·sd`). The noise is an integer, so the half-width is the integer
///   `⌈x − ½⌉` (a continuity correction): coverage is then at least 95%, e.g. 95.2% for two
///   Laplace summands of scales 20 and 30 and 95.6% for two Gaussian ones of σ = 10, computed
///   exactly by convolution (the plain normal interval gives 94.0% and 94.8%).
///
/// An empty sum is 0 with no noise.
pub fn combine(summands: impl IntoIterator<Item = Summand>) -> Result<Estimate, PrivacyError> {
    let mut value = 0i64;
    let (mut variance, mut fourth) = (0.0, 0.0);
    let mut noisy: Option<Summand> = None;
    let mut noisy_count = 0usize;
    for (i, s) in summands.into_iter().enumerate() {
        check_scale(s.scale)?;
        value = value
            .checked_add(s.value)
            .ok_or(PrivacyError::SumOverflow { count: i + 1 })?;
        let (v, k4) = cumulants(s.mechanism, s.scale);
        variance += v;
        fourth += k4;
        if s.scale > 0.0 {
            noisy_count += 1;
            noisy = Some(s);
        }
    }
    let ci95_half_width = match (noisy_count, noisy) {
        (1, Some(s)) => ci95_half_width(s.mechanism, s.scale)?,
        _ if variance > 0.0 => {
            let excess_kurtosis = fourth / (variance * variance);
            let z = Z_95 + (Z_95.powi(3) - 3.0 * Z_95) * excess_kurtosis / 24.0;
            (z * variance.sqrt() - 0.5).ceil().max(0.0)
        }
        _ => 0.0,
    };
    Ok(Estimate {
        value,
        variance,
        ci95_half_width,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opendp::domains::{AtomDomain, VectorDomain};
    use opendp::measurements::{make_gaussian, make_laplace};
    use opendp::measures::{MaxDivergence, ZeroConcentratedDivergence};
    use opendp::metrics::{L1Distance, L2Distance};

    /// `n` independent draws of a mechanism's noise, from OpenDP's own samplers.
    pub(crate) fn noise(mechanism: Mechanism, scale: f64, n: usize) -> Result<Vec<i64>, String> {
        let domain = VectorDomain::new(AtomDomain::<i64>::default());
        let zeros = vec![0i64; n];
        match mechanism {
            Mechanism::DiscreteLaplace => make_laplace::<_, _, MaxDivergence>(
                domain,
                L1Distance::<i64>::default(),
                scale,
                None,
            )
            .and_then(|m| m.invoke(&zeros)),
            Mechanism::DiscreteGaussian => make_gaussian::<_, _, ZeroConcentratedDivergence>(
                domain,
                L2Distance::<f64>::default(),
                scale,
                None,
            )
            .and_then(|m| m.invoke(&zeros)),
        }
        .map_err(|e| e.to_string())
    }

    /// Variance and fourth cumulant of a symmetric integer law given by unnormalised weights.
    fn by_summation(weight: impl Fn(f64) -> f64, n: i64) -> (f64, f64) {
        let (mut mass, mut m2, mut m4) = (weight(0.0), 0.0, 0.0);
        for x in 1..=n {
            let x = x as f64;
            let w = 2.0 * weight(x);
            mass += w;
            m2 += w * x * x;
            m4 += w * x.powi(4);
        }
        let var = m2 / mass;
        (var, m4 / mass - 3.0 * var * var)
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn laplace_cumulants_match_the_distribution() {
        for b in [0.3, 1.0, 5.0, 40.0] {
            let (var, k4) = cumulants(Mechanism::DiscreteLaplace, b);
            let (v, k) = by_summation(|x| (-x / b).exp(), (60.0 * b) as i64 + 60);
            assert!(close(var, v, 1e-9), "scale {b}: variance {var} vs {v}");
            assert!(close(k4, k, 1e-7), "scale {b}: fourth cumulant {k4} vs {k}");
        }
        // Large scales: the continuous Laplace's 2b² and 12b⁴.
        let (var, k4) = cumulants(Mechanism::DiscreteLaplace, 1e4);
        assert!(close(var, 2e8, 1e-6) && close(k4, 12e16, 1e-6));
    }

    #[test]
    fn gaussian_variance_is_at_most_sigma_squared_and_continuous_at_the_switch() {
        let (v, _) = by_summation(|x| (-x * x / (2.0 * 0.3 * 0.3)).exp(), 20);
        assert_eq!(noise_variance(Mechanism::DiscreteGaussian, 0.3), Ok(v));
        assert!(v < 0.09);
        let below = EXACT_GAUSSIAN_VARIANCE_BELOW - 1e-9;
        let exact = noise_variance(Mechanism::DiscreteGaussian, below);
        assert!(
            exact
                .as_ref()
                .is_ok_and(|&v| close(v, below * below, 1e-12)),
            "{exact:?}"
        );
        assert_eq!(
            noise_variance(Mechanism::DiscreteGaussian, 100.0),
            Ok(10_000.0)
        );
    }

    #[test]
    fn gaussian_accuracy_switch_is_conservative() -> Result<(), String> {
        for sigma in [50.0, 500.0, 5_000.0, EXACT_GAUSSIAN_ACCURACY_UP_TO] {
            let exact =
                discrete_gaussian_scale_to_accuracy(sigma, ALPHA).map_err(|e| e.to_string())?;
            let approx = gaussian_scale_to_accuracy(sigma, ALPHA)
                .map_err(|e| e.to_string())?
                .ceil()
                + 1.0;
            assert!(
                exact <= approx && approx <= exact + 2.0,
                "σ = {sigma}: {exact} vs {approx}"
            );
        }
        let above = ci95_half_width(Mechanism::DiscreteGaussian, 1e9).map_err(|e| e.to_string())?;
        assert!(close(above, Z_95 * 1e9, 1e-6), "{above}");
        Ok(())
    }

    #[test]
    fn cell_intervals_come_from_opendp() {
        // b = 10: P[|X| ≥ k] = 2pᵏ/(1 + p), so the 95% half-width is ln(0.05(1 + p)/2)/ln p.
        let p = (-0.1f64).exp();
        let expected = (0.05 * (1.0 + p) / 2.0).ln() / p.ln();
        let h = ci95_half_width(Mechanism::DiscreteLaplace, 10.0);
        assert!(
            h.as_ref().is_ok_and(|&h| close(h, expected, 1e-9)),
            "{h:?} vs {expected}"
        );
        assert_eq!(ci95_half_width(Mechanism::DiscreteGaussian, 25.0), Ok(50.0));
        assert_eq!(ci95_half_width(Mechanism::DiscreteLaplace, 0.0), Ok(0.0));
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                ci95_half_width(Mechanism::DiscreteLaplace, bad),
                Err(PrivacyError::InvalidScale { .. })
            ));
        }
    }

    #[test]
    fn combine_adds_values_and_variances() -> Result<(), PrivacyError> {
        let l = |value, scale| Summand {
            value,
            mechanism: Mechanism::DiscreteLaplace,
            scale,
        };
        assert_eq!(
            combine([])?,
            Estimate {
                value: 0,
                variance: 0.0,
                ci95_half_width: 0.0
            }
        );

        // One noisy summand (others exact): OpenDP's own interval for it.
        let one = combine([l(5, 10.0), l(7, 0.0)])?;
        assert_eq!(one.value, 12);
        assert_eq!(
            one.ci95_half_width,
            ci95_half_width(Mechanism::DiscreteLaplace, 10.0)?
        );

        let many: Vec<Summand> = (0..100).map(|i| l(i, 10.0)).collect();
        let sum = combine(many)?;
        let var = noise_variance(Mechanism::DiscreteLaplace, 10.0)?;
        assert_eq!(sum.value, 4950);
        assert!(close(sum.variance, 100.0 * var, 1e-12));
        // γ₂ = 3/100: nearly the plain normal interval, rounded up to an integer.
        let normal = Z_95 * sum.variance.sqrt();
        assert!(sum.ci95_half_width >= normal - 0.5 && sum.ci95_half_width <= normal * 1.01 + 1.0);
        assert_eq!(sum.ci95_half_width.fract(), 0.0);
        let (lo, hi) = sum.ci95();
        assert_eq!(hi - lo, 2.0 * sum.ci95_half_width);

        assert_eq!(
            combine([l(i64::MAX, 1.0), l(1, 1.0)]),
            Err(PrivacyError::SumOverflow { count: 2 })
        );
        assert!(matches!(
            combine([l(1, f64::NAN)]),
            Err(PrivacyError::InvalidScale { .. })
        ));
        Ok(())
    }

    /// Empirical coverage of `combine`'s 95% interval over simulated sums of OpenDP noise.
    ///
    /// The interval is meant to be conservative, so the coverage must be at least 95% less 5
    /// binomial standard deviations, sqrt(0.95·0.05/N), and at most 95% plus 5 standard
    /// deviations plus an allowance for that conservatism (0.005, or 0.01 for the single
    /// discrete Gaussian whose OpenDP interval is one lattice step wide). The exact coverages,
    /// computed by convolving the pmfs, are 0.9522, 0.9520, 0.9501 and 0.9566: all inside, so a
    /// false failure needs a 5σ binomial deviation, probability below 6e-7 per assertion. The
    /// plain normal interval (0.9402 in the first case) fails it.
    #[test]
    fn combined_intervals_cover_95_percent() -> Result<(), String> {
        use Mechanism::{DiscreteGaussian as G, DiscreteLaplace as L};
        let many: Vec<(Mechanism, f64)> = (0..30).map(|i| (L, 10.0 + f64::from(i))).collect();
        // (summands as (mechanism, scale), trials, allowance)
        type Case<'a> = (&'a [(Mechanism, f64)], usize, f64);
        let cases: [Case<'_>; 4] = [
            (&[(L, 20.0), (L, 30.0)], 20_000, 0.005),
            (&[(L, 20.0), (G, 50.0), (L, 25.0)], 10_000, 0.005),
            (&many, 2_000, 0.005),
            (&[(G, 25.0)], 4_000, 0.01),
        ];
        for (summands, trials, allowance) in cases {
            let draws = summands
                .iter()
                .map(|&(m, s)| noise(m, s, trials))
                .collect::<Result<Vec<_>, _>>()?;
            let mut covered = 0usize;
            for t in 0..trials {
                // True values 1000·i; the estimate must cover their sum.
                let parts = summands
                    .iter()
                    .zip(&draws)
                    .enumerate()
                    .map(|(i, (&(m, s), d))| Summand {
                        value: 1000 * i as i64 + d[t],
                        mechanism: m,
                        scale: s,
                    });
                let truth = (0..summands.len()).map(|i| 1000 * i as i64).sum::<i64>();
                let e = combine(parts).map_err(|e| e.to_string())?;
                if ((e.value - truth) as f64).abs() <= e.ci95_half_width {
                    covered += 1;
                }
            }
            let coverage = covered as f64 / trials as f64;
            let five_sigma = 5.0 * (0.95f64 * 0.05 / trials as f64).sqrt();
            let (low, high) = (0.95 - five_sigma, 0.95 + five_sigma + allowance);
            assert!(
                (low..=high).contains(&coverage),
                "{} summands: coverage {coverage} outside [{low}, {high}]",
                summands.len()
            );
        }
        Ok(())
    }
}
