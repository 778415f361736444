//! The machine's load, as a heartbeat reports it.

use sysinfo::System;

/// One reading of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    /// Average CPU load since the previous reading, 0-100.
    pub cpu_usage: f64,
    pub memory_total_mb: u64,
    pub memory_available_mb: u64,
}

/// Reads CPU and memory; each CPU reading averages the time since the
/// previous one, so a heartbeat reports the load over its whole interval.
pub struct Stats {
    system: Option<System>,
}

impl Stats {
    pub fn new() -> Stats {
        let system = System::new().ok().map(|mut s| {
            s.refresh_cpu_usage();
            s
        });
        if system.is_none() {
            tracing::warn!(
                "cannot read CPU and memory figures on this system; heartbeats report 0"
            );
        }
        Stats { system }
    }

    /// Logical CPUs.
    pub fn cpu_cores(&self) -> u32 {
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1)
    }

    pub fn sample(&mut self) -> Sample {
        let Some(system) = self.system.as_mut() else {
            return Sample::default();
        };
        system.refresh_cpu_usage();
        system.refresh_memory();
        let cpu = system.global_cpu_usage() as f64;
        Sample {
            cpu_usage: if cpu.is_finite() {
                (cpu.clamp(0.0, 100.0) * 10.0).round() / 10.0
            } else {
                0.0
            },
            memory_total_mb: system.total_memory() / (1024 * 1024),
            memory_available_mb: system.available_memory() / (1024 * 1024),
        }
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_in_range() {
        let mut stats = Stats::new();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let s = stats.sample();
        assert!((0.0..=100.0).contains(&s.cpu_usage), "{s:?}");
        assert!(s.memory_total_mb > 0, "{s:?}");
        assert!(s.memory_available_mb <= s.memory_total_mb, "{s:?}");
        assert!(stats.cpu_cores() >= 1);
    }
}
