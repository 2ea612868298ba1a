//! The second-factor store (issue 13): TOTP secrets, recovery codes, partial sign-ins and
//! session step-up. Each single-use rule is checked under a burst of concurrent callers, spread
//! over every instance given (two pools on one PostgreSQL database stand for two servers).

use std::sync::Arc;

use latchkey_core::Store;
use latchkey_core::authn::{Accepted, Acr, Authentication, Method, Next};
use latchkey_core::factors::{PARTIAL_SIGN_INS_PER_USER, PartialSignIn, TotpRecord};
use latchkey_core::store::SessionRecord;
use latchkey_proto::TokenHash;

pub fn totp(user: &str, secret: &str, at: i64) -> TotpRecord {
    TotpRecord { user_id: user.into(), secret: secret.into(), created_at: at, confirmed_at: None, last_step: 0 }
}

fn codes(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| TokenHash::of(n).as_str().to_owned()).collect()
}

/// Runs `n` copies of `f` at once, round-robin over `instances`; returns how many got `true`.
async fn burst<F, Fut>(instances: &[Arc<dyn Store>], n: usize, f: F) -> usize
where
    F: Fn(Arc<dyn Store>, usize) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(f(instances[i % instances.len()].clone(), i))).collect();
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    wins
}

pub async fn totp_is_confirmed_once_and_a_confirmed_secret_never_replaced(s: Arc<dyn Store>) {
    assert_eq!(s.totp("u").await.unwrap(), None);
    assert!(s.begin_totp(&totp("u", "first", 10)).await.unwrap());
    assert!(s.begin_totp(&totp("u", "second", 11)).await.unwrap(), "an unconfirmed setup is replaced");
    assert_eq!(s.totp("u").await.unwrap(), Some(totp("u", "second", 11)));
    // The code was checked against "first", which another setup replaced: nothing is confirmed.
    assert!(!s.confirm_totp("u", "first", 5, &codes(&["a"]), 12).await.unwrap());
    assert_eq!(s.recovery_codes_left("u").await.unwrap(), 0);
    assert!(s.confirm_totp("u", "second", 5, &codes(&["a", "b", "c"]), 12).await.unwrap());
    let on = s.totp("u").await.unwrap().unwrap();
    assert_eq!((on.confirmed_at, on.last_step), (Some(12), 5));
    assert_eq!(s.recovery_codes_left("u").await.unwrap(), 3);
    assert!(!s.confirm_totp("u", "second", 6, &codes(&["x"]), 13).await.unwrap(), "confirmed once");
    assert!(!s.begin_totp(&totp("u", "attacker", 14)).await.unwrap(), "a confirmed secret stays");
    assert_eq!(s.totp("u").await.unwrap().unwrap().secret, "second");
    assert_eq!(s.recovery_codes_left("u").await.unwrap(), 3, "a refused confirmation changes no codes");

    // Removing keeps or drops the recovery codes as asked; an unconfirmed setup is removable too.
    assert!(s.remove_totp("u", false).await.unwrap());
    assert_eq!(s.recovery_codes_left("u").await.unwrap(), 3);
    assert!(!s.remove_totp("u", true).await.unwrap(), "nothing left to remove");
    assert_eq!(s.recovery_codes_left("u").await.unwrap(), 0);
    assert!(s.begin_totp(&totp("u", "third", 20)).await.unwrap(), "set up anew after removal");
}

pub async fn a_totp_step_is_accepted_once(instances: &[Arc<dyn Store>]) {
    let s = &instances[0];
    assert!(s.begin_totp(&totp("u", "sec", 10)).await.unwrap());
    assert!(!s.use_totp_step("u", 100).await.unwrap(), "an unconfirmed secret accepts no code");
    assert!(s.confirm_totp("u", "sec", 7, &[], 11).await.unwrap());
    assert!(!s.use_totp_step("u", 7).await.unwrap(), "the confirming code's step is spent");
    for round in 0..3 {
        let step = 8 + round;
        let wins = burst(instances, 24, move |s, _| async move { s.use_totp_step("u", step).await.unwrap() }).await;
        assert_eq!(wins, 1, "round {round}: of a burst of one code, exactly one is accepted");
    }
    assert!(!s.use_totp_step("u", 9).await.unwrap(), "an earlier step after a later one");
    assert!(s.use_totp_step("u", 12).await.unwrap());
    assert!(!s.use_totp_step("other", 50).await.unwrap(), "a user without TOTP accepts nothing");
}

pub async fn a_recovery_code_is_used_once(instances: &[Arc<dyn Store>]) {
    let s = &instances[0];
    s.replace_recovery_codes("u", &codes(&["a", "b", "c"]), 5).await.unwrap();
    s.replace_recovery_codes("v", &codes(&["a"]), 5).await.unwrap();
    let a = codes(&["a"]).remove(0);
    let wins = burst(instances, 32, |s, _| {
        let a = a.clone();
        async move { s.use_recovery_code("u", &a).await.unwrap() }
    })
    .await;
    assert_eq!(wins, 1, "a burst of one recovery code: exactly one use");
    assert_eq!(s.recovery_codes_left("u").await.unwrap(), 2);
    assert_eq!(s.recovery_codes_left("v").await.unwrap(), 1, "another user's codes are their own");
    assert!(!s.use_recovery_code("u", &a).await.unwrap());
    // A new set: every old code dies.
    s.replace_recovery_codes("u", &codes(&["d"]), 6).await.unwrap();
    assert!(!s.use_recovery_code("u", &codes(&["b"])[0]).await.unwrap());
    assert!(s.use_recovery_code("u", &codes(&["d"])[0]).await.unwrap());
}

fn partial(user: &str, expires_at: i64) -> PartialSignIn {
    PartialSignIn {
        user_id: user.into(),
        pending: TokenHash::of("pending").as_str().to_owned(),
        authn: Authentication::default(),
        step_up: Some(TokenHash::of("old-session").as_str().to_owned()),
        need: Next::Ask {
            level: Acr::TwoFactor,
            accepted: Accepted { totp: true, recovery_code: true, passkey: false },
        },
        expires_at,
    }
}

pub async fn a_partial_sign_in_is_taken_once_and_bounded(instances: &[Arc<dyn Store>]) {
    let s = &instances[0];
    let h = TokenHash::of("cookie");
    s.insert_partial_sign_in(&h, &partial("u", 100), 10).await.unwrap();
    assert_eq!(s.partial_sign_in(&h, 50).await.unwrap(), Some(partial("u", 100)), "every field round-trips");
    assert_eq!(s.partial_sign_in(&h, 100).await.unwrap(), None, "expired at expires_at");
    assert_eq!(s.take_partial_sign_in(&h, 100).await.unwrap(), None, "an expired one is not taken");
    let wins = burst(instances, 24, |s, _| async move {
        s.take_partial_sign_in(&TokenHash::of("cookie"), 50).await.unwrap().is_some()
    })
    .await;
    assert_eq!(wins, 1, "a partial sign-in completes once");
    assert_eq!(s.partial_sign_in(&h, 50).await.unwrap(), None);

    // At most PARTIAL_SIGN_INS_PER_USER per user: the oldest go; other users keep theirs.
    s.insert_partial_sign_in(&TokenHash::of("v-0"), &partial("v", 1000), 20).await.unwrap();
    let n = PARTIAL_SIGN_INS_PER_USER as i64 + 4;
    for i in 0..n {
        s.insert_partial_sign_in(&TokenHash::of(&format!("u-{i}")), &partial("u", 1000), 20 + i).await.unwrap();
    }
    for i in 0..n {
        let kept = s.partial_sign_in(&TokenHash::of(&format!("u-{i}")), 50).await.unwrap().is_some();
        assert_eq!(kept, i >= 4, "u-{i}");
    }
    assert!(s.partial_sign_in(&TokenHash::of("v-0"), 50).await.unwrap().is_some());
    // Expired ones are deleted by the next insert (any user's).
    s.insert_partial_sign_in(&TokenHash::of("w"), &partial("w", 5000), 2000).await.unwrap();
    assert_eq!(s.take_partial_sign_in(&TokenHash::of("v-0"), 10).await.unwrap(), None, "deleted, not only hidden");
    // Resetting a user's factors ends their partial sign-ins too.
    s.reset_factors("w").await.unwrap();
    assert_eq!(s.partial_sign_in(&TokenHash::of("w"), 2001).await.unwrap(), None);
}

pub async fn a_step_up_upgrades_one_live_session_once(instances: &[Arc<dyn Store>]) {
    let s = &instances[0];
    let sess = |h: &str, exp| SessionRecord {
        hash: TokenHash::of(h),
        sid: format!("sid-{h}"),
        user_id: "u".into(),
        auth_time: 1,
        expires_at: exp,
        authn: Authentication::default(),
        meta: Default::default(),
    };
    let _ = s.insert_session(&sess("old", 1000), 8).await.unwrap();
    let _ = s.insert_session(&sess("dead", 50), 8).await.unwrap();
    let strong = Authentication::of(&[Method::Password, Method::Totp]);
    let wins = burst(instances, 16, |s, i| {
        let strong = strong.clone();
        async move {
            s.step_up_session(&TokenHash::of("old"), &TokenHash::of(&format!("new-{i}")), &strong, 60, 60)
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(wins, 1, "one step-up of one session");
    assert_eq!(s.session(&TokenHash::of("old"), 61).await.unwrap(), None, "the old token no longer works");
    let mut upgraded = None;
    for i in 0..16 {
        if let Some(u) = s.session(&TokenHash::of(&format!("new-{i}")), 61).await.unwrap() {
            upgraded = Some(u);
        }
    }
    let upgraded = upgraded.expect("the winner's token names the session");
    assert_eq!(upgraded.sid, "sid-old", "the same session: its grants stay bound to it");
    assert_eq!((upgraded.auth_time, upgraded.authn), (60, strong.clone()));
    assert!(
        !s.step_up_session(&TokenHash::of("dead"), &TokenHash::of("n"), &strong, 60, 60).await.unwrap(),
        "an expired session is not revived"
    );
}

pub async fn resetting_and_removing_a_user_remove_their_factors(s: Arc<dyn Store>) {
    assert!(s.begin_totp(&totp("id-alice", "sec", 1)).await.unwrap());
    assert!(s.confirm_totp("id-alice", "sec", 3, &codes(&["a", "b"]), 2).await.unwrap());
    assert_eq!(s.reset_factors("id-alice").await.unwrap(), (true, 2));
    assert_eq!(s.totp("id-alice").await.unwrap(), None);
    assert_eq!(s.reset_factors("id-alice").await.unwrap(), (false, 0));
    s.insert_user(&super::user("alice")).await.unwrap();
    assert!(s.begin_totp(&totp("id-alice", "sec", 1)).await.unwrap());
    s.replace_recovery_codes("id-alice", &codes(&["a"]), 2).await.unwrap();
    assert!(s.remove_user("alice", 1).await.unwrap().is_some());
    assert_eq!(s.totp("id-alice").await.unwrap(), None);
    assert_eq!(s.recovery_codes_left("id-alice").await.unwrap(), 0);
}
