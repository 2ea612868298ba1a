//! The account phases of issue 13 in Markdown: each against the password-only full login of the
//! same runs.

use std::fmt::Write as _;

use super::{Median, Phase, Report};

impl Report {
    /// The account phases against the full login of the same runs, for each target that ran them.
    pub(super) fn account_markdown(&self, medians: &[Median], names: &[&str]) -> String {
        let mut s = String::new();
        let others: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| Phase::ACCOUNT.iter().all(|p| Self::find(medians, n, *p).is_none()))
            .collect();
        for target in names {
            if Phase::ACCOUNT.iter().all(|p| Self::find(medians, target, *p).is_none()) {
                continue;
            }
            let _ = write!(
                s,
                "\nAccount paths on {target}, each against the password-only full login: the ratios are taken within each \
                 run and their median quoted."
            );
            if !others.is_empty() {
                let _ = write!(s, " {} has no counterpart in this benchmark: n/a.", others.join(", "));
            }
            let _ = writeln!(
                s,
                "\n\n| phase | ops/s | p50 / p99 ms | server CPU µs/op | ops/s ÷ login | CPU/op ÷ login |{}",
                others.iter().map(|o| format!(" {o} |")).collect::<String>()
            );
            let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: | ---: |{}", " ---: |".repeat(others.len()));
            for phase in std::iter::once(Phase::Login).chain(Phase::ACCOUNT) {
                let Some(m) = Self::find(medians, target, phase) else { continue };
                let ratio = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
                let (ops_ratio, cpu_ratio) = if phase == Phase::Login {
                    ("1".to_owned(), "1".to_owned())
                } else {
                    (ratio(m.ops_ratio_to_login), ratio(m.cpu_ratio_to_login))
                };
                let cpu = m.server_cpu_us_per_op.map_or("-".into(), |c| format!("{c:.0}"));
                let _ = writeln!(
                    s,
                    "| {} | {:.1} | {:.2} / {:.2} | {cpu} | {ops_ratio} | {cpu_ratio} |{}",
                    phase.label(),
                    m.ops_per_sec,
                    m.p50_ms,
                    m.p99_ms,
                    others
                        .iter()
                        .map(|_| if phase == Phase::Login { " (above) |" } else { " n/a |" })
                        .collect::<String>()
                );
            }
            if let Some(m) = Self::find(medians, target, Phase::ResetRequest)
                && !m.subsets.is_empty()
            {
                let parts: Vec<String> = m
                    .subsets
                    .iter()
                    .map(|sub| {
                        format!("{} p50 / p99 {:.2} / {:.2} ms ({} per run)", sub.name, sub.p50_ms, sub.p99_ms, sub.ops)
                    })
                    .collect();
                let _ = writeln!(s, "\nReset requests, each timed alone: {}.", parts.join("; "));
            }
        }
        s
    }
}
