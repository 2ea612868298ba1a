//! The pages of second factors: the step of the sign-in, TOTP setup (at sign-in and on the
//! account page), the recovery codes shown once, and `/account/two-step`.

use askama::Template;

/// `GET /login/two-step`: a code (or a recovery code) for the sign-in.
#[derive(Template)]
#[template(path = "two_step.html")]
pub struct TwoStepPage<'a> {
    pub client_name: &'a str,
    pub username: &'a str,
    pub pending: &'a str,
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    /// The form `error` answers.
    pub answered: Answered,
    pub totp: bool,
    pub recovery_code: bool,
    /// A passkey is accepted: "Use a passkey" (the page then needs `pages::html_with_script`).
    pub passkey: bool,
}

/// Which form of the second-factor page was sent: a refusal's message goes next to that form's
/// field, which is marked invalid and has the focus (a wrong recovery code must not come back
/// as a closed "Use a recovery code instead" and a code field marked wrong).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    Code,
    RecoveryCode,
}

/// Where [`TwoStepPage`] shows its error.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ErrorAt {
    Code,
    RecoveryCode,
    /// Above the choices: no field of the page was sent (only a passkey is accepted).
    Top,
}

impl TwoStepPage<'_> {
    fn error_at(&self) -> ErrorAt {
        match self.answered {
            Answered::RecoveryCode if self.recovery_code => ErrorAt::RecoveryCode,
            _ if self.totp => ErrorAt::Code,
            _ if self.recovery_code => ErrorAt::RecoveryCode,
            _ => ErrorAt::Top,
        }
    }

    fn error_if(&self, at: ErrorAt) -> Option<&str> {
        self.error.filter(|_| self.error_at() == at)
    }

    /// The error next to the TOTP code field.
    pub fn code_error(&self) -> Option<&str> {
        self.error_if(ErrorAt::Code)
    }

    /// The error next to the recovery-code field (whose `<details>` is then open).
    pub fn recovery_error(&self) -> Option<&str> {
        self.error_if(ErrorAt::RecoveryCode)
    }

    /// The error above the choices.
    pub fn top_error(&self) -> Option<&str> {
        self.error_if(ErrorAt::Top)
    }

    /// Whether the recovery-code field has the focus: it is the one answered, or the only field.
    pub fn recovery_first(&self) -> bool {
        self.recovery_code && (!self.totp || self.recovery_error().is_some())
    }
}

/// `GET /login/two-step` where a passkey is required and the user has none: add one now.
#[derive(Template)]
#[template(path = "two_step_passkey_enrol.html")]
pub struct PasskeyEnrolPage<'a> {
    pub client_name: &'a str,
    pub username: &'a str,
    pub pending: &'a str,
    pub csrf: &'a str,
}

/// Setting up a TOTP app while signing in (`pending` set, posts to `/login/enrol`).
#[derive(Template)]
#[template(path = "two_step_enrol.html")]
pub struct EnrolPage<'a> {
    pub client_name: &'a str,
    pub username: &'a str,
    pub pending: Option<&'a str>,
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    /// The key, grouped for typing by hand.
    pub secret: &'a str,
    pub uri: &'a str,
    pub qr_src: &'a str,
    pub action: &'a str,
    pub ask_password: bool,
}

/// A new set of recovery codes, shown once. `pending`: the sign-in to continue afterwards.
#[derive(Template)]
#[template(path = "recovery_codes.html")]
pub struct RecoveryCodesPage<'a> {
    pub codes: Vec<String>,
    pub pending: Option<&'a str>,
    pub csrf: &'a str,
}

/// The TOTP part of `/account/two-step`.
pub enum TotpView {
    Off,
    Pending { secret: String, uri: String },
    On { since: String },
}

#[derive(Template)]
#[template(path = "account_two_step.html")]
pub struct AccountTwoStep<'a> {
    pub section: &'static str,
    pub username: &'a str,
    pub csrf: &'a str,
    pub totp: TotpView,
    pub recovery_codes: u32,
    pub has_factor: bool,
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
}

/// The base32 key in groups of four, as apps ask people to type it.
pub fn grouped(secret: &str) -> String {
    secret.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
}

/// A QR code of `text` as an SVG document, drawn here: the `otpauth://` URI never leaves the
/// server for a third-party QR service.
pub fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(220, 220).quiet_zone(true).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_grouped_and_qr_codes_are_svg() {
        assert_eq!(grouped("GEZDGNBVGY3TQOJQ"), "GEZD GNBV GY3T QOJQ");
        let svg = qr_svg("otpauth://totp/x:y?secret=GEZDGNBVGY3TQOJQ&issuer=x").unwrap();
        assert!(svg.contains("<svg") && svg.contains("<path"));
        assert!(!svg.contains("style=") && !svg.contains("<script"), "nothing the page's CSP would block");
    }
}
