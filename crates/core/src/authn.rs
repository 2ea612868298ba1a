//! How a person authenticated, and how strongly a request needs them to: the `amr` and `acr`
//! claims (OpenID Connect Core §2, RFC 8176), the deployment's and clients' second-factor policy,
//! and the one decision of what a sign-in still needs ([`decide`]). Pure: no store, no clock.
//!
//! ## The `acr` values
//!
//! Three levels, in this order of strength, each implying the ones before it:
//!
//! | level | `acr` value | met by |
//! | --- | --- | --- |
//! | [`Acr::Password`] | `https://refeds.org/profile/sfa` | one factor (a password) |
//! | [`Acr::TwoFactor`] | `https://refeds.org/profile/mfa` | two factors of different kinds: password and a one-time code (TOTP or a recovery code), password and a passkey, or a passkey with user verification |
//! | [`Acr::PhishingResistant`] | `phr` | two factors of which one is a passkey (origin-bound, so a look-alike site cannot relay it) |
//!
//! The first two are the REFEDS single- and multi-factor profiles, the `acr` values relying
//! parties of academic and enterprise federations already know; `phr` is OpenID Extended
//! Authentication Profile ACR Values 1.0. Its `phrh` (hardware-protected) is not offered: a synced
//! passkey lives in a cloud keychain, and without attestation the server cannot tell one from a
//! security key. `phr` is given only to a multi-factor authentication, so the levels stay a chain
//! and "at least this level" has one meaning: a passkey without user verification alone is
//! phishing-resistant but a single factor, and gets [`Acr::Password`].

use serde::{Deserialize, Serialize};

/// The authentication methods of RFC 8176 this server reports in `amr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Amr {
    /// A password.
    Pwd,
    /// A one-time password: a TOTP code (RFC 6238) or a single-use recovery code.
    Otp,
    /// A hardware-secured key (a passkey on a security key or in a device's secure element).
    Hwk,
    /// A software-secured key (a passkey that may be synced between devices).
    Swk,
    /// Multiple-factor authentication: present whenever two factors of different kinds were used.
    Mfa,
}

impl Amr {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pwd => "pwd",
            Self::Otp => "otp",
            Self::Hwk => "hwk",
            Self::Swk => "swk",
            Self::Mfa => "mfa",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pwd, Self::Otp, Self::Hwk, Self::Swk, Self::Mfa].into_iter().find(|a| a.as_str() == s)
    }
}

/// Authentication context classes, weakest first (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Acr {
    #[default]
    Password,
    TwoFactor,
    PhishingResistant,
}

impl Acr {
    pub const ALL: [Acr; 3] = [Acr::Password, Acr::TwoFactor, Acr::PhishingResistant];

    /// The value of the `acr` claim and of `acr_values`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Password => "https://refeds.org/profile/sfa",
            Self::TwoFactor => "https://refeds.org/profile/mfa",
            Self::PhishingResistant => "phr",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// One way a person proved who they are, as the sign-in saw it. The passkey module reports what
/// the authenticator asserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Password,
    Totp,
    RecoveryCode,
    Passkey {
        /// The credential cannot leave its device (not backup-eligible): `hwk`, else `swk`.
        hardware: bool,
        /// The authenticator verified the person (PIN or biometric), not only their presence.
        user_verified: bool,
    },
}

/// What one authentication established: the `amr` and `acr` a session, a code and a grant carry,
/// and the id_tokens minted from them report.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Authentication {
    amr: Vec<Amr>,
    acr: Acr,
}

impl Default for Authentication {
    /// A password sign-in: what every session was before second factors existed.
    fn default() -> Self {
        Self::of(&[Method::Password])
    }
}

impl Authentication {
    /// From the methods used, in any order.
    pub fn of(methods: &[Method]) -> Self {
        let mut amr: Vec<Amr> = methods
            .iter()
            .map(|m| match m {
                Method::Password => Amr::Pwd,
                Method::Totp | Method::RecoveryCode => Amr::Otp,
                Method::Passkey { hardware: true, .. } => Amr::Hwk,
                Method::Passkey { hardware: false, .. } => Amr::Swk,
            })
            .collect();
        // Two factors of different kinds: something known (a password; a passkey's PIN or
        // biometric stands for one) and something held (a code generator, a recovery sheet, a
        // passkey's device).
        let knows = methods.iter().any(|m| matches!(m, Method::Password | Method::Passkey { user_verified: true, .. }));
        let holds = methods.iter().any(|m| !matches!(m, Method::Password));
        let passkey = methods.iter().any(|m| matches!(m, Method::Passkey { .. }));
        let acr = match (knows && holds, passkey) {
            (true, true) => Acr::PhishingResistant,
            (true, false) => Acr::TwoFactor,
            (false, _) => Acr::Password,
        };
        if knows && holds {
            amr.push(Amr::Mfa);
        }
        amr.sort();
        amr.dedup();
        Self { amr, acr }
    }

    /// This authentication completed by `more` (a step-up on an existing session): the methods of
    /// both, and never a weaker level than before.
    pub fn with(&self, more: &[Method]) -> Self {
        let mut methods: Vec<Method> = self
            .amr
            .iter()
            .filter_map(|a| match a {
                Amr::Pwd => Some(Method::Password),
                Amr::Otp => Some(Method::Totp),
                Amr::Hwk => Some(Method::Passkey { hardware: true, user_verified: false }),
                Amr::Swk => Some(Method::Passkey { hardware: false, user_verified: false }),
                Amr::Mfa => None,
            })
            .collect();
        methods.extend_from_slice(more);
        let mut next = Self::of(&methods);
        if self.acr > next.acr {
            next.acr = self.acr;
            if !next.amr.contains(&Amr::Mfa) && self.amr.contains(&Amr::Mfa) {
                next.amr.push(Amr::Mfa);
                next.amr.sort();
            }
        }
        next
    }

    pub fn amr(&self) -> &[Amr] {
        &self.amr
    }
    pub fn acr(&self) -> Acr {
        self.acr
    }
    /// The `amr` claim's values.
    pub fn amr_strings(&self) -> Vec<String> {
        self.amr.iter().map(|a| a.as_str().to_owned()).collect()
    }
    /// The stored form of `amr`: its values separated by spaces.
    pub fn amr_text(&self) -> String {
        self.amr_strings().join(" ")
    }
    /// From the stored columns. Unknown values are refused: the set is closed.
    pub fn from_stored(amr: &str, acr: &str) -> Result<Self, String> {
        let mut methods = Vec::new();
        for v in amr.split(' ').filter(|s| !s.is_empty()) {
            methods.push(Amr::parse(v).ok_or_else(|| format!("unknown amr value {v:?}"))?);
        }
        methods.sort();
        methods.dedup();
        let acr = Acr::parse(acr).ok_or_else(|| format!("unknown acr value {acr:?}"))?;
        Ok(Self { amr: methods, acr })
    }
}

/// A deployment's or a client's rule for second factors. The stricter of the two applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecondFactorPolicy {
    /// Password alone is enough; people who set up a second factor are always asked for it.
    #[default]
    Optional,
    /// A second factor (a one-time code or a passkey) at every sign-in; people without one set up
    /// a TOTP app while signing in.
    Required,
    /// A passkey at every sign-in (phishing-resistant).
    Passkey,
}

impl SecondFactorPolicy {
    pub const ALL: [SecondFactorPolicy; 3] = [Self::Optional, Self::Required, Self::Passkey];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Optional => "optional",
            Self::Required => "required",
            Self::Passkey => "passkey",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
    /// The level every sign-in under this policy must reach.
    pub const fn level(self) -> Acr {
        match self {
            Self::Optional => Acr::Password,
            Self::Required => Acr::TwoFactor,
            Self::Passkey => Acr::PhishingResistant,
        }
    }
}

/// What an authorization request asks of the authentication: `acr_values` (OpenID Connect Core
/// §3.1.2.1, voluntary) or the `claims` parameter's `acr` (§5.5.1.1, voluntary or essential).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcrRequest {
    /// The values this server knows, in the request's order of preference. Unknown ones are
    /// dropped: a voluntary request for them is ignored, an essential one refused at `/authorize`.
    pub values: Vec<Acr>,
    /// Essential: the sign-in must meet it, as a policy would.
    pub essential: bool,
}

impl AcrRequest {
    /// `acr_values`: space-separated, voluntary. `None` when no value is one this server knows.
    pub fn from_acr_values(v: &str) -> Option<Self> {
        let values: Vec<Acr> = v.split(' ').filter_map(Acr::parse).collect();
        (!values.is_empty()).then_some(Self { values, essential: false })
    }

    /// The `claims` parameter's `{"id_token":{"acr":{"essential":…,"values":[…]}}}` (Core
    /// §5.5.1.1; `value` is a list of one). An essential request naming no value this server
    /// knows cannot be met: `unmet_authentication_requirements` (OpenID Connect Unmet
    /// Authentication Requirements 1.0), returned to the client rather than `access_denied`,
    /// since no user decided anything.
    pub fn from_claim(values: &[&str], essential: bool) -> Result<Option<Self>, latchkey_proto::OAuthError> {
        let known: Vec<Acr> = values.iter().filter_map(|v| Acr::parse(v)).collect();
        if known.is_empty() {
            if essential {
                return Err(latchkey_proto::OAuthError::new(
                    latchkey_proto::ErrorCode::UnmetAuthenticationRequirements,
                    "the essential acr values requested are none this server supports (see acr_values_supported)",
                ));
            }
            return Ok(None);
        }
        Ok(Some(Self { values: known, essential }))
    }

    /// The stricter of two requests (`acr_values` and the `claims` parameter): essential wins,
    /// and then its values.
    pub fn merge(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) if b.essential && !a.essential => Some(b),
            (Some(a), _) => Some(a),
            (None, b) => b,
        }
    }

    /// The weakest level the request accepts: any listed value satisfies the client, so a
    /// session already at one of them is not asked again.
    pub fn level(&self) -> Option<Acr> {
        self.values.iter().copied().min()
    }
}

/// The second factors a user has set up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enrolled {
    pub totp: bool,
    pub recovery_codes: u32,
    /// Registered passkeys (counted by the passkey store; 0 where there is none).
    pub passkeys: u32,
}

impl Enrolled {
    /// A factor of its own (recovery codes are a fallback for one, never a factor alone).
    pub fn any(&self) -> bool {
        self.totp || self.passkeys > 0
    }
    /// The highest level the user can reach with what they have.
    pub fn reachable(&self) -> Acr {
        if self.passkeys > 0 {
            Acr::PhishingResistant
        } else if self.totp {
            Acr::TwoFactor
        } else {
            Acr::Password
        }
    }
}

/// What a factor must be to be accepted at this step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub totp: bool,
    pub recovery_code: bool,
    pub passkey: bool,
}

/// What a sign-in needs after its first factor, or an existing session before it may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Next {
    /// Nothing more.
    Done,
    /// A second factor, one of those accepted; the result must reach `level`.
    Ask { level: Acr, accepted: Accepted },
    /// The user has no factor that reaches `level`, which is binding: set one up now (TOTP for
    /// [`Acr::TwoFactor`], a passkey for [`Acr::PhishingResistant`]).
    Enrol { level: Acr },
}

/// The one decision. `policy`: the stricter of the deployment's and the client's. `request`: the
/// request's own demand. `current`: the session's authentication when there is one (a step-up),
/// `None` for a sign-in whose password was just checked (its authentication is a password).
///
/// A person who set up a second factor is asked for it at every sign-in, whatever the policy: a
/// factor that is only sometimes needed protects nothing. An existing session is not asked again
/// unless the request needs more than it has.
pub fn decide(
    policy: SecondFactorPolicy,
    request: Option<&AcrRequest>,
    enrolled: &Enrolled,
    current: Option<&Authentication>,
) -> Next {
    let binding = match request {
        Some(r) if r.essential => policy.level().max(r.level().unwrap_or_default()),
        _ => policy.level(),
    };
    // A voluntary request is met as far as the user's factors allow; past that, the client gets
    // the `acr` there is and decides (Core §5.5.1.1).
    let voluntary = request.filter(|r| !r.essential).and_then(AcrRequest::level).unwrap_or_default();
    let level = binding.max(voluntary.min(enrolled.reachable()));
    if let Some(cur) = current
        && cur.acr() >= level
    {
        return Next::Done;
    }
    if level > enrolled.reachable() {
        return Next::Enrol { level };
    }
    if level == Acr::Password && (current.is_some() || !enrolled.any()) {
        return Next::Done;
    }
    let one_time = level <= Acr::TwoFactor;
    let accepted = Accepted {
        totp: one_time && enrolled.totp,
        recovery_code: one_time && enrolled.recovery_codes > 0 && enrolled.any(),
        passkey: enrolled.passkeys > 0,
    };
    // A person with factors always has one that reaches `level` here (`reachable` above).
    Next::Ask { level: level.max(Acr::TwoFactor), accepted }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSKEY_UV: Method = Method::Passkey { hardware: false, user_verified: true };
    const PASSKEY_UP: Method = Method::Passkey { hardware: true, user_verified: false };

    #[test]
    fn amr_and_acr_follow_the_factors() {
        let pwd = Authentication::of(&[Method::Password]);
        assert_eq!((pwd.amr_text().as_str(), pwd.acr()), ("pwd", Acr::Password));
        let otp = Authentication::of(&[Method::Password, Method::Totp]);
        assert_eq!((otp.amr_text().as_str(), otp.acr()), ("pwd otp mfa", Acr::TwoFactor));
        let rc = Authentication::of(&[Method::RecoveryCode, Method::Password]);
        assert_eq!((rc.amr_text().as_str(), rc.acr()), ("pwd otp mfa", Acr::TwoFactor));
        let pk = Authentication::of(&[PASSKEY_UV]);
        assert_eq!((pk.amr_text().as_str(), pk.acr()), ("swk mfa", Acr::PhishingResistant));
        let presence_only = Authentication::of(&[PASSKEY_UP]);
        assert_eq!((presence_only.amr_text().as_str(), presence_only.acr()), ("hwk", Acr::Password));
        let both = Authentication::of(&[Method::Password, PASSKEY_UP]);
        assert_eq!((both.amr_text().as_str(), both.acr()), ("pwd hwk mfa", Acr::PhishingResistant));
        assert_eq!(Authentication::default(), pwd);
    }

    #[test]
    fn a_step_up_adds_and_never_weakens() {
        let pwd = Authentication::default();
        assert_eq!(pwd.with(&[Method::Totp]), Authentication::of(&[Method::Password, Method::Totp]));
        let pk = Authentication::of(&[PASSKEY_UV]);
        let more = pk.with(&[Method::Totp]);
        assert_eq!(more.acr(), Acr::PhishingResistant, "user verification is not lost in the stored amr");
        assert!(more.amr().contains(&Amr::Mfa) && more.amr().contains(&Amr::Otp));
    }

    #[test]
    fn stored_form_round_trips_and_is_closed() {
        let a = Authentication::of(&[Method::Password, Method::Totp]);
        assert_eq!(Authentication::from_stored(&a.amr_text(), a.acr().as_str()), Ok(a));
        assert!(Authentication::from_stored("pwd face", "phr").is_err());
        assert!(Authentication::from_stored("pwd", "gold").is_err());
        for acr in Acr::ALL {
            assert_eq!(Acr::parse(acr.as_str()), Some(acr));
        }
    }

    #[test]
    fn acr_values_keep_known_values_and_accept_the_weakest() {
        let r = AcrRequest::from_acr_values("phr https://refeds.org/profile/mfa urn:unknown").unwrap();
        assert_eq!(r.values, vec![Acr::PhishingResistant, Acr::TwoFactor]);
        assert_eq!(r.level(), Some(Acr::TwoFactor));
        assert_eq!(AcrRequest::from_acr_values("urn:unknown gold"), None);
    }

    #[test]
    fn an_essential_acr_nobody_supports_is_unmet_and_essential_wins_a_merge() {
        let e = AcrRequest::from_claim(&["urn:gold"], true).unwrap_err();
        assert_eq!(e.code.as_str(), "unmet_authentication_requirements");
        assert_eq!(AcrRequest::from_claim(&["urn:gold"], false).unwrap(), None);
        let essential = AcrRequest::from_claim(&["phr"], true).unwrap();
        assert_eq!(essential, Some(AcrRequest { values: vec![Acr::PhishingResistant], essential: true }));
        let voluntary = AcrRequest::from_acr_values(Acr::TwoFactor.as_str());
        assert_eq!(AcrRequest::merge(voluntary.clone(), essential.clone()), essential);
        assert_eq!(AcrRequest::merge(voluntary.clone(), None), voluntary);
    }

    fn totp() -> Enrolled {
        Enrolled { totp: true, recovery_codes: 10, passkeys: 0 }
    }
    const ONE_TIME: Accepted = Accepted { totp: true, recovery_code: true, passkey: false };
    const MFA: Option<&AcrRequest> = None;

    #[test]
    fn enrolled_users_are_always_asked_at_sign_in_and_nobody_else_is() {
        let none = Enrolled::default();
        assert_eq!(decide(SecondFactorPolicy::Optional, MFA, &none, None), Next::Done);
        assert_eq!(
            decide(SecondFactorPolicy::Optional, MFA, &totp(), None),
            Next::Ask { level: Acr::TwoFactor, accepted: ONE_TIME }
        );
        // Recovery codes alone are no factor (left over after the factor was removed).
        let stale = Enrolled { recovery_codes: 3, ..none };
        assert_eq!(decide(SecondFactorPolicy::Optional, MFA, &stale, None), Next::Done);
    }

    #[test]
    fn a_binding_policy_leads_to_enrolment_never_through() {
        let none = Enrolled::default();
        assert_eq!(decide(SecondFactorPolicy::Required, MFA, &none, None), Next::Enrol { level: Acr::TwoFactor });
        assert_eq!(
            decide(SecondFactorPolicy::Passkey, MFA, &totp(), None),
            Next::Enrol { level: Acr::PhishingResistant },
            "a TOTP app does not meet a passkey policy"
        );
        let pk = Enrolled { passkeys: 1, ..totp() };
        assert_eq!(
            decide(SecondFactorPolicy::Passkey, MFA, &pk, None),
            Next::Ask {
                level: Acr::PhishingResistant,
                accepted: Accepted { totp: false, recovery_code: false, passkey: true }
            }
        );
    }

    #[test]
    fn sessions_step_up_only_when_the_request_needs_more() {
        let pwd = Authentication::default();
        let two = Authentication::of(&[Method::Password, Method::Totp]);
        let mfa = AcrRequest::from_acr_values(Acr::TwoFactor.as_str());
        let opt = SecondFactorPolicy::Optional;
        assert_eq!(decide(opt, None, &totp(), Some(&pwd)), Next::Done, "enrolled after the session began");
        assert_eq!(
            decide(opt, mfa.as_ref(), &totp(), Some(&pwd)),
            Next::Ask { level: Acr::TwoFactor, accepted: ONE_TIME }
        );
        assert_eq!(decide(opt, mfa.as_ref(), &totp(), Some(&two)), Next::Done);
        assert_eq!(
            decide(SecondFactorPolicy::Required, None, &Enrolled::default(), Some(&pwd)),
            Next::Enrol { level: Acr::TwoFactor },
            "a client that requires a second factor is not served by a password session"
        );
        // Voluntary and out of reach: the client gets what there is. Essential: enrolment.
        assert_eq!(decide(opt, mfa.as_ref(), &Enrolled::default(), Some(&pwd)), Next::Done);
        let essential = AcrRequest { values: vec![Acr::TwoFactor], essential: true };
        assert_eq!(
            decide(opt, Some(&essential), &Enrolled::default(), Some(&pwd)),
            Next::Enrol { level: Acr::TwoFactor }
        );
    }

    #[test]
    fn policies_order_by_strictness() {
        assert!(SecondFactorPolicy::Optional < SecondFactorPolicy::Required);
        assert!(SecondFactorPolicy::Required < SecondFactorPolicy::Passkey);
        assert_eq!(SecondFactorPolicy::parse("required"), Some(SecondFactorPolicy::Required));
        assert_eq!(SecondFactorPolicy::parse("sometimes"), None);
    }
}
