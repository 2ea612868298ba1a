// What both library scripts share: the settings from crates/cli/tests/js_interop.rs, the
// two-step exchange with it for the browser part, a fetch that records what went over the wire,
// and an RFC 7638 thumbprint computed here, independently of the libraries and of Latchkey.
import { createInterface } from 'node:readline'
import { webcrypto } from 'node:crypto'
import { readFileSync } from 'node:fs'

/** A setting the Rust test passes in the environment; a missing one is a harness bug. */
export function setting(name) {
  const value = process.env[name]
  if (value === undefined || value === '') throw new Error(`${name} is not set (run by crates/cli/tests/js_interop.rs)`)
  return value
}

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()

/**
 * The browser part of the code flow is not the library's job: the authorization URL goes to the
 * Rust test on stdout, which signs alice in through Latchkey's HTML pages and answers with the
 * URL Latchkey redirected to (the callback, with code, state and iss).
 */
export async function userAgrees(authorizationUrl) {
  process.stdout.write(JSON.stringify({ authorize: authorizationUrl.href }) + '\n')
  const { value, done } = await lines.next()
  if (done) throw new Error('the test closed stdin before answering with the callback URL')
  return new URL(value.trim())
}

function b64urlJson(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))
}

/**
 * A fetch that records each request: the endpoint, the DPoP proof's nonce and key thumbprint,
 * whether a client assertion was sent (and the thumbprint of nothing else: no secret is kept),
 * the status and the error of the answer. The test reads this log to prove what the library did
 * (e.g. that it retried with the nonce Latchkey asked for).
 */
export function recordingFetch(log) {
  return async (url, options = {}) => {
    const u = new URL(url)
    const headers = new Headers(options.headers)
    const entry = { method: options.method ?? 'GET', path: u.pathname }
    const proof = headers.get('dpop')
    if (proof) {
      const [header, claims] = proof.split('.').slice(0, 2).map(b64urlJson)
      entry.dpop = { nonce: claims.nonce ?? null, jkt: await thumbprint(header.jwk), htu: claims.htu, htm: claims.htm }
    }
    const auth = headers.get('authorization')
    if (auth) entry.scheme = auth.split(' ')[0]
    if (options.body !== undefined && options.body !== null) {
      const form = new URLSearchParams(options.body.toString())
      entry.params = [...new Set(form.keys())].sort()
      const assertion = form.get('client_assertion')
      if (assertion) {
        const [header, claims] = assertion.split('.').slice(0, 2).map(b64urlJson)
        entry.assertion = { alg: header.alg, kid: header.kid ?? null, aud: claims.aud, iss: claims.iss }
      }
    }
    const res = await fetch(url, options)
    entry.status = res.status
    entry.nonce_header = res.headers.get('dpop-nonce') !== null
    if (res.status >= 400) {
      const body = await res.clone().text()
      try {
        entry.error = JSON.parse(body).error ?? null
      } catch {
        entry.error = null
      }
      const challenge = res.headers.get('www-authenticate')
      if (challenge) entry.www_authenticate = challenge
    }
    log.push(entry)
    return res
  }
}

/** RFC 7638 §3.2: the SHA-256 thumbprint of the required members of a public JWK, in order. */
export async function thumbprint(jwk) {
  let members
  if (jwk.kty === 'EC') members = { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }
  else if (jwk.kty === 'OKP') members = { crv: jwk.crv, kty: jwk.kty, x: jwk.x }
  else if (jwk.kty === 'RSA') members = { e: jwk.e, kty: jwk.kty, n: jwk.n }
  else throw new Error(`no thumbprint for kty ${jwk.kty}`)
  const digest = await webcrypto.subtle.digest('SHA-256', new TextEncoder().encode(JSON.stringify(members)))
  return Buffer.from(digest).toString('base64url')
}

/** The thumbprint of a DPoP key pair's public half. */
export async function keyThumbprint(keyPair) {
  return thumbprint(await webcrypto.subtle.exportKey('jwk', keyPair.publicKey))
}

/** The ES256 private key of the private_key_jwt client, from the JWK the test made. */
export async function clientKey(jwkText) {
  const jwk = JSON.parse(jwkText)
  const key = await webcrypto.subtle.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign'])
  return { key, kid: jwk.kid }
}

/** A fresh ES256 key that Latchkey has never seen (for the refusal). */
export async function unregisteredKey() {
  const pair = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])
  return { key: pair.privateKey, kid: 'not-registered' }
}

/** What an OAuth error thrown by either library says: its `error` code and its HTTP status. */
export function oauthError(err) {
  return {
    error: err?.error ?? err?.cause?.error ?? null,
    status: err?.status ?? err?.response?.status ?? err?.cause?.status ?? null,
    name: err?.name ?? null,
    message: String(err?.message ?? err),
  }
}

/** Runs `main`, prints its result as the last JSON line, and exits (0 when it succeeded). */
export async function run(main) {
  let result
  try {
    result = { ok: true, ...(await main()) }
  } catch (err) {
    result = { ok: false, error: String(err?.stack ?? err), cause: oauthError(err) }
  }
  process.stdout.write(JSON.stringify(result) + '\n')
  process.exit(result.ok ? 0 : 1)
}

/** The version of `name` that npm installed here (the lock file's pin). */
export function installedVersion(name) {
  const file = new URL(`./node_modules/${name}/package.json`, import.meta.url)
  return JSON.parse(readFileSync(file, 'utf8')).version
}
