// DPoP (RFC 9449) for the SPA, with WebCrypto and IndexedDB only. app.js uses it when config.js
// says `dpop: true`: the tokens are then bound to a key pair this tab made, so a copy of a token
// (read from storage, a log, a proxy) is useless without the private key, which no script can
// read: it is made non-extractable, and the browser keeps it.
//
//   keyPair()     the tab's ES256 key pair, made at sign-in and kept in IndexedDB, the one store
//                 that holds a CryptoKey as it is (sessionStorage holds strings only), so that it
//                 survives the redirect to the provider and back.
//   thumbprint()  its RFC 7638 JWK thumbprint, sent as `dpop_jkt` at /authorize (§10).
//   fetch()       a request with a fresh proof in the `DPoP` header (§4), and with
//                 `Authorization: DPoP <token>` when it carries an access token (§7.1); retried
//                 once with the server's nonce when the server asks for one (§8, §9).
"use strict";

window.LatchkeyDpop = (() => {
  const DB = "latchkey-spa";
  const STORE = "dpop-keys";
  // Each tab has its own key, named by an id in its sessionStorage: two tabs signed in at once
  // never replace each other's key (IndexedDB is shared by every tab of the origin).
  const KEY_ID = "dpop-key";

  function base64url(bytes) {
    let s = "";
    for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  const utf8 = (text) => new TextEncoder().encode(text);
  const sha256 = async (text) => base64url(await crypto.subtle.digest("SHA-256", utf8(text)));

  // One IndexedDB request in a transaction of its own, as a promise.
  function withStore(mode, use) {
    return new Promise((resolve, reject) => {
      const open = indexedDB.open(DB, 1);
      open.onupgradeneeded = () => open.result.createObjectStore(STORE);
      open.onerror = () => reject(open.error);
      open.onsuccess = () => {
        const db = open.result;
        const request = use(db.transaction(STORE, mode).objectStore(STORE));
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
        request.transaction.oncomplete = () => db.close();
      };
    });
  }

  // A new key pair for this tab, replacing the one it had: each sign-in gets its own key.
  // `extractable: false` keeps the private key inside the browser: exportKey refuses it, so a
  // script (an XSS payload included) can sign with it while the page is open but never carry it
  // away (§11.4 lists what that still allows). The public key stays exportable, for the proofs.
  async function newKeyPair() {
    const keys = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
    await forget();
    const id = base64url(crypto.getRandomValues(new Uint8Array(16)));
    await withStore("readwrite", (s) => s.put(keys, id));
    sessionStorage.setItem(KEY_ID, id);
    return keys;
  }

  async function keyPair() {
    const id = sessionStorage.getItem(KEY_ID);
    const keys = id && (await withStore("readonly", (s) => s.get(id)));
    if (!keys) throw new Error("this tab has no DPoP key: sign in again");
    return keys;
  }

  // At sign-out: the key goes, and with it any use of the tokens bound to it.
  async function forget() {
    const id = sessionStorage.getItem(KEY_ID);
    sessionStorage.removeItem(KEY_ID);
    if (id) await withStore("readwrite", (s) => s.delete(id));
  }

  // The public key as the proof's header carries it: the EC members only (RFC 7517 §4, §6.2.1).
  async function publicJwk(keys) {
    const { kty, crv, x, y } = await crypto.subtle.exportKey("jwk", keys.publicKey);
    return { kty, crv, x, y };
  }

  // RFC 7638 §3: SHA-256 of the required members, in lexicographic order, without whitespace.
  async function thumbprint(keys) {
    const { crv, kty, x, y } = await publicJwk(keys ?? (await keyPair()));
    return sha256(JSON.stringify({ crv, kty, x, y }));
  }

  // A DPoP proof (§4.2): a JWT of type dpop+jwt, signed with the private key, its public half in
  // the header. It names this one request (htm, htu without query or fragment), when (iat), and
  // carries a unique jti (the server refuses a proof it saw before, §11.1), the access token's
  // hash (ath) when a token goes along (§4.2, so the proof cannot go with another token), and the
  // server's nonce when it gave one (§8, §9).
  async function proof({ method, url, accessToken, nonce }) {
    const keys = await keyPair();
    const header = { typ: "dpop+jwt", alg: "ES256", jwk: await publicJwk(keys) };
    const htu = new URL(url);
    htu.search = "";
    htu.hash = "";
    const claims = {
      jti: base64url(crypto.getRandomValues(new Uint8Array(16))),
      htm: method,
      htu: htu.toString(),
      iat: Math.floor(Date.now() / 1000),
    };
    if (accessToken) claims.ath = await sha256(accessToken);
    if (nonce) claims.nonce = nonce;
    const input = base64url(utf8(JSON.stringify(header))) + "." + base64url(utf8(JSON.stringify(claims)));
    // WebCrypto's ECDSA signature is r || s, 64 bytes: the JWS form of ES256 (RFC 7518 §3.4).
    const signature = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, keys.privateKey, utf8(input));
    return input + "." + base64url(signature);
  }

  // The last nonce each server (origin) gave: a nonce is that server's, good for a while and for
  // any number of proofs (§8.2), and every answer may bring a newer one.
  const nonces = new Map();

  // Whether the answer asks for a (new) nonce: the authorization server says so with a 400
  // `use_dpop_nonce` (§8), a resource server in its 401 challenge (§9).
  async function asksForNonce(res) {
    if (res.status === 401) return /error="use_dpop_nonce"/.test(res.headers.get("WWW-Authenticate") || "");
    if (res.status !== 400) return false;
    try {
      return (await res.clone().json()).error === "use_dpop_nonce";
    } catch {
      return false;
    }
  }

  async function dpopFetch(url, { method = "GET", headers = {}, body, accessToken } = {}) {
    const origin = new URL(url).origin;
    for (let attempt = 1; ; attempt++) {
      const h = new Headers(headers);
      h.set("DPoP", await proof({ method, url, accessToken, nonce: nonces.get(origin) }));
      if (accessToken) h.set("Authorization", "DPoP " + accessToken);
      const res = await fetch(url, { method, headers: h, body });
      // The server needs CORS to let the page read it (Access-Control-Expose-Headers).
      const nonce = res.headers.get("DPoP-Nonce");
      if (nonce) nonces.set(origin, nonce);
      // Once: a second refusal means something else is wrong, and a loop would never end.
      if (attempt === 1 && nonce && (await asksForNonce(res))) continue;
      return res;
    }
  }

  return { newKeyPair, forget, thumbprint, fetch: dpopFetch };
})();
