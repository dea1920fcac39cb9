/**
 * An OpenID provider in this process, for the life of a scope, so that sign-in and roles can be
 * tried and tested without Keycloak or any other server: `npm start -- --auth` runs one and points
 * `auth.oidc.issuer` at it, tests start their own. It is `oidc-provider` (a certified OpenID
 * provider, by the author of `openid-client` and `jose`) on a port of its own, with two clients (the
 * service's web client and a command-line client with the operator role) and two demo users.
 *
 * A LOCAL DEMO PROVIDER: its users, passwords and client secrets are fixed, published strings
 * (below); it keeps everything in memory, generates its signing key at start unless given one,
 * and listens on 127.0.0.1 unless told otherwise. Never expose it or use its secrets elsewhere.
 *
 * oidc-provider ships only feature-less pages: the sign-in form here is ours (its built-in
 * development form takes any password), consent is granted without asking (the clients are the
 * service's own), and sign-out asks nothing either.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { Data, Effect, Runtime, type Scope } from "effect"
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from "jose"

/** Why the local OpenID provider could not be started; the message is one line. */
export class LocalOidcError extends Data.TaggedError("LocalOidcError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

export interface LocalOidcOptions {
  /** A free port by default (0). */
  readonly port?: number
  /** Where it listens; 127.0.0.1 by default. */
  readonly host?: string
  /** Private signing keys, the first one signs; by default one RS256 key generated at start. */
  readonly jwks?: { readonly keys: ReadonlyArray<JWK> }
  /** Lifetime of access tokens (and ID tokens); 10 minutes by default. */
  readonly accessTokenTtlSeconds?: number
  /** Lifetime of a sign-in at the provider (its session cookie and grants); 8 hours by default. */
  readonly sessionTtlSeconds?: number
}

export interface LocalOidcUser {
  readonly username: string
  readonly password: string
  readonly roles: ReadonlyArray<string>
}

export interface LocalOidcServer {
  /** e.g. `http://127.0.0.1:PORT`; discovery at `{issuer}/.well-known/openid-configuration`. */
  readonly issuer: string
  readonly port: number
  /**
   * The service's client: authorization code with PKCE, confidential (client_secret_basic or
   * client_secret_post); any loopback URL ending in `/auth/callback` is a valid redirect URI.
   */
  readonly webClient: { readonly id: "order-service"; readonly secret: string }
  /** Client credentials only; its access tokens carry `roles: ["operator"]`. */
  readonly cliClient: { readonly id: "order-service-cli"; readonly secret: string }
  /** `aud` of every access token it issues. */
  readonly audience: "order-service"
  readonly users: ReadonlyArray<LocalOidcUser>
}

// --- The demo's fixed clients and users (published on purpose: see the header) ---------------

const AUDIENCE = "order-service"
/**
 * The resource indicator (RFC 8707) of the service's API: oidc-provider wants an absolute URI,
 * the tokens' `aud` is `AUDIENCE` all the same.
 */
const RESOURCE = "urn:order-service"
const WEB_CLIENT = { id: "order-service", secret: "order-service-local-demo-secret" } as const
const CLI_CLIENT = { id: "order-service-cli", secret: "order-service-cli-local-demo-secret" } as const
const CLIENT_ROLES: Readonly<Record<string, ReadonlyArray<string>>> = { [CLI_CLIENT.id]: ["operator"] }
const USERS: ReadonlyArray<LocalOidcUser> = [
  { username: "agent", password: "agent", roles: ["agent"] },
  { username: "operator", password: "operator", roles: ["operator"] }
]

const DEFAULT_ACCESS_TOKEN_TTL = 10 * 60
const DEFAULT_SESSION_TTL = 8 * 60 * 60
/** A sign-in form left open longer than this starts over. */
const INTERACTION_TTL = 10 * 60
const MAX_FORM_BYTES = 16 * 1024

// --- What this module uses of oidc-provider (version 9 ships no type declarations) -------------

interface Grant {
  addOIDCScope(scope: string): void
  addOIDCClaims(claims: ReadonlyArray<string>): void
  addResourceScope(indicator: string, scope: string): void
  save(): Promise<string>
}

interface Interaction {
  readonly uid: string
  readonly prompt: {
    readonly name: string
    readonly details: {
      readonly missingOIDCScope?: ReadonlyArray<string>
      readonly missingOIDCClaims?: ReadonlyArray<string>
      readonly missingResourceScopes?: Readonly<Record<string, ReadonlyArray<string>>>
    }
  }
  readonly params: Readonly<Record<string, unknown>>
  readonly session?: { readonly accountId: string }
  readonly grantId?: string
}

interface InteractionResult {
  readonly login?: { readonly accountId: string }
  readonly consent?: { readonly grantId?: string }
  readonly error?: string
  readonly error_description?: string
}

interface Provider {
  callback(): (req: IncomingMessage, res: ServerResponse) => void
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<Interaction>
  interactionFinished(
    req: IncomingMessage,
    res: ServerResponse,
    result: InteractionResult,
    options?: { readonly mergeWithLastSubmission?: boolean }
  ): Promise<void>
  on(event: "server_error", listener: (ctx: unknown, error: Error) => void): unknown
  readonly Grant: {
    new (init: { readonly accountId: string; readonly clientId: string }): Grant
    find(id: string): Promise<Grant | undefined>
  }
  readonly Client: {
    readonly prototype: {
      redirectUriAllowed(value: string): boolean
      postLogoutRedirectUriAllowed(value: string): boolean
    }
  }
}

interface OidcProviderModule {
  readonly Provider: new (issuer: string, configuration: object) => Provider
  readonly errors: {
    readonly SessionNotFound: new (...args: ReadonlyArray<never>) => Error
    readonly InvalidTarget: new () => Error
  }
}

/** The parts of Koa's context, as oidc-provider passes it to the functions configured below. */
interface Context {
  type: string
  body: string
}

interface Token {
  readonly kind: string
  readonly accountId?: string
  readonly clientId?: string
}

/** Loaded when a provider is started, not with this module: `oidc-provider` warns on import under Node 20. */
const loadOidcProvider = Effect.tryPromise({
  try: async () => {
    // @ts-expect-error oidc-provider 9 ships no type declarations; `OidcProviderModule` says what is used
    const module: unknown = await import("oidc-provider")
    return module as OidcProviderModule
  },
  catch: (cause) => new LocalOidcError({ message: `cannot load oidc-provider: ${oneLine(cause)}`, cause })
})

/**
 * oidc-provider's own in-memory storage (an LRU of 1000 entries, expiring entries by their TTL),
 * passed in explicitly: left as the default, the same adapter prints a warning meant for
 * production deployments. The path is internal to the package, pinned to 9.13 in package.json.
 */
const loadMemoryAdapter = Effect.tryPromise({
  try: async () => {
    // @ts-expect-error oidc-provider 9 ships no type declarations
    const module: unknown = await import("oidc-provider/lib/adapters/memory_adapter.js")
    return (module as { createMemoryAdapter: (clockTolerance: number) => unknown }).createMemoryAdapter
  },
  catch: (cause) =>
    new LocalOidcError({ message: `cannot load oidc-provider's memory adapter: ${oneLine(cause)}`, cause })
})

/** One RS256 signing key, new at each start. */
const generatedJwks = Effect.tryPromise({
  try: async () => {
    const { privateKey } = await generateKeyPair("RS256", { extractable: true })
    const jwk = await exportJWK(privateKey)
    return { keys: [{ ...jwk, kid: await calculateJwkThumbprint(jwk), alg: "RS256", use: "sig" }] }
  },
  catch: (cause) => new LocalOidcError({ message: `cannot generate a signing key: ${oneLine(cause)}`, cause })
})

/** Starts a provider for the life of the scope; closing the scope closes its port. */
export const make = (
  options: LocalOidcOptions = {}
): Effect.Effect<LocalOidcServer, LocalOidcError, Scope.Scope> =>
  Effect.gen(function* () {
    const host = options.host ?? "127.0.0.1"
    const accessTokenTtl = options.accessTokenTtlSeconds ?? DEFAULT_ACCESS_TOKEN_TTL
    const sessionTtl = options.sessionTtlSeconds ?? DEFAULT_SESSION_TTL
    const oidc = yield* loadOidcProvider
    const createMemoryAdapter = yield* loadMemoryAdapter
    const jwks = options.jwks ?? (yield* generatedJwks)
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)

    // The issuer names the port, so the port is taken first and the provider made after.
    const server = yield* Effect.acquireRelease(listen(host, options.port ?? 0), close)
    const { port } = server.address() as AddressInfo
    const issuer = `http://${issuerHost(host)}:${port}`

    const provider = yield* Effect.try({
      try: () =>
        new oidc.Provider(
          issuer,
          configuration({
            jwks,
            accessTokenTtl,
            sessionTtl,
            adapter: createMemoryAdapter(CLOCK_TOLERANCE),
            InvalidTarget: oidc.errors.InvalidTarget
          })
        ),
      catch: (cause) =>
        new LocalOidcError({ message: `cannot configure oidc-provider: ${oneLine(cause)}`, cause })
    })
    allowLoopbackRedirects(provider)
    provider.on("server_error", (_ctx, error) => {
      runFork(
        Effect.logWarning("Local OpenID provider: request failed").pipe(
          Effect.annotateLogs("error", oneLine(error))
        )
      )
    })
    const forward = provider.callback()
    server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      const uid = INTERACTION_PATH.exec((req.url ?? "/").split("?")[0] ?? "")?.[1]
      if (uid === undefined) return forward(req, res)
      interaction(provider, oidc.errors.SessionNotFound, uid, req, res).catch((error: unknown) => {
        runFork(
          Effect.logWarning("Local OpenID provider: sign-in page failed").pipe(
            Effect.annotateLogs("error", oneLine(error))
          )
        )
        if (!res.headersSent) page(res, 500, "<h1>Something went wrong</h1><p>Start the sign-in again.</p>")
        else res.destroy()
      })
    })

    const started: LocalOidcServer = {
      issuer,
      port,
      webClient: WEB_CLIENT,
      cliClient: CLI_CLIENT,
      audience: AUDIENCE,
      users: USERS
    }
    return started
  }).pipe(Effect.withSpan("LocalOidc.make"))

// --- The provider's configuration ---------------------------------------------------------------

const CLOCK_TOLERANCE = 15

const configuration = (settings: {
  readonly jwks: { readonly keys: ReadonlyArray<JWK> }
  readonly accessTokenTtl: number
  readonly sessionTtl: number
  readonly adapter: unknown
  readonly InvalidTarget: new () => Error
}) => ({
  adapter: settings.adapter,
  jwks: { keys: [...settings.jwks.keys] },
  clockTolerance: CLOCK_TOLERANCE,
  clients: [
    {
      client_id: WEB_CLIENT.id,
      client_secret: WEB_CLIENT.secret,
      client_name: "Order service",
      grant_types: ["authorization_code"],
      response_types: ["code"],
      // client_secret_post is accepted as well: oidc-provider takes either for a secret.
      token_endpoint_auth_method: "client_secret_basic",
      // Stand-ins: any loopback port is allowed (`allowLoopbackRedirects`).
      redirect_uris: ["http://127.0.0.1/auth/callback", "http://localhost/auth/callback"],
      post_logout_redirect_uris: ["http://127.0.0.1/", "http://localhost/"]
    },
    {
      client_id: CLI_CLIENT.id,
      client_secret: CLI_CLIENT.secret,
      client_name: "Order service (command line)",
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: "client_secret_basic"
    }
  ],
  // `roles` with `openid`: in the ID token whenever one is issued, whatever else is requested.
  claims: { openid: ["sub", "roles"], profile: ["name"], email: ["email"] },
  // Claims of the requested scopes go into the ID token itself, not only to the userinfo endpoint.
  conformIdTokenClaims: false,
  // Only what the two clients use: no implicit or hybrid flows, no refresh tokens.
  responseTypes: ["code"],
  scopes: ["openid"],
  // Required of confidential clients too (oidc-provider's default requires it of public ones only).
  pkce: { required: () => true },
  findAccount: (_ctx: unknown, id: string) => {
    const user = USERS.find((u) => u.username === id)
    if (user === undefined) return undefined
    return {
      accountId: user.username,
      claims: () => ({
        sub: user.username,
        name: user.username.charAt(0).toUpperCase() + user.username.slice(1),
        email: `${user.username}@example.test`,
        roles: [...user.roles]
      })
    }
  },
  // Access tokens carry the roles of the user they were issued for, or of the client itself.
  extraTokenClaims: (_ctx: unknown, token: Token) => {
    const roles =
      token.kind === "ClientCredentials"
        ? CLIENT_ROLES[token.clientId ?? ""]
        : USERS.find((u) => u.username === token.accountId)?.roles
    return roles === undefined ? undefined : { roles: [...roles] }
  },
  interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
  cookies: {
    names: {
      session: "local_oidc_session",
      interaction: "local_oidc_interaction",
      resume: "local_oidc_resume"
    },
    keys: [randomBytes(32).toString("base64url")]
  },
  // The service calls the provider from the server, never from the page.
  clientBasedCORS: () => false,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
    resourceIndicators: {
      enabled: true,
      // Every token is for the service's API unless another resource is asked for (none exists).
      defaultResource: () => RESOURCE,
      // The code flow's access token is for the API, not for the userinfo endpoint.
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx: unknown, indicator: string) => {
        if (indicator !== RESOURCE) throw new settings.InvalidTarget()
        return {
          scope: "",
          audience: AUDIENCE,
          accessTokenFormat: "jwt",
          accessTokenTTL: settings.accessTokenTtl,
          jwt: { sign: { alg: "RS256" } }
        }
      }
    }
  },
  ttl: {
    AccessToken: settings.accessTokenTtl,
    ClientCredentials: settings.accessTokenTtl,
    IdToken: settings.accessTokenTtl,
    AuthorizationCode: 60,
    Interaction: INTERACTION_TTL,
    Session: settings.sessionTtl,
    Grant: settings.sessionTtl,
    RefreshToken: settings.sessionTtl,
    // Features that are off; numbers so that nothing asks for them to be configured.
    DeviceCode: 600,
    BackchannelAuthenticationRequest: 600,
    PreAuthorizedCode: 600
  },
  renderError: (ctx: Context, out: Readonly<Record<string, unknown>>) => {
    ctx.type = "html"
    ctx.body = html(
      "Sign-in error",
      `<h1>Sign-in error</h1><p>${escapeHtml(String(out.error ?? "error"))}: ${escapeHtml(
        String(out.error_description ?? "")
      )}</p>`
    )
  }
})

/** Sign-out without a second question: the form is sent as soon as the page loads. */
async function logoutSource(ctx: Context, form: string) {
  ctx.type = "html"
  ctx.body = html(
    "Sign out",
    `${form.replace(
      "</form>",
      '<input type="hidden" name="logout" value="yes"><button type="submit">Sign out</button></form>'
    )}<script>document.forms[0].submit()</script>`
  )
}

async function postLogoutSuccessSource(ctx: Context) {
  ctx.type = "html"
  ctx.body = html("Signed out", "<h1>Signed out</h1>")
}

/**
 * The service runs on a port known only later (and one per instance), so its client may be sent
 * back to any port of a loopback address: `/auth/callback` after sign-in, any page after sign-out.
 * oidc-provider's way to widen redirect URIs is to replace these two checks on its Client class.
 */
const allowLoopbackRedirects = (provider: Provider) => {
  const loopback = (value: string) => {
    const url = parseUrl(value)
    return (
      url !== undefined &&
      url.protocol === "http:" &&
      (url.hostname === "127.0.0.1" || url.hostname === "localhost") &&
      url.username === "" &&
      url.password === "" &&
      url.hash === "" &&
      !value.includes("#")
    )
  }
  provider.Client.prototype.redirectUriAllowed = function (this: { clientId: string }, value: string) {
    if (this.clientId !== WEB_CLIENT.id || !loopback(value)) return false
    const url = new URL(value)
    return url.pathname.endsWith("/auth/callback") && url.search === ""
  }
  provider.Client.prototype.postLogoutRedirectUriAllowed = function (
    this: { clientId: string },
    value: string
  ) {
    return this.clientId === WEB_CLIENT.id && loopback(value)
  }
}

// --- Sign-in pages -----------------------------------------------------------------------------

const INTERACTION_PATH = /^\/interaction\/([A-Za-z0-9_-]{1,100})$/

/** `GET` and `POST /interaction/{uid}`: the sign-in form, and consent granted without asking. */
const interaction = async (
  provider: Provider,
  SessionNotFound: OidcProviderModule["errors"]["SessionNotFound"],
  uid: string,
  req: IncomingMessage,
  res: ServerResponse
): Promise<void> => {
  if (req.method !== "GET" && req.method !== "POST") {
    res.setHeader("Allow", "GET, POST")
    return page(res, 405, "<h1>Method not allowed</h1>")
  }
  const details = await provider.interactionDetails(req, res).catch((error: unknown) => {
    if (error instanceof SessionNotFound) return undefined
    throw error
  })
  if (details === undefined || details.uid !== uid) {
    return page(res, 400, "<h1>This sign-in has expired</h1><p>Go back to the service and sign in again.</p>")
  }
  switch (details.prompt.name) {
    case "login": {
      if (req.method === "GET") return page(res, 200, loginForm(uid, "", undefined))
      const form = await readForm(req)
      if (form === undefined) return page(res, 413, "<h1>Too large</h1>")
      const login = form.get("login") ?? ""
      const user = checkPassword(login, form.get("password") ?? "")
      if (user === undefined) return page(res, 401, loginForm(uid, login, "wrong user name or password"))
      return provider.interactionFinished(
        req,
        res,
        { login: { accountId: user.username } },
        { mergeWithLastSubmission: false }
      )
    }
    case "consent": {
      // First-party clients: what they asked for is granted.
      const grant =
        (details.grantId === undefined ? undefined : await provider.Grant.find(details.grantId)) ??
        new provider.Grant({
          accountId: details.session?.accountId ?? "",
          clientId: String(details.params.client_id)
        })
      const missing = details.prompt.details
      if (missing.missingOIDCScope !== undefined) grant.addOIDCScope(missing.missingOIDCScope.join(" "))
      if (missing.missingOIDCClaims !== undefined) grant.addOIDCClaims(missing.missingOIDCClaims)
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(" "))
      }
      const grantId = await grant.save()
      return provider.interactionFinished(
        req,
        res,
        { consent: { grantId } },
        { mergeWithLastSubmission: true }
      )
    }
    default:
      return provider.interactionFinished(
        req,
        res,
        {
          error: "access_denied",
          error_description: `the local provider cannot ask for ${details.prompt.name}`
        },
        { mergeWithLastSubmission: false }
      )
  }
}

/** The demo user with this name and password, compared in constant time. */
const checkPassword = (login: string, password: string): LocalOidcUser | undefined => {
  const digest = (s: string) => createHash("sha256").update(s).digest()
  const user = USERS.find((u) => u.username === login)
  // A digest is compared even for an unknown name, so that both take as long.
  const matches = timingSafeEqual(digest(password), digest(user?.password ?? randomBytes(16).toString("hex")))
  return user !== undefined && matches ? user : undefined
}

const loginForm = (uid: string, login: string, problem: string | undefined) =>
  `<h1>Sign in to the order service</h1>` +
  `<p>Local demo provider: user agent or operator, the password is the user name.</p>` +
  (problem === undefined ? "" : `<p role="alert"><strong>${escapeHtml(problem)}</strong></p>`) +
  `<form method="post" action="/interaction/${escapeHtml(uid)}">` +
  `<p><label>User name <input name="login" value="${escapeHtml(login)}" autocomplete="username" required autofocus></label></p>` +
  `<p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>` +
  `<p><button type="submit">Sign in</button></p></form>`

/** The urlencoded body, or undefined when it is larger than `MAX_FORM_BYTES`. */
const readForm = async (req: IncomingMessage): Promise<URLSearchParams | undefined> => {
  if (Number(req.headers["content-length"] ?? 0) > MAX_FORM_BYTES) {
    req.resume()
    return undefined
  }
  const chunks: Array<Buffer> = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_FORM_BYTES) {
      req.resume()
      return undefined
    }
    chunks.push(chunk)
  }
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"))
}

const page = (res: ServerResponse, status: number, body: string) => {
  const text = html("Sign in", body)
  res.statusCode = status
  res.setHeader("Content-Type", "text/html; charset=utf-8")
  res.setHeader("Cache-Control", "no-store")
  res.setHeader(
    "Content-Security-Policy",
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
  )
  res.setHeader("Content-Length", Buffer.byteLength(text))
  res.end(text)
}

const html = (title: string, body: string) =>
  `<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width">` +
  `<title>${escapeHtml(title)}</title><style>body{font-family:sans-serif;max-width:24em;margin:3em auto}</style>` +
  `<body>${body}</body></html>`

const escapeHtml = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c
  )

// --- The port ------------------------------------------------------------------------------------

const listen = (host: string, port: number) =>
  Effect.async<Server, LocalOidcError>((resume) => {
    const server = createServer()
    const failed = (error: Error) =>
      resume(
        Effect.fail(
          new LocalOidcError({ message: `cannot listen on ${host}:${port}: ${oneLine(error)}`, cause: error })
        )
      )
    server.once("error", failed)
    server.listen(port, host, () => {
      server.off("error", failed)
      resume(Effect.succeed(server))
    })
  })

/** Stops taking connections and ends the open ones (browsers keep theirs alive). */
const close = (server: Server) =>
  Effect.async<void>((resume) => {
    server.close(() => resume(Effect.void))
    server.closeAllConnections()
  })

/** The issuer's host: where it listens, or loopback when it listens on every address. */
const issuerHost = (host: string) =>
  host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host

const parseUrl = (value: string): URL | undefined => {
  try {
    return new URL(value)
  } catch {
    return undefined
  }
}

const oneLine = (cause: unknown) =>
  (cause instanceof Error ? cause.message : String(cause)).replace(/\s+/g, " ").trim()
