pub mod account;
pub mod account_activity;
pub mod account_apps;
pub mod account_password;
pub mod account_sessions;
pub mod account_two_step;
pub mod authorize;
pub mod device;
pub mod device_authorization;
pub mod discovery;
pub(crate) mod email_flow;
pub mod logout;
pub mod par;
pub mod passkeys;
pub mod register;
pub mod reset;
pub mod revoke;
pub mod signup;
pub mod token;
pub mod two_step;
pub mod userinfo;
pub mod verify;

use axum::http::StatusCode;
use axum::response::Response;

pub async fn not_found() -> Response {
    crate::pages::html(StatusCode::NOT_FOUND, crate::pages::error("Not found", "There is no page at this address."))
}
