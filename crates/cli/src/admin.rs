//! `latchkey client …` and `latchkey user …`: work against the same database while the server runs.

use std::io::Read;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use latchkey_core::Clock;
use latchkey_core::admin::{AdminError, ExistingGrants, NewClient, NewUser};
use latchkey_core::password::Hasher;
use latchkey_core::store::{
    ClientKeys, ClientKind, ClientProtection, ClientRecord, SecurityProfile, SigningAlg, StoreError, UserRevocation,
};
use latchkey_proto::{ClientId, Password};
use serde_json::json;

use crate::config::Settings;
use crate::serve::open_store;

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Register a client. Prints `client_id: …` (and `client_secret: …` once, for --confidential).
    Add(Box<ClientAdd>),
    /// List registered clients.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one client.
    Show {
        client_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a client and everything issued to it.
    Remove { client_id: String },
}

#[derive(Args, Debug)]
pub struct ClientAdd {
    /// A client that cannot keep a secret (SPA, native or CLI app): PKCE only.
    #[arg(long, conflicts_with_all = ["confidential", "jwks", "jwks_uri"], required_unless_present_any = ["confidential", "resource_server", "client_credentials", "jwks", "jwks_uri"])]
    public: bool,
    /// A server-side client with a secret (shown once, stored only as a hash).
    #[arg(long)]
    confidential: bool,
    /// Display name shown on the consent page.
    #[arg(long, default_value = "")]
    name: String,
    /// Allowed redirect URI (repeatable). Matched exactly; for http://127.0.0.1/… any port is allowed.
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
    /// Where RP-initiated logout may return the browser (repeatable, matched exactly).
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    post_logout_redirect_uris: Vec<String>,
    /// Signing algorithm of this client's ID tokens: RS256 (default), ES256 or EdDSA.
    #[arg(long, value_name = "ALG", default_value = "RS256", value_parser = parse_alg)]
    id_token_signing_alg: SigningAlg,
    /// Allow the client_credentials grant (service to service; implies a confidential client).
    #[arg(long)]
    client_credentials: bool,
    /// Allow the device authorization grant (RFC 8628): a device without a browser shows a code
    /// that its user enters at /device on another device. Needs no redirect URI.
    #[arg(long)]
    device: bool,
    /// An audience (an absolute URI) this client may get client-credentials tokens for, or, for a
    /// resource server, whose tokens it may introspect (repeatable; the first is the default).
    #[arg(long = "audience", value_name = "URI")]
    audiences: Vec<String>,
    /// A credential for a resource server: it may only introspect tokens.
    #[arg(long)]
    resource_server: bool,
    /// Choose the client_id instead of a random one.
    #[arg(long)]
    client_id: Option<String>,
    /// A client of this deployment's own: consent is implied, no consent page.
    #[arg(long)]
    first_party: bool,
    /// An extra scope the client may request, e.g. an API permission (repeatable).
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// Do not issue refresh tokens to this client.
    #[arg(long)]
    no_refresh: bool,
    /// OpenID Connect Back-Channel Logout: where a signed logout token is POSTed when a login
    /// session this client took part in ends (https, or http to a loopback host for development).
    #[arg(long, value_name = "URI")]
    backchannel_logout_uri: Option<String>,
    /// The client needs `sid` in logout tokens (Latchkey always sends it; recorded and shown).
    #[arg(long, requires = "backchannel_logout_uri")]
    backchannel_logout_session_required: bool,
    /// Second factors this client's users need at sign-in: optional (the default), required or
    /// passkey. The deployment's `second_factor` applies where it is stricter.
    #[arg(long, value_name = "POLICY", default_value = "optional", value_parser = parse_policy)]
    second_factor: latchkey_core::authn::SecondFactorPolicy,
    /// Sender-constrained tokens only (RFC 9449 `dpop_bound_access_tokens`): every token request
    /// of this client must carry a DPoP proof, so its tokens are useless to whoever copies them.
    #[arg(long)]
    dpop: bool,
    /// A confidential client without a secret that authenticates with private_key_jwt (RFC 7523):
    /// FILE holds its public keys, a JWK Set ({"keys": [...]}).
    #[arg(long, value_name = "FILE", conflicts_with = "jwks_uri")]
    jwks: Option<std::path::PathBuf>,
    /// Like --jwks, with the keys fetched from this https URL (cached; refetched when an
    /// assertion names an unknown kid, at most once per 30 s).
    #[arg(long, value_name = "URL")]
    jwks_uri: Option<String>,
    /// The client's authorization requests must come through the PAR endpoint (RFC 9126).
    #[arg(long)]
    require_par: bool,
    /// The client's security profile: standard, or fapi2 (PAR, DPoP, private_key_jwt for a
    /// confidential client, 60 s codes). Default: the deployment's `profile`.
    #[arg(long, value_name = "PROFILE", value_parser = parse_profile)]
    profile: Option<SecurityProfile>,
    #[arg(long)]
    json: bool,
}

fn parse_profile(s: &str) -> Result<SecurityProfile, String> {
    match s {
        "standard" => Ok(SecurityProfile::Standard),
        "fapi2" => Ok(SecurityProfile::Fapi2),
        _ => Err(format!("{s:?}: use standard or fapi2")),
    }
}

/// The keys of `client add --jwks FILE | --jwks-uri URL`.
fn client_keys(jwks: Option<&std::path::Path>, jwks_uri: Option<String>) -> anyhow::Result<Option<ClientKeys>> {
    Ok(match (jwks, jwks_uri) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading --jwks {}", path.display()))?;
            Some(ClientKeys::Inline { jwks: text })
        }
        (None, Some(uri)) => Some(ClientKeys::Uri { jwks_uri: uri }),
        (None, None) => None,
    })
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user; the password is read from standard input.
    Add {
        username: String,
        #[arg(long)]
        email: String,
        /// Full name (the `name` claim).
        #[arg(long)]
        name: Option<String>,
        /// Phone number (the `phone_number` claim, scope `phone`).
        #[arg(long)]
        phone: Option<String>,
        /// Postal address, formatted on one line (the `address` claim, scope `address`).
        #[arg(long)]
        address: Option<String>,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a user, their sessions and everything issued to them.
    Remove { username: String },
    /// Set a user's password (read from standard input), end their sessions and revoke every
    /// grant: refresh tokens (offline_access ones included) and the access tokens issued under them.
    SetPassword {
        username: String,
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Keep the user's grants (refresh and access tokens) working: only for a routine change
        /// when the old password is known not to have leaked. Sessions end all the same.
        #[arg(long)]
        keep_grants: bool,
    },
    /// End every session of a user and revoke every grant: refresh tokens (offline_access ones
    /// included) and the access tokens issued under them. The password stays.
    RevokeTokens { username: String },
    /// Change a user's profile (OpenID Connect standard claims). Only the options given change;
    /// an empty value ("") clears a claim.
    Set(Box<crate::admin_user::UserSet>),
    /// Show a user: profile, lock, factors, sessions and apps.
    Show {
        username: String,
        #[arg(long)]
        json: bool,
    },
    /// Lock a user: they cannot sign in, and every session and grant of theirs ends now.
    Lock { username: String },
    /// Unlock a user: they may sign in again.
    Unlock { username: String },
    /// List a user's sessions.
    Sessions {
        username: String,
        #[arg(long)]
        json: bool,
    },
    /// End a user's sessions (all of them, or the one --sid names) and the grants bound to them.
    EndSessions {
        username: String,
        /// The session's id (as `user sessions` lists it).
        #[arg(long)]
        sid: Option<String>,
    },
    /// Invite EMAIL to create an account (signup = "invite" or "open"): a running server mails a
    /// single-use link that signs up that address only.
    Invite { email: String },
    /// Change a user's email address. A verification link is mailed to the new address, which
    /// takes effect when it is followed; --verified sets it at once (you vouch for it).
    SetEmail {
        username: String,
        email: String,
        #[arg(long)]
        verified: bool,
    },
    /// Remove a user's second factors (TOTP app, recovery codes) for someone who lost them: their
    /// next sign-in asks for the password only, unless a policy requires a second factor, in
    /// which case they set up a new one then. Sessions stay.
    ResetFactors { username: String },
}

fn parse_policy(s: &str) -> Result<latchkey_core::authn::SecondFactorPolicy, String> {
    latchkey_core::authn::SecondFactorPolicy::parse(s)
        .ok_or_else(|| format!("{s:?}: use optional, required or passkey"))
}

fn parse_alg(s: &str) -> Result<SigningAlg, String> {
    SigningAlg::parse(s).ok_or_else(|| format!("unsupported algorithm {s:?}; use RS256, ES256 or EdDSA"))
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Add a new signing key and make it the signer; the old key stays published until the tokens
    /// it signed have expired.
    Rotate {
        /// Only this algorithm (RS256, ES256 or EdDSA); default: all.
        #[arg(long, value_parser = parse_alg)]
        alg: Option<SigningAlg>,
    },
    /// List signing keys (public information only).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Seal every signing key stored in clear with the key-encryption key
    /// (LATCHKEY_KEY_ENCRYPTION_KEY or --key-encryption-key-file). Every server of the deployment
    /// needs that key from then on.
    Seal,
}

pub async fn keys(settings: &Settings, cmd: KeysCommand) -> anyhow::Result<()> {
    let store = open_store(&settings.database, settings.store_options()).await?;
    let now = Clock::system().now();
    match cmd {
        KeysCommand::Rotate { alg } => {
            let algs = alg.map_or_else(|| SigningAlg::ALL.to_vec(), |a| vec![a]);
            let kek = settings.key_encryption_key.as_ref();
            for k in latchkey_core::admin::rotate_keys_with(store.as_ref(), &algs, now, kek).await.map_err(admin_err)? {
                println!("kid: {} ({})", k.kid, k.alg);
            }
            eprintln!("Running servers pick up the new keys within 10 seconds (their key reload interval).");
        }
        KeysCommand::Seal => {
            let Some(kek) = &settings.key_encryption_key else {
                bail!("no key-encryption key: set LATCHKEY_KEY_ENCRYPTION_KEY or pass --key-encryption-key-file");
            };
            let sealed = latchkey_core::admin::seal_keys(store.as_ref(), kek, now).await.map_err(admin_err)?;
            for kid in &sealed {
                println!("sealed: {kid}");
            }
            println!("{} signing key(s) sealed; every key is now stored sealed", sealed.len());
            eprintln!("Every server of this deployment now needs the same key-encryption key to start.");
            if !sealed.is_empty() {
                // Sealing protects what is stored from now on; what was copied before is out of reach.
                eprintln!(
                    "Copies made before (backups, old -wal frames, PostgreSQL row versions until VACUUM) still hold these \
                     keys in clear: run `latchkey keys rotate` so that they stop signing and are purged."
                );
            }
        }
        KeysCommand::List { json } => {
            let keys = store.signing_keys().await?;
            let window = settings.access_token_lifetime + 60;
            let rows: Vec<_> = keys
                .iter()
                .map(|k| {
                    let state = if k.active {
                        "active"
                    } else if k.retired_at.is_some_and(|r| r + window as i64 > now) {
                        "retired (published)"
                    } else {
                        "retired (unpublished)"
                    };
                    (k, state)
                })
                .collect();
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(k, state)| json!({"kid": k.kid, "alg": k.alg, "created_at": k.created_at, "retired_at": k.retired_at, "state": state, "sealed": latchkey_core::keys::is_sealed(k)}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for (k, state) in rows {
                    println!("{}\t{}\t{}\t{state}", k.kid, k.alg, k.created_at);
                }
            }
        }
    }
    Ok(())
}

fn client_json(c: &ClientRecord) -> serde_json::Value {
    let (auth_method, jwks_uri, jwks) = match &c.kind {
        ClientKind::Public => ("none", None, None),
        ClientKind::Confidential { .. } => ("client_secret_basic", None, None),
        ClientKind::PrivateKeyJwt { keys: ClientKeys::Uri { jwks_uri } } => ("private_key_jwt", Some(jwks_uri), None),
        ClientKind::PrivateKeyJwt { keys: ClientKeys::Inline { jwks } } => {
            ("private_key_jwt", None, serde_json::from_str::<serde_json::Value>(jwks).ok())
        }
    };
    json!({
        "client_id": c.client_id,
        "name": c.name,
        "type": if c.is_public() { "public" } else { "confidential" },
        "token_endpoint_auth_method": auth_method,
        "jwks_uri": jwks_uri,
        "jwks": jwks,
        "require_pushed_authorization_requests": c.protection.require_pushed_authorization_requests,
        "dpop_bound_access_tokens": c.protection.dpop_bound_access_tokens,
        "profile": c.protection.profile,
        "redirect_uris": c.redirect_uris,
        "grant_types": c.grant_types,
        "scope": c.allowed_scope,
        "first_party": c.first_party,
        "id_token_signed_response_alg": c.id_token_signed_response_alg.as_str(),
        "post_logout_redirect_uris": c.post_logout_redirect_uris,
        "audiences": c.audiences,
        "second_factor": c.second_factor.as_str(),
        "created_at": c.created_at,
        "backchannel_logout_uri": c.backchannel_logout.as_ref().map(|b| &b.uri),
        "backchannel_logout_session_required": c.backchannel_logout.as_ref().map(|b| b.session_required),
        "dpop_bound_access_tokens": c.protection.dpop_bound_access_tokens,
    })
}

pub(crate) fn admin_err(e: AdminError) -> anyhow::Error {
    match e {
        AdminError::Store(StoreError::AlreadyExists(what)) => anyhow!("{what} already exists"),
        other => anyhow!(other),
    }
}

pub async fn client(settings: &Settings, cmd: ClientCommand) -> anyhow::Result<()> {
    let store = open_store(&settings.database, settings.store_options()).await?;
    match cmd {
        ClientCommand::Add(a) => {
            let new = NewClient {
                client_id: a.client_id,
                name: a.name,
                confidential: a.confidential,
                redirect_uris: a.redirect_uris,
                first_party: a.first_party,
                extra_scopes: a.scopes,
                refresh_tokens: !a.no_refresh,
                id_token_alg: a.id_token_signing_alg,
                post_logout_redirect_uris: a.post_logout_redirect_uris,
                audiences: a.audiences,
                client_credentials: a.client_credentials,
                device: a.device,
                resource_server: a.resource_server,
                backchannel_logout_uri: a.backchannel_logout_uri,
                backchannel_logout_session_required: a.backchannel_logout_session_required,
                second_factor: a.second_factor,
                keys: client_keys(a.jwks.as_deref(), a.jwks_uri)?,
                protection: ClientProtection {
                    dpop_bound_access_tokens: a.dpop,
                    require_pushed_authorization_requests: a.require_par,
                    profile: a.profile,
                },
            };
            let (rec, secret) = latchkey_core::admin::add_client(store.as_ref(), new, Clock::system().now())
                .await
                .map_err(admin_err)?;
            if a.json {
                let mut v = client_json(&rec);
                if let Some(s) = &secret {
                    v["client_secret"] = json!(s.expose_secret());
                }
                println!("{v}");
            } else {
                println!("client_id: {}", rec.client_id);
                if let Some(s) = &secret {
                    println!("client_secret: {}", s.expose_secret());
                    eprintln!("The client secret is shown only now; it is stored as a hash and cannot be shown again.");
                }
            }
        }
        ClientCommand::List { json } => {
            let clients = store.clients().await?;
            if json {
                println!("{}", serde_json::Value::Array(clients.iter().map(client_json).collect()));
            } else if clients.is_empty() {
                eprintln!("no clients");
            } else {
                for c in clients {
                    let kind = match c.kind {
                        ClientKind::Public => "public",
                        ClientKind::Confidential { .. } => "confidential",
                        ClientKind::PrivateKeyJwt { .. } => "confidential (private_key_jwt)",
                    };
                    println!(
                        "{}\t{kind}\t{}\t{}",
                        c.client_id,
                        c.name,
                        c.redirect_uris.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" ")
                    );
                }
            }
        }
        ClientCommand::Show { client_id, json } => {
            let id = ClientId::parse(&client_id).map_err(|e| anyhow!("{}", e.description))?;
            let c = store.client(&id).await?.ok_or_else(|| anyhow!("no client with client_id {client_id:?}"))?;
            let v = client_json(&c);
            if json {
                println!("{v}");
            } else {
                println!("client_id: {}", c.client_id);
                println!("name: {}", c.name);
                println!("type: {}", v["type"].as_str().unwrap_or_default());
                println!(
                    "token_endpoint_auth_method: {}",
                    v["token_endpoint_auth_method"].as_str().unwrap_or_default()
                );
                match &c.kind {
                    ClientKind::PrivateKeyJwt { keys: ClientKeys::Uri { jwks_uri } } => {
                        println!("jwks_uri: {jwks_uri}")
                    }
                    ClientKind::PrivateKeyJwt { keys: ClientKeys::Inline { jwks } } => {
                        let kids: Vec<String> = serde_json::from_str::<serde_json::Value>(jwks)
                            .ok()
                            .and_then(|v| v["keys"].as_array().cloned())
                            .unwrap_or_default()
                            .iter()
                            .map(|k| k["kid"].as_str().unwrap_or("(no kid)").to_owned())
                            .collect();
                        println!("jwks: {} key(s): {}", kids.len(), kids.join(" "));
                    }
                    _ => {}
                }
                let p = &c.protection;
                println!("require_pushed_authorization_requests: {}", p.require_pushed_authorization_requests);
                println!("dpop_bound_access_tokens: {}", p.dpop_bound_access_tokens);
                let profile = match p.profile {
                    Some(SecurityProfile::Fapi2) => "fapi2",
                    Some(SecurityProfile::Standard) => "standard",
                    None => "(the deployment's)",
                };
                println!("profile: {profile}");
                for r in &c.redirect_uris {
                    println!("redirect_uri: {r}");
                }
                println!("grant_types: {}", c.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(" "));
                println!("scope: {}", c.allowed_scope);
                println!("first_party: {}", c.first_party);
                println!("id_token_signed_response_alg: {}", c.id_token_signed_response_alg.as_str());
                for r in &c.post_logout_redirect_uris {
                    println!("post_logout_redirect_uri: {r}");
                }
                for a in &c.audiences {
                    println!("audience: {a}");
                }
                if let Some(b) = &c.backchannel_logout {
                    println!("backchannel_logout_uri: {}", b.uri);
                    println!("backchannel_logout_session_required: {}", b.session_required);
                }
                println!("second_factor: {}", c.second_factor.as_str());
                println!("dpop_bound_access_tokens: {}", c.protection.dpop_bound_access_tokens);
            }
        }
        ClientCommand::Remove { client_id } => {
            let id = ClientId::parse(&client_id).map_err(|e| anyhow!("{}", e.description))?;
            if !latchkey_core::admin::remove_client(store.as_ref(), &id, Clock::system().now())
                .await
                .map_err(admin_err)?
            {
                bail!("no client with client_id {client_id:?}");
            }
            println!("removed client {client_id}");
        }
    }
    Ok(())
}

fn read_password() -> anyhow::Result<Password> {
    let mut s = String::new();
    std::io::stdin().take(4096).read_to_string(&mut s).context("reading the password from standard input")?;
    let line = s.lines().next().unwrap_or("");
    if line.is_empty() {
        bail!("no password on standard input (try: printf '%s' \"$PASSWORD\" | latchkey user add …)");
    }
    Ok(Password::new(line))
}

pub async fn user(settings: &Settings, cmd: UserCommand) -> anyhow::Result<()> {
    match &cmd {
        UserCommand::Invite { email } => return crate::mail::invite(settings, email).await,
        UserCommand::SetEmail { username, email, verified } => {
            return crate::mail::set_email(settings, username, email, *verified).await;
        }
        _ => {}
    }
    let store = open_store(&settings.database, settings.store_options()).await?;
    match cmd {
        UserCommand::Add { username, email, name, phone, address, password_stdin: _ } => {
            let password = read_password()?;
            let hasher = Hasher::new(1)?;
            let u = latchkey_core::admin::add_user(
                store.as_ref(),
                &hasher,
                NewUser { username, email, name, phone_number: phone, address },
                password,
                Clock::system().now(),
            )
            .await
            .map_err(admin_err)?;
            println!("user_id: {}", u.id);
            println!("username: {}", u.username);
        }
        UserCommand::List { json } => {
            let users = store.users().await?;
            if json {
                let v: Vec<_> = users
                    .iter()
                    .map(|u| json!({"id": u.id, "username": u.username, "email": u.email, "name": u.name, "created_at": u.created_at}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else if users.is_empty() {
                eprintln!("no users");
            } else {
                for u in users {
                    println!("{}\t{}\t{}\t{}", u.username, u.email, u.name.unwrap_or_default(), u.id);
                }
            }
        }
        UserCommand::Remove { username } => {
            if !latchkey_core::admin::remove_user(store.as_ref(), &username, Clock::system().now())
                .await
                .map_err(admin_err)?
            {
                bail!("no user named {username:?}");
            }
            println!("removed user {username}");
        }
        UserCommand::SetPassword { username, password_stdin: _, keep_grants } => {
            let password = read_password()?;
            let hasher = Hasher::new(1)?;
            let grants = if keep_grants { ExistingGrants::Keep } else { ExistingGrants::Revoke };
            let Some(done) = latchkey_core::admin::set_password(
                store.as_ref(),
                &hasher,
                &username,
                password,
                grants,
                Clock::system().now(),
            )
            .await
            .map_err(admin_err)?
            else {
                bail!("no user named {username:?}");
            };
            println!("password changed for {username}");
            print_revocation(&done, grants);
        }
        UserCommand::Set(a) => crate::admin_user::set(store.as_ref(), *a).await?,
        UserCommand::Show { username, json } => crate::admin_user::show(store.as_ref(), &username, json).await?,
        UserCommand::Lock { username } => crate::admin_user::lock(store.as_ref(), &username, true).await?,
        UserCommand::Unlock { username } => crate::admin_user::lock(store.as_ref(), &username, false).await?,
        UserCommand::Sessions { username, json } => {
            crate::admin_user::sessions(store.as_ref(), &username, json).await?;
        }
        UserCommand::EndSessions { username, sid } => {
            crate::admin_user::end_sessions(store.as_ref(), &username, sid.as_deref()).await?;
        }
        UserCommand::RevokeTokens { username } => {
            let Some(done) = latchkey_core::admin::revoke_user_tokens(store.as_ref(), &username, Clock::system().now())
                .await
                .map_err(admin_err)?
            else {
                bail!("no user named {username:?}");
            };
            println!("revoked the tokens of {username}");
            print_revocation(&done, ExistingGrants::Revoke);
        }
        UserCommand::Invite { .. } | UserCommand::SetEmail { .. } => {} // handled above
        UserCommand::ResetFactors { username } => {
            let Some((totp, codes, passkeys)) =
                latchkey_core::factors::manage::reset_factors(store.as_ref(), &username, Clock::system().now()).await?
            else {
                bail!("no user named {username:?}");
            };
            println!("reset the second factors of {username}");
            println!("totp removed: {}", if totp { "yes" } else { "no (none was set up)" });
            println!("recovery codes removed: {codes}");
            println!("passkeys removed: {passkeys}");
        }
    }
    Ok(())
}

/// Says exactly what ending a user's access did, and what it cannot reach.
pub(crate) fn print_revocation(r: &UserRevocation, grants: ExistingGrants) {
    println!("sessions ended: {}", r.sessions_ended);
    match grants {
        ExistingGrants::Revoke => {
            println!(
                "grants revoked: {} (their refresh tokens and access tokens are refused from now on)",
                r.grants_revoked
            );
            // A JWT is self-contained: an API that verifies it locally does not ask the server.
            println!(
                "note: APIs that verify access tokens locally (without introspection) accept already issued ones until they expire"
            );
        }
        ExistingGrants::Keep => {
            println!("grants kept (--keep-grants): existing refresh and access tokens keep working");
        }
    }
}

/// `--since`: `30m`, `2h`, `7d`, `90s`, or Unix seconds.
fn parse_since(s: &str, now: i64) -> Result<i64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| format!("--since {s:?}: use e.g. 30m, 2h, 7d or Unix seconds"))?;
    let secs = match unit {
        "" => return Ok(n),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("--since {s:?}: the unit must be s, m, h or d")),
    };
    Ok(now - secs)
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Only events since then: a duration back from now (30m, 2h, 7d) or Unix seconds.
    #[arg(long)]
    since: Option<String>,
    /// Only events about this user (username).
    #[arg(long)]
    user: Option<String>,
    /// At most this many events, newest first.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[arg(long)]
    json: bool,
}

/// `latchkey audit`: the security events, newest first.
pub async fn audit(settings: &Settings, a: AuditArgs) -> anyhow::Result<()> {
    let store = open_store(&settings.database, settings.store_options()).await?;
    let now = Clock::system().now();
    let since = a.since.as_deref().map(|s| parse_since(s, now)).transpose().map_err(|e| anyhow!(e))?;
    let user_id = match &a.user {
        Some(name) => Some(store.user_by_username(name).await?.ok_or_else(|| anyhow!("no user named {name:?}"))?.id),
        None => None,
    };
    let events = store.audit_events(since, user_id.as_deref(), a.limit).await?;
    if a.json {
        for e in &events {
            println!("{}", serde_json::to_string(e)?);
        }
        return Ok(());
    }
    if events.is_empty() {
        eprintln!("no events");
    }
    for e in events {
        println!(
            "{}\t{}\tuser={}\tclient={}\tip={}\t{}",
            e.at,
            e.event,
            e.user_id.as_deref().unwrap_or("-"),
            e.client_id.as_deref().unwrap_or("-"),
            e.ip.as_deref().unwrap_or("-"),
            e.detail
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since_accepts_durations_and_timestamps() {
        assert_eq!(parse_since("30m", 10_000), Ok(10_000 - 1800));
        assert_eq!(parse_since("2d", 200_000), Ok(200_000 - 172_800));
        assert_eq!(parse_since("1700000000", 0), Ok(1_700_000_000));
        assert!(parse_since("soon", 0).is_err());
        assert!(parse_since("5y", 0).is_err());
    }
}
