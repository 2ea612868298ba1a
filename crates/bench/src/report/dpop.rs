//! The phases of issue 14 in Markdown: DPoP (RFC 9449) and PAR (RFC 9126), each against its
//! bearer (or plain) counterpart of the same runs, and what one proof costs each side.

use std::fmt::Write as _;

use super::{Median, Phase, Report};

impl Report {
    /// For each target that ran them: the DPoP and PAR phases beside their counterparts, the
    /// ratios and the extra server CPU taken within each run, then the proof's own costs.
    pub(super) fn dpop_markdown(&self, medians: &[Median], names: &[&str]) -> String {
        let mut s = String::new();
        let ran = |n: &str| Phase::DPOP_PAR.iter().any(|p| Self::find(medians, n, *p).is_some());
        let others: Vec<&str> = names.iter().copied().filter(|n| !ran(n)).collect();
        for target in names.iter().copied().filter(|n| ran(n)) {
            let _ = write!(
                s,
                "\nDPoP and PAR on {target}, each against its counterpart: ratios and extra server CPU are taken \
                 within each run and their median quoted."
            );
            if !others.is_empty() {
                let _ =
                    write!(s, " {}: not measured (the tool runs these phases on Latchkey only).", others.join(", "));
            }
            let _ = writeln!(
                s,
                "\n\n| phase | ops/s | p50 / p99 ms | server CPU µs/op | against | ops/s ÷ it | CPU/op ÷ it | \
                 extra server CPU µs/op |{}",
                others.iter().map(|o| format!(" {o} |")).collect::<String>()
            );
            let _ =
                writeln!(s, "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |{}", " --- |".repeat(others.len()));
            for phase in Phase::ALL.iter().copied().filter(|p| Phase::DPOP_PAR.contains(p)) {
                let (Some(m), Some(c)) = (Self::find(medians, target, phase), phase.counterpart()) else { continue };
                let opt = |v: Option<f64>, f: fn(f64) -> String| v.map_or("-".to_owned(), f);
                let _ = writeln!(
                    s,
                    "| {} | {:.0} | {:.2} / {:.2} | {} | {} | {} | {} | {} |{}",
                    phase.label(),
                    m.ops_per_sec,
                    m.p50_ms,
                    m.p99_ms,
                    opt(m.server_cpu_us_per_op, |v| format!("{v:.0}")),
                    c.label(),
                    opt(m.ops_ratio_to_counterpart, |v| format!("{v:.2}")),
                    opt(m.cpu_ratio_to_counterpart, |v| format!("{v:.2}")),
                    opt(m.cpu_extra_us_over_counterpart, |v| format!("{v:+.0}")),
                    " not measured |".repeat(others.len())
                );
            }
            if let Some((sign, verify, cpu)) = self.proof_cost_median(target) {
                let clock = if cpu { "thread CPU time" } else { "wall time" };
                let _ = writeln!(
                    s,
                    "\nOne DPoP proof (ES256), on one core of the bench process ({clock}, median of the runs): signing \
                     {sign:.1} µs ({:.0} proofs/s), the client's work, inside each DPoP operation's latency; \
                     verifying as Latchkey does before its replay mark (parse, thumbprint, signature, claims) \
                     {verify:.1} µs ({:.0}/s). The rest of the extra server CPU is the replay mark (one insert, \
                     committed with the group) and the larger request.",
                    1e6 / sign.max(0.001),
                    1e6 / verify.max(0.001)
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::super::ProofCost;
    use super::super::tests::{report, result};
    use super::*;

    #[test]
    fn dpop_phases_are_quoted_against_their_counterpart_of_the_same_run_and_not_measured_for_the_peer() {
        let mut r = report(&["latchkey", "peer"]);
        // The machine slows down run by run; within each run DPoP costs 0.8× the ops/s and 100 µs
        // more server CPU than the bearer exchange.
        for (run, ops) in [(0, 1000.0), (1, 600.0), (2, 300.0)] {
            let cpu = 500.0 + 10.0 * run as f64;
            r.results.push(result("latchkey", run, Phase::Exchange, ops, cpu));
            r.results.push(result("latchkey", run, Phase::DpopExchange, 0.8 * ops, cpu + 100.0));
            r.results.push(result("peer", run, Phase::Exchange, 500.0, 600.0));
            r.proof_costs.push(ProofCost {
                target: "latchkey".into(),
                run,
                warmup: false,
                proofs: 100,
                sign_us: 20.0 + run as f64,
                verify_us: 50.0,
                cpu_time: true,
            });
        }
        let m = r.medians();
        let d = m.iter().find(|m| m.phase == Phase::DpopExchange).unwrap();
        assert_eq!(d.counterpart, Some(Phase::Exchange));
        assert_eq!(d.ops_ratio_to_counterpart, Some(0.8));
        assert_eq!(d.cpu_extra_us_over_counterpart, Some(100.0));
        let bearer = m.iter().find(|m| m.phase == Phase::Exchange && m.target == "latchkey").unwrap();
        assert_eq!((bearer.counterpart, bearer.ops_ratio_to_counterpart), (None, None));
        assert_eq!(r.proof_cost_median("latchkey"), Some((21.0, 50.0, true)));
        let md = r.markdown();
        let main = md.lines().find(|l| l.starts_with("| code exchange, DPoP |")).unwrap();
        assert!(main.ends_with("| not measured | not measured | not measured | not measured |"), "{main}");
        assert!(
            md.contains("| code exchange, DPoP | 480 | 0.00 / 0.00 | 610 | code exchange (PKCE) | 0.80 | 1.20 | +100 | not measured |"),
            "{md}"
        );
        assert!(md.contains("signing 21.0 µs (47619 proofs/s)"), "{md}");
        assert!(!md.contains("| refresh, DPoP"), "a phase that did not run has no row: {md}");
        assert!(r.json_lines().lines().filter(|l| l.contains(r#""type":"proof_cost""#)).count() == 3);
    }
}
