// The OAuth 2.0 server the tests send against, on loopback: `node server.js --port N`.
//
// oauth2-mock-server signs the tokens (RS256), serves the JWKS and the /authorize redirect, and checks PKCE when a
// verifier comes. It accepts any client, secret, scope, code and refresh token, and knows no JWT bearer grant, so this
// front does what a real provider does before handing a request on: client authentication, the grants and scopes a
// client is allowed, codes and refresh tokens it issued (and revoked), PKCE, and RFC 7523 assertions of service
// accounts. The pytest fixture (tests/fixtures/oauth.py) drives it through /_test/ endpoints.
import { createHash, randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { parseArgs } from "node:util";

import { decodeJwt, decodeProtectedHeader, importSPKI, jwtVerify } from "jose";
import { OAuth2Issuer, OAuth2Service } from "oauth2-mock-server";

const JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const GRANTS = ["client_credentials", "authorization_code", "refresh_token", JWT_BEARER];
const MAX_BODY = 64 * 1024;

const { values: args } = parseArgs({ options: { port: { type: "string" }, host: { type: "string" } } });
const host = args.host ?? "127.0.0.1";
const port = Number(args.port);

const issuer = new OAuth2Issuer();
issuer.url = `http://${host}:${port}`;
await issuer.keys.generate("RS256");
const service = new OAuth2Service(issuer);
const tokenUrl = `${issuer.url}/token`;

let config;
let codes; // code -> what /authorize granted, until the code is exchanged
let refreshTokens; // refresh token -> { client_id, email, scope, revoked }
let serviceAccounts; // client_email -> { private_key_id, key, scopes, subjects }
let requests; // what the token endpoint was asked and answered, for assertions (no secrets)

function reset(newConfig) {
  config = newConfig;
  codes = new Map();
  refreshTokens = new Map();
  serviceAccounts = new Map();
  requests = [];
}
reset({ expires_in: 3600, clients: {} });

class OAuthError extends Error {
  constructor(error, description, status = 400, headers = {}) {
    super(description);
    this.body = { error, error_description: description };
    this.status = status;
    this.headers = headers;
  }
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, {
    "Content-Type": "application/json", "Cache-Control": "no-store", Pragma: "no-cache", ...headers,
  });
  res.end(JSON.stringify(body));
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) throw new OAuthError("invalid_request", "request body too large");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

// RFC 6749 3.2: form-encoded parameters, each at most once.
async function readForm(req) {
  if (!(req.headers["content-type"] ?? "").startsWith("application/x-www-form-urlencoded")) {
    throw new OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded");
  }
  const params = new URLSearchParams(await readBody(req));
  const form = {};
  for (const [name, value] of params) {
    if (name in form) throw new OAuthError("invalid_request", `parameter ${name} repeated`);
    form[name] = value;
  }
  return form;
}

const scopesOf = (scope) => (scope ?? "").split(" ").filter(Boolean);

function checkScope(requested, allowed, error = "invalid_scope", description = undefined) {
  const scopes = scopesOf(requested);
  if (scopes.length === 0 || scopes.some((scope) => !allowed.includes(scope))) {
    throw new OAuthError(error, description ?? `scope not allowed: ${requested ?? "(none)"}`);
  }
  return scopes.join(" ");
}

// RFC 6749 2.3.1: HTTP Basic (each part form-encoded) or client_id/client_secret in the body, never both.
function authenticateClient(req, form, entry) {
  const header = req.headers.authorization ?? "";
  let id, secret;
  const basic = header.toLowerCase().startsWith("basic ");
  if (basic) {
    if ("client_secret" in form) throw new OAuthError("invalid_request", "two client authentication methods");
    const decoded = Buffer.from(header.slice(6).trim(), "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    const unform = (part) => decodeURIComponent(part.replace(/\+/g, " "));
    [id, secret] = colon < 0 ? [decoded, ""] : [unform(decoded.slice(0, colon)), unform(decoded.slice(colon + 1))];
  } else {
    [id, secret] = [form.client_id, form.client_secret];
  }
  entry.client_id = id;
  const client = config.clients[id];
  if (client === undefined || client.secret !== secret) {
    // RFC 6749 5.2: 401, with the challenge of the scheme the client tried.
    throw new OAuthError("invalid_client", "client authentication failed", 401,
      basic ? { "WWW-Authenticate": 'Basic realm="oauth"' } : {});
  }
  return { id, ...client };
}

function pkceMatches(verifier, record) {
  if (!/^[A-Za-z0-9\-._~]{43,128}$/.test(verifier ?? "")) return false;
  const derived = record.method === "S256" ? createHash("sha256").update(verifier).digest("base64url") : verifier;
  return derived === record.challenge;
}

// What the access token will say, by grant; the library then issues it (beforeTokenSigning/beforeResponse below).
async function checkGrant(client, form) {
  switch (form.grant_type) {
    case "client_credentials":
      return { email: client.mailbox, sub: client.id, scope: checkScope(form.scope, client.scopes) };
    case "authorization_code": {
      const record = codes.get(form.code);
      codes.delete(form.code); // single use, whatever the outcome (RFC 6749 4.1.2)
      if (record === undefined || record.client_id !== client.id) {
        throw new OAuthError("invalid_grant", "unknown, used or foreign authorization code");
      }
      if (record.redirect_uri !== form.redirect_uri) throw new OAuthError("invalid_grant", "redirect_uri mismatch");
      if (record.challenge !== undefined && !pkceMatches(form.code_verifier, record)) {
        throw new OAuthError("invalid_grant", "code_verifier does not match the code_challenge"); // RFC 7636 4.6
      }
      return { email: record.user, sub: record.user, scope: record.scope };
    }
    case "refresh_token": {
      const record = refreshTokens.get(form.refresh_token);
      if (record === undefined || record.revoked || record.client_id !== client.id) {
        throw new OAuthError("invalid_grant", "refresh token revoked, expired or unknown");
      }
      const scope = form.scope === undefined ? record.scope : checkScope(form.scope, scopesOf(record.scope));
      return { email: record.email, sub: record.email, scope };
    }
  }
}

async function token(req, res) {
  const entry = {};
  requests.push(entry);
  try {
    const form = await readForm(req);
    Object.assign(entry, { grant_type: form.grant_type, client_id: form.client_id });
    if (config.token_failure) {
      const { status, error, description } = config.token_failure;
      throw new OAuthError(error, description ?? "scripted failure", status);
    }
    if (!GRANTS.includes(form.grant_type)) {
      throw new OAuthError("unsupported_grant_type", `grant_type ${form.grant_type ?? "(none)"}`);
    }
    if (form.grant_type === JWT_BEARER) return await jwtBearer(form, entry, res);
    const client = authenticateClient(req, form, entry);
    if (!client.grants.includes(form.grant_type)) {
      throw new OAuthError("unauthorized_client", `client not allowed the ${form.grant_type} grant`);
    }
    const grant = await checkGrant(client, form);
    req.grant = { ...grant, client_id: client.id, grant_type: form.grant_type, entry };
    // body-parser leaves an already-read request alone ("body already parsed"), so the library sees this body.
    req.body = { ...form, scope: grant.scope };
    service.requestHandler(req, res);
  } catch (error) {
    if (!(error instanceof OAuthError)) throw error;
    Object.assign(entry, { status: error.status, error: error.body.error });
    send(res, error.status, error.body, error.headers);
  }
}

service.on("beforeTokenSigning", (token, req) => {
  const grant = req.grant;
  const payload = token.payload;
  payload.exp = payload.iat + config.expires_in;
  // The library's id_token carries no scope key; both say who the user is.
  Object.assign(payload, { sub: grant.sub, email: grant.email });
  if ("scope" in payload) Object.assign(payload, { client_id: grant.client_id, scope: grant.scope });
});

service.on("beforeResponse", (response, req) => {
  const { grant_type, client_id, email, scope, entry } = req.grant;
  Object.assign(entry, { status: response.statusCode, error: response.body.error });
  if (response.statusCode !== 200) return;
  const body = response.body;
  body.expires_in = config.expires_in;
  if (!scopesOf(scope).includes("openid")) delete body.id_token; // an ID token only for OpenID Connect
  if (grant_type === "refresh_token" && !config.rotate_refresh_tokens) {
    delete body.refresh_token; // Google keeps the refresh token; Microsoft sends a new one (rotate_refresh_tokens)
  } else if (grant_type === "authorization_code" && config.code_refresh_token === false) {
    delete body.refresh_token; // Google, consent given before and no prompt=consent; Microsoft without offline_access
  } else if (body.refresh_token !== undefined) {
    refreshTokens.set(body.refresh_token, { client_id, email, scope, revoked: false });
  }
});

// RFC 7523 2.1 as Google does it for service accounts: the assertion, signed with the key of the JSON key file,
// authenticates the client; the token it buys acts as `sub` (domain-wide delegation) for the delegated scopes.
async function jwtBearer(form, entry, res) {
  const invalid = (description) => new OAuthError("invalid_grant", description);
  if (!form.assertion) throw new OAuthError("invalid_request", "assertion missing");
  let header, unverified;
  try {
    [header, unverified] = [decodeProtectedHeader(form.assertion), decodeJwt(form.assertion)];
  } catch {
    throw invalid("Invalid JWT: not a signed JWT");
  }
  const account = serviceAccounts.get(unverified.iss);
  entry.client_id = unverified.iss;
  if (account === undefined) throw invalid("Invalid JWT: unknown issuer (no such service account)");
  if (header.kid !== undefined && header.kid !== account.private_key_id) throw invalid("Invalid JWT Signature.");
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(form.assertion, account.key, {
      algorithms: ["RS256"], issuer: account.client_email, audience: tokenUrl, requiredClaims: ["iat", "exp"],
    }));
  } catch (error) {
    throw invalid(error.code === "ERR_JWS_SIGNATURE_VERIFICATION_FAILED" ? "Invalid JWT Signature."
      : `Invalid JWT: ${error.message}`);
  }
  if (claims.exp - claims.iat > 3600) {
    throw invalid("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.");
  }
  // Google's answer when domain-wide delegation lacks a scope.
  const scope = checkScope(claims.scope, account.scopes, "unauthorized_client", "Client is unauthorized to retrieve "
    + "access tokens using this method, or client not authorized for any of the scopes requested.");
  if (claims.sub !== undefined && account.subjects && !account.subjects.includes(claims.sub)) {
    throw invalid("Invalid email or User ID");
  }
  const accessToken = await issuer.buildToken({
    expiresIn: config.expires_in,
    scopesOrTransform: (_header, payload) => Object.assign(payload, {
      sub: claims.sub ?? account.client_email, email: claims.sub, client_id: account.client_id, scope,
    }),
  });
  entry.status = 200;
  send(res, 200, { access_token: accessToken, token_type: "Bearer", expires_in: config.expires_in });
}

// RFC 8252 7.3: a loopback redirect URI matches a registered one whatever its port.
function redirectAllowed(client, uri) {
  let url;
  try {
    url = new URL(uri);
  } catch {
    return false;
  }
  const loopback = url.protocol === "http:" && ["127.0.0.1", "[::1]", "localhost"].includes(url.hostname);
  if (client.redirect_uris == null) return loopback; // default: any loopback callback
  return client.redirect_uris.some((registered) => {
    const other = new URL(registered);
    return registered === uri || (loopback && other.hostname === url.hostname && other.pathname === url.pathname
      && other.search === url.search);
  });
}

// The user signs in as config.user (or login_hint) and consents at once: the library redirects with code and state.
function authorize(req, res, query) {
  const client = config.clients[query.client_id];
  if (client === undefined || !redirectAllowed(client, query.redirect_uri)) {
    // RFC 6749 4.1.2.1: never redirect to an unverified URI.
    res.writeHead(400, { "Content-Type": "text/plain" });
    return res.end("unknown client_id or redirect_uri not registered");
  }
  const back = (error, description) => {
    const url = new URL(query.redirect_uri);
    url.searchParams.set("error", error);
    url.searchParams.set("error_description", description);
    if (query.state) url.searchParams.set("state", query.state);
    res.writeHead(302, { Location: url.href });
    res.end();
  };
  if (!client.grants.includes("authorization_code")) {
    return back("unauthorized_client", "client not allowed the authorization code grant");
  }
  if (config.authorize_error) return back(config.authorize_error, "scripted by the test");
  const scopes = scopesOf(query.scope);
  if (scopes.length === 0 || scopes.some((scope) => !client.scopes.includes(scope))) {
    return back("invalid_scope", `scope not allowed: ${query.scope ?? "(none)"}`);
  }
  if (client.require_pkce && query.code_challenge_method !== "S256") {
    return back("invalid_request", "code_challenge with code_challenge_method=S256 required");
  }
  req.consent = { user: query.login_hint || config.user, scope: scopes.join(" ") };
  service.requestHandler(req, res);
}

service.on("beforeAuthorizeRedirect", ({ url }, req) => {
  const code = url.searchParams.get("code");
  if (code === null) return;
  const { client_id, redirect_uri, code_challenge, code_challenge_method } = req.query;
  codes.set(code, {
    client_id, redirect_uri, ...req.consent,
    challenge: code_challenge, method: code_challenge === undefined ? undefined : code_challenge_method ?? "plain",
  });
});

// RFC 7009: a revoked refresh token buys nothing more; always 200.
async function revoke(req, res) {
  const form = await readForm(req);
  const record = refreshTokens.get(form.token);
  if (record !== undefined) record.revoked = true;
  res.writeHead(200);
  res.end();
}

// The fixture's controls; a real provider has none of these.
const controls = {
  "/_test/reset": (body) => reset(body),
  "/_test/config": (body) => {
    const clients = { ...config.clients };
    for (const [id, changes] of Object.entries(body.clients ?? {})) clients[id] = { ...clients[id], ...changes };
    config = { ...config, ...body, clients };
  },
  "/_test/mint": async (body) => ({
    access_token: await issuer.buildToken({
      expiresIn: body.expires_in ?? config.expires_in,
      scopesOrTransform: (_header, payload) => Object.assign(payload, {
        sub: body.email, email: body.email, client_id: body.client_id, scope: body.scope,
      }),
    }),
  }),
  "/_test/refresh-token": (body) => {
    const refreshToken = randomUUID();
    const { client_id, email, scope } = body;
    refreshTokens.set(refreshToken, { client_id, email, scope, revoked: false });
    return { refresh_token: refreshToken };
  },
  "/_test/revoke": (body) => {
    let revoked = 0;
    for (const [refreshToken, record] of refreshTokens) {
      if ((body.refresh_token ?? refreshToken) === refreshToken && (body.client_id ?? record.client_id)
        === record.client_id && !record.revoked) {
        record.revoked = true;
        revoked += 1;
      }
    }
    return { revoked };
  },
  "/_test/service-account": async (body) => {
    const key = await importSPKI(body.public_key_pem, "RS256");
    serviceAccounts.set(body.client_email, { ...body, key });
  },
  "/_test/requests": () => requests,
};

async function route(req, res) {
  const url = new URL(req.url, issuer.url);
  if (req.method === "POST" && url.pathname === "/token") return token(req, res);
  if (req.method === "POST" && url.pathname === "/revoke") return revoke(req, res);
  if (req.method === "GET" && url.pathname === "/authorize") {
    return authorize(req, res, Object.fromEntries(url.searchParams));
  }
  const control = controls[url.pathname];
  if (req.method === "POST" && control !== undefined) {
    const text = await readBody(req);
    return send(res, 200, (await control(text ? JSON.parse(text) : {})) ?? {});
  }
  service.requestHandler(req, res);
}

const server = createServer((req, res) => {
  route(req, res).catch((error) => {
    console.error(error);
    if (!res.headersSent) send(res, 500, { error: "server_error", error_description: String(error) });
  });
});
server.listen(port, host, () => console.log(`oauth server ${issuer.url}`));
// The fixture stops the server with SIGTERM; close at once rather than wait for idle keep-alive connections.
process.on("SIGTERM", () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
