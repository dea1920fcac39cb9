/**
 * Who a request is from, and whether its route lets it through: the one authorization step every
 * request passes before it is answered, below the router or through it (`src/http/HttpServer.ts`).
 *
 * Credentials, in order:
 * - `Authorization: Bearer <key>` naming a configured API key (by its SHA-256; the key itself is
 *   never stored);
 * - `Authorization: Bearer <JWT>`, an access token of the configured OpenID provider, checked with
 *   `jose` against the provider's JWKS: signature, issuer, audience, expiry, an allow-list of
 *   asymmetric algorithms (so `alg: none` and HMAC tokens are refused);
 * - the session cookie of a person signed in through the service (`src/auth/SignIn.ts`), looked up
 *   in PostgreSQL so that any instance serves it and a sign-out ends it on all.
 *
 * Checking a token or a session costs a signature check or a database read; both are cached for a
 * short, bounded time (a token until its expiry or five minutes; a session for `auth.session.recheck`),
 * so that a signed-in search costs about what an anonymous one did. A request is answered at once
 * from the caches, and after a promise otherwise.
 */
import { hash, randomBytes } from "node:crypto"
import type { IncomingMessage } from "node:http"
import { Cookies } from "@effect/platform"
import { Deferred, Duration, Effect, Option, Redacted, Schedule } from "effect"
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from "jose"
import type { Configuration } from "openid-client"
import { AuthConfig, DeadLettersConfig, ROLES, type Role } from "../config/AppConfig.ts"
import { PgPool } from "../db/Database.ts"
import { type Answer, json, withHeaders } from "../http/Answer.ts"
import { unreachableAnswer } from "../http/ReadFailures.ts"
import { discover } from "./Discovery.ts"
import { allows, type Principal, type Rule, neededRole, ruleFor, ruleKeyOf, rules } from "./Access.ts"

/** What the authorization step decided: go on (with whoever it found), or this answer. */
export type Verdict =
  | { readonly _tag: "Allow"; readonly principal: Principal | undefined }
  | { readonly _tag: "Deny"; readonly answer: Answer }

const allow = (principal: Principal | undefined): Verdict => ({ _tag: "Allow", principal })
const deny = (answer: Answer): Verdict => ({ _tag: "Deny", answer })

/** 401: no credentials, or ones that do not hold (the body says which). */
export const unauthorized = (message: string, tokenError?: string): Answer =>
  withHeaders(
    json(401, { error: "unauthorized", message }),
    "www-authenticate",
    tokenError === undefined
      ? 'Bearer realm="order-service"'
      : `Bearer realm="order-service", error="${tokenError}"`,
    "cache-control",
    "no-store"
  )

const forbidden = (message: string, requiredRole: Role | undefined): Answer =>
  withHeaders(
    json(403, { error: "forbidden", message, required_role: requiredRole ?? null }),
    "cache-control",
    "no-store"
  )

const unavailable = (message: string): Answer =>
  withHeaders(json(503, { error: "unavailable", message }), "retry-after", "2")

const OPEN: Principal = { subject: "local", name: "local (no sign-in)", roles: new Set(ROLES), via: "open" }

/** One-shot `crypto.hash`: a third of `createHash`'s cost, paid by every request with a key. */
const sha256hex = (s: string) => hash("sha256", s, "hex")

/** Session ids: 32 random bytes, base64url. Anything else in the cookie is no session. */
const SESSION_ID = /^[A-Za-z0-9_-]{43}$/
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

/** Entries each cache keeps at most: past it the oldest goes (Maps iterate in insertion order). */
const CACHE_MAX = 10_000
const TOKEN_CACHE_MAX_MS = 5 * 60_000

const remember = <V>(cache: Map<string, V>, key: string, value: V) => {
  cache.delete(key)
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!)
  cache.set(key, value)
}

/** The value at a dotted path (`realm_access.roles`) of some claims. */
const claimAt = (claims: Record<string, unknown>, path: string): unknown =>
  path
    .split(".")
    .reduce<unknown>(
      (at, key) => (at !== null && typeof at === "object" ? (at as any)[key] : undefined),
      claims
    )

/** Where a request came from: the page's own origin, or someone else's. */
const originOf = (url: URL) => `${url.protocol}//${url.host}`

/** A provider the service signs people in with, once its metadata has been read. */
export interface Provider {
  readonly config: Configuration
  readonly verify: (token: string) => Promise<JWTPayload>
}

export class Auth extends Effect.Service<Auth>()("Auth", {
  scoped: Effect.gen(function* () {
    const config = yield* AuthConfig
    const { replayToken } = yield* DeadLettersConfig
    const pool = yield* PgPool
    const table = rules({ publicOrderLookup: config.publicOrderLookup })
    const sessionRecheckMs = Duration.toMillis(config.session.recheck)
    const secureCookies = Option.exists(config.publicUrl, (u) => u.protocol === "https:")

    const apiKeys = new Map<string, Principal>(
      config.apiKeys.map((k) => [
        k.sha256,
        { subject: `api-key:${k.name}`, name: k.name, roles: new Set([k.role]), via: "api_key" as const }
      ])
    )
    // The replay token of earlier versions works on as an operator's key until it is moved to auth.api_keys.
    if (Option.isSome(replayToken)) {
      apiKeys.set(sha256hex(Redacted.value(replayToken.value)), {
        subject: "api-key:replay_token",
        name: "replay_token",
        roles: new Set<Role>(["operator"]),
        via: "api_key"
      })
      yield* Effect.logWarning(
        "dead_letters.replay_token is deprecated: it now works as an operator's API key. Move it to auth.api_keys (see README, Who may see what)"
      )
    }

    /** Roles named in `claims`, as the service's roles. */
    const rolesOf = (claims: Record<string, unknown>): Set<Role> => {
      const raw = claimAt(claims, config.oidc.rolesClaim)
      const names = Array.isArray(raw) ? raw : typeof raw === "string" ? raw.split(/[\s,]+/) : []
      const roles = new Set<Role>()
      for (const name of names) {
        if (typeof name !== "string") continue
        const mapped =
          config.oidc.roleMap.get(name) ??
          ((ROLES as ReadonlyArray<string>).includes(name) ? (name as Role) : undefined)
        if (mapped !== undefined) roles.add(mapped)
      }
      return roles
    }

    // The provider's metadata and keys, read in the background (retried while it cannot be reached),
    // so that the service serves its public routes while the provider is still starting.
    const provider = yield* Deferred.make<Provider>()
    if (Option.isSome(config.oidc.issuer) && config.mode === "required") {
      const issuer = config.oidc.issuer.value
      const secret = Option.getOrElse(Option.map(config.oidc.clientSecret, Redacted.value), () => "")
      const discoverProvider = Effect.tryPromise(() => discover(issuer, config.oidc.clientId, secret)).pipe(
        Effect.map((configuration): Provider => {
          const metadata = configuration.serverMetadata()
          const jwks = createRemoteJWKSet(new URL(metadata.jwks_uri!))
          const options = {
            issuer: metadata.issuer,
            audience: config.oidc.audience,
            algorithms: [...config.oidc.algorithms],
            clockTolerance: 5
          }
          return {
            config: configuration,
            verify: async (token) => (await jwtVerify(token, jwks, options)).payload
          }
        }),
        Effect.tapError((e) =>
          Effect.logWarning("OpenID provider not reachable yet; retrying").pipe(
            Effect.annotateLogs({ issuer: issuer.href, reason: String(e.cause ?? e) })
          )
        ),
        Effect.retry(Schedule.exponential("500 millis").pipe(Schedule.union(Schedule.spaced("10 seconds"))))
      )
      yield* discoverProvider.pipe(
        Effect.flatMap((p) => Deferred.succeed(provider, p)),
        Effect.zipRight(
          Effect.logInfo("OpenID provider ready").pipe(Effect.annotateLogs({ issuer: issuer.href }))
        ),
        Effect.forkScoped
      )
    }
    let readyProvider: Provider | undefined
    yield* Deferred.await(provider).pipe(
      Effect.tap((p) => Effect.sync(() => (readyProvider = p))),
      Effect.forkScoped
    )

    /** Tokens checked lately: the principal, until when it may be trusted. */
    const tokens = new Map<string, { readonly principal: Principal; readonly until: number }>()

    const principalOfToken = (payload: JWTPayload): Principal => ({
      subject: String(payload.sub ?? payload["client_id"] ?? payload["azp"] ?? "unknown"),
      name:
        typeof payload["preferred_username"] === "string"
          ? payload["preferred_username"]
          : typeof payload["client_id"] === "string"
            ? payload["client_id"]
            : undefined,
      roles: rolesOf(payload as Record<string, unknown>),
      via: "token"
    })

    const fromBearer = (token: string): Principal | Answer | Promise<Principal | Answer> => {
      const cached = tokens.get(token)
      if (cached !== undefined) {
        if (cached.until > Date.now()) return cached.principal
        tokens.delete(token)
      }
      const key = apiKeys.get(sha256hex(token))
      if (key !== undefined) {
        remember(tokens, token, { principal: key, until: Date.now() + TOKEN_CACHE_MAX_MS })
        return key
      }
      if (!JWT_SHAPE.test(token))
        return unauthorized("the bearer token is not a known API key", "invalid_token")
      const p = readyProvider
      if (p === undefined)
        return Option.isSome(config.oidc.issuer)
          ? unavailable("the OpenID provider has not been reached yet; try again shortly")
          : unauthorized("no OpenID provider is configured to check this token", "invalid_token")
      return p.verify(token).then(
        (payload) => {
          const principal = principalOfToken(payload)
          const exp = typeof payload.exp === "number" ? payload.exp * 1000 : Date.now()
          remember(tokens, token, { principal, until: Math.min(exp, Date.now() + TOKEN_CACHE_MAX_MS) })
          return principal
        },
        (e: unknown) =>
          unauthorized(
            `the bearer token was refused: ${e instanceof Error ? e.message : String(e)}`,
            "invalid_token"
          )
      )
    }

    /** Sessions read lately, by the hash of their id: who (or nobody), and when it was read. */
    const sessions = new Map<string, { readonly principal: Principal | undefined; readonly at: number }>()

    const readSession = (idHash: string): Promise<Principal | undefined> =>
      pool
        .query<{ subject: string; name: string | null; roles: Array<string> }>({
          name: "auth_session_find",
          text: "SELECT subject, name, roles FROM auth_sessions WHERE id_hash = decode($1, 'hex') AND expires_at > now()",
          values: [idHash]
        })
        .then((result) => {
          const row = result.rows[0]
          const principal: Principal | undefined =
            row === undefined
              ? undefined
              : {
                  subject: row.subject,
                  name: row.name ?? undefined,
                  roles: new Set(
                    row.roles.filter((r): r is Role => (ROLES as ReadonlyArray<string>).includes(r))
                  ),
                  via: "session"
                }
          remember(sessions, idHash, { principal, at: Date.now() })
          return principal
        })

    const sessionIdOf = (req: IncomingMessage): string | undefined => {
      const header = req.headers.cookie
      if (header === undefined || !header.includes(config.session.cookie)) return undefined
      const id = Cookies.parseHeader(header)[config.session.cookie]
      return id !== undefined && SESSION_ID.test(id) ? id : undefined
    }

    const fromSession = (id: string): Principal | undefined | Promise<Principal | undefined> => {
      const idHash = sha256hex(id)
      const cached = sessions.get(idHash)
      if (cached !== undefined && Date.now() - cached.at < sessionRecheckMs) return cached.principal
      return readSession(idHash)
    }

    /**
     * Who `req` is from: a principal, nobody (`undefined`), or the answer that refuses its
     * credentials. Open mode: everyone is the local user.
     */
    const authenticate = (
      req: IncomingMessage
    ): Principal | undefined | Answer | Promise<Principal | undefined | Answer> => {
      if (config.mode === "none") return OPEN
      const authorization = req.headers.authorization
      if (authorization !== undefined) {
        const m = /^Bearer +([^\s]+) *$/i.exec(authorization)
        if (m === null)
          return unauthorized("send credentials as Authorization: Bearer <token>", "invalid_request")
        return fromBearer(m[1]!)
      }
      const id = sessionIdOf(req)
      return id === undefined ? undefined : fromSession(id)
    }

    /** The origin the page is served from, as a browser names it in `Origin`. */
    const expectedOrigins = (req: IncomingMessage): ReadonlyArray<string> =>
      Option.match(config.publicUrl, {
        onSome: (url) => [originOf(url)],
        onNone: () =>
          req.headers.host === undefined ? [] : [`http://${req.headers.host}`, `https://${req.headers.host}`]
      })

    /**
     * A state change asked for with the session cookie must come from the service's own page: the
     * cookie is `SameSite=Lax`, and `Origin` (which browsers send with every POST) must be ours, or
     * `Sec-Fetch-Site` must say so.
     */
    const sameOrigin = (req: IncomingMessage): boolean => {
      const origin = req.headers.origin
      if (origin !== undefined && origin !== "null") return expectedOrigins(req).includes(origin)
      // Under `Referrer-Policy: no-referrer` a browser's form sends `Origin: null`; it then says
      // where the request came from in `Sec-Fetch-Site`, which no page can set.
      return req.headers["sec-fetch-site"] === "same-origin"
    }

    const decide = (req: IncomingMessage, rule: Rule, found: Principal | undefined | Answer): Verdict => {
      if (found !== undefined && "status" in found) return deny(found)
      if (allows(rule, found)) {
        if (found?.via === "session" && req.method !== "GET" && req.method !== "HEAD" && !sameOrigin(req))
          return deny(
            forbidden("a request that changes something must come from the service's own page", undefined)
          )
        return allow(found)
      }
      const role = neededRole(rule)
      if (found === undefined)
        return deny(
          unauthorized(
            req.headers.cookie !== undefined && sessionIdOf(req) !== undefined
              ? "your session has ended; sign in again"
              : `this needs the ${role} role: sign in, or send Authorization: Bearer <token>`
          )
        )
      return deny(
        forbidden(
          `this needs the ${role} role; ${found.name ?? found.subject} has ${found.roles.size === 0 ? "no role" : [...found.roles].join(", ")}`,
          role
        )
      )
    }

    const failed = (): Verdict => deny(withHeaders(unreachableAnswer, "retry-after", "2"))

    /** Whom each request let through was from (for the access log and the handlers). */
    const principals = new WeakMap<IncomingMessage, Principal>()

    /**
     * The authorization step: the rule of `route` for this request, and who it is from where the
     * rule needs to know. A public route costs no lookup at all.
     */
    const check = (req: IncomingMessage, route: string): Verdict | Promise<Verdict> => {
      // `Accept` only matters to one route; reading `req.headers` makes Node build them all.
      const rule = ruleFor(
        table,
        ruleKeyOf(req.method, route, route === "/dead-letters" ? req.headers.accept : undefined)
      )
      if (rule._tag === "Public") return allow(undefined)
      const settle = (found: Principal | undefined | Answer): Verdict => {
        const verdict = decide(req, rule, found)
        if (verdict._tag === "Allow" && verdict.principal !== undefined)
          principals.set(req, verdict.principal)
        return verdict
      }
      const found = authenticate(req)
      return found instanceof Promise ? found.then(settle, failed) : settle(found)
    }

    /** Who `req` is from, for handlers of public routes that want to know (`/auth/me`). */
    const whoIs = (req: IncomingMessage): Effect.Effect<Principal | undefined> =>
      Effect.suspend(() => {
        const known = principals.get(req)
        if (known !== undefined) return Effect.succeed(known)
        const found = authenticate(req)
        const settle = (f: Principal | undefined | Answer) =>
          f !== undefined && "status" in f ? undefined : f
        return found instanceof Promise
          ? Effect.promise(() => found.then(settle, () => undefined))
          : Effect.succeed(settle(found))
      })

    // Sessions past their expiry are deleted now and then (they are refused as soon as they expire).
    yield* Effect.tryPromise(() => pool.query("DELETE FROM auth_sessions WHERE expires_at < now()")).pipe(
      Effect.tap((r) =>
        (r.rowCount ?? 0) > 0
          ? Effect.logDebug("Expired sessions removed").pipe(Effect.annotateLogs({ sessions: r.rowCount }))
          : Effect.void
      ),
      Effect.ignore,
      Effect.repeat(Schedule.spaced("10 minutes")),
      Effect.forkScoped
    )

    /** A new session for someone the provider signed in; the cookie that holds it. */
    const startSession = (who: {
      readonly subject: string
      readonly name: string | undefined
      readonly roles: ReadonlySet<Role>
      readonly idToken: string | undefined
    }) =>
      Effect.tryPromise(async () => {
        const id = randomBytes(32).toString("base64url")
        const idHash = sha256hex(id)
        await pool.query(
          "INSERT INTO auth_sessions (id_hash, subject, name, roles, id_token, expires_at) VALUES (decode($1, 'hex'), $2, $3, $4, $5, now() + make_interval(secs => $6))",
          [
            idHash,
            who.subject,
            who.name ?? null,
            [...who.roles],
            who.idToken ?? null,
            Duration.toSeconds(config.session.ttl)
          ]
        )
        return Cookies.unsafeMakeCookie(config.session.cookie, id, {
          path: "/",
          httpOnly: true,
          sameSite: "lax",
          secure: secureCookies,
          maxAge: config.session.ttl
        })
      })

    /** Ends `req`'s session everywhere (this instance at once, others within `auth.session.recheck`); its ID token, for the provider's sign-out. */
    const endSession = (req: IncomingMessage) =>
      Effect.tryPromise(async () => {
        const id = sessionIdOf(req)
        if (id === undefined) return undefined
        const idHash = sha256hex(id)
        sessions.delete(idHash)
        const result = await pool.query<{ id_token: string | null }>(
          "DELETE FROM auth_sessions WHERE id_hash = decode($1, 'hex') RETURNING id_token",
          [idHash]
        )
        return result.rows[0]?.id_token ?? undefined
      })

    /** The cookie that removes the session cookie. */
    const clearedCookie = Cookies.unsafeMakeCookie(config.session.cookie, "", {
      path: "/",
      httpOnly: true,
      sameSite: "lax",
      secure: secureCookies,
      maxAge: 0
    })

    return {
      mode: config.mode,
      /** Whether people can sign in here (a provider is configured). */
      signIn: config.mode === "required" && Option.isSome(config.oidc.issuer),
      provider: Deferred.await(provider),
      providerReady: () => readyProvider !== undefined,
      check,
      whoIs,
      principalOf: (req: IncomingMessage): Principal | undefined => principals.get(req),
      rolesOf,
      sameOrigin,
      startSession,
      endSession,
      clearedCookie,
      secureCookies,
      publicUrl: config.publicUrl,
      scopes: config.oidc.scopes
    } as const
  })
}) {}
