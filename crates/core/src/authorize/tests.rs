use super::*;
use crate::store::{ClientKind, GrantType};

const ISS: &str = "http://127.0.0.1:8080";

fn client() -> ClientRecord {
    ClientRecord {
        client_id: ClientId::parse("spa").unwrap(),
        name: "SPA".into(),
        kind: ClientKind::Public,
        redirect_uris: vec![RedirectUri::parse_registration("http://127.0.0.1:8765/callback").unwrap()],
        grant_types: vec![GrantType::AuthorizationCode],
        allowed_scope: Scope::parse("openid profile email").unwrap(),
        first_party: false,
        created_at: 0,
        id_token_signed_response_alg: Default::default(),
        post_logout_redirect_uris: vec![],
        audiences: vec![],
        origin: Default::default(),
        backchannel_logout: None,
        protection: Default::default(),
        second_factor: Default::default(),
    }
}

fn run(q: &str) -> Result<ValidRequest, Step> {
    validate(&Params::parse(q.as_bytes()).unwrap(), Some(&client()), ISS, 0, 600, None, false).map_err(Step::from)
}

const GOOD: &str = "response_type=code&client_id=spa&redirect_uri=http%3A%2F%2F127.0.0.1%3A8765%2Fcallback&scope=openid%20profile%20email&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&state=xyz";

fn redirected(r: Result<ValidRequest, Step>) -> Url {
    match r {
        Err(Step::Redirect(u)) => Url::parse(&u).unwrap(),
        other => panic!("expected a redirect, got {other:?}"),
    }
}

#[test]
fn the_seed_request_is_valid() {
    let r = run(GOOD).unwrap();
    assert_eq!(r.pending.scope.to_string(), "email openid profile");
    assert_eq!(r.pending.state.unwrap().as_str(), "xyz");
}

#[test]
fn plain_pkce_is_redirected_with_state_and_iss() {
    let u = redirected(run(&GOOD.replace("S256", "plain")));
    let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains("S256"));
    assert_eq!(q["state"], "xyz");
    assert_eq!(q["iss"], ISS);
    assert_eq!(u.path(), "/callback");
}

#[test]
fn bad_client_or_redirect_never_redirects() {
    for q in [
        GOOD.replace("client_id=spa&", ""),
        GOOD.replace("redirect_uri=http%3A%2F%2F127.0.0.1%3A8765%2Fcallback&", ""),
        GOOD.replace("callback", "evil"),
        GOOD.replace("127.0.0.1", "attacker.example"),
    ] {
        assert!(matches!(run(&q), Err(Step::ErrorPage(_))), "{q}");
    }
    let unknown =
        validate(&Params::parse(GOOD.as_bytes()).unwrap(), None, ISS, 0, 600, None, false).map_err(Step::from);
    assert!(matches!(unknown, Err(Step::ErrorPage(e)) if e.description.contains("unknown client_id")));
}

#[test]
fn loopback_port_is_free() {
    assert!(run(&GOOD.replace("8765", "40000")).is_ok());
}

#[test]
fn response_type_scope_and_prompt_errors() {
    let q: std::collections::HashMap<_, _> =
        redirected(run(&GOOD.replace("response_type=code", "response_type=token")))
            .query_pairs()
            .into_owned()
            .collect();
    assert_eq!(q["error"], "unsupported_response_type");
    let q: std::collections::HashMap<_, _> =
        redirected(run(&GOOD.replace("email", "email%20admin"))).query_pairs().into_owned().collect();
    assert_eq!(q["error"], "invalid_scope");
    assert!(q["error_description"].contains("admin"));
    let q: std::collections::HashMap<_, _> =
        redirected(run(&format!("{GOOD}&prompt=none%20login"))).query_pairs().into_owned().collect();
    assert_eq!(q["error"], "invalid_request");
    assert!(run(&format!("{GOOD}&prompt=login")).unwrap().prompt.login);
}

#[test]
fn dpop_jkt_is_carried_when_well_formed_and_refused_to_the_client_otherwise() {
    assert_eq!(run(GOOD).unwrap().pending.dpop_jkt, None);
    let jkt = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
    assert_eq!(run(&format!("{GOOD}&dpop_jkt={jkt}")).unwrap().pending.dpop_jkt.as_deref(), Some(jkt));
    let q: std::collections::HashMap<_, _> =
        redirected(run(&format!("{GOOD}&dpop_jkt=not-a-thumbprint"))).query_pairs().into_owned().collect();
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains("dpop_jkt"), "{}", q["error_description"]);
    assert_eq!(q["state"], "xyz");
}

#[test]
fn redirect_keeps_the_registered_query() {
    let uri = RedirectUri::parse("https://app.example/cb?tenant=a").unwrap();
    let e = OAuthError::new(ErrorCode::AccessDenied, "no");
    let u = error_redirect(ISS, &uri, Some(&State::parse("s p").unwrap()), &e);
    assert!(u.starts_with("https://app.example/cb?tenant=a&error=access_denied"), "{u}");
    assert!(u.contains("state=s+p"));
}
