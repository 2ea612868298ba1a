//! The account pages' templates (`account_*.html`, each extending `account_layout.html`) and what
//! they show. Values reach the templates as plain text; the engine escapes every one of them.

use askama::Template;
use latchkey_core::account::activity::{ActivityItem, utc};
use latchkey_core::account::apps::AppView;
use latchkey_core::profile::{Field, FieldErrors};
use latchkey_core::store::{SessionRecord, UserRecord};

/// One field of the profile form.
pub struct FieldView {
    /// The claim's name, the input's `name`; its id is `f-NAME`.
    pub name: &'static str,
    pub label: &'static str,
    pub value: String,
    pub hint: Option<&'static str>,
    pub error: Option<String>,
    /// `text`, `email`, `url`, `tel`, or `textarea`.
    pub kind: &'static str,
    pub autocomplete: &'static str,
    pub required: bool,
}

pub struct Group {
    pub legend: &'static str,
    pub fields: Vec<FieldView>,
}

/// The form's sections, in order.
const GROUPS: [(&str, &[Field]); 3] = [
    (
        "Name",
        &[
            Field::Name,
            Field::GivenName,
            Field::MiddleName,
            Field::FamilyName,
            Field::Nickname,
            Field::PreferredUsername,
        ],
    ),
    ("Contact", &[Field::Email, Field::PhoneNumber, Field::Address]),
    (
        "About you",
        &[
            Field::Website,
            Field::Profile,
            Field::Picture,
            Field::Gender,
            Field::Birthdate,
            Field::Zoneinfo,
            Field::Locale,
        ],
    ),
];

fn input_kind(f: Field) -> &'static str {
    match f {
        Field::Email => "email",
        Field::Website | Field::Profile | Field::Picture => "url",
        Field::PhoneNumber => "tel",
        Field::Address => "textarea",
        _ => "text",
    }
}

/// HTML autofill tokens (WHATWG "autofill"), so browsers and password managers fill the form.
fn autocomplete(f: Field) -> &'static str {
    match f {
        Field::Name => "name",
        Field::GivenName => "given-name",
        Field::MiddleName => "additional-name",
        Field::FamilyName => "family-name",
        Field::Nickname => "nickname",
        Field::PreferredUsername => "username",
        Field::Email => "email",
        Field::PhoneNumber => "tel",
        Field::Address => "street-address",
        Field::Website | Field::Profile => "url",
        Field::Picture => "photo",
        Field::Gender => "sex",
        Field::Birthdate => "bday",
        Field::Locale => "language",
        Field::Zoneinfo => "off",
    }
}

/// The profile form's groups: `entered` values (after a refused edit: what the person typed, so
/// nothing is lost) or the user's current ones.
pub fn profile_groups(user: &UserRecord, entered: Option<&[(Field, String)]>, errors: &FieldErrors) -> Vec<Group> {
    GROUPS
        .iter()
        .map(|(legend, fields)| Group {
            legend,
            fields: fields
                .iter()
                .map(|&f| FieldView {
                    name: f.claim(),
                    label: f.label(),
                    value: match entered {
                        Some(e) => e.iter().find(|(g, _)| *g == f).map(|(_, v)| v.clone()).unwrap_or_default(),
                        None => f.value(user).to_owned(),
                    },
                    hint: f.hint(),
                    error: errors.get(f).map(str::to_owned),
                    kind: input_kind(f),
                    autocomplete: autocomplete(f),
                    required: f == Field::Email,
                })
                .collect(),
        })
        .collect()
}

/// `/account`: who is signed in, and their profile form.
#[derive(Template)]
#[template(path = "account.html")]
pub struct ProfilePage<'a> {
    pub section: &'static str,
    pub username: &'a str,
    pub email_verified: bool,
    pub updated: String,
    pub csrf: &'a str,
    pub groups: Vec<Group>,
    /// The refused fields, for the summary at the top: (input id, label, message).
    pub problems: Vec<(String, &'static str, String)>,
    pub notice: Option<&'static str>,
}

impl<'a> ProfilePage<'a> {
    pub fn new(
        user: &'a UserRecord,
        csrf: &'a str,
        entered: Option<&[(Field, String)]>,
        errors: &FieldErrors,
        notice: Option<&'static str>,
    ) -> Self {
        let problems = errors.0.iter().map(|(f, m)| (format!("f-{}", f.claim()), f.label(), m.clone())).collect();
        Self {
            section: "profile",
            username: &user.username,
            email_verified: user.email_verified,
            updated: utc(user.updated_at),
            csrf,
            groups: profile_groups(user, entered, errors),
            problems,
            notice,
        }
    }
}

/// `/account/password`.
#[derive(Template)]
#[template(path = "account_password.html")]
pub struct PasswordPage<'a> {
    pub section: &'static str,
    pub username: &'a str,
    pub csrf: &'a str,
    /// The current password is wrong (or too many attempts).
    pub current_error: Option<String>,
    /// The new password is refused.
    pub new_error: Option<String>,
    pub notice: Option<&'static str>,
}

/// One session in the list.
pub struct SessionView {
    pub sid: String,
    pub current: bool,
    pub device: String,
    pub network: String,
    pub signed_in: String,
    pub expires: String,
}

impl SessionView {
    pub fn of(s: &SessionRecord, current_sid: &str) -> Self {
        Self {
            sid: s.sid.clone(),
            current: s.sid == current_sid,
            device: s.meta.device.clone().unwrap_or_else(|| "Unknown browser".into()),
            network: s.meta.network.clone().unwrap_or_else(|| "unknown network".into()),
            signed_in: utc(s.auth_time),
            expires: utc(s.expires_at),
        }
    }
}

/// `/account/sessions`.
#[derive(Template)]
#[template(path = "account_sessions.html")]
pub struct SessionsPage<'a> {
    pub section: &'static str,
    pub csrf: &'a str,
    pub sessions: Vec<SessionView>,
    pub others: usize,
    pub notice: Option<String>,
}

/// One application in the list.
pub struct AppItem {
    pub client_id: String,
    pub name: String,
    pub vetted: bool,
    /// What it may do, in words.
    pub access: Vec<String>,
    pub allowed: Option<String>,
    pub last_used: Option<String>,
    pub live_grants: u64,
}

impl AppItem {
    pub fn of(a: &AppView) -> Self {
        let mut access: Vec<String> = a.allowed.union(&a.granted).iter().map(crate::pages::describe_scope).collect();
        access.extend(a.claims.iter().map(|c| latchkey_core::claims::describe(c)));
        Self {
            client_id: a.client_id.to_string(),
            name: a.name.clone(),
            vetted: a.vetted,
            access,
            allowed: a.allowed_at.map(utc),
            last_used: a.last_used.map(utc),
            live_grants: a.live_grants,
        }
    }
}

/// `/account/apps`.
#[derive(Template)]
#[template(path = "account_apps.html")]
pub struct AppsPage<'a> {
    pub section: &'static str,
    pub csrf: &'a str,
    pub apps: Vec<AppItem>,
    pub notice: Option<&'static str>,
}

/// One event in the list.
pub struct EventView {
    pub when: String,
    pub what: String,
    pub network: String,
    pub warning: bool,
}

impl EventView {
    pub fn of(e: &ActivityItem) -> Self {
        Self {
            when: utc(e.at),
            what: e.what.clone(),
            network: e.network.clone().unwrap_or_else(|| "—".into()),
            warning: e.warning,
        }
    }
}

/// `/account/activity`.
#[derive(Template)]
#[template(path = "account_activity.html")]
pub struct ActivityPage {
    pub section: &'static str,
    pub events: Vec<EventView>,
}
