//! Publish → delivery latencies of one phase: every sample is kept (4 bytes each, a
//! few million at most), so percentiles and the CDF are exact, not bucketed.

/// Latency samples in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<u32>);

/// Probabilities the CDF is reported at: every percent, then the tail in finer steps.
pub fn cdf_probabilities() -> Vec<f64> {
    let mut ps: Vec<f64> = (0..=99).map(|p| f64::from(p) / 100.0).collect();
    ps.extend([0.995, 0.999, 0.9999, 1.0]);
    ps
}

impl Samples {
    pub fn push(&mut self, micros: u64) {
        self.0.push(u32::try_from(micros).unwrap_or(u32::MAX));
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Sorts the samples in place, so quantiles can be read off.
    pub fn sorted(mut self) -> Sorted {
        self.0.sort_unstable();
        Sorted(self.0)
    }
}

/// Samples in ascending order.
#[derive(Debug)]
pub struct Sorted(Vec<u32>);

impl Sorted {
    /// Nearest-rank quantile `q` (0..=1) in milliseconds; NaN without samples.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = (q * self.0.len() as f64).ceil() as usize;
        f64::from(self.0[rank.clamp(1, self.0.len()) - 1]) / 1e3
    }

    /// The CDF at [`cdf_probabilities`], as (probability, milliseconds) pairs.
    pub fn cdf_ms(&self) -> Vec<(f64, f64)> {
        cdf_probabilities()
            .into_iter()
            .map(|p| (p, self.quantile_ms(p)))
            .collect()
    }
}

/// Median, min and max of `values` (a figure over rounds); `None` when there are none.
pub fn spread(values: &mut [f64]) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    Some((median, values[0], values[n - 1]))
}
