// A real OpenID provider for the single sign-on tests: oidc-provider on 127.0.0.1.
//
//   node provider.mjs CONFIG.json
//
// CONFIG: {"issuer": "http://127.0.0.1:PORT", "port": PORT,
//          "resources": {"urn:...": "AUDIENCE", ...}, "default_resource": "urn:...",
//          "access_token_seconds": 600,
//          "clients": [{"client_id", "client_secret", "redirect_uris": [...]}],
//          "accounts": {"LOGIN": {"preferred_username": ..., "groups": [...]}}}
// An account's claims are given as they are: one without `groups` has no groups claim at all.
// The login form (devInteractions: fields `login` and `password`) takes any password of a
// configured login; consent is never asked. Access tokens for a resource (the default one
// unless the authorization request names another) are JWTs (RS256) for its audience, carrying
// `preferred_username` and `groups`; signing keys are made at start.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const scopes = ['openid', 'profile', 'groups'];

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
}

function claimsOf(login) {
  return config.accounts[login];
}

function tokenClaims(claims) {
  const extra = { preferred_username: claims.preferred_username };
  if ('groups' in claims) extra.groups = claims.groups;
  return extra;
}

const provider = new Provider(config.issuer, {
  clients: config.clients.map((client) => ({
    ...client,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  jwks: { keys: [signingKey()] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  scopes,
  claims: { openid: ['sub'], profile: ['preferred_username'], groups: ['groups'] },
  conformIdTokenClaims: false,
  ttl: { AccessToken: config.access_token_seconds ?? 600, IdToken: 600 },
  async findAccount(ctx, login) {
    const claims = claimsOf(login);
    if (!claims) return undefined;
    return { accountId: login, claims: async () => ({ sub: login, ...claims }) };
  },
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(scopes.join(' '));
    grant.addOIDCClaims(['preferred_username', 'groups']);
    for (const resource of Object.keys(config.resources)) grant.addResourceScope(resource, 'api');
    await grant.save();
    return grant;
  },
  async extraTokenClaims(ctx, token) {
    const claims = claimsOf(token.accountId);
    return claims ? tokenClaims(claims) : undefined;
  },
  features: {
    devInteractions: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => config.default_resource,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, indicator) => {
        const audience = config.resources[indicator];
        if (!audience) throw new Error(`unknown resource ${indicator}`);
        return {
          scope: 'api',
          audience,
          accessTokenTTL: config.access_token_seconds ?? 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
});

// The login page's stylesheet imports a web font from the internet: the tests' browser may
// reach nothing but this provider and the UI.
provider.use(async (ctx, next) => {
  await next();
  if (typeof ctx.body === 'string' && ctx.type === 'text/html') {
    ctx.body = ctx.body.replace(/@import url\(https?:[^)]*\);?/g, '');
  }
});

const server = provider.listen(config.port, '127.0.0.1', () => {
  console.log(`openid provider ${config.issuer} listening`);
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
