// The page of oidc_client_ts.test.mjs: oidc-client-ts's UserManager with DPoP (RFC 9449), from
// its browser bundle (the global `oidc`). The test drives it through `window.app`.
"use strict";

const cfg = window.TEST_CONFIG;
const $ = (id) => document.getElementById(id);

const manager = new oidc.UserManager({
  authority: cfg.issuer,
  client_id: cfg.clientId,
  redirect_uri: `${location.origin}/callback`,
  scope: "openid profile email",
  // The key pair (non-extractable, made by the library) is kept in IndexedDB, so it survives the
  // redirect; bind_authorization_code sends its thumbprint as dpop_jkt (RFC 9449 §10).
  dpop: { bind_authorization_code: true, store: new oidc.IndexedDbDPoPStore() },
  // oidc-client-ts 3.5 calls userinfo with `Authorization: Bearer`, which a DPoP-bound token may
  // not be sent with (§7.2): the profile comes from the id_token.
  loadUserInfo: false,
  automaticSilentRenew: false,
});

// What the test looks at, as plain data (a User does not cross page.evaluate).
const plain = (user) =>
  user && { token_type: user.token_type, access_token: user.access_token, refresh_token: user.refresh_token, sub: user.profile.sub };

// The API's last nonce: good for a while, and each answer may bring a newer one (§9). The library
// keeps the authorization server's nonce itself, but a resource's is the caller's to keep.
let apiNonce;

// A call to the API with the user's token and a proof made by oidc-client-ts (dpopProof), once
// more with the API's nonce when it asks for one (§9).
async function callApi() {
  const user = await manager.getUser();
  for (let attempt = 1; ; attempt++) {
    const proof = await manager.dpopProof(cfg.api, user, "GET", apiNonce);
    const res = await fetch(cfg.api, { headers: { Authorization: `DPoP ${user.access_token}`, DPoP: proof } });
    apiNonce = res.headers.get("DPoP-Nonce") || apiNonce;
    const asked = /error="use_dpop_nonce"/.test(res.headers.get("WWW-Authenticate") || "");
    if (attempt === 1 && res.status === 401 && asked) continue;
    return { status: res.status, body: await res.json() };
  }
}

window.app = {
  user: async () => plain(await manager.getUser()),
  callApi,
  // With a refresh token, signinSilent refreshes with it (no iframe), with a new proof.
  refresh: async () => plain(await manager.signinSilent()),
  // Forgets the user and its DPoP key; a proof can no longer be made.
  forget: async () => {
    await manager.removeUser();
    return manager.dpopProof(cfg.api, { access_token: "x" }, "GET");
  },
};

$("login").addEventListener("click", () => manager.signinRedirect().catch((e) => ($("status").textContent = e.message)));

if (location.pathname === "/callback") {
  manager.signinCallback().then(
    (user) => {
      history.replaceState(null, "", "/");
      $("status").textContent = "Signed in";
      $("output").textContent = JSON.stringify({ sub: user.profile.sub, token_type: user.token_type, scope: user.scope }, null, 2);
    },
    (e) => ($("status").textContent = `Sign-in failed: ${e.message}`),
  );
}
