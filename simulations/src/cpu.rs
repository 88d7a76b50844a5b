//! CPU time of the calling thread, for "CPU time per role".
//!
//! Read from `/proc/thread-self/schedstat` (nanoseconds on CPU, Linux), which excludes time
//! spent waiting for a core on a loaded machine. Where that file is missing, wall-clock time
//! is used instead, and [`source`] says so.

use std::time::Instant;

fn schedstat() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Where CPU times come from: `"thread CPU time (schedstat)"` or `"wall clock"`.
pub fn source() -> &'static str {
    if schedstat().is_some() {
        "thread CPU time (/proc/thread-self/schedstat)"
    } else {
        "wall clock (no /proc/thread-self/schedstat)"
    }
}

/// A running measurement of CPU and wall time.
#[derive(Debug, Clone, Copy)]
pub struct Timer {
    cpu: Option<u64>,
    wall: Instant,
}

/// CPU and wall seconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Spent {
    /// CPU seconds of this thread.
    pub cpu_s: f64,
    /// Wall seconds.
    pub wall_s: f64,
}

impl std::ops::AddAssign for Spent {
    fn add_assign(&mut self, o: Spent) {
        self.cpu_s += o.cpu_s;
        self.wall_s += o.wall_s;
    }
}

impl Timer {
    /// Starts measuring.
    pub fn start() -> Timer {
        Timer {
            cpu: schedstat(),
            wall: Instant::now(),
        }
    }

    /// What was spent since [`Timer::start`].
    pub fn stop(self) -> Spent {
        let wall_s = self.wall.elapsed().as_secs_f64();
        let cpu_s = match (self.cpu, schedstat()) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 * 1e-9,
            _ => wall_s,
        };
        Spent { cpu_s, wall_s }
    }
}
