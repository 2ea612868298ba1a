//! A user's profile: the standard claims of OpenID Connect Core §5.1, what each may hold, and how
//! a person (the account page) or an administrator (`latchkey user set`) changes them.
//!
//! Every value is checked before it is stored, since relying parties put these claims in pages,
//! links and images: URLs must be https (a `javascript:` or plain-http picture would be an RP's
//! XSS or mixed content), dates and zone names keep their defined shapes, and every length is
//! bounded, so an id_token carrying the profile stays small.
//!
//! An edit names the fields it changes; an empty value clears a field.
//!
//! The email address: on the account page, with mail configured, a new address takes effect only
//! when the link mailed to it is followed ([`crate::verification`]): a hijacked session cannot
//! move the account's mail, and so its password resets, elsewhere. Without mail (nothing can be
//! reset by mail then), and for an administrator (`latchkey user set --email`), the new address is
//! stored at once, unverified unless the administrator states otherwise; the store decides that
//! in the same statement that writes it ([`crate::account_store::AccountStore::update_profile`]),
//! so a verification racing with the change cannot mark the new address verified.

use latchkey_proto::OAuthError;
use serde::{Deserialize, Serialize};

use crate::account_store::ProfileUpdate;
use crate::store::UserRecord;
use crate::{Error, Provider, UnixTime, audit};

/// The §5.1 claims a user record holds besides the ones it had before (name, email, phone number,
/// address: columns of their own). Absent claims are `None` and are never released.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    /// Released as `preferred_username`; the username when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// The `profile` claim: the URL of the user's profile page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    /// `YYYY-MM-DD`, `YYYY`, or `0000-MM-DD` (year withheld), Core §5.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthdate: Option<String>,
    /// An IANA time zone name, such as `Europe/Paris`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zoneinfo: Option<String>,
    /// A BCP 47 language tag, such as `fr-CA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

/// A field a person or an administrator may edit. The wire name is the claim's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    Name,
    GivenName,
    FamilyName,
    MiddleName,
    Nickname,
    PreferredUsername,
    Email,
    PhoneNumber,
    Address,
    Profile,
    Picture,
    Website,
    Gender,
    Birthdate,
    Zoneinfo,
    Locale,
}

/// What a value must look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// One line of text up to this many characters.
    Text(usize),
    /// Text that may span lines (a postal address), up to this many characters.
    Lines(usize),
    HttpsUrl,
    Email,
    Phone,
    Birthdate,
    Zoneinfo,
    Locale,
    /// One word: no spaces.
    Word(usize),
}

impl Field {
    /// In the order the profile form shows them.
    pub const ALL: [Field; 16] = [
        Field::Name,
        Field::GivenName,
        Field::MiddleName,
        Field::FamilyName,
        Field::Nickname,
        Field::PreferredUsername,
        Field::Email,
        Field::PhoneNumber,
        Field::Address,
        Field::Website,
        Field::Profile,
        Field::Picture,
        Field::Gender,
        Field::Birthdate,
        Field::Zoneinfo,
        Field::Locale,
    ];

    /// The claim's name, which is also the form field's.
    pub fn claim(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::GivenName => "given_name",
            Self::FamilyName => "family_name",
            Self::MiddleName => "middle_name",
            Self::Nickname => "nickname",
            Self::PreferredUsername => "preferred_username",
            Self::Email => "email",
            Self::PhoneNumber => "phone_number",
            Self::Address => "address",
            Self::Profile => "profile",
            Self::Picture => "picture",
            Self::Website => "website",
            Self::Gender => "gender",
            Self::Birthdate => "birthdate",
            Self::Zoneinfo => "zoneinfo",
            Self::Locale => "locale",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.claim() == name)
    }

    /// What a person reads next to the field.
    pub fn label(self) -> &'static str {
        match self {
            Self::Name => "Full name",
            Self::GivenName => "Given name",
            Self::FamilyName => "Family name",
            Self::MiddleName => "Middle name",
            Self::Nickname => "Nickname",
            Self::PreferredUsername => "Preferred username",
            Self::Email => "Email",
            Self::PhoneNumber => "Phone number",
            Self::Address => "Postal address",
            Self::Profile => "Profile page",
            Self::Picture => "Picture",
            Self::Website => "Website",
            Self::Gender => "Gender",
            Self::Birthdate => "Birthdate",
            Self::Zoneinfo => "Time zone",
            Self::Locale => "Language",
        }
    }

    /// A hint shown under the field: the shape a value must have.
    pub fn hint(self) -> Option<&'static str> {
        match self.kind() {
            Kind::HttpsUrl => Some("An https:// address."),
            Kind::Birthdate => Some("YYYY-MM-DD, or just the year (YYYY)."),
            Kind::Zoneinfo => Some("An IANA time zone, such as Europe/Paris."),
            Kind::Locale => Some("A language tag, such as en-US or fr."),
            Kind::Phone => Some("International format, such as +1 555 0100."),
            _ => None,
        }
    }

    fn kind(self) -> Kind {
        match self {
            Self::Name => Kind::Text(200),
            Self::GivenName | Self::FamilyName | Self::MiddleName | Self::Nickname => Kind::Text(100),
            Self::PreferredUsername => Kind::Word(64),
            Self::Email => Kind::Email,
            Self::PhoneNumber => Kind::Phone,
            Self::Address => Kind::Lines(300),
            Self::Profile | Self::Picture | Self::Website => Kind::HttpsUrl,
            Self::Gender => Kind::Text(50),
            Self::Birthdate => Kind::Birthdate,
            Self::Zoneinfo => Kind::Zoneinfo,
            Self::Locale => Kind::Locale,
        }
    }

    /// The current value of this field in `u` (empty when unset).
    pub fn value(self, u: &UserRecord) -> &str {
        let p = &u.profile;
        let v = match self {
            Self::Email => return &u.email,
            Self::Name => &u.name,
            Self::PhoneNumber => &u.phone_number,
            Self::Address => &u.address,
            Self::GivenName => &p.given_name,
            Self::FamilyName => &p.family_name,
            Self::MiddleName => &p.middle_name,
            Self::Nickname => &p.nickname,
            Self::PreferredUsername => &p.preferred_username,
            Self::Profile => &p.profile,
            Self::Picture => &p.picture,
            Self::Website => &p.website,
            Self::Gender => &p.gender,
            Self::Birthdate => &p.birthdate,
            Self::Zoneinfo => &p.zoneinfo,
            Self::Locale => &p.locale,
        };
        v.as_deref().unwrap_or("")
    }

    /// The slot of an optional field in a user record (`None` for the email, which is required).
    fn slot(self, u: &mut UserRecord) -> Option<&mut Option<String>> {
        let p = &mut u.profile;
        Some(match self {
            Self::Email => return None,
            Self::Name => &mut u.name,
            Self::PhoneNumber => &mut u.phone_number,
            Self::Address => &mut u.address,
            Self::GivenName => &mut p.given_name,
            Self::FamilyName => &mut p.family_name,
            Self::MiddleName => &mut p.middle_name,
            Self::Nickname => &mut p.nickname,
            Self::PreferredUsername => &mut p.preferred_username,
            Self::Profile => &mut p.profile,
            Self::Picture => &mut p.picture,
            Self::Website => &mut p.website,
            Self::Gender => &mut p.gender,
            Self::Birthdate => &mut p.birthdate,
            Self::Zoneinfo => &mut p.zoneinfo,
            Self::Locale => &mut p.locale,
        })
    }

    /// Checks and normalises (trims; URLs as the URL parser writes them; address lines joined by
    /// `\n`) one value. An empty value clears the field, except the email, which every user has.
    pub fn check(self, raw: &str) -> Result<Option<String>, String> {
        let v = raw.trim();
        if v.is_empty() {
            return if self == Self::Email { Err("An email address is required.".into()) } else { Ok(None) };
        }
        let max_chars = |max: usize| {
            if v.chars().count() > max { Err(format!("Use at most {max} characters.")) } else { Ok(()) }
        };
        match self.kind() {
            Kind::Text(max) => {
                if v.chars().any(char::is_control) {
                    return Err("Use one line of text.".into());
                }
                max_chars(max)?;
            }
            Kind::Lines(max) => {
                if v.chars().any(|c| c.is_control() && c != '\n' && c != '\r') {
                    return Err("Use plain text.".into());
                }
                max_chars(max)?;
                // OpenID Connect Core §5.1.1: the lines of a formatted address are separated by
                // CRLF or LF; one form keeps comparisons and lengths stable.
                let lines: Vec<&str> = v.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
                return Ok(Some(lines.join("\n")));
            }
            Kind::Word(max) => {
                if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err("Use no spaces.".into());
                }
                max_chars(max)?;
            }
            Kind::Email => check_email(v)?,
            Kind::Phone => check_phone(v)?,
            Kind::HttpsUrl => return check_https_url(v).map(Some),
            Kind::Birthdate => check_birthdate(v)?,
            Kind::Zoneinfo => check_zoneinfo(v)?,
            Kind::Locale => return check_locale(v).map(Some),
        }
        Ok(Some(v.to_owned()))
    }
}

fn check_email(v: &str) -> Result<(), String> {
    let bad = || Err("Enter an email address, such as name@example.com.".to_owned());
    let Some((local, domain)) = v.rsplit_once('@') else { return bad() };
    if v.len() > 254 || local.is_empty() || local.len() > 64 || domain.len() < 3 || !domain.contains('.') {
        return bad();
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return bad();
    }
    Ok(())
}

/// E.164 is recommended (Core §5.1): a `+`, digits, and the separators people type; an extension
/// as RFC 3966's `;ext=`.
fn check_phone(v: &str) -> Result<(), String> {
    let bad = || Err("Enter a phone number in international format, such as +1 555 0100.".to_owned());
    let (number, ext) = match v.split_once(";ext=") {
        Some((n, e)) => (n, Some(e)),
        None => (v, None),
    };
    let Some(rest) = number.strip_prefix('+') else { return bad() };
    let digits = rest.chars().filter(char::is_ascii_digit).count();
    if v.len() > 32 || !(4..=15).contains(&digits) || !rest.chars().all(|c| c.is_ascii_digit() || " -.()".contains(c)) {
        return bad();
    }
    if ext.is_some_and(|e| e.is_empty() || !e.chars().all(|c| c.is_ascii_digit())) {
        return bad();
    }
    Ok(())
}

/// An absolute https URL with a host and no credentials, at most 512 bytes, as the URL parser
/// writes it (what a browser would request).
fn check_https_url(v: &str) -> Result<String, String> {
    let bad = || "Enter an https:// address.".to_owned();
    let too_long = || "Use an address of at most 512 characters.".to_owned();
    if v.len() > 512 {
        return Err(too_long());
    }
    let u = url::Url::parse(v).map_err(|_| bad())?;
    if u.scheme() != "https" || u.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("Leave the user name and password out of the address.".into());
    }
    let s: String = u.into();
    if s.len() > 512 {
        return Err(too_long());
    }
    Ok(s)
}

/// Core §5.1: ISO 8601 `YYYY-MM-DD`, or `YYYY` alone; the year `0000` means it is withheld.
fn check_birthdate(v: &str) -> Result<(), String> {
    let bad = || Err("Use YYYY-MM-DD, or just the year as YYYY.".to_owned());
    let num = |s: &str| if s.bytes().all(|b| b.is_ascii_digit()) { s.parse::<u32>().ok() } else { None };
    match v.len() {
        4 => match num(v) {
            Some(y) if y > 0 => Ok(()),
            _ => bad(),
        },
        10 if v.as_bytes()[4] == b'-' && v.as_bytes()[7] == b'-' => {
            let (Some(y), Some(m), Some(d)) = (num(&v[..4]), num(&v[5..7]), num(&v[8..])) else { return bad() };
            // With the year withheld, 29 February is a birthday like any other.
            let leap = y == 0 || (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0));
            let days = match m {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                2 if leap => 29,
                2 => 28,
                _ => return Err("The month must be 01 to 12.".into()),
            };
            if d == 0 || d > days {
                return Err("That day does not exist in that month.".into());
            }
            Ok(())
        }
        _ => bad(),
    }
}

/// The shape of an IANA time zone name: `UTC`, `Europe/Paris`, `America/Argentina/Salta`; each
/// part starts with a letter and has letters, digits, `_`, `-` or `+`.
fn check_zoneinfo(v: &str) -> Result<(), String> {
    let part_ok = |p: &str| {
        (1..=30).contains(&p.len())
            && p.starts_with(|c: char| c.is_ascii_alphabetic())
            && p.chars().all(|c| c.is_ascii_alphanumeric() || "_-+".contains(c))
    };
    let parts: Vec<&str> = v.split('/').collect();
    if v.len() > 64 || parts.len() > 3 || !parts.iter().all(|p| part_ok(p)) {
        return Err("Enter a time zone name such as Europe/Paris or America/New_York.".into());
    }
    Ok(())
}

/// The shape of a BCP 47 language tag (RFC 5646 §2.1): an ISO 639 language of 2-3 letters (the
/// 5-8 letter form is reserved for registrations that do not exist, and catches "english"), then
/// subtags of 1-8 letters or digits. `_` is accepted and written as `-` (Core §5.1 notes that
/// some systems use it).
fn check_locale(v: &str) -> Result<String, String> {
    let tag = v.replace('_', "-");
    let mut parts = tag.split('-');
    let lang_ok =
        parts.next().is_some_and(|l| (2..=3).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphabetic()));
    let rest_ok = parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if tag.len() > 35 || !lang_ok || !rest_ok {
        return Err("Enter a language tag such as en, en-US or pt-BR.".into());
    }
    Ok(tag)
}

/// Field-by-field problems with an edit, in form order: what the page shows next to each field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<(Field, String)>);

impl FieldErrors {
    pub fn get(&self, f: Field) -> Option<&str> {
        self.0.iter().find(|(g, _)| *g == f).map(|(_, m)| m.as_str())
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, m)| format!("{}: {m}", k.claim())).collect();
        f.write_str(&parts.join("; "))
    }
}

/// Who changes a profile, for the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Editor {
    /// The user, on the account page.
    User,
    /// An administrator (`latchkey user set`).
    Admin,
}

/// An edit: the fields it sets (an empty value clears one). For the account page every field of
/// the form; for `latchkey user set` only the options given.
#[derive(Clone, Debug, Default)]
pub struct ProfileEdit {
    pub values: Vec<(Field, String)>,
    /// An administrator may state whether the (new or current) email address is verified.
    pub email_verified: Option<bool>,
}

/// What an edit did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EditOutcome {
    /// Stored; the claims that changed (empty: nothing did, and nothing was written), and what
    /// became of a new email address.
    Saved { changed: Vec<Field>, email: EmailChange },
    /// Nothing stored: what is wrong, field by field.
    Invalid(FieldErrors),
}

/// What became of a new email address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailChange {
    /// The address did not change.
    None,
    /// Stored now, unverified (no mail configured, or an administrator's change).
    StoredUnverified,
    /// Stored now as verified (an administrator vouched for it).
    StoredVerified,
    /// A link went to the new address; the address changes when it is followed.
    LinkSent,
}

/// Applies `edit` to a copy of `user`: the record to store and the fields that changed, or what
/// is wrong, field by field. Pure.
pub fn apply(user: &UserRecord, edit: &ProfileEdit) -> Result<(UserRecord, Vec<Field>), FieldErrors> {
    let mut next = user.clone();
    let mut errors = Vec::new();
    let mut changed = Vec::new();
    for f in Field::ALL {
        let Some((_, raw)) = edit.values.iter().rev().find(|(g, _)| *g == f) else { continue };
        match f.check(raw) {
            Err(m) => errors.push((f, m)),
            Ok(v) if v.as_deref().unwrap_or("") == f.value(user) => {}
            Ok(v) => {
                changed.push(f);
                match f.slot(&mut next) {
                    Some(slot) => *slot = v,
                    None => next.email = v.unwrap_or_default(),
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(FieldErrors(errors));
    }
    Ok((next, changed))
}

impl Provider {
    /// The account page's profile form (see [`edit_profile`]). With mail configured a new email
    /// address is not stored but sent a verification link (the module documentation says why);
    /// a refused request (throttled, mail unavailable) refuses the whole edit, so nothing is lost.
    pub async fn edit_profile(
        &self,
        user_id: &str,
        edit: &ProfileEdit,
        ip: Option<std::net::IpAddr>,
        now: UnixTime,
    ) -> Result<EditOutcome, Error> {
        if !self.config.email.enabled {
            return edit_profile(self.store.as_ref(), user_id, edit, Editor::User, ip, now).await;
        }
        let Some(user) = self.store.user(user_id).await? else {
            return Err(OAuthError::invalid_request("no such user").into());
        };
        if let Err(e) = apply(&user, edit) {
            return Ok(EditOutcome::Invalid(e));
        }
        let new_email = edit
            .values
            .iter()
            .rev()
            .find(|(f, _)| *f == Field::Email)
            .and_then(|(_, raw)| Field::Email.check(raw).ok().flatten())
            .filter(|e| *e != user.email);
        let mut email = EmailChange::None;
        if let Some(address) = &new_email {
            use crate::verification::ChangeRequested as C;
            let refused = |m: String| Ok(EditOutcome::Invalid(FieldErrors(vec![(Field::Email, m)])));
            match self.request_email_change(user_id, address, now).await? {
                C::Sent => email = EmailChange::LinkSent,
                C::Unchanged => {}
                C::InvalidAddress => return refused("Enter an email address, such as name@example.com.".into()),
                C::Throttled { retry_after } => {
                    let minutes = retry_after.div_ceil(60);
                    return refused(format!("Too many address changes. Try again in {minutes} min."));
                }
                C::Unavailable => {
                    return refused(
                        "The address cannot be changed right now: mail cannot be sent. Try again later.".into(),
                    );
                }
                C::NoSuchUser => return Err(OAuthError::invalid_request("no such user").into()),
            }
        }
        // The rest of the form; the address changes when its link is followed.
        let rest = ProfileEdit {
            values: edit.values.iter().filter(|(f, _)| *f != Field::Email).cloned().collect(),
            email_verified: None,
        };
        Ok(match edit_profile(self.store.as_ref(), user_id, &rest, Editor::User, ip, now).await? {
            EditOutcome::Saved { changed, .. } => EditOutcome::Saved { changed, email },
            invalid => invalid,
        })
    }
}

/// Validates and stores `edit` for user `user_id`; `updated_at` becomes `now` when anything
/// changed (Core §5.1). Audited with the names of the changed claims, never their values.
pub async fn edit_profile(
    store: &dyn crate::Store,
    user_id: &str,
    edit: &ProfileEdit,
    editor: Editor,
    ip: Option<std::net::IpAddr>,
    now: UnixTime,
) -> Result<EditOutcome, Error> {
    let Some(user) = store.user(user_id).await? else {
        return Err(OAuthError::invalid_request("no such user").into());
    };
    let (next, changed) = match apply(&user, edit) {
        Ok(x) => x,
        Err(e) => return Ok(EditOutcome::Invalid(e)),
    };
    let verified_change = edit.email_verified.is_some_and(|v| v != user.email_verified);
    if changed.is_empty() && !verified_change {
        return Ok(EditOutcome::Saved { changed, email: EmailChange::None });
    }
    let update = ProfileUpdate {
        name: next.name.clone(),
        email: next.email.clone(),
        email_verified: edit.email_verified,
        phone_number: next.phone_number.clone(),
        address: next.address.clone(),
        profile: next.profile.clone(),
    };
    if !store.update_profile(&user.id, &update, now).await? {
        return Err(OAuthError::invalid_request("no such user").into());
    }
    // Stored now: unverified (the store clears `email_verified` when the address changes) unless
    // an administrator states it is verified (`latchkey user set --email-verified true`).
    let email = match (changed.contains(&Field::Email), edit.email_verified) {
        (false, _) => EmailChange::None,
        (true, Some(true)) => EmailChange::StoredVerified,
        (true, _) => EmailChange::StoredUnverified,
    };
    let e = audit::Event {
        user_id: Some(&user.id),
        ip,
        detail: Some(serde_json::json!({
            "by": match editor { Editor::User => "user", Editor::Admin => "admin" },
            "claims": changed.iter().map(|f| f.claim()).collect::<Vec<_>>(),
            "email_verified": edit.email_verified,
        })),
        ..Default::default()
    };
    audit::record(store, now, "profile_updated", e).await;
    Ok(EditOutcome::Saved { changed, email })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn user() -> UserRecord {
        UserRecord {
            id: "u1".into(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            email_verified: true,
            name: Some("Alice".into()),
            password_hash: "x".into(),
            created_at: 0,
            phone_number: None,
            address: None,
            profile: Profile::default(),
            updated_at: 0,
            locked_at: None,
        }
    }

    fn edit(pairs: &[(Field, &str)]) -> ProfileEdit {
        ProfileEdit { values: pairs.iter().map(|(f, v)| (*f, (*v).to_owned())).collect(), email_verified: None }
    }

    #[test]
    fn good_values_are_stored_normalised() {
        let (next, changed) = apply(
            &user(),
            &edit(&[
                (Field::GivenName, "  Alice "),
                (Field::Website, "https://alice.example"),
                (Field::Birthdate, "1990-02-28"),
                (Field::Zoneinfo, "America/Argentina/Salta"),
                (Field::Locale, "pt_BR"),
                (Field::PhoneNumber, "+1 (555) 010-0100;ext=42"),
                (Field::Address, "1 Main St\r\n\r\n Springfield "),
                (Field::Name, "Alice"),
            ]),
        )
        .unwrap();
        assert_eq!(next.profile.given_name.as_deref(), Some("Alice"));
        assert_eq!(next.profile.website.as_deref(), Some("https://alice.example/"));
        assert_eq!(next.profile.locale.as_deref(), Some("pt-BR"));
        assert_eq!(next.address.as_deref(), Some("1 Main St\nSpringfield"));
        assert!(!changed.contains(&Field::Name), "an unchanged value is not a change");
        assert_eq!(changed.len(), 7);
    }

    #[test]
    fn empty_clears_except_the_email() {
        let mut u = user();
        u.profile.nickname = Some("Al".into());
        let (next, changed) = apply(&u, &edit(&[(Field::Nickname, ""), (Field::Name, " ")])).unwrap();
        assert_eq!(next.profile.nickname, None);
        assert_eq!(next.name, None);
        assert_eq!(changed, vec![Field::Name, Field::Nickname]);
        let e = apply(&u, &edit(&[(Field::Email, "")])).unwrap_err();
        assert!(e.get(Field::Email).is_some());
    }

    #[test]
    fn each_bad_value_is_named_next_to_its_field() {
        for (f, v) in [
            (Field::Picture, "http://alice.example/a.png"),
            (Field::Picture, "javascript:alert(1)"),
            (Field::Website, "https://user:pw@alice.example/"),
            (Field::Profile, "alice.example"),
            (Field::Birthdate, "1990-02-30"),
            (Field::Birthdate, "1990-13-01"),
            (Field::Birthdate, "90-01-01"),
            (Field::Birthdate, "2023-02-29"),
            (Field::Zoneinfo, "Europe Paris"),
            (Field::Zoneinfo, "../etc/passwd"),
            (Field::Locale, "english"),
            (Field::Locale, "en-US-"),
            (Field::Email, "alice"),
            (Field::Email, "a@b"),
            (Field::PhoneNumber, "555-0100"),
            (Field::PhoneNumber, "+1 555 0100;ext=x"),
            (Field::PreferredUsername, "al ice"),
            (Field::GivenName, "Al\u{0}ice"),
        ] {
            let e = apply(&user(), &edit(&[(f, v)])).unwrap_err();
            assert!(e.get(f).is_some(), "{f:?} {v:?}");
            assert_eq!(e.0.len(), 1);
        }
        let long = "x".repeat(101);
        assert!(apply(&user(), &edit(&[(Field::GivenName, &long)])).is_err());
        let long_url = format!("https://a.example/{}", "x".repeat(500));
        assert!(apply(&user(), &edit(&[(Field::Picture, &long_url)])).is_err());
    }

    #[test]
    fn shapes_the_spec_allows() {
        for ok in ["1990", "0000-03-15", "2024-02-29", "2000-02-29", "0000-02-29"] {
            assert!(check_birthdate(ok).is_ok(), "{ok}");
        }
        for bad in ["1900-02-29", "0000", "1990-1-1", "1990-01-01T00:00"] {
            assert!(check_birthdate(bad).is_err(), "{bad}");
        }
        for ok in ["UTC", "Europe/Paris", "Etc/GMT+5", "America/Port-au-Prince"] {
            assert!(check_zoneinfo(ok).is_ok(), "{ok}");
        }
        for ok in ["en", "fr-CA", "zh-Hant-TW", "es-419"] {
            assert!(check_locale(ok).is_ok(), "{ok}");
        }
    }
}
