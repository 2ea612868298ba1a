// Edit for your deployment (the browser test writes its own).
window.LATCHKEY_CONFIG = {
  issuer: "http://127.0.0.1:8080",
  clientId: "latchkey-spa",
  // This page's own URL: register it with `latchkey client add --public --redirect-uri …`.
  redirectUri: window.location.origin + window.location.pathname,
  scope: "openid profile email",
  // The demo protected API (examples/protected-api), called with the access token.
  api: "http://127.0.0.1:3000/me",
  // true: bind the tokens to a key of this tab (DPoP, RFC 9449); see README.md.
  dpop: false,
};
