//! `latchkey-bench`: `run` benchmarks providers, `seed-latchkey` prepares a Latchkey database,
//! `hello` serves the bare-hyper baseline. `bench/compare.sh` wires the three together.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use latchkey_bench::{Adapter, Baseline, Target, Workload};

#[derive(Parser, Debug)]
#[command(name = "latchkey-bench", version, about = "Benchmark OpenID Connect providers over HTTP")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Benchmark one or more providers (alternating run by run) and print the results.
    Run(RunArgs),
    /// Create the benchmark's client and users in a Latchkey SQLite database.
    SeedLatchkey(SeedArgs),
    /// Serve "hello" with bare hyper: the baseline for discovery and JWKS.
    Hello(HelloArgs),
}

#[derive(Args, Debug)]
struct Users {
    /// U: users `{prefix}{i}`, i in 0..U, logged in once each.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    #[arg(long, default_value = "bench-")]
    user_prefix: String,
    /// The users' password (a benchmark fixture, not a secret).
    #[arg(long, env = "LATCHKEY_BENCH_PASSWORD", default_value = "bench-password")]
    password: String,
    #[arg(long, default_value = "latchkey-bench")]
    client_id: String,
    #[arg(long, default_value = "https://client.example/callback")]
    redirect_uri: String,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// A provider: `NAME=ISSUER[,adapter=latchkey|node-oidc-provider][,pid=PID]`. Repeat it to
    /// compare; the first is the subject of the ratios. The adapter defaults to NAME.
    #[arg(long = "target", required = true, value_name = "SPEC")]
    targets: Vec<String>,
    /// The bare-server baseline: `URL[,pid=PID]` (see `latchkey-bench hello`).
    #[arg(long, value_name = "SPEC")]
    hello: Option<String>,
    #[command(flatten)]
    users: Users,
    /// N: codes per run (also the count of userinfo, discovery and JWKS requests).
    #[arg(long, default_value_t = 20_000)]
    codes: usize,
    /// C: keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Full logins (Argon2id) per run.
    #[arg(long, default_value_t = 500)]
    logins: usize,
    /// Measured runs per target; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Skip the warm-up run (a tenth of a measured run).
    #[arg(long)]
    no_warmup: bool,
    /// A phase stops taking new operations after this many seconds.
    #[arg(long, default_value_t = 120)]
    max_phase_seconds: u64,
    /// Skip the phase that measures userinfo while logins run.
    #[arg(long)]
    no_userinfo_during_logins: bool,
    /// Allow load on non-loopback addresses. Only ever point this at servers you run.
    #[arg(long)]
    allow_non_loopback: bool,
    /// Also issue and exchange codes for this RFC 8707 resource (the MCP flow); the providers
    /// must know it (`seed-latchkey` registers its default).
    #[arg(long, value_name = "URI")]
    resource: Option<String>,
    /// Dynamic client registrations (RFC 7591) per run, on providers that advertise an endpoint.
    #[arg(long, default_value_t = 0)]
    registrations: usize,
    /// The users with TOTP and with passkeys that `seed-latchkey --fixtures-out` wrote: Latchkey
    /// targets then also run the TOTP and passkey sign-in phases.
    #[arg(long, value_name = "FILE")]
    account_fixtures: Option<PathBuf>,
    /// Sign-ins per run of each account phase (TOTP, passkey). Default: --logins.
    #[arg(long)]
    account_logins: Option<usize>,
    /// Password-reset requests per run on Latchkey targets, half for seeded addresses and half
    /// for addresses no account uses. The server needs `[smtp]` (a port where nothing listens
    /// will do: the request only queues).
    #[arg(long, default_value_t = 0)]
    resets: usize,
    /// On Latchkey targets, also run the DPoP phases (RFC 9449): authorization with dpop_jkt, code
    /// exchange, refresh and userinfo with a fresh proof per request, N of each, each quoted
    /// against its bearer counterpart; and time proof signing and verification on one core.
    #[arg(long)]
    dpop: bool,
    /// On Latchkey targets, also run N pushed authorization requests (RFC 9126), each followed by
    /// the authorization request that uses it, quoted against the plain authorization.
    #[arg(long)]
    par: bool,
    /// Write JSON lines (one per phase and run, medians, checks) to this file.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
    /// Write the Markdown comparison table to this file.
    #[arg(long, value_name = "FILE")]
    markdown_out: Option<PathBuf>,
    /// Replace the results section (between `<!-- results:begin -->` and `<!-- results:end -->`)
    /// of this Markdown file, e.g. BENCHMARKS.md.
    #[arg(long, value_name = "FILE")]
    update: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct SeedArgs {
    #[arg(long, value_name = "PATH")]
    database: PathBuf,
    #[command(flatten)]
    users: Users,
    /// Users `{prefix}totp-{i}` with a confirmed TOTP secret, for the TOTP sign-in phase.
    #[arg(long, default_value_t = 0)]
    totp_users: usize,
    /// Users `{prefix}passkey-{i}` with a passkey, for the passkey sign-in phase.
    #[arg(long, default_value_t = 0)]
    passkey_users: usize,
    /// The issuer the server will run with. Passkeys are registered for its host, which must be
    /// a domain name (`http://localhost:PORT`; WebAuthn has no relying party on an IP address).
    #[arg(long, default_value = "http://localhost:8080")]
    issuer: String,
    /// Where to write the TOTP secrets and passkeys of those users, for `run --account-fixtures`.
    #[arg(long, value_name = "FILE")]
    fixtures_out: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct HelloArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Stop by itself after this many seconds.
    #[arg(long, default_value_t = 3600)]
    max_seconds: u64,
}

fn parse_target(spec: &str) -> anyhow::Result<Target> {
    let mut parts = spec.split(',');
    let first = parts.next().unwrap_or("");
    let (name, issuer) = first
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("--target {spec}: expected NAME=ISSUER[,adapter=…][,pid=…]"))?;
    let mut adapter = <Adapter as clap::ValueEnum>::from_str(name, true).ok();
    let mut pid = None;
    for p in parts {
        match p.split_once('=') {
            Some(("adapter", a)) => {
                adapter = Some(<Adapter as clap::ValueEnum>::from_str(a, true).map_err(|_| {
                    anyhow::anyhow!("--target {spec}: unknown adapter {a} (latchkey, node-oidc-provider)")
                })?);
            }
            Some(("pid", p)) => {
                pid = Some(p.parse().map_err(|_| anyhow::anyhow!("--target {spec}: pid {p} is not a number"))?)
            }
            _ => anyhow::bail!("--target {spec}: unknown part {p:?}"),
        }
    }
    let adapter = adapter
        .ok_or_else(|| anyhow::anyhow!("--target {spec}: name an adapter (adapter=latchkey|node-oidc-provider)"))?;
    Ok(Target { name: name.to_owned(), issuer: url::Url::parse(issuer)?, adapter, pid })
}

fn parse_hello(spec: &str) -> anyhow::Result<Baseline> {
    let mut parts = spec.split(',');
    let url = url::Url::parse(parts.next().unwrap_or(""))?;
    let mut pid = None;
    for p in parts {
        match p.split_once('=') {
            Some(("pid", p)) => pid = Some(p.parse()?),
            _ => anyhow::bail!("--hello {spec}: unknown part {p:?}"),
        }
    }
    Ok(Baseline { url, pid })
}

async fn run(a: RunArgs) -> anyhow::Result<bool> {
    let targets = a.targets.iter().map(|t| parse_target(t)).collect::<anyhow::Result<Vec<_>>>()?;
    let hello = a.hello.as_deref().map(parse_hello).transpose()?;
    let w = Workload {
        client_id: a.users.client_id,
        redirect_uri: a.users.redirect_uri,
        users: a.users.users,
        user_prefix: a.users.user_prefix,
        password: a.users.password,
        codes: a.codes,
        connections: a.connections,
        logins: a.logins,
        runs: a.runs,
        warmup: !a.no_warmup,
        max_phase_time: Duration::from_secs(a.max_phase_seconds),
        userinfo_during_logins: !a.no_userinfo_during_logins,
        allow_non_loopback: a.allow_non_loopback,
        resource: a.resource,
        registrations: a.registrations,
        accounts: match &a.account_fixtures {
            Some(path) => Some(std::sync::Arc::new(latchkey_bench::accounts::AccountFixtures::load(path)?)),
            None => None,
        },
        account_logins: a.account_logins.unwrap_or(a.logins),
        resets: a.resets,
        dpop: a.dpop,
        par: a.par,
        ..Workload::standard()
    };
    if w.allow_non_loopback {
        eprintln!(
            "WARNING: --allow-non-loopback: sending load to non-loopback addresses; only ever target your own servers"
        );
    }
    let progress = |line: &str| eprintln!("{line}");
    let report = latchkey_bench::run(&targets, hello.as_ref(), &w, &progress).await?;
    print!("{}", report.table());
    if let Some(path) = &a.json_out {
        std::fs::write(path, report.json_lines())?;
        eprintln!("JSON lines written to {}", path.display());
    }
    let md = report.markdown();
    if let Some(path) = &a.markdown_out {
        std::fs::write(path, &md)?;
    }
    if let Some(path) = &a.update {
        let doc = std::fs::read_to_string(path)?;
        std::fs::write(path, latchkey_bench::report::splice(&doc, &md)?)?;
        eprintln!("results written into {}", path.display());
    }
    Ok(report.passed())
}

async fn seed(a: SeedArgs) -> anyhow::Result<bool> {
    if a.totp_users + a.passkey_users > 0 && a.fixtures_out.is_none() {
        anyhow::bail!(
            "--totp-users and --passkey-users need --fixtures-out FILE: the benchmark signs in with what it holds"
        );
    }
    let s = latchkey_bench::seed::Seed {
        database: a.database,
        client_id: a.users.client_id,
        redirect_uri: a.users.redirect_uri,
        users: a.users.users,
        user_prefix: a.users.user_prefix,
        password: a.users.password,
        scope: Workload::standard().scope,
        issuer: a.issuer,
        totp_users: a.totp_users,
        passkey_users: a.passkey_users,
    };
    let started = std::time::Instant::now();
    let out = latchkey_bench::seed::seed(&s).await?;
    if let Some(path) = &a.fixtures_out {
        out.accounts.save(path)?;
        println!(
            "{} users with TOTP and {} with a passkey written to {}",
            out.accounts.totp.len(),
            out.accounts.passkeys.len(),
            path.display()
        );
    }
    println!(
        "seeded {}: client {} ({}), {} users created, {} already there, in {:.1} s",
        s.database.display(),
        s.client_id,
        if out.client_created { "created" } else { "already there" },
        out.users_created,
        out.users_existing,
        started.elapsed().as_secs_f64()
    );
    Ok(true)
}

async fn hello(a: HelloArgs) -> anyhow::Result<bool> {
    let listener = tokio::net::TcpListener::bind(&a.listen).await?;
    println!("hello ready: http://{} pid {}", listener.local_addr()?, std::process::id());
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = tokio::time::sleep(Duration::from_secs(a.max_seconds)) => {}
        }
    };
    latchkey_bench::hello::serve(listener, stop).await?;
    Ok(true)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(a) => run(a).await,
            Command::SeedLatchkey(a) => seed(a).await,
            Command::Hello(a) => hello(a).await,
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("the benchmark saw errors: see the report");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
