//! The benchmark tool, once, in a tiny configuration against a real Latchkey on 127.0.0.1 (its
//! issuer `http://localhost:PORT`: passkeys need a domain name): every phase must run and see no
//! error, the account phases of issue 13 and the DPoP and PAR phases of issue 14 included. This keeps the tool from rotting; it asserts
//! nothing about speed (performance is reported by the benchmark, never asserted by a timed test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use latchkey_bench::accounts::AccountFixtures;
use latchkey_bench::report::Phase;
use latchkey_bench::seed::{Seed, seed_store};
use latchkey_bench::{Adapter, Baseline, Target, Workload};
use latchkey_core::outbox::{Job, OutboxFilter};
use latchkey_core::{Clock, Provider, ProviderConfig, Store};
use latchkey_server::AppState;
use latchkey_store::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_phase_runs_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    let clock = Clock::system();
    let mut config = ProviderConfig::new(&issuer);
    // Mail "configured" for the reset phase: no worker runs here, so the requests only queue.
    config.email.enabled = true;
    let provider = Arc::new(Provider::open(store.clone(), config, clock.now()).await.unwrap());
    let w = Workload {
        users: 3,
        codes: 24,
        connections: 4,
        logins: 3,
        runs: 1,
        warmup: false,
        max_phase_time: Duration::from_secs(60),
        resource: Some(latchkey_bench::seed::BENCH_RESOURCE.into()),
        registrations: 12,
        account_logins: 5,
        resets: 10,
        dpop: true,
        par: true,
        ..Workload::standard()
    };
    let seed = Seed {
        database: dir.path().join("bench.db"),
        client_id: w.client_id.clone(),
        redirect_uri: w.redirect_uri.clone(),
        users: w.users,
        user_prefix: w.user_prefix.clone(),
        password: w.password.clone(),
        scope: w.scope.clone(),
        issuer: issuer.clone(),
        // More TOTP users than sign-ins: a code works once per user and 30-second step.
        totp_users: 6,
        passkey_users: 2,
    };
    let seeded = seed_store(store.clone(), &seed).await.unwrap();
    assert_eq!((seeded.client_created, seeded.users_created), (true, 3 + 6 + 2));
    assert_eq!((seeded.accounts.totp.len(), seeded.accounts.passkeys.len()), (6, 2));
    // The fixtures survive the file between `seed-latchkey` and `run`.
    let path = dir.path().join("accounts.json");
    seeded.accounts.save(&path).unwrap();
    let w = Workload { accounts: Some(Arc::new(AccountFixtures::load(&path).unwrap())), ..w };

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(latchkey_server::serve(listener, AppState::new(provider, clock), async {
        let _ = stop_rx.await;
    }));
    let hello_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hello_url = format!("http://{}/", hello_listener.local_addr().unwrap());
    let (hello_tx, hello_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(latchkey_bench::hello::serve(hello_listener, async {
        let _ = hello_rx.await;
    }));

    // The server runs in this process: its pid is ours, which exercises the /proc readings too.
    let target = Target {
        name: "latchkey".into(),
        issuer: url::Url::parse(&issuer).unwrap(),
        adapter: Adapter::Latchkey,
        pid: Some(std::process::id()),
    };
    let baseline = Baseline { url: url::Url::parse(&hello_url).unwrap(), pid: None };
    let report = latchkey_bench::run(&[target], Some(&baseline), &w, &|_| {}).await.unwrap();

    for phase in Phase::ALL {
        let who = if phase == Phase::Hello { "hello" } else { "latchkey" };
        let r = report.results.iter().find(|r| r.phase == phase && r.target == who);
        let r = r.unwrap_or_else(|| panic!("no result for {phase:?}"));
        assert_eq!(r.all_errors(), 0, "{phase:?}: {:?}", r.error_samples);
        assert!(r.ops > 0, "{phase:?} ran no operation");
        assert!(!r.incomplete(), "{phase:?} stopped at its time limit");
    }
    assert_eq!(report.results.iter().find(|r| r.phase == Phase::Authorize).unwrap().ops, 24);
    assert_eq!(report.results.iter().find(|r| r.phase == Phase::ExchangeResource).unwrap().ops, 24);
    assert_eq!(report.results.iter().find(|r| r.phase == Phase::Register).unwrap().ops, 12);
    for phase in [Phase::LoginTotp, Phase::LoginPasskey] {
        assert_eq!(report.results.iter().find(|r| r.phase == phase).unwrap().ops, 5, "{phase:?}");
    }
    // Half the reset requests were for seeded addresses, half for addresses nobody uses, and
    // each half is timed on its own.
    let reset = report.results.iter().find(|r| r.phase == Phase::ResetRequest).unwrap();
    let split: Vec<(&str, usize)> = reset.subsets.iter().map(|s| (s.name.as_str(), s.ops)).collect();
    assert_eq!(split, [("known address", 5), ("unknown address", 5)]);
    // Each request queued one job (known or not, the same kind of job): none was throttled.
    let jobs = store.outbox_jobs(OutboxFilter::Queued, 100).await.unwrap();
    let emails: Vec<String> = jobs
        .into_iter()
        .filter_map(|j| match j.job {
            Job::PasswordReset { email } => Some(email),
            _ => None,
        })
        .collect();
    assert_eq!(emails.len(), 10, "{emails:?}");
    assert_eq!(emails.iter().filter(|e| e.starts_with("nobody-")).count(), 5, "{emails:?}");
    let medians = report.medians();
    for phase in Phase::ACCOUNT {
        let m = medians.iter().find(|m| m.phase == phase && m.target == "latchkey").unwrap();
        assert!(m.ops_ratio_to_login.is_some_and(|r| r > 0.0), "{phase:?} has a ratio to the login");
    }
    // Every DPoP phase ran all its operations (a code, token or access token lost on the way
    // would shrink the next phase), and each is quoted against its counterpart.
    for phase in Phase::DPOP_PAR {
        assert_eq!(report.results.iter().find(|r| r.phase == phase).unwrap().ops, 24, "{phase:?}");
        let m = medians.iter().find(|m| m.phase == phase).unwrap();
        assert!(m.ops_ratio_to_counterpart.is_some_and(|r| r > 0.0), "{phase:?} has a ratio to its counterpart");
    }
    // PAR is two requests per operation, the plain authorization one.
    let par = report.results.iter().find(|r| r.phase == Phase::ParAuthorize).unwrap();
    assert_eq!(par.requests, 48);
    let (sign, verify, _) = report.proof_cost_median("latchkey").expect("the proofs were timed");
    assert!(sign > 0.0 && verify > 0.0, "sign {sign} µs, verify {verify} µs");
    assert!(report.checks.iter().all(|c| c.passed), "{:?}", report.checks);
    assert!(report.passed(), "{}", report.table());
    // Every output renders; the Markdown names the phases.
    let md = report.markdown();
    assert!(md.contains("| code exchange (PKCE) |"));
    assert!(md.contains("| passkey sign-in (username-less) |") && md.contains("ops/s ÷ login"), "{md}");
    assert!(md.contains("| userinfo, DPoP |") && md.contains("| PAR + authorization |"), "{md}");
    assert!(md.contains("One DPoP proof (ES256)"), "{md}");
    assert_eq!(report.json_lines().lines().filter(|l| l.contains(r#""type":"phase""#)).count(), report.results.len());
    let _ = (stop_tx.send(()), hello_tx.send(()));
}
