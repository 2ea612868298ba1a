//! Schema migrations, tracked with `PRAGMA user_version`. Append, never edit, a migration.

pub const MIGRATIONS: &[&str] = &[
    // 1: the authorization code flow.
    r#"
    CREATE TABLE clients (
        client_id TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        email TEXT NOT NULL,
        email_verified INTEGER NOT NULL,
        name TEXT,
        password_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        alg TEXT NOT NULL,
        private_pkcs8 TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        active INTEGER NOT NULL
    );
    CREATE TABLE pending_authorizations (
        id_hash TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        hash TEXT PRIMARY KEY,
        sid TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL,
        auth_time INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE TABLE consents (
        user_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, client_id)
    );
    CREATE TABLE codes (
        hash TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        redirect_uri TEXT NOT NULL,
        scope TEXT NOT NULL,
        code_challenge TEXT NOT NULL,
        nonce TEXT,
        sid TEXT NOT NULL,
        auth_time INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER,
        grant_id TEXT
    );
    CREATE TABLE grants (
        id TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        sid TEXT NOT NULL,
        offline INTEGER NOT NULL,
        auth_time INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE INDEX grants_by_user ON grants (user_id);
    CREATE INDEX grants_by_client ON grants (client_id);
    CREATE TABLE refresh_tokens (
        hash TEXT PRIMARY KEY,
        grant_id TEXT NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
        scope TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        consumed_at INTEGER
    );
    CREATE INDEX refresh_by_grant ON refresh_tokens (grant_id);
    CREATE TABLE access_tokens (
        jti TEXT PRIMARY KEY,
        grant_id TEXT NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX access_by_grant ON access_tokens (grant_id);
    "#,
    // 2: token lifecycle: grace-window replies, access-token revocation, key rotation, more claims.
    r#"
    ALTER TABLE users ADD COLUMN phone_number TEXT;
    ALTER TABLE users ADD COLUMN address TEXT;
    ALTER TABLE signing_keys ADD COLUMN retired_at INTEGER;
    ALTER TABLE refresh_tokens ADD COLUMN cached_response BLOB;
    ALTER TABLE access_tokens ADD COLUMN revoked_at INTEGER;
    CREATE INDEX grants_by_sid ON grants (sid);
    "#,
    // 3: login throttling and the audit log.
    r#"
    CREATE TABLE login_throttle (
        key TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last_failure INTEGER NOT NULL
    );
    CREATE TABLE audit_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        event TEXT NOT NULL,
        user_id TEXT,
        client_id TEXT,
        ip TEXT,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_by_time ON audit_events (at);
    CREATE INDEX audit_by_user ON audit_events (user_id, at);
    "#,
    // 4: per-client bound on pending authorization requests.
    r#"
    ALTER TABLE pending_authorizations ADD COLUMN client_id TEXT NOT NULL DEFAULT '';
    CREATE INDEX pending_by_client ON pending_authorizations (client_id, expires_at);
    CREATE INDEX sessions_by_user ON sessions (user_id, auth_time);
    "#,
    // 5: security review 2026-12: refusals aggregated per throttle key, pending requests bounded
    // per source network, and the server's own secrets (the known-device cookie key).
    r#"
    ALTER TABLE login_throttle ADD COLUMN refused INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE pending_authorizations ADD COLUMN source TEXT NOT NULL DEFAULT '';
    CREATE INDEX pending_by_source ON pending_authorizations (source, expires_at);
    CREATE TABLE server_secrets (
        name TEXT PRIMARY KEY,
        secret TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    "#,
    // 6: RFC 8707 resource indicators: the registry of protected resources, and the resource each
    // code and grant is bound to (NULL: the default audience).
    r#"
    ALTER TABLE codes ADD COLUMN resource TEXT;
    ALTER TABLE grants ADD COLUMN resource TEXT;
    CREATE TABLE resources (
        uri TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        scope TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    "#,
    // 7: RFC 7591 registrations, deleted with their client, and the per-source registration
    // ceiling.
    r#"
    CREATE TABLE registrations (
        client_id TEXT PRIMARY KEY REFERENCES clients (client_id) ON DELETE CASCADE,
        access_hash TEXT NOT NULL,
        fingerprint TEXT UNIQUE,
        shared INTEGER NOT NULL DEFAULT 0,
        metadata TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX registrations_by_age ON registrations (created_at);
    CREATE TABLE registration_throttle (
        source TEXT PRIMARY KEY,
        window_start INTEGER NOT NULL,
        count INTEGER NOT NULL
    );
    "#,
    // 8: cached client ID metadata documents (draft-ietf-oauth-client-id-metadata-document).
    // Shared by every process on the file; the expiry index serves the purge and the eviction.
    r#"
    CREATE TABLE client_metadata_documents (
        url TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        fetched_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX client_metadata_documents_by_expiry ON client_metadata_documents (expires_at);
    "#,
    // 9 (delivery: the durable outbox): jobs that leave the server (mail), delivered by a worker
    // with leases and back-off; completed and dead jobs are kept a while for the administrator.
    r#"
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        last_error TEXT,
        dead INTEGER NOT NULL DEFAULT 0,
        completed_at INTEGER
    );
    CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE completed_at IS NULL AND dead = 0;
    -- Single-use links sent by mail (reset, verification, invitation): only the token's hash.
    CREATE TABLE email_links (
        hash TEXT PRIMARY KEY,
        purpose TEXT NOT NULL,
        user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
        email TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX email_links_by_user ON email_links (user_id, purpose);
    CREATE INDEX email_links_by_address ON email_links (lower(email), purpose);
    CREATE INDEX email_links_by_expiry ON email_links (expires_at);
    -- Self-registered accounts that cannot sign in until their address is verified.
    CREATE TABLE signup_holds (
        user_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX signup_holds_by_age ON signup_holds (created_at);
    CREATE INDEX users_by_email ON users (lower(email));
    "#,
    // 10 (issue 13, second factors; part "auth"): how each session, code and grant was
    // authenticated (`amr`, `acr`; rows from before were password sign-ins, and grants without a
    // session are a client's own), TOTP secrets (sealed when a key-encryption key is set), recovery
    // codes (hashes), and partial sign-ins waiting for their second factor.
    r#"
    ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
    ALTER TABLE sessions ADD COLUMN acr TEXT NOT NULL DEFAULT 'https://refeds.org/profile/sfa';
    ALTER TABLE codes ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
    ALTER TABLE codes ADD COLUMN acr TEXT NOT NULL DEFAULT 'https://refeds.org/profile/sfa';
    ALTER TABLE grants ADD COLUMN amr TEXT;
    ALTER TABLE grants ADD COLUMN acr TEXT;
    UPDATE grants SET amr = 'pwd', acr = 'https://refeds.org/profile/sfa' WHERE sid <> '';
    CREATE TABLE totp_secrets (
        user_id TEXT PRIMARY KEY,
        secret TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        confirmed_at INTEGER,
        last_step INTEGER NOT NULL
    );
    CREATE TABLE recovery_codes (
        user_id TEXT NOT NULL,
        hash TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, hash)
    );
    CREATE TABLE partial_sign_ins (
        hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX partial_sign_ins_by_user ON partial_sign_ins (user_id, created_at);
    CREATE INDEX partial_sign_ins_by_expiry ON partial_sign_ins (expires_at);
    "#,
    // 11 (issue 13, passkeys; part "passkey"): registered WebAuthn
    // credentials, deleted with their user, and the ceremonies in progress (single-use, bounded per
    // source and in all, the expiry index serving the purge).
    r#"
    CREATE TABLE passkeys (
        cred_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        user_handle TEXT NOT NULL,
        name TEXT NOT NULL,
        credential TEXT NOT NULL,
        sign_count INTEGER NOT NULL,
        backup_eligible INTEGER NOT NULL,
        backup_state INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER
    );
    CREATE INDEX passkeys_by_user ON passkeys (user_id, created_at);
    CREATE TABLE webauthn_ceremonies (
        id_hash TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        source TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX webauthn_ceremonies_by_source ON webauthn_ceremonies (source, expires_at);
    CREATE INDEX webauthn_ceremonies_by_expiry ON webauthn_ceremonies (expires_at);
    "#,
    // 12: issue 13, part "account": the standard claims of OpenID Connect Core §5.1 (a JSON
    // profile, `updated_at`), the lock, where a session was signed in, the `claims` request
    // parameter on codes and grants, and claims allowed individually on consents.
    r#"
    ALTER TABLE users ADD COLUMN profile TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE users ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
    UPDATE users SET updated_at = created_at;
    ALTER TABLE users ADD COLUMN locked_at INTEGER;
    ALTER TABLE sessions ADD COLUMN network TEXT;
    ALTER TABLE sessions ADD COLUMN device TEXT;
    ALTER TABLE codes ADD COLUMN claims TEXT;
    ALTER TABLE grants ADD COLUMN claims TEXT;
    ALTER TABLE consents ADD COLUMN claims TEXT NOT NULL DEFAULT '';
    CREATE INDEX grants_by_user_client ON grants (user_id, client_id);
    "#,
    // 13 (issue 14): DPoP and client-assertion replay marks (purged once expired), pushed
    // authorization requests (single-use, bounded per client), and the DPoP key a code (from
    // `dpop_jkt`) and a public client's refresh family are bound to.
    r#"
    CREATE TABLE replay_marks (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (kind, key)
    );
    CREATE INDEX replay_marks_by_expiry ON replay_marks (expires_at);
    CREATE TABLE pushed_requests (
        hash TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        params TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX pushed_requests_by_client ON pushed_requests (client_id, expires_at);
    CREATE INDEX pushed_requests_by_expiry ON pushed_requests (expires_at);
    ALTER TABLE codes ADD COLUMN dpop_jkt TEXT;
    ALTER TABLE grants ADD COLUMN dpop_jkt TEXT;
    "#,
    // 14 (issue 15): device authorization requests (RFC 8628): single-use, bounded per
    // client, purged once expired. `status` is the JSON of `DeviceStatus` (who approved, how they
    // had signed in); `state` repeats its tag ('pending', 'approved', 'denied') so that the
    // conditions of the atomic steps (answer only a pending one, redeem only an approved one) are
    // plain comparisons. The user code is unique among stored rows: an expired row holding a
    // reused code is deleted by the insert that reuses it.
    r#"
    CREATE TABLE device_codes (
        device_hash TEXT PRIMARY KEY,
        user_code_hash TEXT NOT NULL,
        client_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        resource TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        interval_s INTEGER NOT NULL,
        last_poll_at INTEGER,
        requested_from TEXT,
        state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied')),
        status TEXT NOT NULL,
        CONSTRAINT device_codes_user_code UNIQUE (user_code_hash)
    );
    CREATE INDEX device_codes_by_client ON device_codes (client_id, expires_at);
    CREATE INDEX device_codes_by_expiry ON device_codes (expires_at);
    "#,
];
