//! Which user claims are released, where (OpenID Connect Core §5.3-5.5).
//!
//! The rule: a claim is released when a granted scope stands for it (§5.4: `profile`, `email`,
//! `address`, `phone`) or when the `claims` parameter asked for it individually (§5.5) and the
//! user allowed that. Core lets an OP release individually requested claims without asking;
//! Latchkey, like most OPs, asks: the consent page lists the requested claims that the scopes do
//! not cover ([`beyond_scope`]), and the consent remembers them by name. A first-party client's
//! consent is implied, for claims as for scopes.
//!
//! The same claims go in the id_token and at userinfo for the scopes (§5.4 names userinfo; many
//! relying parties read only the id_token, and Keycloak, Auth0 and Entra ID put them there too);
//! a claim asked for in one member of the `claims` parameter goes where that member says.
//! Claims the user does not have are left out, never sent empty (§5.3.2), and claim names the
//! server does not know are ignored (§5.5).

use std::collections::BTreeMap;

use latchkey_proto::claims::ClaimRequest;
use latchkey_proto::{ClaimsRequest, Scope};
use serde_json::{Map, Value, json};

use crate::store::UserRecord;

/// The claims of each standard scope (OpenID Connect Core §5.4).
pub const SCOPE_CLAIMS: &[(&str, &[&str])] = &[
    (
        "profile",
        &[
            "name",
            "family_name",
            "given_name",
            "middle_name",
            "nickname",
            "preferred_username",
            "profile",
            "picture",
            "website",
            "gender",
            "birthdate",
            "zoneinfo",
            "locale",
            "updated_at",
        ],
    ),
    ("email", &["email", "email_verified"]),
    ("address", &["address"]),
    ("phone", &["phone_number", "phone_number_verified"]),
];

/// Claims about the authentication that an id_token carries (Core §2, §3.1.3.6; `acr` and `amr`
/// where the authentication sets them; `sid` from Front- and Back-Channel Logout).
pub const ID_TOKEN_CLAIMS: &[&str] =
    &["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "sid", "at_hash"];

/// Every user claim this server can release: `sub` and the claims of every scope.
pub fn user_claim_names() -> impl Iterator<Item = &'static str> {
    std::iter::once("sub").chain(SCOPE_CLAIMS.iter().flat_map(|(_, c)| c.iter().copied()))
}

/// `claims_supported` (OpenID Connect Discovery §3): every claim userinfo or an id_token can
/// carry, each once.
pub fn supported() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in ID_TOKEN_CLAIMS.iter().copied().chain(user_claim_names()) {
        if !out.iter().any(|o| o == c) {
            out.push(c.to_owned());
        }
    }
    out
}

/// The known user claim of this name.
fn known(name: &str) -> Option<&'static str> {
    user_claim_names().find(|c| *c == name)
}

/// The claims `scope` stands for.
fn of_scope(scope: &Scope) -> impl Iterator<Item = &'static str> + '_ {
    SCOPE_CLAIMS.iter().filter(|(s, _)| scope.contains(s)).flat_map(|(_, c)| c.iter().copied())
}

/// The user claims a `claims` request asks for (in either member) that `scope` does not give:
/// what the user must allow on the consent page, in the order of [`SCOPE_CLAIMS`].
pub fn beyond_scope(scope: &Scope, claims: Option<&ClaimsRequest>) -> Vec<&'static str> {
    let Some(c) = claims else { return Vec::new() };
    let given: Vec<&str> = of_scope(scope).collect();
    user_claim_names().filter(|n| *n != "sub" && !given.contains(n) && c.names().any(|m| m == *n)).collect()
}

/// Claim names, as a step of the flow carries them (boxed there, to keep the step small).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimNames(pub Vec<&'static str>);

/// Where claims are released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    IdToken,
    Userinfo,
}

/// The user claims to release for a grant of `scope` carrying `claims`, at `target`: `sub`, the
/// claims of the scopes, and those the request names for `target`. The values the user has.
pub fn release(user: &UserRecord, scope: &Scope, claims: Option<&ClaimsRequest>, target: Target) -> Map<String, Value> {
    let requested: Option<&BTreeMap<String, ClaimRequest>> = claims.map(|c| match target {
        Target::IdToken => &c.id_token,
        Target::Userinfo => &c.userinfo,
    });
    let mut m = Map::new();
    m.insert("sub".into(), json!(user.id));
    let names = of_scope(scope).chain(requested.into_iter().flat_map(|r| r.keys().filter_map(|k| known(k))));
    for name in names {
        if m.contains_key(name) {
            continue;
        }
        if let Some(v) = value(user, name) {
            m.insert(name.to_owned(), v);
        }
    }
    m
}

/// The value of one user claim, if the user has it.
pub fn value(u: &UserRecord, name: &str) -> Option<Value> {
    let p = &u.profile;
    let s = |o: &Option<String>| o.as_ref().map(|v| json!(v));
    match name {
        "sub" => Some(json!(u.id)),
        "name" => s(&u.name),
        "given_name" => s(&p.given_name),
        "family_name" => s(&p.family_name),
        "middle_name" => s(&p.middle_name),
        "nickname" => s(&p.nickname),
        "preferred_username" => Some(json!(p.preferred_username.as_deref().unwrap_or(&u.username))),
        "profile" => s(&p.profile),
        "picture" => s(&p.picture),
        "website" => s(&p.website),
        "gender" => s(&p.gender),
        "birthdate" => s(&p.birthdate),
        "zoneinfo" => s(&p.zoneinfo),
        "locale" => s(&p.locale),
        // Core §5.1: seconds since the epoch.
        "updated_at" => Some(json!(u.updated_at)),
        "email" => Some(json!(u.email)),
        "email_verified" => Some(json!(u.email_verified)),
        // Core §5.1.1: an object; Latchkey keeps the formatted form.
        "address" => u.address.as_ref().map(|a| json!({ "formatted": a })),
        "phone_number" => s(&u.phone_number),
        // Nothing verifies phone numbers yet: never claim that one was.
        "phone_number_verified" => u.phone_number.as_ref().map(|_| json!(false)),
        _ => None,
    }
}

/// How the consent page says what a claim shows.
pub fn describe(claim: &str) -> String {
    let what = match claim {
        "name" => "your full name",
        "given_name" => "your given name",
        "family_name" => "your family name",
        "middle_name" => "your middle name",
        "nickname" => "your nickname",
        "preferred_username" => "your username",
        "profile" => "the address of your profile page",
        "picture" => "your picture",
        "website" => "your website",
        "gender" => "your gender",
        "birthdate" => "your birthdate",
        "zoneinfo" => "your time zone",
        "locale" => "your language",
        "updated_at" => "when you last updated your profile",
        "email" => "your email address",
        "email_verified" => "whether your email address is verified",
        "address" => "your postal address",
        "phone_number" => "your phone number",
        "phone_number_verified" => "whether your phone number is verified",
        other => return format!("See “{other}”"),
    };
    format!("See {what}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    fn user() -> UserRecord {
        UserRecord {
            id: "u1".into(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            email_verified: false,
            name: Some("Alice".into()),
            password_hash: "x".into(),
            created_at: 0,
            phone_number: Some("+1 555 0100".into()),
            address: None,
            profile: Profile { given_name: Some("Alice".into()), locale: Some("en-GB".into()), ..Default::default() },
            updated_at: 42,
            locked_at: None,
        }
    }

    fn scope(s: &str) -> Scope {
        Scope::parse(s).unwrap()
    }

    #[test]
    fn claims_follow_scope() {
        let u = user();
        assert_eq!(Value::Object(release(&u, &scope("openid"), None, Target::Userinfo)), json!({"sub": "u1"}));
        let all = release(&u, &scope("openid profile email"), None, Target::Userinfo);
        assert_eq!(all["name"], "Alice");
        assert_eq!(all["given_name"], "Alice");
        assert_eq!(all["preferred_username"], "alice");
        assert_eq!(all["locale"], "en-GB");
        assert_eq!(all["updated_at"], 42);
        assert_eq!(all["email"], "alice@example.com");
        assert!(all.get("family_name").is_none(), "absent claims are omitted");
        assert!(all.get("password_hash").is_none());
        let contact = release(&u, &scope("openid phone address"), None, Target::Userinfo);
        assert_eq!(contact["phone_number"], "+1 555 0100");
        assert_eq!(contact["phone_number_verified"], false);
        assert!(contact.get("address").is_none());
    }

    #[test]
    fn requested_claims_go_where_asked() {
        let u = user();
        let c = ClaimsRequest::parse(
            r#"{"userinfo":{"email":{"essential":true},"x-unknown":null},"id_token":{"given_name":null}}"#,
        )
        .unwrap();
        let info = release(&u, &scope("openid"), Some(&c), Target::Userinfo);
        assert_eq!(info["email"], "alice@example.com");
        assert!(info.get("given_name").is_none(), "asked for the id_token only");
        assert!(info.get("x-unknown").is_none());
        let id = release(&u, &scope("openid"), Some(&c), Target::IdToken);
        assert_eq!(id["given_name"], "Alice");
        assert!(id.get("email").is_none());
        assert_eq!(beyond_scope(&scope("openid"), Some(&c)), vec!["given_name", "email"]);
        assert!(beyond_scope(&scope("openid profile email"), Some(&c)).is_empty());
    }

    #[test]
    fn supported_lists_every_claim_once() {
        let s = supported();
        for c in ["phone_number", "phone_number_verified", "address", "sub", "acr", "amr", "updated_at", "at_hash"] {
            assert!(s.iter().any(|x| x == c), "{c}");
        }
        let mut d = s.clone();
        d.dedup();
        assert_eq!(s.len(), d.len());
        assert_eq!(s.iter().filter(|c| *c == "sub").count(), 1);
    }
}
