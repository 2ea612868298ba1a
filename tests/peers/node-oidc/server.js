// A second, independent OpenID provider for Latchkey's client tests: node-oidc-provider with its
// development login and consent pages (any login name, any password), on 127.0.0.1 only.
//
// Prints one line `ISSUER http://127.0.0.1:PORT` on stdout when ready; stops when stdin closes, so
// a test that dies never leaves it behind.
//
// Environment:
// - PEER_PROFILE=strict: what a FAPI 2.0 deployment asks of clients. Every authorization request
//   must be pushed (PAR, RFC 9126), every DPoP proof must carry a server nonce (RFC 9449 §8, §9),
//   and latchkey-cli's tokens must be DPoP-bound.
// - latchkey-tv is a device client (RFC 8628, features.deviceFlow), DPoP-bound in the strict
//   profile.
// - PEER_CLIENT_JWKS: a JWK Set (public keys); registers `latchkey-pkjwt`, a confidential native
//   client that authenticates with private_key_jwt (RFC 7523 §2.2).
import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const strict = process.env.PEER_PROFILE === 'strict';
const clientJwks = process.env.PEER_CLIENT_JWKS ? JSON.parse(process.env.PEER_CLIENT_JWKS) : undefined;

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        // A native public client: any port on a loopback redirect URI (RFC 8252 §7.3).
        client_id: 'latchkey-cli',
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        redirect_uris: ['http://127.0.0.1/callback'],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        dpop_bound_access_tokens: strict,
      },
      ...(clientJwks ? [{
        client_id: 'latchkey-pkjwt',
        application_type: 'native',
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: clientJwks,
        redirect_uris: ['http://127.0.0.1/callback'],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
      }] : []),
      {
        // A device without a browser (RFC 8628): no redirect URI, the device code grant.
        client_id: 'latchkey-tv',
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        redirect_uris: [],
        grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
        response_types: [],
        dpop_bound_access_tokens: strict,
      },
      {
        // A confidential client: what a resource server uses for introspection (RFC 7662).
        client_id: 'api',
        client_secret: 'api-secret-api-secret-api-secret',
        redirect_uris: ['https://api.example/unused'],
        grant_types: [],
        response_types: [],
      },
    ],
    features: {
      devInteractions: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
      dPoP: strict
        ? { enabled: true, nonceSecret: crypto.randomBytes(32), requireNonce: () => true }
        : { enabled: true },
      pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: strict },
      // RFC 8628, with the library's own pages at /device (code entry, confirmation, success).
      deviceFlow: { enabled: true },
    },
    // Refresh tokens without offline_access, as Latchkey issues them to clients registered for it.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    ttl: { AccessToken: 600, IdToken: 600 },
    claims: { openid: ['sub'], profile: ['name'], email: ['email'] },
    findAccount: async (_ctx, id) => ({
      accountId: id,
      claims: async () => ({ sub: id, name: `${id} Example`, email: `${id}@example.com` }),
    }),
  });
  server.on('request', provider.callback());
  process.stdout.write(`ISSUER ${issuer}\n`);
});

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
