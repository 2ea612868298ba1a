//! The WebAuthn decisions against a software authenticator: what verifies, and what is refused
//! (the store's single-use and counter rules are in the conformance suite; the HTTP flows in
//! crates/cli/tests/passkeys.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use webauthn_rs::prelude::{Passkey, PublicKeyCredential, RegisterPublicKeyCredential, Uuid};

use super::soft::SoftAuthenticator;
use super::*;

const ISSUER: &str = "https://id.example.com";

fn rp() -> RelyingParty {
    RelyingParty::new(ISSUER, &PasskeyConfig::default()).unwrap().unwrap()
}

/// Registers `a` with `rp` and returns the passkey.
fn register(rp: &RelyingParty, a: &mut SoftAuthenticator, origin: &str) -> Result<Passkey, PasskeyError> {
    let (ccr, state) = rp.webauthn.start_passkey_registration(Uuid::new_v4(), "alice", "Alice", None).unwrap();
    let options = serde_json::to_value(&ccr).unwrap();
    let reg: RegisterPublicKeyCredential = serde_json::from_value(a.create(&options, origin)).unwrap();
    Ok(rp.webauthn.finish_passkey_registration(&reg, &state)?)
}

/// One username-less sign-in of `a` against `passkey`.
fn sign_in(rp: &RelyingParty, a: &mut SoftAuthenticator, passkey: &Passkey) -> Result<(), PasskeyError> {
    let (rcr, state) = rp.webauthn.start_discoverable_authentication().unwrap();
    let options = serde_json::to_value(&rcr).unwrap();
    let cred: PublicKeyCredential = serde_json::from_value(a.get(&options, ISSUER)).unwrap();
    let (handle, raw) = rp.webauthn.identify_discoverable_authentication(&cred).unwrap();
    assert_eq!(handle.as_bytes().as_slice(), a.user_handle.as_slice(), "the user handle names the user");
    assert_eq!(raw, passkey.cred_id().as_slice());
    rp.webauthn.finish_discoverable_authentication_v2(&cred, state, passkey)?;
    Ok(())
}

#[test]
fn a_passkey_registers_and_signs_in_without_a_username() {
    let rp = rp();
    let mut a = SoftAuthenticator::new("id.example.com");
    let passkey = register(&rp, &mut a, ISSUER).unwrap();
    let json = serde_json::to_string(&passkey).unwrap();
    assert_eq!(StoredFlags::of(&json).unwrap(), (0, false, false), "counter and BE/BS read from the credential");
    sign_in(&rp, &mut a, &passkey).unwrap();
}

#[test]
fn user_verification_is_required_at_registration_and_sign_in() {
    let rp = rp();
    let mut lazy = SoftAuthenticator::new("id.example.com");
    lazy.user_verified = false;
    assert!(matches!(register(&rp, &mut lazy, ISSUER), Err(PasskeyError::UserNotVerified)));

    let mut a = SoftAuthenticator::new("id.example.com");
    let passkey = register(&rp, &mut a, ISSUER).unwrap();
    a.user_verified = false;
    assert!(matches!(sign_in(&rp, &mut a, &passkey), Err(PasskeyError::UserNotVerified)));
}

#[test]
fn a_counter_that_goes_backwards_is_refused_as_a_clone() {
    let rp = rp();
    let mut a = SoftAuthenticator::new("id.example.com");
    let mut passkey = register(&rp, &mut a, ISSUER).unwrap();
    let mut clone = a.clone();
    // The original signs in twice; the stored counter follows it.
    for _ in 0..2 {
        let (rcr, state) = rp.webauthn.start_discoverable_authentication().unwrap();
        let cred: PublicKeyCredential =
            serde_json::from_value(a.get(&serde_json::to_value(&rcr).unwrap(), ISSUER)).unwrap();
        let res = rp.webauthn.finish_discoverable_authentication_v2(&cred, state, &passkey).unwrap();
        passkey.update_credential(&res);
    }
    // The copy still counts from where it was copied: 1, not above 2.
    assert!(matches!(sign_in(&rp, &mut clone, &passkey), Err(PasskeyError::CounterRegression)));
}

#[test]
fn a_synced_passkey_that_keeps_no_counter_signs_in_again_and_again() {
    let rp = rp();
    let mut a = SoftAuthenticator::new("id.example.com");
    a.counting = false;
    a.backup_eligible = true;
    a.backup_state = true;
    let passkey = register(&rp, &mut a, ISSUER).unwrap();
    assert_eq!(StoredFlags::of(&serde_json::to_string(&passkey).unwrap()).unwrap(), (0, true, true));
    for _ in 0..3 {
        sign_in(&rp, &mut a, &passkey).unwrap();
    }
}

#[test]
fn another_origin_or_relying_party_is_refused() {
    let rp = rp();
    let mut a = SoftAuthenticator::new("id.example.com");
    assert!(matches!(register(&rp, &mut a, "https://evil.example"), Err(PasskeyError::Invalid(_))));
    // A credential made for another relying party id (a look-alike domain) does not verify.
    let mut other = SoftAuthenticator::new("id.example.co");
    assert!(matches!(register(&rp, &mut other, ISSUER), Err(PasskeyError::Invalid(_))));
}

#[test]
fn the_relying_party_follows_the_issuer() {
    assert_eq!(rp().rp_id, "id.example.com");
    let parent = PasskeyConfig { rp_id: Some("example.com".into()), ..Default::default() };
    assert_eq!(RelyingParty::new(ISSUER, &parent).unwrap().unwrap().rp_id, "example.com");
    let unrelated = PasskeyConfig { rp_id: Some("other.example".into()), ..Default::default() };
    assert!(RelyingParty::new(ISSUER, &unrelated).is_err(), "an rp_id the issuer does not belong to");
    assert!(RelyingParty::new("http://127.0.0.1:8080", &PasskeyConfig::default()).unwrap().is_none());
    assert_eq!(
        RelyingParty::new("http://localhost:8080", &PasskeyConfig::default()).unwrap().unwrap().rp_id,
        "localhost"
    );
}

#[test]
fn names_are_trimmed_and_bounded() {
    assert_eq!(valid_name("  Work laptop ").unwrap(), "Work laptop");
    assert!(valid_name("   ").is_err());
    assert!(valid_name(&"x".repeat(65)).is_err());
    assert!(valid_name("a\u{7}b").is_err());
    assert_eq!(valid_name(&"é".repeat(64)).unwrap().chars().count(), 64);
}
