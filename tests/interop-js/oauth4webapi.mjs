// oauth4webapi 3 (unmodified) against Latchkey, the same steps as openid_client.mjs at the lower
// level: discovery; PAR + code + PKCE with a DPoP key, userinfo and refresh with DPoP; a refresh
// with another DPoP key (refused); a private_key_jwt client at PAR, /token, /introspect and
// /revoke; an assertion by an unregistered key (refused). Run by crates/cli/tests/js_interop.rs.
import * as oauth from 'oauth4webapi'
import {
  clientKey,
  installedVersion,
  keyThumbprint,
  oauthError,
  recordingFetch,
  run,
  setting,
  unregisteredKey,
  userAgrees,
} from './common.mjs'

const issuer = new URL(setting('LATCHKEY_ISSUER'))
const redirectUri = setting('LATCHKEY_REDIRECT')
const publicClient = { client_id: setting('LATCHKEY_PUBLIC_CLIENT') }
const keyedClient = { client_id: setting('LATCHKEY_KEYED_CLIENT') }
const clientJwk = setting('LATCHKEY_CLIENT_JWK')

const log = []
// The test's issuer is http://127.0.0.1:PORT: allowInsecureRequests lets the library speak plain
// HTTP to it. Only here, on loopback, in a test; a real deployment is https.
const http = { [oauth.allowInsecureRequests]: true, [oauth.customFetch]: recordingFetch(log) }

/**
 * oauth4webapi leaves the RFC 9449 §8 retry to its caller: the DPoP handle keeps the nonce of
 * the refusal, and a second request carries it. This is the library's documented pattern.
 */
async function withNonceRetry(request, process) {
  try {
    return await process(await request())
  } catch (err) {
    if (!oauth.isDPoPNonceError(err)) throw err
    return process(await request())
  }
}

async function discover() {
  return oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, http))
}

/** PAR (with `DPoP` if given), the sign-in by the test, and the code exchange. */
async function codeFlow(as, client, auth, DPoP) {
  const verifier = oauth.generateRandomCodeVerifier()
  const state = oauth.generateRandomState()
  const params = new URLSearchParams({
    response_type: 'code',
    redirect_uri: redirectUri,
    scope: 'openid profile email',
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
  })
  const opts = DPoP ? { ...http, DPoP } : http
  const pushed = await withNonceRetry(
    () => oauth.pushedAuthorizationRequest(as, client, auth, params, opts),
    (res) => oauth.processPushedAuthorizationResponse(as, client, res),
  )
  const url = new URL(as.authorization_endpoint)
  url.searchParams.set('client_id', client.client_id)
  url.searchParams.set('request_uri', pushed.request_uri)
  const callback = oauth.validateAuthResponse(as, client, await userAgrees(url), state)
  const tokens = await withNonceRetry(
    () => oauth.authorizationCodeGrantRequest(as, client, auth, callback, redirectUri, verifier, opts),
    (res) => oauth.processAuthorizationCodeResponse(as, client, res),
  )
  return { url, tokens }
}

async function dpopFlow(as) {
  const client = publicClient
  const auth = oauth.None()
  const keyPair = await oauth.generateKeyPair('ES256')
  const DPoP = oauth.DPoP(client, keyPair)
  const { url, tokens } = await codeFlow(as, client, auth, DPoP)
  const claims = oauth.getValidatedIdTokenClaims(tokens)
  const userinfo = await withNonceRetry(
    () => oauth.userInfoRequest(as, client, tokens.access_token, { ...http, DPoP }),
    (res) => oauth.processUserInfoResponse(as, client, claims.sub, res),
  )
  const refresh = (rt, handle) =>
    withNonceRetry(
      () => oauth.refreshTokenGrantRequest(as, client, auth, rt, { ...http, DPoP: handle }),
      (res) => oauth.processRefreshTokenResponse(as, client, res),
    )
  const refreshed = await refresh(tokens.refresh_token, DPoP)

  // RFC 9449 §5.2: a public client's refresh token is bound to its DPoP key; a proof by any
  // other key (a thief's) is refused, and the refusal spends nothing.
  const thief = oauth.DPoP(client, await oauth.generateKeyPair('ES256'))
  let otherKey = null
  try {
    await refresh(refreshed.refresh_token, thief)
  } catch (err) {
    otherKey = oauthError(err)
  }
  const again = await refresh(refreshed.refresh_token, DPoP)
  return {
    jkt: await keyThumbprint(keyPair),
    authorization_url: url.href,
    token_type: tokens.token_type,
    access_token: tokens.access_token,
    id_token_sub: claims.sub,
    userinfo: { sub: userinfo.sub, preferred_username: userinfo.preferred_username },
    refresh: { token_type: refreshed.token_type, access_token: refreshed.access_token },
    other_key_refresh: otherKey,
    after_refusal: { token_type: again.token_type, access_token: again.access_token },
  }
}

async function keyedFlow(as) {
  const client = keyedClient
  const auth = oauth.PrivateKeyJwt(await clientKey(clientJwk))
  const { url, tokens } = await codeFlow(as, client, auth, null)
  const introspect = async (token, a) =>
    oauth.processIntrospectionResponse(as, client, await oauth.introspectionRequest(as, client, a, token, http))
  const introspection = await introspect(tokens.access_token, auth)
  await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, auth, tokens.access_token, http))
  const afterRevoke = await introspect(tokens.access_token, auth)

  // RFC 7523 §3: an assertion Latchkey cannot verify with the client's registered keys.
  let unregistered = null
  try {
    await introspect(tokens.refresh_token, oauth.PrivateKeyJwt(await unregisteredKey()))
  } catch (err) {
    unregistered = oauthError(err)
  }
  return {
    authorization_url: url.href,
    token_type: tokens.token_type,
    access_token: tokens.access_token,
    introspection: { active: introspection.active, client_id: introspection.client_id, sub: introspection.sub },
    after_revoke: { active: afterRevoke.active },
    unregistered_key: unregistered,
  }
}

run(async () => {
  const as = await discover()
  const dpop = await dpopFlow(as)
  const keyed = await keyedFlow(as)
  return { library: 'oauth4webapi', version: installedVersion('oauth4webapi'), dpop, keyed, requests: log }
})
