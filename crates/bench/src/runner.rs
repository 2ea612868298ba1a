//! The benchmark's order of events: discovery and logins per target, then runs that alternate
//! between targets, phase by phase, then the rotation check.

use hyper::StatusCode;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey_core::passkey::soft::SoftAuthenticator;

use crate::account_ops::{LoginPasskey, LoginTotp, ResetRequest, SourcePool, TotpLogin, TotpPool};
use crate::adapter::Adapter;
use crate::dpop_ops::{
    self, Bound, DpopAuthorize, DpopExchange, DpopRefresh, DpopUserinfo, Keys, ParAuthorize, proof_costs,
};
use crate::http::{Conn, Origin, Req};
use crate::ops::{Authorize, Client, Exchange, Fetch, IssuedCode, Login, Refresh, Register, Tokens, User, Userinfo};
use crate::phase::{self, Measured, Op, Spec};
use crate::procfs;
use crate::report::{Background, Check, Phase, PhaseResult, ProofCost, Report, Subset};
use crate::{Baseline, Target, Workload};

/// A target after discovery and the users' first logins.
struct Prepared {
    target: Target,
    origin: Arc<Origin>,
    client: Client,
    userinfo_path: String,
    discovery_path: String,
    jwks_path: String,
    /// The RFC 7591 registration endpoint, if the provider has one.
    registration_path: Option<String>,
    users: Arc<Vec<User>>,
    sessions: Arc<Vec<String>>,
    /// (presented, successor) refresh tokens of the last refresh phase, for the rotation check.
    rotated: Vec<(String, String)>,
    /// What the account phases need, on a Latchkey target given account fixtures or resets.
    accounts: Option<AccountState>,
    /// The token and userinfo endpoints' absolute URLs: the `htu` of DPoP proofs.
    token_url: String,
    userinfo_url: String,
    /// The DPoP phases' keys, on a Latchkey target with `--dpop`.
    dpop_keys: Option<Keys>,
    /// The PAR endpoint's path, on a Latchkey target with `--par`.
    par_path: Option<String>,
}

/// The users, authenticators and reset form of the account phases, shared by every run.
struct AccountState {
    totp: Option<Arc<TotpPool>>,
    passkeys: Option<Arc<Vec<Mutex<SoftAuthenticator>>>>,
    /// The reset form's `Cookie` header and CSRF token, when resets are asked for.
    reset: Option<(String, String)>,
    known: Arc<Vec<String>>,
    known_next: Arc<AtomicUsize>,
    sources: Arc<SourcePool>,
}

/// Runs the whole benchmark. `progress` receives one line per step, for people watching.
pub async fn run(
    targets: &[Target],
    baseline: Option<&Baseline>,
    w: &Workload,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Report> {
    if targets.is_empty() {
        anyhow::bail!("no target to benchmark");
    }
    if w.users == 0 || w.codes == 0 || w.connections == 0 || w.runs == 0 {
        anyhow::bail!("users, codes, connections and runs must each be at least 1");
    }
    let mut report = Report::new(targets, w);
    let mut prepared = Vec::new();
    for t in targets {
        prepared.push(prepare(t, w, progress).await?);
    }
    let hello = match baseline {
        Some(b) => Some((Arc::new(Origin::of(&b.url, w.allow_non_loopback)?), b)),
        None => None,
    };
    let total = w.runs + usize::from(w.warmup);
    for run in 0..total {
        let warmup = w.warmup && run == 0;
        // Even runs go in the given order, odd runs in reverse: drift on a shared machine (another
        // build starting, the CPU heating) then favours no target.
        let order: Vec<usize> =
            if run % 2 == 0 { (0..prepared.len()).collect() } else { (0..prepared.len()).rev().collect() };
        for i in order {
            let p = &mut prepared[i];
            progress(&format!("run {run}{}: {}", if warmup { " (warm-up)" } else { "" }, p.target.name));
            let (results, cost) = run_target(p, w, run, warmup, progress).await;
            report.results.extend(results);
            report.proof_costs.extend(cost);
        }
        if let Some((origin, b)) = &hello {
            let ctx = Ctx { target: "hello".into(), run, warmup, pid: b.pid };
            let op = Arc::new(Fetch { path: path_and_query(&b.url), first_byte: None });
            let spec = spec(w, counts(w, warmup).0, w.connections);
            let (r, _) = measure(&ctx, Phase::Hello, op, origin, &spec, None::<(Arc<Fetch>, usize)>).await;
            progress(&r.line());
            report.results.push(r);
        }
    }
    for p in &prepared {
        report.checks.push(rotation_check(p).await);
    }
    report.finish();
    Ok(report)
}

fn path_and_query(u: &url::Url) -> String {
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    }
}

/// Codes and logins of a run: the warm-up is a tenth of a measured run.
fn counts(w: &Workload, warmup: bool) -> (usize, usize) {
    if warmup {
        ((w.codes / 10).max(w.connections).min(w.codes), (w.logins / 10).max(1).min(w.logins))
    } else {
        (w.codes, w.logins)
    }
}

fn spec(w: &Workload, count: usize, connections: usize) -> Spec {
    Spec { count, connections: connections.max(1), max_time: w.max_phase_time, op_timeout: w.op_timeout }
}

async fn prepare(t: &Target, w: &Workload, progress: &(dyn Fn(&str) + Sync)) -> anyhow::Result<Prepared> {
    let origin = Arc::new(Origin::of(&t.issuer, w.allow_non_loopback)?);
    let issuer = t.issuer.as_str().trim_end_matches('/').to_owned();
    let well_known = format!("{}/.well-known/openid-configuration", t.issuer.path().trim_end_matches('/'));
    let mut conn = Conn::new(origin.clone());
    let meta = conn
        .send(Req::get(well_known.clone()))
        .await
        .and_then(|r| r.expect(StatusCode::OK))
        .and_then(|r| r.json())
        .map_err(|e| anyhow::anyhow!("{}: discovery at {well_known}: {e}", t.name))?;
    if meta.get("issuer").and_then(|v| v.as_str()) != Some(issuer.as_str()) {
        anyhow::bail!("{}: the discovery document names another issuer than {issuer}", t.name);
    }
    let endpoint = |name: &str| -> anyhow::Result<String> {
        let url = meta
            .get(name)
            .and_then(|v| v.as_str())
            .ok_or_else(|| anyhow::anyhow!("{}: the discovery document has no {name}", t.name))?;
        origin.path_of(url).ok_or_else(|| anyhow::anyhow!("{}: {name} {url} is not on the issuer's origin", t.name))
    };
    let client = Client {
        issuer,
        client_id: w.client_id.clone(),
        redirect_uri: w.redirect_uri.clone(),
        scope: w.scope.clone(),
        authorize_path: endpoint("authorization_endpoint")?,
        token_path: endpoint("token_endpoint")?,
        resource: None,
    };
    let registration_path = endpoint("registration_endpoint").ok();
    let absolute = |name: &str| meta.get(name).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    let (token_url, userinfo_url) = (absolute("token_endpoint"), absolute("userinfo_endpoint"));
    // Issue 14's phases are run on Latchkey only: the peer set-up in bench/peer enables neither
    // DPoP nor PAR, and its opaque access tokens carry no `cnf` to check.
    let latchkey = t.adapter == Adapter::Latchkey;
    if (w.dpop || w.par) && !latchkey {
        progress(&format!("{}: the DPoP and PAR phases run on Latchkey only: not measured", t.name));
    }
    let dpop_keys = if w.dpop && latchkey { Some(dpop_ops::keys(w.connections)?) } else { None };
    let par_path = if w.par && latchkey {
        Some(endpoint("pushed_authorization_request_endpoint").map_err(|e| anyhow::anyhow!("--par: {e}"))?)
    } else {
        None
    };
    let (userinfo_path, jwks_path) = (endpoint("userinfo_endpoint")?, endpoint("jwks_uri")?);
    let users: Arc<Vec<User>> = Arc::new(
        (0..w.users)
            .map(|i| User { username: format!("{}{i}", w.user_prefix), password: w.password.clone() })
            .collect(),
    );
    progress(&format!("{}: logging in {} users through the login and consent pages", t.name, w.users));
    let login =
        Arc::new(Login { origin: origin.clone(), client: client.clone(), adapter: t.adapter, users: users.clone() });
    // Logging in is Argon2id-bound; allow it far more time than a phase.
    let lc = login_connections(w).min(w.users);
    let setup = Spec { max_time: w.max_phase_time * 10, ..spec(w, w.users, lc) };
    let out = phase::run(login, &origin, &setup, None::<(Arc<Fetch>, usize)>)
        .await
        .map_err(|e| anyhow::anyhow!("{}: logging users in: {e}", t.name))?;
    if out.measured.errors > 0 || out.outputs.len() != w.users {
        anyhow::bail!(
            "{}: {} of {} users could not log in: {}",
            t.name,
            w.users - out.outputs.len(),
            w.users,
            out.measured.samples.join("; ")
        );
    }
    progress(&format!("{}: {} users logged in ({:.0} logins/s)", t.name, w.users, out.measured.ops_per_sec()));
    let wants_accounts = w.accounts.as_ref().is_some_and(|a| !a.is_empty()) || w.resets > 0;
    let accounts = match t.adapter {
        Adapter::Latchkey if wants_accounts => Some(prepare_accounts(t, w, &origin).await?),
        _ => {
            if wants_accounts {
                progress(&format!("{}: the account phases (TOTP, passkey, reset) run on Latchkey only", t.name));
            }
            None
        }
    };
    Ok(Prepared {
        target: t.clone(),
        client,
        userinfo_path,
        discovery_path: well_known,
        jwks_path,
        registration_path,
        origin,
        users,
        sessions: Arc::new(out.outputs.into_iter().map(|(_, s)| s).collect()),
        rotated: Vec::new(),
        accounts,
        token_url,
        userinfo_url,
        dpop_keys,
        par_path,
    })
}

/// The account phases' set-up: the fixtures' users, and the reset form's token (one `GET /reset`;
/// the token is the double-submit kind and serves every request). Checks before any load that
/// the known addresses suffice for every run without a request being throttled.
async fn prepare_accounts(t: &Target, w: &Workload, origin: &Arc<Origin>) -> anyhow::Result<AccountState> {
    let fixtures = w.accounts.clone().unwrap_or_default();
    let totp = if fixtures.totp.is_empty() {
        None
    } else {
        let users = fixtures
            .totp
            .iter()
            .map(|u| Ok(TotpLogin { username: u.username.clone(), password: w.password.clone(), secret: u.secret()? }))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Some(Arc::new(TotpPool::new(users)))
    };
    let passkeys = (!fixtures.passkeys.is_empty())
        .then(|| Arc::new(fixtures.passkeys.iter().map(|u| Mutex::new(u.authenticator.clone())).collect()));
    let mut known: Vec<String> = (0..w.users).map(|i| format!("{}{i}", w.user_prefix)).collect();
    known.extend(fixtures.usernames().map(str::to_owned));
    let known: Vec<String> = known.iter().map(|u| crate::accounts::email_of(u)).collect();
    let reset = if w.resets > 0 {
        let runs = w.runs + usize::from(w.warmup);
        let needed = (0..runs).map(|r| account_counts(w, w.warmup && r == 0).1.div_ceil(2)).sum::<usize>();
        let allowed = known.len() * latchkey_core::reset::PER_ADDRESS.free as usize;
        if needed > allowed {
            anyhow::bail!(
                "{}: {needed} reset requests for known addresses in all runs, but the {} seeded addresses allow {allowed} \
                 (each is throttled after {} an hour): lower --resets or seed more users",
                t.name,
                known.len(),
                latchkey_core::reset::PER_ADDRESS.free
            );
        }
        if !origin.is_ipv4() {
            anyhow::bail!(
                "{}: the reset phase needs an IPv4 loopback issuer, to send from many source addresses",
                t.name
            );
        }
        let path = format!("{}/reset", t.issuer.path().trim_end_matches('/'));
        let mut jar = crate::jar::CookieJar::default();
        let mut conn = Conn::new(origin.clone());
        let page = crate::adapter::send(&mut conn, &mut jar, Req::get(path.clone()))
            .await
            .and_then(|r| r.expect(StatusCode::OK))
            .map_err(|e| anyhow::anyhow!("{}: GET {path} (password reset needs [smtp] configured): {e}", t.name))?;
        let html = String::from_utf8_lossy(&page.body);
        let csrf = crate::forms::forms(&html)
            .iter()
            .flat_map(|f| f.hidden().map(|(n, v)| (n.to_owned(), v.to_owned())).collect::<Vec<_>>())
            .find(|(n, _)| n == "csrf")
            .map(|(_, v)| v)
            .ok_or_else(|| anyhow::anyhow!("{}: the reset page has no csrf field", t.name))?;
        let cookie =
            jar.header_for(&path).ok_or_else(|| anyhow::anyhow!("{}: the reset page set no CSRF cookie", t.name))?;
        Some((cookie, csrf))
    } else {
        None
    };
    Ok(AccountState {
        totp,
        passkeys,
        reset,
        known: Arc::new(known),
        known_next: Arc::new(AtomicUsize::new(0)),
        sources: Arc::new(SourcePool::default()),
    })
}

/// Account sign-ins and reset requests of a run: the warm-up is a tenth of a measured run.
fn account_counts(w: &Workload, warmup: bool) -> (usize, usize) {
    let tenth = |n: usize| (n / 10).max(1).min(n);
    if warmup { (tenth(w.account_logins), tenth(w.resets)) } else { (w.account_logins, w.resets) }
}

/// Connections that log in at once. Every login comes from this one address, and Latchkey counts
/// each attempt in flight against the address before the password is checked (the login throttle:
/// 20 free attempts per IPv4 address or IPv6 /64), so more concurrent logins from one address are
/// refused by design. The same limit applies to every target, so the comparison stays fair.
pub const MAX_LOGIN_CONNECTIONS: usize = 16;

fn login_connections(w: &Workload) -> usize {
    w.connections.clamp(1, MAX_LOGIN_CONNECTIONS)
}

/// Who and when a measurement is for.
struct Ctx {
    target: String,
    run: usize,
    warmup: bool,
    pid: Option<u32>,
}

/// Runs one phase and reads the server's CPU time and peak RSS around it.
async fn measure<O: Op, B: Op>(
    ctx: &Ctx,
    phase: Phase,
    op: Arc<O>,
    origin: &Arc<Origin>,
    spec: &Spec,
    background: Option<(Arc<B>, usize)>,
) -> (PhaseResult, Vec<(usize, O::Out)>) {
    let pid = ctx.pid.map(|p| p.to_string());
    let server_before = pid.as_deref().and_then(procfs::cpu_us);
    let client_before = procfs::cpu_us("self");
    let bg_connections = background.as_ref().map_or(0, |(_, n)| *n);
    let outcome = phase::run(op, origin, spec, background).await;
    let server_cpu = pid.as_deref().and_then(procfs::cpu_us).zip(server_before).map(|(a, b)| a.saturating_sub(b));
    let client_cpu = procfs::cpu_us("self").zip(client_before).map(|(a, b)| a.saturating_sub(b));
    let rss = pid.as_deref().and_then(|p| procfs::status_kib(p, "VmHWM")).map(|k| k as f64 / 1024.0);
    let (measured, outputs, background) = match outcome {
        Ok(o) => (o.measured, o.outputs, o.background),
        Err(e) => (Measured { errors: 1, samples: vec![e.to_string()], ..Default::default() }, Vec::new(), None),
    };
    // CPU is shared by the foreground and the background operations: it is billed to all of them.
    let all_ops = measured.ops + background.as_ref().map_or(0, |b| b.ops);
    let per_op = |us: u64| if all_ops > 0 { Some(us as f64 / all_ops as f64) } else { None };
    let result = PhaseResult {
        target: ctx.target.clone(),
        run: ctx.run,
        warmup: ctx.warmup,
        phase,
        connections: spec.connections,
        planned: spec.count,
        ops: measured.ops,
        errors: measured.errors,
        requests: measured.requests,
        reconnects: measured.reconnects,
        seconds: measured.elapsed.as_secs_f64(),
        ops_per_sec: measured.ops_per_sec(),
        p50_ms: measured.quantile_ms(0.50),
        p90_ms: measured.quantile_ms(0.90),
        p99_ms: measured.quantile_ms(0.99),
        max_ms: measured.quantile_ms(1.0),
        server_cpu_us_per_op: server_cpu.and_then(per_op),
        server_peak_rss_mib: rss,
        client_cpu_us_per_op: client_cpu.and_then(per_op),
        error_samples: measured.samples.clone(),
        subsets: Vec::new(),
        background: background.map(|b| Background {
            phase: Phase::Login,
            connections: bg_connections,
            ops: b.ops,
            errors: b.errors,
            ops_per_sec: b.ops_per_sec(),
            p99_ms: b.quantile_ms(0.99),
            error_samples: b.samples,
        }),
    };
    (result, outputs)
}

fn skipped(ctx: &Ctx, phase: Phase, why: &str) -> PhaseResult {
    PhaseResult::failed(&ctx.target, ctx.run, ctx.warmup, phase, why)
}

async fn run_target(
    p: &mut Prepared,
    w: &Workload,
    run: usize,
    warmup: bool,
    progress: &(dyn Fn(&str) + Sync),
) -> (Vec<PhaseResult>, Option<ProofCost>) {
    let ctx = Ctx { target: p.target.name.clone(), run, warmup, pid: p.target.pid };
    let (n, logins) = counts(w, warmup);
    let c = w.connections;
    let none = None::<(Arc<Fetch>, usize)>;
    let mut out = Vec::new();
    let push = |r: PhaseResult, out: &mut Vec<PhaseResult>| {
        progress(&r.line());
        out.push(r);
    };

    // The client's side of a DPoP proof, timed while the server is idle, in every run (it shares
    // the machine's state of the run with the phases it is compared with).
    let cost = match &p.dpop_keys {
        Some(keys) => {
            let (keys, url) = (keys.clone(), p.token_url.clone());
            let budget = if warmup { Duration::from_millis(100) } else { PROOF_BUDGET };
            match tokio::task::spawn_blocking(move || proof_costs(&keys[0], &url, budget)).await {
                Ok(Ok(c)) => {
                    progress(&format!(
                        "  {:<12} DPoP proof on one core: sign {:.1} µs, verify {:.1} µs ({} proofs)",
                        ctx.target, c.sign_us, c.verify_us, c.proofs
                    ));
                    Some(ProofCost {
                        target: ctx.target.clone(),
                        run,
                        warmup,
                        proofs: c.proofs,
                        sign_us: c.sign_us,
                        verify_us: c.verify_us,
                        cpu_time: c.cpu_time,
                    })
                }
                Ok(Err(e)) => {
                    push(skipped(&ctx, Phase::DpopExchange, &format!("signing proofs: {e}")), &mut out);
                    None
                }
                Err(_) => {
                    push(skipped(&ctx, Phase::DpopExchange, "the proof timing thread panicked"), &mut out);
                    None
                }
            }
        }
        None => None,
    };

    let op = Arc::new(Authorize { client: p.client.clone(), sessions: p.sessions.clone() });
    let (r, codes) = measure(&ctx, Phase::Authorize, op, &p.origin, &spec(w, n, c), none.clone()).await;
    push(r, &mut out);
    let codes: Arc<Vec<IssuedCode>> = Arc::new(codes.into_iter().map(|(_, c)| c).collect());

    // Each DPoP phase runs right after its bearer counterpart, on the same connections and
    // counts, so that their ratio shares the machine's state of the moment.
    let dpop_codes: Arc<Vec<Bound<IssuedCode>>> = match &p.dpop_keys {
        Some(keys) => {
            let op =
                Arc::new(DpopAuthorize { client: p.client.clone(), sessions: p.sessions.clone(), keys: keys.clone() });
            let (r, codes) = measure(&ctx, Phase::DpopAuthorize, op, &p.origin, &spec(w, n, c), none.clone()).await;
            push(r, &mut out);
            Arc::new(codes.into_iter().map(|(_, c)| c).collect())
        }
        None => Arc::new(Vec::new()),
    };
    // Its codes are not exchanged: a code from a pushed request is the same record as any other.
    if let Some(par_path) = &p.par_path {
        let op = Arc::new(ParAuthorize {
            client: p.client.clone(),
            par_path: par_path.clone(),
            sessions: p.sessions.clone(),
        });
        let (r, _) = measure(&ctx, Phase::ParAuthorize, op, &p.origin, &spec(w, n, c), none.clone()).await;
        push(r, &mut out);
    }

    let tokens: Arc<Vec<Tokens>> = if codes.is_empty() {
        push(skipped(&ctx, Phase::Exchange, "no code was issued"), &mut out);
        Arc::new(Vec::new())
    } else {
        let op = Arc::new(Exchange { client: p.client.clone(), codes: codes.clone() });
        let (r, t) = measure(&ctx, Phase::Exchange, op, &p.origin, &spec(w, codes.len(), c), none.clone()).await;
        push(r, &mut out);
        Arc::new(t.into_iter().map(|(_, t)| t).collect())
    };

    let dpop_tokens: Arc<Vec<Bound<Tokens>>> = match &p.dpop_keys {
        Some(_) if dpop_codes.is_empty() => {
            push(skipped(&ctx, Phase::DpopExchange, "no code was issued with dpop_jkt"), &mut out);
            Arc::new(Vec::new())
        }
        Some(keys) => {
            let op = Arc::new(DpopExchange {
                client: p.client.clone(),
                token_url: p.token_url.clone(),
                codes: dpop_codes.clone(),
                keys: keys.clone(),
            });
            let count = dpop_codes.len();
            let (r, t) = measure(&ctx, Phase::DpopExchange, op, &p.origin, &spec(w, count, c), none.clone()).await;
            push(r, &mut out);
            Arc::new(t.into_iter().map(|(_, t)| t).collect())
        }
        None => Arc::new(Vec::new()),
    };

    let resource = w.resource.as_ref().filter(|_| p.target.adapter == Adapter::Latchkey);
    if w.resource.is_some() && resource.is_none() {
        // node-oidc-provider needs a resource server per resource and grants that carry its
        // scopes; the peer set-up in bench/peer does not configure that (yet). Not a failure of
        // the target: the phases are left out of its table.
        progress(&format!("{}: the resource phases run on Latchkey only", ctx.target));
    }
    if let Some(resource) = resource {
        let client = Client { resource: Some(resource.clone()), ..p.client.clone() };
        let op = Arc::new(Authorize { client: client.clone(), sessions: p.sessions.clone() });
        let (r, codes) = measure(&ctx, Phase::AuthorizeResource, op, &p.origin, &spec(w, n, c), none.clone()).await;
        push(r, &mut out);
        let codes: Arc<Vec<IssuedCode>> = Arc::new(codes.into_iter().map(|(_, c)| c).collect());
        if codes.is_empty() {
            push(skipped(&ctx, Phase::ExchangeResource, "no code was issued for the resource"), &mut out);
        } else {
            let op = Arc::new(Exchange { client, codes: codes.clone() });
            let (r, _) =
                measure(&ctx, Phase::ExchangeResource, op, &p.origin, &spec(w, codes.len(), c), none.clone()).await;
            push(r, &mut out);
        }
    }

    let fresh: Vec<Tokens> = if tokens.is_empty() {
        push(skipped(&ctx, Phase::Refresh, "no token was issued"), &mut out);
        Vec::new()
    } else {
        let op = Arc::new(Refresh { client: p.client.clone(), tokens: tokens.clone() });
        let (r, t) = measure(&ctx, Phase::Refresh, op, &p.origin, &spec(w, tokens.len(), c), none.clone()).await;
        push(r, &mut out);
        p.rotated = t.iter().take(8).map(|(i, new)| (tokens[*i].refresh.clone(), new.refresh.clone())).collect();
        t.into_iter().map(|(_, t)| t).collect()
    };

    let dpop_access: Arc<Vec<Bound<String>>> = match &p.dpop_keys {
        Some(_) if dpop_tokens.is_empty() => {
            push(skipped(&ctx, Phase::DpopRefresh, "no DPoP-bound token was issued"), &mut out);
            Arc::new(Vec::new())
        }
        Some(keys) => {
            let op = Arc::new(DpopRefresh {
                client: p.client.clone(),
                token_url: p.token_url.clone(),
                tokens: dpop_tokens.clone(),
                keys: keys.clone(),
            });
            let count = dpop_tokens.len();
            let (r, t) = measure(&ctx, Phase::DpopRefresh, op, &p.origin, &spec(w, count, c), none.clone()).await;
            push(r, &mut out);
            Arc::new(t.into_iter().map(|(_, t)| Bound { value: t.value.access, key: t.key }).collect())
        }
        None => Arc::new(Vec::new()),
    };

    let access: Arc<Vec<String>> = Arc::new(fresh.into_iter().map(|t| t.access).collect());
    let userinfo = Arc::new(Userinfo { path: p.userinfo_path.clone(), access_tokens: access.clone() });
    if access.is_empty() {
        push(skipped(&ctx, Phase::Userinfo, "no access token"), &mut out);
    } else {
        let (r, _) = measure(&ctx, Phase::Userinfo, userinfo.clone(), &p.origin, &spec(w, n, c), none.clone()).await;
        push(r, &mut out);
    }

    if let Some(keys) = &p.dpop_keys {
        if dpop_access.is_empty() {
            push(skipped(&ctx, Phase::DpopUserinfo, "no DPoP-bound access token"), &mut out);
        } else {
            let op = Arc::new(DpopUserinfo {
                path: p.userinfo_path.clone(),
                url: p.userinfo_url.clone(),
                access_tokens: dpop_access.clone(),
                keys: keys.clone(),
            });
            let (r, _) = measure(&ctx, Phase::DpopUserinfo, op, &p.origin, &spec(w, n, c), none.clone()).await;
            push(r, &mut out);
        }
    }

    for (phase, path) in [(Phase::Discovery, &p.discovery_path), (Phase::Jwks, &p.jwks_path)] {
        let op = Arc::new(Fetch { path: path.clone(), first_byte: Some(b'{') });
        let (r, _) = measure(&ctx, phase, op, &p.origin, &spec(w, n, c), none.clone()).await;
        push(r, &mut out);
    }

    if w.registrations > 0 {
        match &p.registration_path {
            Some(path) => {
                let op = Arc::new(Register { path: path.clone() });
                let count = if warmup { (w.registrations / 10).max(1) } else { w.registrations };
                let (r, _) = measure(&ctx, Phase::Register, op, &p.origin, &spec(w, count, c), none.clone()).await;
                push(r, &mut out);
            }
            None => push(skipped(&ctx, Phase::Register, "no registration_endpoint in its metadata"), &mut out),
        }
    }

    let login = Arc::new(Login {
        origin: p.origin.clone(),
        client: p.client.clone(),
        adapter: p.target.adapter,
        users: p.users.clone(),
    });
    if logins > 0 {
        let lc = login_connections(w);
        let (r, _) = measure(&ctx, Phase::Login, login.clone(), &p.origin, &spec(w, logins, lc), none.clone()).await;
        push(r, &mut out);
    }

    // The account phases, right after the password-only login that they are quoted against.
    if let Some(a) = &p.accounts {
        let (sign_ins, resets) = account_counts(w, warmup);
        let lc = login_connections(w);
        if let Some(pool) = a.totp.as_ref().filter(|_| sign_ins > 0) {
            let op = Arc::new(LoginTotp {
                origin: p.origin.clone(),
                client: p.client.clone(),
                adapter: p.target.adapter,
                pool: pool.clone(),
            });
            let (r, _) = measure(&ctx, Phase::LoginTotp, op, &p.origin, &spec(w, sign_ins, lc), none.clone()).await;
            push(r, &mut out);
        }
        if let Some(keys) = a.passkeys.as_ref().filter(|_| sign_ins > 0) {
            let op = Arc::new(LoginPasskey {
                client: p.client.clone(),
                web_origin: p.target.issuer.origin().ascii_serialization(),
                base_path: p.target.issuer.path().trim_end_matches('/').to_owned(),
                keys: keys.clone(),
            });
            let (r, _) = measure(&ctx, Phase::LoginPasskey, op, &p.origin, &spec(w, sign_ins, lc), none.clone()).await;
            push(r, &mut out);
        }
        if let Some((cookie, csrf)) = a.reset.as_ref().filter(|_| resets > 0) {
            let op = Arc::new(ResetRequest {
                path: format!("{}/reset", p.target.issuer.path().trim_end_matches('/')),
                cookie: cookie.clone(),
                csrf: csrf.clone(),
                known: a.known.clone(),
                known_next: a.known_next.clone(),
                sources: a.sources.clone(),
            });
            let (mut r, outs) =
                measure(&ctx, Phase::ResetRequest, op, &p.origin, &spec(w, resets, c), none.clone()).await;
            let split =
                |known: bool| outs.iter().filter(|(_, o)| o.known == known).map(|(_, o)| o.latency_us).collect();
            r.subsets = vec![Subset::of("known address", split(true)), Subset::of("unknown address", split(false))];
            push(r, &mut out);
        }
    }

    if w.userinfo_during_logins && logins > 0 && !access.is_empty() {
        // Half the connections log in over and over while the other half measure userinfo: does
        // password hashing hold up the requests that do not hash?
        let half = (c / 2).max(1);
        let bg = Some((login, half.min(login_connections(w))));
        let (r, _) = measure(&ctx, Phase::UserinfoDuringLogins, userinfo, &p.origin, &spec(w, n, half), bg).await;
        push(r, &mut out);
    }
    (out, cost)
}

/// How long a measured run signs proofs for the proof-cost figure (a warm-up run: 100 ms).
const PROOF_BUDGET: Duration = Duration::from_millis(500);

/// Presents a few refresh tokens that were rotated away. Each must be refused (`invalid_grant`),
/// or, where a provider has a grace window for retries, answered with the very same successor.
/// Run last: a reuse may revoke the whole grant.
async fn rotation_check(p: &Prepared) -> Check {
    let name = "a rotated refresh token is refused".to_owned();
    if p.rotated.is_empty() {
        return Check { target: p.target.name.clone(), name, passed: false, detail: "no token was rotated".into() };
    }
    let mut conn = Conn::new(p.origin.clone());
    let mut failures = Vec::new();
    for (old, new) in &p.rotated {
        let res = conn.send(crate::ops::refresh_request(&p.client, old)).await;
        let verdict: Result<&str, String> = match res {
            Err(e) => Err(e.to_string()),
            Ok(r) if r.status == StatusCode::BAD_REQUEST => match r.json() {
                Ok(b) if b.get("error").and_then(|e| e.as_str()) == Some("invalid_grant") => Ok("refused"),
                _ => Err("HTTP 400 without error=invalid_grant".into()),
            },
            Ok(r) if r.status == StatusCode::OK => match r.json() {
                Ok(b) if b.get("refresh_token").and_then(|t| t.as_str()) == Some(new.as_str()) => Ok("same successor"),
                _ => Err("the old refresh token was accepted and gave a new pair".into()),
            },
            Ok(r) => Err(format!("HTTP {}", r.status.as_u16())),
        };
        if let Err(e) = verdict {
            failures.push(e);
        }
    }
    let n = p.rotated.len();
    Check {
        target: p.target.name.clone(),
        name,
        passed: failures.is_empty(),
        detail: if failures.is_empty() {
            format!("{n} of {n} reused tokens refused (or answered with the same successor)")
        } else {
            format!("{} of {n} reuses failed: {}", failures.len(), failures.join("; "))
        },
    }
}
