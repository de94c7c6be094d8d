// The peer tollgate's token issuance is compared with in benches/load/run.sh: node-oidc-provider,
// a certified OpenID provider, doing the same job as tollgate's client_credentials path (Ed25519-
// signed RFC 9068 JWT access tokens for one confidential client), with revocation and
// introspection switched on as tollgate has them.
//
//   npm install && node peer.mjs        # listens on 127.0.0.1:$PEER_PORT (default 3000)
//
// The client is the demo configuration's `svc` (secret `svc-secret-0123456789`, scope `api`), so
// one wrk script and one Authorization header drive both servers.
import Provider from 'oidc-provider';
import { exportJWK, generateKeyPair } from 'jose';

const port = Number(process.env.PEER_PORT ?? 3000);
const signing = 'EdDSA';

// A fresh key per start, as tollgate generates one in an empty data directory.
const { privateKey } = await generateKeyPair(signing, { crv: 'Ed25519', extractable: true });
const key = { ...(await exportJWK(privateKey)), kid: 'peer-1', alg: signing, use: 'sig' };

const jwtAccessTokens = {
  enabled: true,
  defaultResource: () => 'urn:tollgate-load',
  useGrantedResource: () => true,
  getResourceServerInfo: () => ({
    audience: 'urn:tollgate-load',
    scope: 'api',
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: signing } },
  }),
};

const provider = new Provider(`http://127.0.0.1:${port}`, {
  jwks: { keys: [key] },
  scopes: ['api'],
  clients: [
    {
      client_id: 'svc',
      client_secret: 'svc-secret-0123456789',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'api',
      id_token_signed_response_alg: signing,
    },
  ],
  enabledJWA: {
    idTokenSigningAlgValues: [signing],
    authorizationSigningAlgValues: [signing],
  },
  features: {
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: jwtAccessTokens,
    devInteractions: { enabled: false },
  },
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`load peer (node-oidc-provider) listening on http://127.0.0.1:${port}`);
});
