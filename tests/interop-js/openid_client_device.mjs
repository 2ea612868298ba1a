// openid-client 6 (unmodified) runs the device authorization grant (RFC 8628) against Latchkey:
// initiateDeviceAuthorization, then pollDeviceAuthorizationGrant with a DPoP key until the test
// approves on Latchkey's verification page; userinfo and a refresh with the same key; then a
// second request that the test denies, which the library must report as access_denied.
// Prints one JSON line per device request ({"device": "approve"|"deny", "user_code", …}: the test
// answers on the page while the library polls) and one JSON result line last. Run by
// crates/cli/tests/js_interop.rs.
import * as client from 'openid-client'
import { installedVersion, keyThumbprint, oauthError, recordingFetch, run, setting } from './common.mjs'

const issuer = new URL(setting('LATCHKEY_ISSUER'))
const deviceClient = setting('LATCHKEY_DEVICE_CLIENT')

const log = []
// http://127.0.0.1 in the test only (see openid_client.mjs).
const options = { execute: [client.allowInsecureRequests], [client.customFetch]: recordingFetch(log) }

/** Tells the test what the device would show, so that it can answer `decision` on the page. */
function show(decision, response) {
  const { user_code, verification_uri, verification_uri_complete, expires_in, interval } = response
  process.stdout.write(
    JSON.stringify({ device: decision, user_code, verification_uri, verification_uri_complete, expires_in, interval }) +
      '\n',
  )
}

run(async () => {
  const config = await client.discovery(issuer, deviceClient, undefined, client.None(), options)
  const keyPair = await client.randomDPoPKeyPair('ES256')
  const DPoP = client.getDPoPHandle(config, keyPair)

  const approved = await client.initiateDeviceAuthorization(config, { scope: 'openid profile' })
  show('approve', approved)
  const tokens = await client.pollDeviceAuthorizationGrant(config, approved, undefined, { DPoP })
  const claims = tokens.claims()
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub, { DPoP })
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP })

  const refused = await client.initiateDeviceAuthorization(config, { scope: 'openid' })
  show('deny', refused)
  let denial = null
  try {
    await client.pollDeviceAuthorizationGrant(config, refused)
  } catch (err) {
    denial = oauthError(err)
  }
  return {
    library: 'openid-client',
    version: installedVersion('openid-client'),
    jkt: await keyThumbprint(keyPair),
    interval: approved.interval,
    token_type: tokens.token_type,
    access_token: tokens.access_token,
    has_refresh_token: typeof tokens.refresh_token === 'string',
    id_token_sub: claims.sub,
    userinfo,
    refresh: { token_type: refreshed.token_type, access_token: refreshed.access_token },
    denial,
    requests: log,
  }
})
