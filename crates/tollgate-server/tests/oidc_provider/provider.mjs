// node-oidc-provider (a certified OpenID provider) as the identity provider of an end-to-end test:
// users sign in through its own development interaction pages (any login, any password), the
// client `web` gets JWT access tokens for the resource `urn:orders` carrying the session's `sid`,
// and ending a session sends a back-channel logout token to BACKCHANNEL_LOGOUT_URI.
//
// Environment: PORT (listens on 127.0.0.1:PORT), BACKCHANNEL_LOGOUT_URI.
import Provider from 'oidc-provider';
import { generateKeyPair, exportJWK } from 'jose';

const alg = 'EdDSA';
const port = Number(process.env.PORT);
const logoutUri = process.env.BACKCHANNEL_LOGOUT_URI;
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = await generateKeyPair(alg, { extractable: true, crv: 'Ed25519' });
const jwk = { ...(await exportJWK(privateKey)), alg, use: 'sig', kid: 'k1' };

const provider = new Provider(issuer, {
  jwks: { keys: [jwk] },
  clients: [{
    client_id: 'web',
    client_secret: 'web-secret-0123456789',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: [`${issuer}/callback`],
    post_logout_redirect_uris: [`${issuer}/logged-out`],
    backchannel_logout_uri: logoutUri,
    backchannel_logout_session_required: true,
    id_token_signed_response_alg: alg,
  }],
  // Every sign-in asks for these, so that the test's pages are always the same.
  claims: { openid: ['sub'] },
  scopes: ['openid', 'orders'],
  pkce: { required: () => false },
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:orders',
      getResourceServerInfo: () => ({
        scope: 'orders',
        audience: 'urn:orders',
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg } },
      }),
      useGrantedResource: () => true,
    },
  },
  formats: {
    customizers: {
      // RFC 9068 leaves `sid` to the provider; this one puts the session's in its access tokens
      // (Keycloak does so by default), so that a logout can end exactly that session.
      jwt(ctx, token, jwt) {
        if (token.sid) jwt.payload.sid = token.sid;
      },
    },
  },
  // The provider refuses to send back-channel logouts to loopback addresses (its SSRF guard);
  // everything in this test is on loopback, so its configurable fetch goes without the guard.
  fetch: (url, options) => {
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  enabledJWA: { authorizationSigningAlgValues: [alg], idTokenSigningAlgValues: [alg] },
  // Plain HTTP on loopback: the test's provider has no TLS certificate.
  cookies: { keys: ['test-cookie-key-0123456789'] },
});
provider.proxy = false;
provider.on('backchannel.error', (ctx, err) => console.log(`backchannel.error ${err.message}`));
provider.on('server_error', (ctx, err) => console.log('server_error', err));
provider.on('backchannel.success', () => console.log('backchannel.success'));
provider.listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));
