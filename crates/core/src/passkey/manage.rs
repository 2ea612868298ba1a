//! Registering, listing, renaming and removing passkeys: the account page's side.

use std::net::IpAddr;

use serde_json::{Value, json};
use webauthn_rs::prelude::{CredentialID, PasskeyRegistration, RegisterPublicKeyCredential, Uuid};

use super::store::{PasskeyAdded, PasskeyRecord};
use super::{Ceremony, PasskeyError, StoredFlags, cred_id_text, valid_name};
use crate::account::AccountSession;
use crate::store::UserRecord;
use crate::{Provider, UnixTime, audit};

/// The start of a registration: the ceremony's id and the options for
/// `navigator.credentials.create()` (JSON, binary values in base64url).
#[derive(Debug)]
pub struct Ceremonial {
    pub ceremony: String,
    pub options: Value,
}

impl Provider {
    /// The user's passkeys, oldest first.
    pub async fn user_passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRecord>, PasskeyError> {
        Ok(self.store.user_passkeys(user_id).await?)
    }

    /// Starts adding a passkey named `name` for the signed-in user. The sign-in must be recent
    /// ([`super::PasskeyConfig::reauth_window`]).
    pub async fn start_passkey_registration(
        &self,
        a: &AccountSession,
        name: &str,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<Ceremonial, PasskeyError> {
        self.relying_party()?;
        let cfg = &self.config.passkeys;
        let name = valid_name(name)?;
        if now - a.session.auth_time > cfg.reauth_window as UnixTime {
            return Err(PasskeyError::ReauthRequired(cfg.reauth_window / 60));
        }
        let (options, state, handle) = self.registration_options(&a.user).await?;
        let ceremony = Ceremony::Register {
            user_id: a.user.id.clone(),
            sid: a.session.sid.clone(),
            user_handle: handle,
            name,
            state,
        };
        let ceremony = self.save_ceremony(&ceremony, ip, now).await?;
        Ok(Ceremonial { ceremony, options })
    }

    /// Creation options for a new passkey of `user`: a discoverable credential, not one of theirs
    /// already; with the state to keep and the user handle to store.
    pub(crate) async fn registration_options(
        &self,
        user: &UserRecord,
    ) -> Result<(Value, PasskeyRegistration, String), PasskeyError> {
        let rp = self.relying_party()?;
        let max = self.config.passkeys.max_per_user;
        let existing = self.store.user_passkeys(&user.id).await?;
        if existing.len() >= max as usize {
            return Err(PasskeyError::TooMany(max));
        }
        // One user handle per user, random and free of personal data (WebAuthn §14.6.1): an
        // authenticator keeps one discoverable credential per relying party and user handle,
        // and `excludeCredentials` keeps a second registration from replacing the first.
        let handle = match existing.first() {
            Some(p) => Uuid::parse_str(&p.user_handle).map_err(|e| anyhow::anyhow!("a stored user handle: {e}"))?,
            None => Uuid::new_v4(),
        };
        let exclude: Vec<CredentialID> = existing.iter().filter_map(|p| super::cred_id_bytes(&p.cred_id)).collect();
        let display = user.name.as_deref().filter(|n| !n.is_empty()).unwrap_or(&user.username);
        let (ccr, state) = rp.webauthn.start_passkey_registration(handle, &user.username, display, Some(exclude))?;
        let mut options = serde_json::to_value(&ccr).map_err(|e| anyhow::anyhow!("serialising options: {e}"))?;
        // A discoverable credential, for the username-less sign-in (see the module's "Choices").
        if let Some(sel) = options.pointer_mut("/publicKey/authenticatorSelection").and_then(Value::as_object_mut) {
            sel.insert("residentKey".to_owned(), json!("required"));
            sel.insert("requireResidentKey".to_owned(), json!(true));
        }
        Ok((options, state, handle.to_string()))
    }

    /// Finishes adding a passkey: `credential` is the browser's `PublicKeyCredential` as JSON.
    /// Only the session that started the ceremony may finish it.
    pub async fn finish_passkey_registration(
        &self,
        a: &AccountSession,
        ceremony: &str,
        credential: &str,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<PasskeyRecord, PasskeyError> {
        let rp = self.relying_party()?;
        let Ceremony::Register { user_id, sid, user_handle, name, state } = self.take_ceremony(ceremony, now).await?
        else {
            return Err(PasskeyError::CeremonyExpired);
        };
        if user_id != a.user.id || sid != a.session.sid {
            return Err(PasskeyError::CeremonyExpired);
        }
        self.store_registration(rp, credential, &state, &user_id, user_handle, name, ip, now).await
    }

    /// Verifies a new credential against its registration state and stores it for `user_id`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn store_registration(
        &self,
        rp: &super::RelyingParty,
        credential: &str,
        state: &PasskeyRegistration,
        user_id: &str,
        user_handle: String,
        name: String,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<PasskeyRecord, PasskeyError> {
        let reg: RegisterPublicKeyCredential =
            serde_json::from_str(credential).map_err(|e| PasskeyError::Malformed(e.to_string()))?;
        let passkey = match rp.webauthn.finish_passkey_registration(&reg, state) {
            Ok(p) => p,
            Err(e) => {
                let e = PasskeyError::from(e);
                let detail = json!({ "reason": e.to_string() });
                let ev = audit::Event { user_id: Some(user_id), ip, detail: Some(detail), ..Default::default() };
                audit::record(self.store.as_ref(), now, "passkey_registration_failed", ev).await;
                return Err(e);
            }
        };
        let credential = serde_json::to_string(&passkey).map_err(|e| anyhow::anyhow!("serialising a passkey: {e}"))?;
        let (sign_count, backup_eligible, backup_state) = StoredFlags::of(&credential)?;
        let rec = PasskeyRecord {
            cred_id: cred_id_text(passkey.cred_id()),
            user_id: user_id.to_owned(),
            user_handle,
            name,
            credential,
            sign_count,
            backup_eligible,
            backup_state,
            created_at: now,
            last_used_at: None,
        };
        match self.store.insert_passkey(&rec, self.config.passkeys.max_per_user).await? {
            PasskeyAdded::Added => {}
            PasskeyAdded::Duplicate => return Err(PasskeyError::Duplicate),
            PasskeyAdded::TooMany => return Err(PasskeyError::TooMany(self.config.passkeys.max_per_user)),
        }
        let detail = json!({ "passkey": rec.name, "backup_eligible": rec.backup_eligible });
        let ev = audit::Event { user_id: Some(&rec.user_id), ip, detail: Some(detail), ..Default::default() };
        audit::record(self.store.as_ref(), now, "passkey_registered", ev).await;
        Ok(rec)
    }

    /// Renames one of the user's passkeys.
    pub async fn rename_passkey(&self, user_id: &str, cred_id: &str, name: &str) -> Result<(), PasskeyError> {
        let name = valid_name(name)?;
        if !self.store.rename_passkey(user_id, cred_id, &name).await? {
            return Err(PasskeyError::NotFound);
        }
        Ok(())
    }

    /// Removes one of the user's passkeys: it no longer signs anyone in.
    pub async fn remove_passkey(
        &self,
        user_id: &str,
        cred_id: &str,
        ip: Option<IpAddr>,
        now: UnixTime,
    ) -> Result<(), PasskeyError> {
        let name = self.store.passkey(cred_id).await?.filter(|p| p.user_id == user_id).map(|p| p.name);
        if !self.store.remove_passkey(user_id, cred_id).await? {
            return Err(PasskeyError::NotFound);
        }
        let detail = json!({ "passkey": name });
        let ev = audit::Event { user_id: Some(user_id), ip, detail: Some(detail), ..Default::default() };
        audit::record(self.store.as_ref(), now, "passkey_removed", ev).await;
        Ok(())
    }
}
