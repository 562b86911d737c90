//! What the whole machine did while a scenario ran.
//!
//! On a virtual machine the hypervisor may run other guests on our cores
//! ("steal" time). That slows every figure of a run without showing in any
//! process's CPU time: on this project's machine the steal share during
//! `throughput` ranged from 4 % to 31 % in half-second samples one day, and
//! one binary delivered 16,100–17,800 events/s in `throughput` on the day it
//! was built and 7,000–14,700 on the next. Each report carries the share, so
//! that figures are read with their noise.

/// Cumulative CPU time of every core, by kind, in the kernel's ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    busy: u64,
    idle: u64,
    steal: u64,
}

/// Shares (percent) of the machine's time over an interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shares {
    /// Running anything: user, system, interrupts.
    pub busy: f64,
    /// Taken by the hypervisor while our cores wanted to run.
    pub steal: f64,
}

impl CpuTimes {
    /// The machine's counters now (`None` where `/proc/stat` is missing).
    pub fn now() -> Option<Self> {
        parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Shares of the time between `self` and `later`.
    pub fn shares_until(&self, later: &CpuTimes) -> Option<Shares> {
        let busy = later.busy.checked_sub(self.busy)?;
        let idle = later.idle.checked_sub(self.idle)?;
        let steal = later.steal.checked_sub(self.steal)?;
        let total = busy + idle + steal;
        if total == 0 {
            return None;
        }
        let pct = |x: u64| (x as f64 * 1000.0 / total as f64).round() / 10.0;
        Some(Shares {
            busy: pct(busy),
            steal: pct(steal),
        })
    }
}

/// Reads the first line of `/proc/stat`: `cpu user nice system idle iowait
/// irq softirq steal ...` (guest time is already inside user and nice).
fn parse(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = v.try_into().ok()?;
    Some(CpuTimes {
        busy: user + nice + system + irq + softirq,
        idle: idle + iowait,
        steal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_machine_line_and_computes_shares() {
        let before = parse("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n").unwrap();
        let after = parse("cpu  160 0 90 900 50 0 10 90 0 0\n").unwrap();
        // busy +110, idle +100, steal +90 of 300 ticks.
        assert_eq!(
            before.shares_until(&after),
            Some(Shares {
                busy: 36.7,
                steal: 30.0
            })
        );
    }

    #[test]
    fn rejects_what_is_not_the_machine_line() {
        assert_eq!(parse("cpu0 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(parse("cpu 1 2 3\n"), None);
        assert_eq!(parse(""), None);
        let t = parse("cpu 1 1 1 1 1 1 1 1\n").unwrap();
        assert_eq!(t.shares_until(&t), None, "no time passed");
    }
}
