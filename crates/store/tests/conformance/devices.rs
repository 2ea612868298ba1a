//! Device authorization requests (issue 15, RFC 8628): bounded per client, a user code unique
//! among live requests, one answer, polls decided one at a time (§3.5's `slow_down`), and one
//! redemption. Each rule is checked under a burst of concurrent callers spread over every instance
//! given (two pools on one PostgreSQL database stand for two servers).

use std::sync::Arc;

use latchkey_core::Store;
use latchkey_core::authn::{Authentication, Method};
use latchkey_core::device_grant::{Approval, DeviceInsert, DeviceRecord, DeviceStatus, PollStep, user_code_hash};
use latchkey_core::store::{ClientRecord, Issuance, PurgePolicy};
use latchkey_proto::{ClientId, ResourceUri, Scope, TokenHash};

const POLICY: PurgePolicy = PurgePolicy { key_publish_window: 0, audit_retention: 0 };

/// A pending request of `client` made at `at`, living `ttl` seconds, with a 5 s interval.
fn device(name: &str, client: &str, user_code: &str, at: i64, ttl: i64) -> DeviceRecord {
    DeviceRecord {
        device_hash: TokenHash::of(name),
        user_code_hash: user_code_hash(user_code),
        client_id: ClientId::parse(client).unwrap(),
        scope: Scope::parse("openid offline_access").unwrap(),
        resource: Some(ResourceUri::parse("https://api.example").unwrap()),
        created_at: at,
        expires_at: at + ttl,
        interval: 5,
        last_poll_at: None,
        requested_from: Some("192.0.2.7".into()),
        status: DeviceStatus::Pending,
    }
}

fn approved(user: &str) -> DeviceStatus {
    DeviceStatus::Approved(Approval {
        user_id: user.into(),
        sid: format!("sid-{user}"),
        auth_time: 90,
        authn: Authentication::of(&[Method::Password, Method::Totp]),
    })
}

/// The grant a redemption stores: `super::issuance` (client `app`) under the grant id `id`.
fn grant(id: &str) -> Issuance {
    super::issuance(id, &format!("r-{id}"))
}

/// Runs `n` copies of `f` at once, round-robin over `instances`; returns their results in order.
async fn burst<T, F, Fut>(instances: &[Arc<dyn Store>], n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Arc<dyn Store>, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(f(instances[i % instances.len()].clone(), i))).collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn count<T: PartialEq>(v: &[T], x: &T) -> usize {
    v.iter().filter(|y| *y == x).count()
}

/// At most `max` live requests per client, also under a burst on every instance; a user code is
/// stored once among live requests, also when clients (each under its own lock) draw the same one
/// at once; an expired request neither counts nor holds its user code.
pub async fn inserts_are_bounded_per_client_and_user_codes_unique(instances: &[Arc<dyn Store>]) {
    let s = &instances[0];
    let got = burst(instances, 12, |s, i| async move {
        s.insert_device(&device(&format!("tv-{i}"), "tv", &format!("TVCODE{i}"), 100, 600), 3, 100).await.unwrap()
    })
    .await;
    assert_eq!(count(&got, &DeviceInsert::Inserted), 3, "bounded per client: {got:?}");
    assert_eq!(count(&got, &DeviceInsert::ClientFull), 9);
    assert_eq!(s.table_counts().await.unwrap().device_codes, 3, "nothing stored for the refused ones");
    let kiosk = device("kiosk-1", "kiosk", "KIOSK1", 100, 600);
    assert_eq!(s.insert_device(&kiosk, 3, 100).await.unwrap(), DeviceInsert::Inserted, "per client, not in all");

    // A user code held by a live request, whoever's, is refused and nothing is stored.
    let clash = device("kiosk-2", "kiosk", "KIOSK1", 110, 600);
    assert_eq!(s.insert_device(&clash, 3, 110).await.unwrap(), DeviceInsert::UserCodeTaken);
    let shown = s.pending_device(&user_code_hash("KIOSK1"), 110).await.unwrap().unwrap();
    assert_eq!(shown.device_hash, TokenHash::of("kiosk-1"), "the first request keeps its code");
    assert!(s.poll_device(&TokenHash::of("kiosk-2"), 110).await.unwrap().is_none(), "the refused one is not stored");

    // Twelve clients draw the same code at once: one request gets it.
    let got = burst(instances, 12, |s, i| async move {
        s.insert_device(&device(&format!("same-{i}"), &format!("c{i}"), "SAMECODE", 100, 600), 3, 100).await.unwrap()
    })
    .await;
    assert_eq!(count(&got, &DeviceInsert::Inserted), 1, "one holder of a user code: {got:?}");
    assert_eq!(count(&got, &DeviceInsert::UserCodeTaken), 11);

    // Expired: the code is free again (the dead row is replaced) and the client has room again.
    assert_eq!(
        s.insert_device(&device("old", "quiet", "REUSED", 100, 10), 1, 100).await.unwrap(),
        DeviceInsert::Inserted
    );
    assert_eq!(
        s.insert_device(&device("new", "kiosk", "REUSED", 105, 600), 3, 105).await.unwrap(),
        DeviceInsert::UserCodeTaken,
        "still live at 105"
    );
    let reuse = device("new", "kiosk", "REUSED", 110, 600);
    assert_eq!(s.insert_device(&reuse, 3, 110).await.unwrap(), DeviceInsert::Inserted, "expired at 110");
    assert_eq!(s.pending_device(&user_code_hash("REUSED"), 110).await.unwrap(), Some(reuse));
    assert!(s.poll_device(&TokenHash::of("old"), 110).await.unwrap().is_none(), "the expired one is gone");
    let later = device("tv-late", "tv", "TVLATE", 700, 600);
    assert_eq!(s.insert_device(&later, 3, 700).await.unwrap(), DeviceInsert::Inserted, "expired ones do not count");
}

/// The verification page sees a request only while it is live and unanswered, and an answer is
/// recorded only on such a request.
pub async fn only_live_pending_requests_are_shown_and_answered(s: Arc<dyn Store>) {
    let a = device("a", "tv", "CODEA", 100, 600);
    assert_eq!(s.insert_device(&a, 10, 100).await.unwrap(), DeviceInsert::Inserted);
    assert_eq!(s.pending_device(&user_code_hash("CODEA"), 100).await.unwrap(), Some(a.clone()), "every field kept");
    assert_eq!(s.pending_device(&user_code_hash("CODEA"), 699).await.unwrap(), Some(a));
    assert_eq!(s.pending_device(&user_code_hash("CODEA"), 700).await.unwrap(), None, "expired");
    assert!(!s.decide_device(&user_code_hash("CODEA"), &approved("alice"), 700).await.unwrap(), "expired");
    assert_eq!(s.pending_device(&user_code_hash("NOCODE"), 100).await.unwrap(), None);
    assert!(!s.decide_device(&user_code_hash("NOCODE"), &DeviceStatus::Denied, 100).await.unwrap(), "unknown");

    for (name, answer) in [("b", approved("alice")), ("c", DeviceStatus::Denied)] {
        let code = format!("CODE-{name}");
        s.insert_device(&device(name, "tv", &code, 100, 600), 10, 100).await.unwrap();
        assert!(s.decide_device(&user_code_hash(&code), &answer, 110).await.unwrap());
        assert_eq!(s.pending_device(&user_code_hash(&code), 110).await.unwrap(), None, "{name}: answered");
        for again in [approved("mallory"), DeviceStatus::Denied] {
            assert!(!s.decide_device(&user_code_hash(&code), &again, 111).await.unwrap(), "{name}: answered once");
        }
        // The answer is stored whole (who approved, how they had signed in) for the poll.
        let (read, _) = s.poll_device(&TokenHash::of(name), 120).await.unwrap().unwrap();
        assert_eq!(read.status, answer, "{name}");
    }
}

/// Of 20 concurrent answers (approvals by different people and denials) one is recorded, and the
/// poll reads that one.
pub async fn one_answer_of_concurrent_answers_wins(instances: &[Arc<dyn Store>]) {
    let s = &instances[0];
    s.insert_device(&device("d", "tv", "RACE", 100, 600), 10, 100).await.unwrap();
    let answer = |i: usize| if i.is_multiple_of(3) { DeviceStatus::Denied } else { approved(&format!("user-{i}")) };
    let won =
        burst(
            instances,
            20,
            |s, i| async move { s.decide_device(&user_code_hash("RACE"), &answer(i), 110).await.unwrap() },
        )
        .await;
    assert_eq!(count(&won, &true), 1, "one answer: {won:?}");
    let winner = won.iter().position(|w| *w).unwrap();
    let (read, _) = s.poll_device(&TokenHash::of("d"), 120).await.unwrap().unwrap();
    assert_eq!(read.status, answer(winner), "the recorded answer is the winner's");
}

/// RFC 8628 §3.5 as stored: each `slow_down` grows the stored interval by 5 s for every later
/// poll; of 20 concurrent polls at one instant, one is a poll and the others are too soon; a
/// final answer (denied, expired) removes the request.
pub async fn polls_are_decided_one_at_a_time(instances: &[Arc<dyn Store>]) {
    let s = &instances[0];
    let dev = TokenHash::of("p");
    s.insert_device(&device("p", "tv", "POLL", 100, 600), 10, 100).await.unwrap();
    let poll = |at| {
        let (s, dev) = (s.clone(), dev.clone());
        async move {
            let (r, step) = s.poll_device(&dev, at).await.unwrap().unwrap();
            (r.interval, r.last_poll_at, step)
        }
    };
    // (interval, last poll) as read, then the step.
    assert_eq!(poll(100).await, (5, None, PollStep::Pending), "the first poll may come at once");
    assert_eq!(poll(101).await, (5, Some(100), PollStep::SlowDown));
    assert_eq!(poll(110).await, (10, Some(101), PollStep::SlowDown), "10 s now, from the refused poll");
    assert_eq!(poll(124).await, (15, Some(110), PollStep::SlowDown), "15 s now");
    assert_eq!(poll(143).await, (20, Some(124), PollStep::SlowDown), "one second short");
    assert_eq!(poll(168).await, (25, Some(143), PollStep::Pending), "at the interval");
    assert_eq!(poll(193).await, (25, Some(168), PollStep::Pending), "a poll at the interval keeps it");

    // A burst at one instant on a fresh request: the first is a poll, each later one too soon.
    let burst_dev = TokenHash::of("burst");
    s.insert_device(&device("burst", "tv", "BURST", 100, 600), 10, 100).await.unwrap();
    let steps = burst(instances, 20, |s, _| {
        let h = burst_dev.clone();
        async move { s.poll_device(&h, 200).await.unwrap().unwrap().1 }
    })
    .await;
    assert_eq!(count(&steps, &PollStep::Pending), 1, "polls decided one at a time: {steps:?}");
    assert_eq!(count(&steps, &PollStep::SlowDown), 19);
    let (r, _) = s.poll_device(&burst_dev, 300).await.unwrap().unwrap();
    assert_eq!(r.interval, 5 + 19 * 5, "every slow_down grew the interval");

    // Denied: answered at the interval, then gone. Also an approval polled too soon waits.
    s.insert_device(&device("no", "tv", "DENY", 100, 600), 10, 100).await.unwrap();
    assert_eq!(s.poll_device(&TokenHash::of("no"), 100).await.unwrap().unwrap().1, PollStep::Pending);
    assert!(s.decide_device(&user_code_hash("DENY"), &DeviceStatus::Denied, 101).await.unwrap());
    assert_eq!(s.poll_device(&TokenHash::of("no"), 102).await.unwrap().unwrap().1, PollStep::SlowDown);
    assert_eq!(s.poll_device(&TokenHash::of("no"), 112).await.unwrap().unwrap().1, PollStep::Denied);
    assert!(s.poll_device(&TokenHash::of("no"), 130).await.unwrap().is_none(), "a denied request is removed");

    // Expired: whatever its state, removed at the first poll past it.
    s.insert_device(&device("late", "tv", "LATE", 100, 60), 10, 100).await.unwrap();
    assert!(s.decide_device(&user_code_hash("LATE"), &approved("alice"), 110).await.unwrap());
    assert_eq!(s.poll_device(&TokenHash::of("late"), 160).await.unwrap().unwrap().1, PollStep::Expired);
    assert!(s.poll_device(&TokenHash::of("late"), 161).await.unwrap().is_none(), "an expired request is removed");
    assert!(s.poll_device(&TokenHash::of("never"), 100).await.unwrap().is_none());
}

/// An approval is redeemed once: of 20 concurrent redeemers one stores its grant; a pending or
/// denied request, or another client's grant, redeems nothing.
pub async fn an_approval_is_redeemed_once(instances: &[Arc<dyn Store>]) {
    let s = &instances[0];
    let grants = s.table_counts().await.unwrap().grants;
    for (name, status) in [("pending", None), ("denied", Some(DeviceStatus::Denied))] {
        let code = format!("R-{name}");
        s.insert_device(&device(name, "app", &code, 100, 600), 10, 100).await.unwrap();
        if let Some(st) = status {
            s.decide_device(&user_code_hash(&code), &st, 110).await.unwrap();
        }
        assert!(!s.redeem_device(&TokenHash::of(name), &grant(&format!("g-{name}"))).await.unwrap(), "{name}");
    }
    s.insert_device(&device("ok", "app", "R-OK", 100, 600), 10, 100).await.unwrap();
    assert!(s.decide_device(&user_code_hash("R-OK"), &approved("alice"), 110).await.unwrap());
    assert_eq!(s.poll_device(&TokenHash::of("ok"), 120).await.unwrap().unwrap().1, PollStep::Approved);
    let mut other = grant("g-other");
    other.grant.client_id = ClientId::parse("tv").unwrap();
    assert!(!s.redeem_device(&TokenHash::of("ok"), &other).await.unwrap(), "not for another client's grant");
    assert_eq!(s.table_counts().await.unwrap().grants, grants, "nothing stored so far");

    let won = burst(instances, 20, |s, i| async move {
        s.redeem_device(&TokenHash::of("ok"), &grant(&format!("g-{i}"))).await.unwrap()
    })
    .await;
    assert_eq!(count(&won, &true), 1, "one redemption: {won:?}");
    assert_eq!(s.table_counts().await.unwrap().grants, grants + 1, "one grant stored");
    let winner = won.iter().position(|w| *w).unwrap();
    let (_, g) = s.access_token(&format!("jti-g-{winner}")).await.unwrap().expect("the winner's tokens");
    assert_eq!(g.id, format!("g-{winner}"));
    assert!(s.poll_device(&TokenHash::of("ok"), 200).await.unwrap().is_none(), "the approval is gone");
}

/// Expired requests, answered or not, are purged and counted; a live one stays.
pub async fn the_purge_removes_expired_device_codes(s: Arc<dyn Store>) {
    s.insert_device(&device("x1", "tv", "X1", 100, 100), 10, 100).await.unwrap();
    s.insert_device(&device("x2", "tv", "X2", 100, 100), 10, 100).await.unwrap();
    s.decide_device(&user_code_hash("X2"), &approved("alice"), 150).await.unwrap();
    s.insert_device(&device("live", "tv", "LIVE", 100, 600), 10, 100).await.unwrap();
    assert_eq!(s.table_counts().await.unwrap().device_codes, 3);
    assert_eq!(s.purge_expired(199, &POLICY).await.unwrap().device_codes, 0, "not yet expired");
    assert_eq!(s.purge_expired(200, &POLICY).await.unwrap().device_codes, 2);
    assert_eq!(s.table_counts().await.unwrap().device_codes, 1);
    assert!(s.pending_device(&user_code_hash("LIVE"), 200).await.unwrap().is_some());
}

/// A removed client's requests go with it: a client registered again under the same id must not
/// inherit codes (or approvals) issued to the old one.
pub async fn removing_a_client_removes_its_device_codes(s: Arc<dyn Store>, client: ClientRecord) {
    s.insert_client(&client).await.unwrap();
    let id = client.client_id.as_str().to_owned();
    s.insert_device(&device("mine", &id, "MINE", 100, 600), 10, 100).await.unwrap();
    s.insert_device(&device("theirs", "other", "THEIRS", 100, 600), 10, 100).await.unwrap();
    s.decide_device(&user_code_hash("MINE"), &approved("alice"), 110).await.unwrap();
    assert!(s.remove_client(&client.client_id).await.unwrap());
    s.insert_client(&client).await.unwrap();
    assert!(s.poll_device(&TokenHash::of("mine"), 120).await.unwrap().is_none(), "gone with its client");
    assert!(!s.redeem_device(&TokenHash::of("mine"), &grant("g-mine")).await.unwrap());
    assert!(s.pending_device(&user_code_hash("THEIRS"), 120).await.unwrap().is_some(), "other clients' stay");
}

/// Every check, each on a fresh store from `make` (the concurrent ones on one instance).
pub async fn suite<F, Fut>(make: &F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    inserts_are_bounded_per_client_and_user_codes_unique(&[make().await]).await;
    only_live_pending_requests_are_shown_and_answered(make().await).await;
    one_answer_of_concurrent_answers_wins(&[make().await]).await;
    polls_are_decided_one_at_a_time(&[make().await]).await;
    an_approval_is_redeemed_once(&[make().await]).await;
    the_purge_removes_expired_device_codes(make().await).await;
    removing_a_client_removes_its_device_codes(make().await, super::client("app")).await;
}

/// The concurrent checks with their bursts spread over `instances` (each set on fresh storage).
pub async fn across_instances<F, Fut>(fresh: &F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<Arc<dyn Store>>>,
{
    inserts_are_bounded_per_client_and_user_codes_unique(&fresh().await).await;
    one_answer_of_concurrent_answers_wins(&fresh().await).await;
    polls_are_decided_one_at_a_time(&fresh().await).await;
    an_approval_is_redeemed_once(&fresh().await).await;
}
