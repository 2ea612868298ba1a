//! PostgreSQL schema migrations, tracked in `latchkey_schema`. Append, never edit, a migration.
//!
//! The tables mirror the SQLite ones (same names, same columns) with PostgreSQL types, plus the
//! indexes the purge and the many-instance deployment need.

pub const MIGRATIONS: &[&str] = &[
    // 1: everything up to login throttling, the audit log and the pending bound (SQLite 1 to 4).
    r#"
    CREATE TABLE clients (
        client_id TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        email TEXT NOT NULL,
        email_verified BOOLEAN NOT NULL,
        name TEXT,
        password_hash TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        phone_number TEXT,
        address TEXT
    );
    CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        alg TEXT NOT NULL,
        private_pkcs8 TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        active BOOLEAN NOT NULL,
        retired_at BIGINT
    );
    -- One signer per algorithm, whatever several instances do at once.
    CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (alg) WHERE active;
    CREATE TABLE pending_authorizations (
        id_hash TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        client_id TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX pending_by_expiry ON pending_authorizations (expires_at);
    CREATE INDEX pending_by_client ON pending_authorizations (client_id, expires_at);
    CREATE TABLE sessions (
        hash TEXT PRIMARY KEY,
        sid TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL,
        auth_time BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX sessions_by_user ON sessions (user_id, auth_time);
    CREATE INDEX sessions_by_expiry ON sessions (expires_at);
    CREATE TABLE consents (
        user_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, client_id)
    );
    CREATE INDEX consents_by_client ON consents (client_id);
    CREATE TABLE codes (
        hash TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        redirect_uri TEXT NOT NULL,
        scope TEXT NOT NULL,
        code_challenge TEXT NOT NULL,
        nonce TEXT,
        sid TEXT NOT NULL,
        auth_time BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at BIGINT,
        grant_id TEXT
    );
    CREATE INDEX codes_by_expiry ON codes (expires_at);
    CREATE INDEX codes_by_client ON codes (client_id);
    CREATE INDEX codes_by_user ON codes (user_id);
    CREATE TABLE grants (
        id TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        sid TEXT NOT NULL,
        offline BOOLEAN NOT NULL,
        auth_time BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        revoked_at BIGINT
    );
    CREATE INDEX grants_by_user ON grants (user_id);
    CREATE INDEX grants_by_client ON grants (client_id);
    CREATE INDEX grants_by_sid ON grants (sid);
    CREATE TABLE refresh_tokens (
        hash TEXT PRIMARY KEY,
        grant_id TEXT NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
        scope TEXT NOT NULL,
        issued_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        consumed_at BIGINT,
        cached_response BYTEA
    );
    CREATE INDEX refresh_by_grant ON refresh_tokens (grant_id);
    CREATE TABLE access_tokens (
        jti TEXT PRIMARY KEY,
        grant_id TEXT NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
        expires_at BIGINT NOT NULL,
        revoked_at BIGINT
    );
    CREATE INDEX access_by_grant ON access_tokens (grant_id);
    CREATE INDEX access_by_expiry ON access_tokens (expires_at);
    CREATE TABLE login_throttle (
        key TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last_failure BIGINT NOT NULL
    );
    CREATE INDEX throttle_by_time ON login_throttle (last_failure);
    CREATE TABLE audit_events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at BIGINT NOT NULL,
        event TEXT NOT NULL,
        user_id TEXT,
        client_id TEXT,
        ip TEXT,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_by_time ON audit_events (at);
    CREATE INDEX audit_by_user ON audit_events (user_id, at);
    "#,
    // 2: security review 2026-12 (SQLite 5): refusals aggregated per throttle key, pending
    // requests bounded per source network, and the server's own secrets.
    r#"
    ALTER TABLE login_throttle ADD COLUMN refused BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE pending_authorizations ADD COLUMN source TEXT NOT NULL DEFAULT '';
    CREATE INDEX pending_by_source ON pending_authorizations (source, expires_at);
    CREATE TABLE server_secrets (
        name TEXT PRIMARY KEY,
        secret TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    "#,
    // 3: RFC 8707 resource indicators (SQLite 6).
    r#"
    ALTER TABLE codes ADD COLUMN resource TEXT;
    ALTER TABLE grants ADD COLUMN resource TEXT;
    CREATE TABLE resources (
        uri TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        scope TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    "#,
    // 4: RFC 7591 registrations, deleted with their client, and the per-source registration
    // ceiling (SQLite 7).
    r#"
    CREATE TABLE registrations (
        client_id TEXT PRIMARY KEY REFERENCES clients (client_id) ON DELETE CASCADE,
        access_hash TEXT NOT NULL,
        fingerprint TEXT UNIQUE,
        shared BOOLEAN NOT NULL DEFAULT FALSE,
        metadata TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX registrations_by_age ON registrations (created_at);
    CREATE TABLE registration_throttle (
        source TEXT PRIMARY KEY,
        window_start BIGINT NOT NULL,
        count BIGINT NOT NULL
    );
    "#,
    // 5 (SQLite 8): cached client ID metadata documents, shared by every instance.
    r#"
    CREATE TABLE client_metadata_documents (
        url TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        fetched_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX client_metadata_documents_by_expiry ON client_metadata_documents (expires_at);
    "#,
    // 6 (SQLite 9; delivery): the durable outbox.
    r#"
    CREATE TABLE outbox (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        last_error TEXT,
        dead BOOLEAN NOT NULL DEFAULT FALSE,
        completed_at BIGINT
    );
    CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE completed_at IS NULL AND NOT dead;
    CREATE TABLE email_links (
        hash TEXT PRIMARY KEY,
        purpose TEXT NOT NULL,
        user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
        email TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX email_links_by_user ON email_links (user_id, purpose);
    CREATE INDEX email_links_by_address ON email_links (lower(email), purpose);
    CREATE INDEX email_links_by_expiry ON email_links (expires_at);
    CREATE TABLE signup_holds (
        user_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX signup_holds_by_age ON signup_holds (created_at);
    CREATE INDEX users_by_email ON users (lower(email));
    "#,
    // 7 (SQLite 10) (issue 13, second factors; part "auth"): how each session, code and grant was
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
        created_at BIGINT NOT NULL,
        confirmed_at BIGINT,
        last_step BIGINT NOT NULL
    );
    CREATE TABLE recovery_codes (
        user_id TEXT NOT NULL,
        hash TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, hash)
    );
    CREATE TABLE partial_sign_ins (
        hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX partial_sign_ins_by_user ON partial_sign_ins (user_id, created_at);
    CREATE INDEX partial_sign_ins_by_expiry ON partial_sign_ins (expires_at);
    "#,
    // 8 (SQLite 11) (issue 13, passkeys; part "passkey").
    r#"
    CREATE TABLE passkeys (
        cred_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        user_handle TEXT NOT NULL,
        name TEXT NOT NULL,
        credential TEXT NOT NULL,
        sign_count BIGINT NOT NULL,
        backup_eligible BOOLEAN NOT NULL,
        backup_state BOOLEAN NOT NULL,
        created_at BIGINT NOT NULL,
        last_used_at BIGINT
    );
    CREATE INDEX passkeys_by_user ON passkeys (user_id, created_at);
    CREATE TABLE webauthn_ceremonies (
        id_hash TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        source TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX webauthn_ceremonies_by_source ON webauthn_ceremonies (source, expires_at);
    CREATE INDEX webauthn_ceremonies_by_expiry ON webauthn_ceremonies (expires_at);
    "#,
    // 9 (SQLite 12): issue 13, part "account": the standard claims of OpenID Connect Core
    // §5.1, the lock, where a session was signed in, the `claims` request parameter on codes and
    // grants, and claims allowed individually on consents.
    r#"
    ALTER TABLE users ADD COLUMN profile TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE users ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
    UPDATE users SET updated_at = created_at;
    ALTER TABLE users ADD COLUMN locked_at BIGINT;
    ALTER TABLE sessions ADD COLUMN network TEXT;
    ALTER TABLE sessions ADD COLUMN device TEXT;
    ALTER TABLE codes ADD COLUMN claims TEXT;
    ALTER TABLE grants ADD COLUMN claims TEXT;
    ALTER TABLE consents ADD COLUMN claims TEXT NOT NULL DEFAULT '';
    CREATE INDEX grants_by_user_client ON grants (user_id, client_id);
    "#,
    // 10 (SQLite 13, issue 14): DPoP and client-assertion replay marks (purged once expired), pushed
    // authorization requests (single-use, bounded per client), and the DPoP key a code (from
    // `dpop_jkt`) and a public client's refresh family are bound to.
    r#"
    CREATE TABLE replay_marks (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (kind, key)
    );
    CREATE INDEX replay_marks_by_expiry ON replay_marks (expires_at);
    CREATE TABLE pushed_requests (
        hash TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        params TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX pushed_requests_by_client ON pushed_requests (client_id, expires_at);
    CREATE INDEX pushed_requests_by_expiry ON pushed_requests (expires_at);
    ALTER TABLE codes ADD COLUMN dpop_jkt TEXT;
    ALTER TABLE grants ADD COLUMN dpop_jkt TEXT;
    "#,
    // 11 (SQLite 14, issue 15): device authorization requests (RFC 8628): single-use, bounded per
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
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        interval_s BIGINT NOT NULL,
        last_poll_at BIGINT,
        requested_from TEXT,
        state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied')),
        status TEXT NOT NULL,
        CONSTRAINT device_codes_user_code UNIQUE (user_code_hash)
    );
    CREATE INDEX device_codes_by_client ON device_codes (client_id, expires_at);
    CREATE INDEX device_codes_by_expiry ON device_codes (expires_at);
    "#,
];
