//! Accuracy figures: relative errors against the truth and interval coverage, per level.

use serde::Serialize;

/// One estimated cell of one territory.
#[derive(Debug, Clone, Copy)]
pub struct CellEstimate {
    /// The estimate.
    pub value: f64,
    /// Half-width of its stated 95% interval.
    pub half_width: f64,
    /// The exact total from everyone's raw records (what a central database computes).
    pub truth: f64,
    /// The same total after per-person contribution bounding (what the noise is centred on,
    /// when every structure contributed).
    pub bounded: f64,
}

/// Accuracy over a set of cells.
#[derive(Debug, Clone, Serialize)]
pub struct Accuracy {
    /// `national`, `region` or `departement`.
    pub level: String,
    /// `federated` (Maillage), `central_dp`, `central_bounded` or `central_exact`.
    pub method: String,
    /// Cells with a non-zero truth (relative errors are over these).
    pub cells: usize,
    /// Median of |estimate − truth| / truth.
    pub median_rel_error: f64,
    /// 95th percentile of the same.
    pub p95_rel_error: f64,
    /// Fraction of all cells whose bounded total is inside the stated interval (the noise's
    /// coverage; 95% is promised).
    pub coverage_bounded: f64,
    /// Fraction of all cells whose exact truth is inside the stated interval (noise and
    /// bounding bias together).
    pub coverage_truth: f64,
    /// Median of the interval's half-width relative to the truth.
    pub median_rel_half_width: f64,
}

/// The `q` quantile (nearest rank) of `values` (sorted in place).
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// Accuracy figures of `cells`.
pub fn accuracy(level: &str, method: &str, cells: &[CellEstimate]) -> Accuracy {
    let mut rel: Vec<f64> = Vec::new();
    let mut rel_hw: Vec<f64> = Vec::new();
    let (mut in_bounded, mut in_truth) = (0usize, 0usize);
    for c in cells {
        if c.truth > 0.0 {
            rel.push((c.value - c.truth).abs() / c.truth);
            rel_hw.push(c.half_width / c.truth);
        }
        if (c.value - c.bounded).abs() <= c.half_width {
            in_bounded += 1;
        }
        if (c.value - c.truth).abs() <= c.half_width {
            in_truth += 1;
        }
    }
    let n = cells.len().max(1) as f64;
    Accuracy {
        level: level.into(),
        method: method.into(),
        cells: rel.len(),
        median_rel_error: quantile(&mut rel.clone(), 0.5),
        p95_rel_error: quantile(&mut rel, 0.95),
        coverage_bounded: in_bounded as f64 / n,
        coverage_truth: in_truth as f64 / n,
        median_rel_half_width: quantile(&mut rel_hw, 0.5),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_coverage() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&mut v, 0.5), 3.0);
        assert_eq!(quantile(&mut v, 0.95), 5.0);
        let cells = [
            CellEstimate {
                value: 110.0,
                half_width: 5.0,
                truth: 100.0,
                bounded: 108.0,
            },
            CellEstimate {
                value: 90.0,
                half_width: 20.0,
                truth: 100.0,
                bounded: 100.0,
            },
        ];
        let a = accuracy("national", "federated", &cells);
        assert_eq!(a.cells, 2);
        assert!((a.median_rel_error - 0.1).abs() < 1e-12);
        assert_eq!(a.coverage_bounded, 1.0);
        assert_eq!(a.coverage_truth, 0.5);
    }
}
