//! Results: one record per (target, run, phase), medians over the measured runs, and three ways
//! to print them: a table for people, JSON lines for machines, and the Markdown comparison that
//! BENCHMARKS.md publishes.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{Target, Workload};

mod accounts;
mod dpop;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Authorize,
    Exchange,
    Refresh,
    Userinfo,
    Discovery,
    Jwks,
    Hello,
    Login,
    UserinfoDuringLogins,
    /// Authorization naming an RFC 8707 `resource`, and the exchange of its code: the token is
    /// bound to that resource (the MCP flow).
    AuthorizeResource,
    ExchangeResource,
    /// RFC 7591 dynamic client registration of a public client.
    Register,
    /// The full login of a user with TOTP: the password, then the second-factor page and the
    /// current RFC 6238 code (issue 13).
    LoginTotp,
    /// The username-less passkey sign-in, from the authorization request to the code.
    LoginPasskey,
    /// `POST /reset` for known and unknown addresses, alternately.
    ResetRequest,
    /// Authorization with a session naming `dpop_jkt` (RFC 9449 §10): the codes of
    /// [`Phase::DpopExchange`] (issue 14).
    DpopAuthorize,
    /// The code exchange with a DPoP proof by the code's key.
    DpopExchange,
    /// The refresh with a proof by the family's key.
    DpopRefresh,
    /// Userinfo with `Authorization: DPoP` and a proof carrying `ath`.
    DpopUserinfo,
    /// `POST /par`, then the authorization request with its `request_uri` (RFC 9126).
    ParAuthorize,
}

impl Phase {
    /// The account phases: Latchkey's only, quoted as ratios to [`Phase::Login`] of the same run.
    pub const ACCOUNT: [Phase; 3] = [Phase::LoginTotp, Phase::LoginPasskey, Phase::ResetRequest];

    /// The phases of issue 14, each measured beside its [`Phase::counterpart`].
    pub const DPOP_PAR: [Phase; 5] =
        [Phase::DpopAuthorize, Phase::ParAuthorize, Phase::DpopExchange, Phase::DpopRefresh, Phase::DpopUserinfo];

    /// Table order: each phase of issue 14 right after its counterpart.
    pub const ALL: [Phase; 20] = [
        Phase::Authorize,
        Phase::DpopAuthorize,
        Phase::ParAuthorize,
        Phase::Exchange,
        Phase::DpopExchange,
        Phase::Refresh,
        Phase::DpopRefresh,
        Phase::Userinfo,
        Phase::DpopUserinfo,
        Phase::Discovery,
        Phase::Jwks,
        Phase::Hello,
        Phase::Login,
        Phase::UserinfoDuringLogins,
        Phase::AuthorizeResource,
        Phase::ExchangeResource,
        Phase::Register,
        Phase::LoginTotp,
        Phase::LoginPasskey,
        Phase::ResetRequest,
    ];

    /// A phase other providers have no counterpart of in this benchmark: their cells say "n/a".
    pub fn latchkey_only(self) -> bool {
        Self::ACCOUNT.contains(&self)
    }

    /// What a peer's cell says when it has no figure for this phase: "n/a" where the peer set-up
    /// has no counterpart, "not measured" where the tool runs the phase on Latchkey only although
    /// a peer might support it (DPoP, PAR).
    pub fn missing(self) -> &'static str {
        if self.latchkey_only() {
            "n/a"
        } else if Self::DPOP_PAR.contains(&self) {
            "not measured"
        } else {
            "-"
        }
    }

    /// The phase this one is quoted against, run by run: the bearer (or plain) operation it is
    /// the DPoP (or PAR) twin of.
    pub fn counterpart(self) -> Option<Phase> {
        match self {
            Phase::DpopAuthorize | Phase::ParAuthorize => Some(Phase::Authorize),
            Phase::DpopExchange => Some(Phase::Exchange),
            Phase::DpopRefresh => Some(Phase::Refresh),
            Phase::DpopUserinfo => Some(Phase::Userinfo),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Phase::Authorize => "authorization with a session",
            Phase::Exchange => "code exchange (PKCE)",
            Phase::Refresh => "refresh (rotation)",
            Phase::Userinfo => "userinfo",
            Phase::Discovery => "discovery",
            Phase::Jwks => "JWKS",
            Phase::Hello => "bare hyper hello",
            Phase::Login => "full login (Argon2id)",
            Phase::UserinfoDuringLogins => "userinfo during logins",
            Phase::AuthorizeResource => "authorization with resource (RFC 8707)",
            Phase::ExchangeResource => "code exchange with resource",
            Phase::Register => "dynamic registration (RFC 7591)",
            Phase::LoginTotp => "full login + TOTP (Argon2id)",
            Phase::LoginPasskey => "passkey sign-in (username-less)",
            Phase::ResetRequest => "password reset request",
            Phase::DpopAuthorize => "authorization with dpop_jkt",
            Phase::DpopExchange => "code exchange, DPoP",
            Phase::DpopRefresh => "refresh, DPoP",
            Phase::DpopUserinfo => "userinfo, DPoP",
            Phase::ParAuthorize => "PAR + authorization",
        }
    }
}

/// The load that ran beside a measured phase (logins beside userinfo).
#[derive(Debug, Clone, Serialize)]
pub struct Background {
    pub phase: Phase,
    pub connections: usize,
    pub ops: usize,
    pub errors: usize,
    pub ops_per_sec: f64,
    pub p99_ms: f64,
    pub error_samples: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    pub target: String,
    pub run: usize,
    pub warmup: bool,
    pub phase: Phase,
    pub connections: usize,
    /// Operations the phase was to run; fewer ran when it hit its time limit.
    pub planned: usize,
    pub ops: usize,
    pub errors: usize,
    pub requests: usize,
    /// Connections the server closed and the client had to reopen.
    pub reconnects: usize,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Server user + system CPU time per operation (foreground and background alike).
    pub server_cpu_us_per_op: Option<f64>,
    /// The server's VmHWM after the phase: its peak resident memory since it started.
    pub server_peak_rss_mib: Option<f64>,
    /// The load generator's own CPU per operation: it shares the machine with the server.
    pub client_cpu_us_per_op: Option<f64>,
    pub error_samples: Vec<String>,
    pub background: Option<Background>,
    /// Latencies of parts of the operations, each from the operation's own timing (the reset
    /// requests for known and for unknown addresses).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
}

/// The operations of one kind within a phase.
#[derive(Debug, Clone, Serialize)]
pub struct Subset {
    pub name: String,
    pub ops: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Subset {
    /// `latencies_us` need not be sorted.
    pub fn of(name: &str, mut latencies_us: Vec<u32>) -> Self {
        latencies_us.sort_unstable();
        let m = crate::phase::Measured { latencies_us, ..Default::default() };
        Self {
            name: name.to_owned(),
            ops: m.latencies_us.len(),
            p50_ms: m.quantile_ms(0.5),
            p99_ms: m.quantile_ms(0.99),
        }
    }
}

impl PhaseResult {
    pub fn failed(target: &str, run: usize, warmup: bool, phase: Phase, why: &str) -> Self {
        Self {
            target: target.to_owned(),
            run,
            warmup,
            phase,
            connections: 0,
            planned: 0,
            ops: 0,
            errors: 1,
            requests: 0,
            reconnects: 0,
            seconds: 0.0,
            ops_per_sec: 0.0,
            p50_ms: 0.0,
            p90_ms: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
            server_cpu_us_per_op: None,
            server_peak_rss_mib: None,
            client_cpu_us_per_op: None,
            error_samples: vec![format!("skipped: {why}")],
            background: None,
            subsets: Vec::new(),
        }
    }

    /// The phase stopped at its time limit before running all its operations.
    pub fn incomplete(&self) -> bool {
        self.ops + self.errors < self.planned
    }

    pub fn all_errors(&self) -> usize {
        self.errors + self.background.as_ref().map_or(0, |b| b.errors)
    }

    /// One progress line.
    pub fn line(&self) -> String {
        let mut s = format!(
            "  {:<12} {:<30} {:>6} ops {:>9.1} ops/s  p50 {:>7.2}  p99 {:>7.2}  max {:>7.2} ms",
            self.target,
            self.phase.label(),
            self.ops,
            self.ops_per_sec,
            self.p50_ms,
            self.p99_ms,
            self.max_ms
        );
        if let Some(c) = self.server_cpu_us_per_op {
            let _ = write!(s, "  cpu {c:>7.0} µs/op");
        }
        if self.incomplete() {
            let _ = write!(s, "  INCOMPLETE: {} of {} before the time limit", self.ops + self.errors, self.planned);
        }
        if let Some(b) = &self.background {
            let _ = write!(s, "  [{} logins beside: {:.1}/s, p99 {:.0} ms]", b.ops, b.ops_per_sec, b.p99_ms);
        }
        if self.all_errors() > 0 {
            let mut samples = self.error_samples.clone();
            if let Some(b) = &self.background {
                samples.extend(b.error_samples.iter().cloned());
            }
            let _ = write!(s, "  ERRORS {}: {}", self.all_errors(), samples.join(" | "));
        }
        s
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub target: String,
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// Medians over the measured (not warm-up) runs of one target and phase.
#[derive(Debug, Clone, Serialize)]
pub struct Median {
    pub target: String,
    pub phase: Phase,
    pub runs: usize,
    pub ops: f64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub server_cpu_us_per_op: Option<f64>,
    pub client_cpu_us_per_op: Option<f64>,
    pub background_ops_per_sec: Option<f64>,
    pub errors: usize,
    /// Runs that hit the time limit before their count.
    pub incomplete_runs: usize,
    /// Medians of the subsets' figures, by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
    /// For the account phases: this phase's ops/s and server CPU per operation, each divided by
    /// the full login's of the same run; medians over the runs.
    pub ops_ratio_to_login: Option<f64>,
    pub cpu_ratio_to_login: Option<f64>,
    /// For the phases of issue 14: the phase they are quoted against ([`Phase::counterpart`]),
    /// ops/s and server CPU per operation divided by its, and the server CPU per operation
    /// beyond its, each taken within a run; medians over the runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counterpart: Option<Phase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops_ratio_to_counterpart: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ratio_to_counterpart: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_extra_us_over_counterpart: Option<f64>,
}

/// The client's and the verifier's work for one DPoP proof, timed on one thread of the bench
/// process before a run's DPoP phases ([`crate::dpop_ops::proof_costs`]).
#[derive(Debug, Clone, Serialize)]
pub struct ProofCost {
    pub target: String,
    pub run: usize,
    pub warmup: bool,
    pub proofs: usize,
    pub sign_us: f64,
    pub verify_us: f64,
    /// Thread CPU time (true) or wall time.
    pub cpu_time: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    pub name: String,
    pub issuer: String,
    pub adapter: crate::Adapter,
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkloadInfo {
    pub users: usize,
    pub codes: usize,
    pub connections: usize,
    pub logins: usize,
    pub runs: usize,
    pub warmup: bool,
    pub max_phase_seconds: u64,
    pub account_logins: usize,
    pub resets: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: String,
    pub started_unix: u64,
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    pub workload: WorkloadInfo,
    pub targets: Vec<TargetInfo>,
    pub results: Vec<PhaseResult>,
    pub checks: Vec<Check>,
    pub proof_costs: Vec<ProofCost>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn median_opt(v: Vec<Option<f64>>) -> Option<f64> {
    let vals: Vec<f64> = v.into_iter().flatten().collect();
    (!vals.is_empty()).then(|| median(vals))
}

/// Medians over runs of each subset's figures, subsets in the order of their first appearance.
fn subset_medians(rs: &[&PhaseResult]) -> Vec<Subset> {
    let mut names: Vec<&str> = Vec::new();
    for s in rs.iter().flat_map(|r| &r.subsets) {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let of = |g: fn(&Subset) -> f64| {
                median(rs.iter().flat_map(|r| &r.subsets).filter(|s| s.name == name).map(g).collect())
            };
            Subset {
                name: name.to_owned(),
                ops: of(|s| s.ops as f64) as usize,
                p50_ms: of(|s| s.p50_ms),
                p99_ms: of(|s| s.p99_ms),
            }
        })
        .collect()
}

/// `YYYY-MM-DD HH:MM UTC` from Unix seconds (Howard Hinnant's days-from-civil, inverted).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{d:02} {h:02}:{m:02} UTC")
}

impl Report {
    pub fn new(targets: &[Target], w: &Workload) -> Self {
        Self {
            machine: crate::procfs::machine(),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            load_before: crate::procfs::loadavg(),
            load_after: None,
            workload: WorkloadInfo {
                users: w.users,
                codes: w.codes,
                connections: w.connections,
                logins: w.logins,
                runs: w.runs,
                warmup: w.warmup,
                max_phase_seconds: w.max_phase_time.as_secs(),
                account_logins: w.account_logins,
                resets: w.resets,
            },
            targets: targets
                .iter()
                .map(|t| TargetInfo {
                    name: t.name.clone(),
                    issuer: t.issuer.to_string(),
                    adapter: t.adapter,
                    pid: t.pid,
                })
                .collect(),
            results: Vec::new(),
            checks: Vec::new(),
            proof_costs: Vec::new(),
        }
    }

    pub fn finish(&mut self) {
        self.load_after = crate::procfs::loadavg();
    }

    /// Every error of every phase (warm-up included) and every failed check.
    pub fn errors(&self) -> usize {
        self.results.iter().map(PhaseResult::all_errors).sum::<usize>()
            + self.checks.iter().filter(|c| !c.passed).count()
    }

    pub fn passed(&self) -> bool {
        self.errors() == 0
    }

    fn target_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.targets.iter().map(|t| t.name.clone()).collect();
        if self.results.iter().any(|r| r.phase == Phase::Hello) {
            names.push("hello".into());
        }
        names
    }

    pub fn medians(&self) -> Vec<Median> {
        let mut out = Vec::new();
        for target in self.target_names() {
            for phase in Phase::ALL {
                let rs: Vec<&PhaseResult> =
                    self.results.iter().filter(|r| r.target == target && r.phase == phase && !r.warmup).collect();
                if rs.is_empty() {
                    continue;
                }
                let f = |g: fn(&PhaseResult) -> f64| median(rs.iter().map(|r| g(r)).collect());
                out.push(Median {
                    target: target.clone(),
                    phase,
                    runs: rs.len(),
                    ops: f(|r| r.ops as f64),
                    ops_per_sec: f(|r| r.ops_per_sec),
                    p50_ms: f(|r| r.p50_ms),
                    p90_ms: f(|r| r.p90_ms),
                    p99_ms: f(|r| r.p99_ms),
                    max_ms: f(|r| r.max_ms),
                    server_cpu_us_per_op: median_opt(rs.iter().map(|r| r.server_cpu_us_per_op).collect()),
                    client_cpu_us_per_op: median_opt(rs.iter().map(|r| r.client_cpu_us_per_op).collect()),
                    background_ops_per_sec: median_opt(
                        rs.iter().map(|r| r.background.as_ref().map(|b| b.ops_per_sec)).collect(),
                    ),
                    errors: rs.iter().map(|r| r.all_errors()).sum(),
                    incomplete_runs: rs.iter().filter(|r| r.incomplete()).count(),
                    subsets: subset_medians(&rs),
                    ops_ratio_to_login: self.ratio_to_login(&target, phase, |r| Some(r.ops_per_sec)),
                    cpu_ratio_to_login: self.ratio_to_login(&target, phase, |r| r.server_cpu_us_per_op),
                    counterpart: phase.counterpart(),
                    ops_ratio_to_counterpart: phase.counterpart().and_then(|c| {
                        self.within_runs(&target, phase, c, |r| Some(r.ops_per_sec), |a, b| (b > 0.0).then(|| a / b))
                    }),
                    cpu_ratio_to_counterpart: phase.counterpart().and_then(|c| {
                        self.within_runs(&target, phase, c, |r| r.server_cpu_us_per_op, |a, b| (b > 0.0).then(|| a / b))
                    }),
                    cpu_extra_us_over_counterpart: phase.counterpart().and_then(|c| {
                        self.within_runs(&target, phase, c, |r| r.server_cpu_us_per_op, |a, b| Some(a - b))
                    }),
                });
            }
        }
        out
    }

    /// `figure` of an account phase divided by the full login's in the same run; the median over
    /// the measured runs. Ratios are taken run by run: both figures then share the machine's
    /// state, which drifts between runs on a shared machine.
    fn ratio_to_login(&self, target: &str, phase: Phase, figure: fn(&PhaseResult) -> Option<f64>) -> Option<f64> {
        if !phase.latchkey_only() {
            return None;
        }
        self.within_runs(target, phase, Phase::Login, figure, |a, b| (b > 0.0).then(|| a / b))
    }

    /// `combine(figure of phase, figure of reference)` in each measured run where both ran
    /// without errors; the median over those runs.
    fn within_runs(
        &self,
        target: &str,
        phase: Phase,
        reference: Phase,
        figure: fn(&PhaseResult) -> Option<f64>,
        combine: fn(f64, f64) -> Option<f64>,
    ) -> Option<f64> {
        let of = |p: Phase, run: usize| {
            self.results.iter().find(|r| r.target == target && r.phase == p && r.run == run && !r.warmup)
        };
        let values: Vec<f64> = self
            .results
            .iter()
            .filter(|r| r.target == target && r.phase == phase && !r.warmup && r.errors == 0)
            .filter_map(|r| {
                let reference = of(reference, r.run).filter(|b| b.errors == 0)?;
                combine(figure(r)?, figure(reference)?)
            })
            .collect();
        (!values.is_empty()).then(|| median(values))
    }

    /// Medians over the measured runs of a target's proof costs: (sign µs, verify µs, CPU time?).
    pub fn proof_cost_median(&self, target: &str) -> Option<(f64, f64, bool)> {
        let rs: Vec<&ProofCost> = self.proof_costs.iter().filter(|p| p.target == target && !p.warmup).collect();
        if rs.is_empty() {
            return None;
        }
        let sign = median(rs.iter().map(|p| p.sign_us).collect());
        let verify = median(rs.iter().map(|p| p.verify_us).collect());
        Some((sign, verify, rs.iter().all(|p| p.cpu_time)))
    }

    /// The highest VmHWM seen for a target: its peak RSS over the whole run.
    pub fn peak_rss_mib(&self, target: &str) -> Option<f64> {
        self.results.iter().filter(|r| r.target == target).filter_map(|r| r.server_peak_rss_mib).reduce(f64::max)
    }

    fn find<'a>(medians: &'a [Median], target: &str, phase: Phase) -> Option<&'a Median> {
        medians.iter().find(|m| m.target == target && m.phase == phase)
    }

    /// The table for people.
    pub fn table(&self) -> String {
        let medians = self.medians();
        let mut s = String::new();
        let runs = self.workload.runs;
        let _ = writeln!(
            s,
            "\nMedians of {runs} run(s){}; {} connections, {} users, {} codes and {} logins per run.",
            if self.workload.warmup { " after a warm-up" } else { "" },
            self.workload.connections,
            self.workload.users,
            self.workload.codes,
            self.workload.logins
        );
        for target in self.target_names() {
            let _ = writeln!(s, "\n{target}");
            let _ = writeln!(
                s,
                "  {:<30} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>11} {:>11} {:>6}",
                "phase", "ops", "ops/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "srv µs/op", "cli µs/op", "errors"
            );
            for m in medians.iter().filter(|m| m.target == target) {
                let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
                let _ = writeln!(
                    s,
                    "  {:<30} {:>8.0} {:>10.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>11} {:>11} {:>6}",
                    m.phase.label(),
                    m.ops,
                    m.ops_per_sec,
                    m.p50_ms,
                    m.p90_ms,
                    m.p99_ms,
                    m.max_ms,
                    opt(m.server_cpu_us_per_op),
                    opt(m.client_cpu_us_per_op),
                    m.errors
                );
                if let Some(b) = m.background_ops_per_sec {
                    let _ = writeln!(s, "  {:<30} {:>19.1}  (logins/s beside the row above)", "", b);
                }
                if m.incomplete_runs > 0 {
                    let _ = writeln!(s, "  {:<30} {} run(s) stopped at the time limit", "", m.incomplete_runs);
                }
                for sub in &m.subsets {
                    let _ = writeln!(
                        s,
                        "  {:<30} {:>8} {:>10} {:>8.2} {:>8} {:>8.2}  ({})",
                        "", sub.ops, "", sub.p50_ms, "", sub.p99_ms, sub.name
                    );
                }
                if let Some(r) = m.ops_ratio_to_login {
                    let cpu = m.cpu_ratio_to_login.map_or("-".into(), |c| format!("{c:.2}"));
                    let _ = writeln!(s, "  {:<30} ÷ full login of the same run: ops/s {r:.2}, CPU/op {cpu}", "");
                }
                if let (Some(c), Some(r)) = (m.counterpart, m.ops_ratio_to_counterpart) {
                    let cpu = m.cpu_ratio_to_counterpart.map_or("-".into(), |c| format!("{c:.2}"));
                    let extra = m.cpu_extra_us_over_counterpart.map_or("-".into(), |c| format!("{c:+.0}"));
                    let _ = writeln!(
                        s,
                        "  {:<30} ÷ {} of the same run: ops/s {r:.2}, CPU/op {cpu} ({extra} µs)",
                        "",
                        c.label()
                    );
                }
            }
            if let Some((sign, verify, cpu)) = self.proof_cost_median(&target) {
                let clock = if cpu { "thread CPU" } else { "wall time" };
                let _ = writeln!(
                    s,
                    "  DPoP proof on one core of the bench process ({clock}): signed in {sign:.1} µs ({:.0}/s), \
                     verified in {verify:.1} µs ({:.0}/s)",
                    1e6 / sign.max(0.001),
                    1e6 / verify.max(0.001)
                );
            }
            if let Some(rss) = self.peak_rss_mib(&target) {
                let _ = writeln!(s, "  peak RSS of the server over the whole run: {rss:.1} MiB");
            }
        }
        for c in &self.checks {
            let _ = writeln!(
                s,
                "\ncheck [{}] {}: {} ({})",
                c.target,
                c.name,
                if c.passed { "ok" } else { "FAILED" },
                c.detail
            );
        }
        let _ = writeln!(
            s,
            "\n{}",
            if self.passed() { "no errors".to_owned() } else { format!("{} ERRORS", self.errors()) }
        );
        s
    }

    /// JSON lines: one `run` header, one line per measured phase, the medians and the checks.
    pub fn json_lines(&self) -> String {
        let mut s = String::new();
        let header = serde_json::json!({
            "type": "run",
            "machine": self.machine,
            "started_unix": self.started_unix,
            "load_before": self.load_before,
            "load_after": self.load_after,
            "workload": self.workload,
            "targets": self.targets,
            "passed": self.passed(),
        });
        let _ = writeln!(s, "{header}");
        let tagged = |kind: &str, v: serde_json::Value| {
            let mut v = v;
            if let Some(o) = v.as_object_mut() {
                o.insert("type".into(), kind.into());
            }
            v
        };
        for r in &self.results {
            let _ = writeln!(s, "{}", tagged("phase", serde_json::to_value(r).unwrap_or_default()));
        }
        for m in self.medians() {
            let _ = writeln!(s, "{}", tagged("median", serde_json::to_value(&m).unwrap_or_default()));
        }
        for p in &self.proof_costs {
            let _ = writeln!(s, "{}", tagged("proof_cost", serde_json::to_value(p).unwrap_or_default()));
        }
        for c in &self.checks {
            let _ = writeln!(s, "{}", tagged("check", serde_json::to_value(c).unwrap_or_default()));
        }
        s
    }

    /// The comparison table: the first target against each other one, phase by phase.
    pub fn markdown(&self) -> String {
        let medians = self.medians();
        let names: Vec<&str> = self.targets.iter().map(|t| t.name.as_str()).collect();
        let subject = names.first().copied().unwrap_or("");
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Measured {} on {}. Load average before/after: {}/{}. Workload: {} keep-alive connections, {} users, \
             {} codes per run, {} logins per run; medians of {} runs{}. Server CPU is user+system time of the \
             server process per operation; RSS is its peak (VmHWM) over the whole run. Errors: {}.\n",
            utc(self.started_unix),
            self.machine,
            self.load_before.map_or("?".into(), |l| format!("{l:.2}")),
            self.load_after.map_or("?".into(), |l| format!("{l:.2}")),
            self.workload.connections,
            self.workload.users,
            self.workload.codes,
            self.workload.logins,
            self.workload.runs,
            if self.workload.warmup { " after a warm-up run" } else { "" },
            self.errors()
        );
        let mut head = String::from("| phase |");
        let mut rule = String::from("| --- |");
        for n in &names {
            let _ = write!(head, " {n} ops/s | {n} p50 / p99 ms | {n} CPU µs/op |");
            rule.push_str(" ---: | ---: | ---: |");
        }
        for n in names.iter().skip(1) {
            let _ = write!(head, " {subject} ÷ {n} |");
            rule.push_str(" ---: |");
        }
        let _ = writeln!(s, "{head}\n{rule}");
        for phase in Phase::ALL {
            if phase == Phase::Hello || !names.iter().any(|n| Self::find(&medians, n, phase).is_some()) {
                continue;
            }
            let mut row = format!("| {} |", phase.label());
            for n in &names {
                match Self::find(&medians, n, phase) {
                    Some(m) => {
                        let cpu = m.server_cpu_us_per_op.map_or("-".into(), |c| format!("{c:.0}"));
                        let mut ops = format!("{:.0}", m.ops_per_sec);
                        if let Some(b) = m.background_ops_per_sec {
                            let _ = write!(ops, " (+{b:.0} logins/s)");
                        }
                        if m.incomplete_runs > 0 {
                            let _ = write!(ops, " ⚠ {}/{} runs hit the time limit", m.incomplete_runs, m.runs);
                        }
                        let _ = write!(row, " {ops} | {:.2} / {:.2} | {cpu} |", m.p50_ms, m.p99_ms);
                    }
                    None => {
                        let none = phase.missing();
                        let _ = write!(row, " {none} | {none} | {none} |");
                    }
                }
            }
            for n in names.iter().skip(1) {
                let none = phase.missing();
                let ratio = Self::find(&medians, subject, phase)
                    .zip(Self::find(&medians, n, phase))
                    .filter(|(_, o)| o.ops_per_sec > 0.0)
                    .map_or(none.into(), |(a, o)| format!("{:.2}×", a.ops_per_sec / o.ops_per_sec));
                let _ = write!(row, " {ratio} |");
            }
            let _ = writeln!(s, "{row}");
        }
        let mut rss = String::from("| peak RSS (MiB) |");
        for n in &names {
            let _ = write!(rss, " {} | | |", self.peak_rss_mib(n).map_or("-".into(), |r| format!("{r:.1}")));
        }
        for _ in names.iter().skip(1) {
            rss.push_str(" |");
        }
        let _ = writeln!(s, "{rss}");
        if let Some(h) = Self::find(&medians, "hello", Phase::Hello) {
            let _ = write!(
                s,
                "\nBare hyper \"hello\" server (`latchkey-bench hello`), same connections and count: {:.0} requests/s, \
                 p50 / p99 {:.2} / {:.2} ms",
                h.ops_per_sec, h.p50_ms, h.p99_ms
            );
            for n in &names {
                for phase in [Phase::Discovery, Phase::Jwks] {
                    if let Some(m) = Self::find(&medians, n, phase) {
                        let _ = write!(s, "; {n} {} = {:.0}%", phase.label(), 100.0 * m.ops_per_sec / h.ops_per_sec);
                    }
                }
            }
            s.push_str(".\n");
        }
        s.push_str(&self.account_markdown(&medians, &names));
        s.push_str(&self.dpop_markdown(&medians, &names));
        for c in &self.checks {
            let _ = writeln!(
                s,
                "\n- {} — {}: {} ({}).",
                c.target,
                c.name,
                if c.passed { "passed" } else { "FAILED" },
                c.detail
            );
        }
        s
    }
}

/// Replaces the text between `<!-- results:begin -->` and `<!-- results:end -->` in a Markdown
/// file with `table`.
pub fn splice(document: &str, table: &str) -> anyhow::Result<String> {
    const BEGIN: &str = "<!-- results:begin -->";
    const END: &str = "<!-- results:end -->";
    let b = document.find(BEGIN).ok_or_else(|| anyhow::anyhow!("no {BEGIN} marker"))?;
    let e = document.find(END).ok_or_else(|| anyhow::anyhow!("no {END} marker"))?;
    if e < b {
        anyhow::bail!("{END} comes before {BEGIN}");
    }
    Ok(format!(
        "{}{BEGIN}\n<!-- written by latchkey-bench; do not edit by hand -->\n\n{}\n{}",
        &document[..b],
        table.trim_end(),
        &document[e..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_dates() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median_opt(vec![None, Some(1.0)]), Some(1.0));
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
    }

    pub(super) fn result(target: &str, run: usize, phase: Phase, ops_per_sec: f64, cpu: f64) -> PhaseResult {
        PhaseResult {
            ops: 10,
            planned: 10,
            errors: 0,
            error_samples: Vec::new(),
            ops_per_sec,
            server_cpu_us_per_op: Some(cpu),
            ..PhaseResult::failed(target, run, false, phase, "")
        }
    }

    #[test]
    fn account_phases_are_ratios_to_the_login_of_the_same_run_and_n_a_for_the_peer() {
        let mut r = report(&["latchkey", "peer"]);
        // The machine slows down run by run; the ratio within each run stays 0.5 (ops) and 2 (CPU),
        // where the ratio of the medians would not.
        for (run, login) in [(0, 100.0), (1, 60.0), (2, 10.0)] {
            r.results.push(result("latchkey", run, Phase::Login, login, 1000.0 + run as f64));
            r.results.push(result("latchkey", run, Phase::LoginTotp, login / 2.0, 2.0 * (1000.0 + run as f64)));
            r.results.push(result("peer", run, Phase::Login, 50.0, 900.0));
        }
        let m = r.medians();
        let totp = m.iter().find(|m| m.phase == Phase::LoginTotp).unwrap();
        assert_eq!((totp.ops_ratio_to_login, totp.cpu_ratio_to_login), (Some(0.5), Some(2.0)));
        let login = m.iter().find(|m| m.phase == Phase::Login && m.target == "latchkey").unwrap();
        assert_eq!(login.ops_ratio_to_login, None, "the login is the reference, not an account phase");
        let md = r.markdown();
        let row = md.lines().find(|l| l.starts_with("| full login + TOTP")).unwrap();
        assert!(row.ends_with("| n/a | n/a | n/a | n/a |"), "the peer's cells and the ratio: {row}");
        assert!(
            md.contains("| full login + TOTP (Argon2id) | 30.0 | 0.00 / 0.00 | 2002 | 0.500 | 2.000 | n/a |"),
            "{md}"
        );
        assert!(!md.lines().any(|l| l.starts_with("| passkey sign-in")), "a phase that did not run has no row");
    }

    /// An empty report of three measured runs for `names`.
    pub(super) fn report(names: &[&str]) -> Report {
        let targets: Vec<TargetInfo> = names
            .iter()
            .map(|n| TargetInfo {
                name: (*n).into(),
                issuer: String::new(),
                adapter: crate::Adapter::Latchkey,
                pid: None,
            })
            .collect();
        Report {
            machine: String::new(),
            started_unix: 0,
            load_before: None,
            load_after: None,
            workload: WorkloadInfo {
                users: 1,
                codes: 1,
                connections: 1,
                logins: 1,
                runs: 3,
                warmup: false,
                max_phase_seconds: 1,
                account_logins: 1,
                resets: 0,
            },
            targets,
            results: Vec::new(),
            checks: Vec::new(),
            proof_costs: Vec::new(),
        }
    }

    #[test]
    fn splice_replaces_between_markers() {
        let doc = "a\n<!-- results:begin -->\nold\n<!-- results:end -->\nb\n";
        let out = splice(doc, "new table\n").unwrap();
        assert!(out.starts_with("a\n<!-- results:begin -->\n"));
        assert!(out.contains("new table\n<!-- results:end -->\nb\n"));
        assert!(!out.contains("old"));
        assert!(splice("no markers", "x").is_err());
    }
}
