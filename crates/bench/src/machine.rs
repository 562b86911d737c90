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

/// Ticks of the kernel's process clock per second (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time of one process from its `/proc/<pid>/stat`: its own (user +
/// system) and that of the children it has reaped, in the kernel's ticks.
pub fn process_ticks(stat: &str) -> Option<(u64, u64)> {
    // Fields after the command name, which is in parentheses and may hold spaces.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14 to 17 of the file, 11 to 14 after the name.
    let tick = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((tick(11)? + tick(12)?, tick(13)? + tick(14)?))
}

/// Seconds of CPU that the process `pid` has used.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    process_ticks(&stat).map(|(own, _)| own as f64 / TICKS_PER_SECOND)
}

/// This process's CPU time (every thread, user and system), in seconds.
///
/// From `CLOCK_PROCESS_CPUTIME_ID`, to the nanosecond: `/proc`'s counters
/// move in ticks of 10 ms, too coarse for a ceiling round of a fraction of
/// a second.
pub fn own_cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Seconds of CPU used by every process whose name is `name`, and by the
/// children they reaped: for the PostgreSQL server (all its processes are
/// named `postgres`), the backends of connections already closed count too,
/// through the server process that reaped them. `None` where `/proc` is missing.
pub fn cpu_seconds_of(name: &str) -> Option<f64> {
    let mut ticks = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let path = entry.path();
        let is_pid = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        // A process may end between listing and reading: skip it.
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        let named = stat
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .is_some_and(|(comm, _)| comm == name);
        if let (true, Some((own, children))) = (named, process_ticks(&stat)) {
            ticks += own + children;
        }
    }
    Some(ticks as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_process_own_and_reaped_cpu_time() {
        // The name may hold spaces and parentheses; fields count after the last ')'.
        let stat = "2233 (postgres (x) y) S 1 2233 2233 0 -1 4194560 900 7000 0 0 \
                    150 50 4000 1000 20 0 1 0 300 229711872 7000";
        assert_eq!(process_ticks(stat), Some((200, 5000)));
        assert_eq!(process_ticks("2233 (postgres) S 1"), None);
    }

    #[test]
    fn counts_this_test_process_by_its_name() {
        let Ok(comm) = std::fs::read_to_string("/proc/self/comm") else {
            return; // no /proc here
        };
        // Spend CPU until the precise clock has seen 100 ms of it, so that
        // /proc's tick-grained count cannot be zero (a fixed loop took a
        // few ms in a release build and read 0 ticks on a loaded machine).
        let start = own_cpu_seconds();
        let mut x = 0_u64;
        while own_cpu_seconds() - start < 0.1 {
            for i in 0..100_000_u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        assert!(own_cpu_seconds() - start >= 0.1);
        let seconds = cpu_seconds_of(comm.trim()).unwrap_or(0.0);
        assert!(seconds > 0.0, "{comm}: {seconds}");
        assert!(process_cpu_seconds(std::process::id()).unwrap_or(0.0) > 0.0);
    }

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
