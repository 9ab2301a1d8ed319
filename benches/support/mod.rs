//! What the benches share: their `--name value` options, and CPU time from
//! `/proc/<pid>/stat` and `/proc/<pid>/task/<tid>/stat`.
#![allow(dead_code)]

/// The value after `name` in `args`, parsed; `default` when absent or unparsable.
pub fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The command name and the CPU time (user + system, seconds) of one `stat` line:
/// "pid (comm) state ppid …", utime and stime being fields 14 and 15.
pub fn cpu_of_stat(stat: &str) -> Option<(&str, f64)> {
    let (a, b) = (stat.find('(')?, stat.rfind(')')?);
    let rest: Vec<&str> = stat.get(b + 2..)?.split_whitespace().collect();
    let ticks = |i: usize| {
        rest.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((&stat[a + 1..b], (ticks(11) + ticks(12)) / tick))
}
