//! What the benchmarks share: CPU time and medians.

/// CPU time of the whole process so far (every thread, user and system: sled's flusher and the
/// import's threads included), in seconds, from `/proc/self/stat` (USER_HZ = 100 ticks a
/// second); `None` elsewhere. On a loaded machine wall-clock ratios are noisy, CPU-time ratios
/// much less so.
pub fn process_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which ends with the last ')'): state is field 3, utime 14.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The median of `values` (the upper one of an even count), sorting them.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
