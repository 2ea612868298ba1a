//! Server CPU time and memory, read from `/proc` (Linux). Missing files give `None`, so the tool
//! still runs elsewhere, without these columns.

/// USER_HZ: the unit of `utime`/`stime` in `/proc/PID/stat`. It is 100 on every Linux architecture
/// in common use (the kernel's ABI fixes it, whatever CONFIG_HZ is).
const TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time of every thread of the process so far, in microseconds.
pub fn cpu_us(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: fields are counted after it.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15 (proc(5)).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1_000_000 / TICKS_PER_SECOND)
}

/// A `kB` field of `/proc/PID/status`, in KiB: `VmHWM` is the peak resident set, `VmRSS` the
/// current one.
pub fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// A one-line description of the machine for the report.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim().to_owned()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gib = status_meminfo_kib("MemTotal").map_or(0.0, |k| k as f64 / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default();
    format!("{cpus} CPUs ({model}), {mem_gib:.0} GiB RAM, Linux {kernel}")
}

/// The 1-minute load average: how busy the machine was (other builds, other benchmarks).
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

fn status_meminfo_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    s.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_process() {
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(cpu_us("self").is_some());
            assert!(status_kib("self", "VmHWM").is_some_and(|k| k > 0));
        }
        assert_eq!(cpu_us("not-a-pid"), None);
    }
}
