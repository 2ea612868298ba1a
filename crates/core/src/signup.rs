//! Self-registration: who may create an account at `/signup`.

/// `signup = "off" | "open" | "invite"` (not to be confused with RFC 7591 client registration).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignupMode {
    /// Only administrators create accounts (the default).
    #[default]
    Off,
    /// Anyone may create an account; it can sign in once its address is verified.
    Open,
    /// Only holders of an invitation (`latchkey user invite EMAIL`), for the invited address.
    Invite,
}
