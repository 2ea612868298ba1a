//! The pages of the email flows: password reset, address verification, sign-up. One askama
//! template per page (extending `layout.html`), plus `message.html` for the one-paragraph answers.

use askama::Template;
use latchkey_core::signup::SignupField;

use crate::pages::Link;

#[derive(Template)]
#[template(path = "reset_request.html")]
pub struct ResetRequest<'a> {
    pub csrf: &'a str,
    pub email: &'a str,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "reset_form.html")]
pub struct ResetForm<'a> {
    pub csrf: &'a str,
    pub token: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "verify.html")]
pub struct Verify<'a> {
    pub csrf: &'a str,
    pub token: &'a str,
    pub email: &'a str,
}

#[derive(Template)]
#[template(path = "signup.html")]
pub struct Signup<'a> {
    pub csrf: &'a str,
    pub username: &'a str,
    pub email: &'a str,
    /// The invitation's token, carried to the POST.
    pub invitation: Option<&'a str>,
    /// A refusal, and the field it is about.
    pub error: Option<(SignupField, &'a str)>,
}

impl Signup<'_> {
    /// The refusal's message when it is about the field with the id `field`: it is shown right
    /// after that field, which is marked invalid and described by it.
    pub fn error_for(&self, field: &str) -> Option<&str> {
        let (f, why) = self.error?;
        let id = match f {
            SignupField::Username => "username",
            SignupField::Email => "email",
            SignupField::Password => "password",
        };
        (id == field).then_some(why)
    }
}

/// A page that only says something (and may offer one way on).
#[derive(Template)]
#[template(path = "message.html")]
pub struct Message<'a> {
    pub title: &'a str,
    pub message: &'a str,
    /// Shown as an error (`role="alert"`).
    pub alert: bool,
    pub link: Option<Link>,
}

impl<'a> Message<'a> {
    pub fn info(title: &'a str, message: &'a str) -> Self {
        Self { title, message, alert: false, link: None }
    }
    pub fn alert(title: &'a str, message: &'a str) -> Self {
        Self { title, message, alert: true, link: None }
    }
    pub fn with_link(mut self, href: &str, text: &'static str) -> Self {
        self.link = Some(Link { href: href.to_owned(), text });
        self
    }
}
