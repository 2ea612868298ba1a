// The seed's Authorization Code flow with PKCE, in a browser, with no library:
//   Step 2: a code_verifier and its S256 code_challenge (WebCrypto).
//   Step 3: redirect to /authorize with state and nonce.
//   Step 4: back on the redirect URI: check state and iss (RFC 9207), then
//   Step 5: exchange the code at /token from JavaScript (CORS allows this page's origin because it
//           is the origin of a registered redirect URI).
//   Steps 8-9: call the protected API with the access token. Then refresh, and sign out.
// Tokens (and the userinfo answer) live in sessionStorage only, gone when the tab closes; the
// verifier never leaves the tab.
// With `dpop: true` in config.js the tokens are bound to a key of this tab (RFC 9449, dpop.js):
// `dpop_jkt` at /authorize, a proof with every token request, and `Authorization: DPoP` with a
// proof for userinfo and the API.
"use strict";

const cfg = window.LATCHKEY_CONFIG;
const Dpop = window.LatchkeyDpop;
const $ = (id) => document.getElementById(id);
const show = (obj) => { $("output").textContent = typeof obj === "string" ? obj : JSON.stringify(obj, null, 2); };
const status = (text, isError) => { $("status").textContent = text; $("status").className = isError ? "error" : ""; };

function base64url(bytes) {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
function randomString() {
  // 32 random bytes -> 43 base64url characters (RFC 7636 §4.1).
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}
async function s256(verifier) {
  return base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
}

let metadata = null;
async function discover() {
  if (!metadata) {
    const res = await fetch(cfg.issuer + "/.well-known/openid-configuration");
    if (!res.ok) throw new Error("discovery failed: HTTP " + res.status);
    metadata = await res.json();
  }
  return metadata;
}

async function login() {
  const meta = await discover();
  const verifier = randomString();
  const state = randomString();
  const nonce = randomString();
  sessionStorage.setItem("pkce", JSON.stringify({ verifier, state, nonce }));
  const url = new URL(meta.authorization_endpoint);
  const params = new URLSearchParams({
    response_type: "code",
    client_id: cfg.clientId,
    redirect_uri: cfg.redirectUri,
    scope: cfg.scope,
    code_challenge: await s256(verifier),
    code_challenge_method: "S256",
    state,
    nonce,
  });
  if (cfg.dpop) {
    // RFC 9449 §10: the code is bound to this key's thumbprint, so only a token request with a
    // proof by this key can redeem it (PKCE protects it too; this also binds it to the key).
    params.set("dpop_jkt", await Dpop.thumbprint(await Dpop.newKeyPair()));
  }
  url.search = params.toString();
  window.location.assign(url.toString());
}

// A call with the access token: `Authorization: Bearer`, or in DPoP mode `Authorization: DPoP`
// with a proof of this request that carries the token's hash (RFC 9449 §7.1).
function authorizedFetch(url, accessToken) {
  if (cfg.dpop) return Dpop.fetch(url, { accessToken });
  return fetch(url, { headers: { Authorization: "Bearer " + accessToken } });
}

async function tokenRequest(body) {
  const meta = await discover();
  const request = { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(body) };
  // RFC 9449 §5: a proof with each token request binds the new tokens (the refresh token of a
  // public client too) to the key.
  const res = await (cfg.dpop ? Dpop.fetch(meta.token_endpoint, request) : fetch(meta.token_endpoint, request));
  const json = await res.json();
  if (!res.ok) throw new Error(json.error + ": " + json.error_description);
  // A provider that ignored the proof would hand out bearer tokens (§5): say so rather than send
  // them with a scheme they do not have.
  if (cfg.dpop && json.token_type !== "DPoP") throw new Error("the provider did not bind the tokens to the key (token_type " + json.token_type + ")");
  return json;
}

function claims(jwt) {
  const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(decodeURIComponent(escape(atob(part))));
}

async function handleCallback(params) {
  const saved = JSON.parse(sessionStorage.getItem("pkce") || "null");
  sessionStorage.removeItem("pkce");
  history.replaceState(null, "", cfg.redirectUri);
  if (params.get("error")) throw new Error(params.get("error") + ": " + params.get("error_description"));
  if (!saved || params.get("state") !== saved.state) throw new Error("state does not match: not the request this tab made");
  if (params.get("iss") !== cfg.issuer) throw new Error("iss does not match the issuer (mix-up attack?)");
  const tokens = await tokenRequest({
    grant_type: "authorization_code",
    code: params.get("code"),
    redirect_uri: cfg.redirectUri,
    client_id: cfg.clientId,
    code_verifier: saved.verifier,
  });
  // The signature of the id_token is the server's concern here (it came straight from the token
  // endpoint over TLS); the nonce binds it to this tab's request.
  if (claims(tokens.id_token).nonce !== saved.nonce) throw new Error("id_token nonce does not match");
  sessionStorage.setItem("tokens", JSON.stringify(tokens));
  // The id_token says who (sub); the userinfo endpoint says the name to show (scope profile).
  sessionStorage.setItem("user", JSON.stringify(await userinfo(tokens.access_token)));
  return tokens;
}

async function userinfo(accessToken) {
  const meta = await discover();
  const res = await authorizedFetch(meta.userinfo_endpoint, accessToken);
  if (!res.ok) throw new Error("userinfo: HTTP " + res.status);
  return res.json();
}

function render() {
  const tokens = JSON.parse(sessionStorage.getItem("tokens") || "null");
  const user = JSON.parse(sessionStorage.getItem("user") || "{}");
  $("signed-in").hidden = !tokens;
  $("signed-out").hidden = !!tokens;
  if (tokens) {
    const sub = claims(tokens.id_token).sub;
    $("who").textContent = user.name || user.preferred_username || sub;
    $("sub").textContent = sub;
    $("binding").textContent =
      tokens.token_type === "DPoP" ? "Tokens bound to this tab's key (DPoP)" : "Bearer tokens (not bound to a key)";
  }
}

async function callApi() {
  const tokens = JSON.parse(sessionStorage.getItem("tokens"));
  // The Authorization header (and DPoP's) makes this a preflighted CORS request: the API must list
  // this origin.
  const res = await authorizedFetch(cfg.api, tokens.access_token);
  const text = await res.text();
  if (res.ok) {
    status("The API answered");
  } else {
    // RFC 6750 §3: why the token was refused (the API exposes this header to the page).
    status("The API refused: HTTP " + res.status + " " + (res.headers.get("WWW-Authenticate") || ""), true);
  }
  try {
    show(JSON.parse(text));
  } catch {
    show(text);
  }
}

async function refresh() {
  const old = JSON.parse(sessionStorage.getItem("tokens"));
  const fresh = await tokenRequest({ grant_type: "refresh_token", refresh_token: old.refresh_token, client_id: cfg.clientId });
  // A refresh response may leave out the id_token (OpenID Connect Core §12.2): keep the old one.
  const tokens = { ...old, ...fresh };
  sessionStorage.setItem("tokens", JSON.stringify(tokens));
  status("Refreshed: a new access token and a new refresh token");
  show({ expires_in: tokens.expires_in, scope: tokens.scope, rotated: tokens.refresh_token !== old.refresh_token });
}

async function logout() {
  const meta = await discover();
  const tokens = JSON.parse(sessionStorage.getItem("tokens"));
  sessionStorage.removeItem("tokens");
  sessionStorage.removeItem("user");
  // Revoke the refresh token (RFC 7009), then end the provider session (RP-initiated logout).
  // A failed revocation does not stop the sign-out: the session's end also ends its tokens.
  await fetch(meta.revocation_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token: tokens.refresh_token, token_type_hint: "refresh_token", client_id: cfg.clientId }),
  }).catch(() => {});
  // The key goes too: whatever copy of a token is left is of no use without it.
  if (cfg.dpop) await Dpop.forget().catch(() => {});
  // The id_token_hint lets Latchkey end its session without asking when the hint names that
  // session; otherwise (an older session, say) it asks the user first.
  const state = randomString();
  sessionStorage.setItem("logout", state);
  const url = new URL(meta.end_session_endpoint);
  url.search = new URLSearchParams({
    id_token_hint: tokens.id_token,
    client_id: cfg.clientId,
    post_logout_redirect_uri: cfg.redirectUri,
    state,
  }).toString();
  window.location.assign(url.toString());
}

function guard(fn) {
  return () => fn().catch((e) => { status(e.message, true); });
}

$("login").addEventListener("click", guard(login));
$("call-api").addEventListener("click", guard(callApi));
$("refresh").addEventListener("click", guard(refresh));
$("logout").addEventListener("click", guard(logout));

(async () => {
  const params = new URLSearchParams(window.location.search);
  try {
    if (params.has("code") || params.has("error")) {
      await handleCallback(params);
      status("Signed in");
    } else if (params.has("state")) {
      // Back from RP-initiated logout; the state tells whether it is the sign-out this tab started.
      const expected = sessionStorage.getItem("logout");
      sessionStorage.removeItem("logout");
      history.replaceState(null, "", cfg.redirectUri);
      if (expected && params.get("state") === expected) status("Signed out, here and at Latchkey");
    }
  } catch (e) {
    status(e.message, true);
  }
  render();
})();
