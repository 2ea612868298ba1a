// openid-client 6 (unmodified) against Latchkey: discovery; PAR + code + PKCE with a DPoP key,
// userinfo and refresh with DPoP; a refresh with another DPoP key (refused); a private_key_jwt
// client at PAR, /token, /introspect and /revoke; an assertion by an unregistered key (refused).
// Prints one JSON line per authorization URL (the test answers with the callback URL on stdin)
// and one JSON result line last. Run by crates/cli/tests/js_interop.rs.
import * as client from 'openid-client'
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
const publicClient = setting('LATCHKEY_PUBLIC_CLIENT')
const keyedClient = setting('LATCHKEY_KEYED_CLIENT')
const clientJwk = setting('LATCHKEY_CLIENT_JWK')

const log = []
// The test's issuer is http://127.0.0.1:PORT: allowInsecureRequests lets the library speak plain
// HTTP to it. Only here, on loopback, in a test; a real deployment is https.
const options = { execute: [client.allowInsecureRequests], [client.customFetch]: recordingFetch(log) }

/** PAR (with `DPoP` if given), the sign-in by the test, and the code exchange. */
async function codeFlow(config, DPoP) {
  const verifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  const url = await client.buildAuthorizationUrlWithPAR(
    config,
    {
      redirect_uri: redirectUri,
      scope: 'openid profile email',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
    },
    DPoP ? { DPoP } : undefined,
  )
  const callback = await userAgrees(url)
  const tokens = await client.authorizationCodeGrant(
    config,
    callback,
    { pkceCodeVerifier: verifier, expectedState: state },
    undefined,
    DPoP ? { DPoP } : undefined,
  )
  return { url, tokens }
}

async function dpopFlow() {
  const config = await client.discovery(issuer, publicClient, undefined, client.None(), options)
  const keyPair = await client.randomDPoPKeyPair('ES256')
  const DPoP = client.getDPoPHandle(config, keyPair)
  const { url, tokens } = await codeFlow(config, DPoP)
  const claims = tokens.claims()
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub, { DPoP })
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP })

  // RFC 9449 §5.2: a public client's refresh token is bound to its DPoP key; a proof by any
  // other key (a thief's) is refused, and the refusal spends nothing.
  const thief = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'))
  let otherKey = null
  try {
    await client.refreshTokenGrant(config, refreshed.refresh_token, undefined, { DPoP: thief })
  } catch (err) {
    otherKey = oauthError(err)
  }
  const again = await client.refreshTokenGrant(config, refreshed.refresh_token, undefined, { DPoP })
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

async function keyedFlow() {
  const key = await clientKey(clientJwk)
  const config = await client.discovery(issuer, keyedClient, undefined, client.PrivateKeyJwt(key), options)
  const { url, tokens } = await codeFlow(config, null)
  const introspection = await client.tokenIntrospection(config, tokens.access_token)
  await client.tokenRevocation(config, tokens.access_token)
  const afterRevoke = await client.tokenIntrospection(config, tokens.access_token)

  // RFC 7523 §3: an assertion Latchkey cannot verify with the client's registered keys.
  const forged = await client.discovery(
    issuer,
    keyedClient,
    undefined,
    client.PrivateKeyJwt(await unregisteredKey()),
    options,
  )
  let unregistered = null
  try {
    await client.tokenIntrospection(forged, tokens.refresh_token)
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
  const version = installedVersion('openid-client')
  const dpop = await dpopFlow()
  const keyed = await keyedFlow()
  return { library: 'openid-client', version, dpop, keyed, requests: log }
})
