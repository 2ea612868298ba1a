//! The core's error: either a protocol refusal the client should see, or an internal fault whose
//! cause goes only to the log.

use latchkey_proto::OAuthError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A refusal defined by the RFCs; its description is safe and useful to show the client.
    #[error("{0}")]
    OAuth(#[from] OAuthError),
    /// Storage, signing or another fault of ours. The client sees only `server_error`.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        Error::Internal(anyhow::Error::new(e))
    }
}
