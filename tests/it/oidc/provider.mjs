// A real OpenID Provider for tessera's workload identity tests: oidc-provider (a certified
// OpenID Provider implementation from npm) on 127.0.0.1, with keys made at start (static for
// the life of the process), its own discovery document and JWKS, and clients that get signed
// JWT access tokens through the client_credentials grant (no browser).
//
//   PORT=NNNN node provider.mjs      prints "listening http://127.0.0.1:NNNN" when ready
//
// Each client stands for a CI job: its claims (as a CI platform puts them in its ID tokens)
// are added to the tokens it gets. The audience of a token is the `resource` asked for.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
if (!Number.isInteger(port) || port <= 0) {
  console.error('set PORT to a free port');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
const keys = [
  { ...rsa, kid: 'provider-rs256', alg: 'RS256', use: 'sig' },
  { ...ec, kid: 'provider-es256', alg: 'ES256', use: 'sig' },
];

// The jobs: client id -> the claims of its tokens.
const jobs = {
  'acme-app-main': { repository: 'acme/app', repository_owner_id: '123456', ref: 'refs/heads/main' },
  'acme-app-dev': { repository: 'acme/app', repository_owner_id: '123456', ref: 'refs/heads/dev' },
  'evil-app-main': { repository: 'evil/app', repository_owner_id: '666', ref: 'refs/heads/main' },
};
const secret = 'provider-test-client-secret-0123456789';

const provider = new Provider(issuer, {
  clients: Object.keys(jobs).map((client_id) => ({
    client_id,
    client_secret: secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  jwks: { keys },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'https://tessera.test',
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => ({
        scope: 'push',
        audience: resource,
        accessTokenTTL: 600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
  extraTokenClaims: (ctx, token) => jobs[token.clientId] ?? {},
});
provider.proxy = false;

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
