/**
 * Handlers of `/auth/*`: signing people in and out through the OpenID provider, the service being
 * the client (backend-for-frontend). The browser only ever holds cookies it cannot read from
 * script: the session's random id, and for the few minutes of a sign-in the PKCE verifier, state
 * and nonce. Tokens stay on the server (the ID token, for the provider's sign-out).
 *
 * The protocol itself is `openid-client`'s: authorization code with PKCE (S256), state and nonce
 * checked, the ID token verified by it.
 */
import { Cookies, HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Duration, Effect, Option, Schema } from "effect"
import * as client from "openid-client"
import { Auth, type Provider } from "../auth/Auth.ts"
import { ROLES, type Role } from "../config/AppConfig.ts"
import { Forbidden, OrderServiceApi, SignInFailed, SignInOff, Unavailable } from "./Api.ts"
import { databaseUnreachable } from "./ReadFailures.ts"

/** The cookie that carries a sign-in under way from `/auth/login` to `/auth/callback`. */
const LOGIN_COOKIE = "order_sign_in"
const LOGIN_TTL = Duration.minutes(10)
/** How long a sign-in waits for a provider the service has not reached yet (it is retrying). */
const PROVIDER_WAIT = Duration.seconds(5)

const LoginState = Schema.parseJson(
  Schema.Struct({
    state: Schema.String,
    nonce: Schema.String,
    verifier: Schema.String,
    return_to: Schema.String
  })
)
const encodeLogin = Schema.encodeSync(LoginState)
const decodeLogin = Schema.decodeUnknownOption(LoginState)

/**
 * Where to go once signed in: a path of this service only (never `//host` or a full URL, which
 * would make the service an open redirect).
 */
export const safeReturnTo = (raw: string | undefined): string =>
  raw !== undefined && /^\/(?![/\\])[^\s]*$/.test(raw) && raw.length <= 2048 ? raw : "/"

const signInOff = () => new SignInOff({ message: "no OpenID provider is configured: nobody signs in here" })
const providerDown = () =>
  new Unavailable({ message: "the OpenID provider has not been reached yet; try again shortly" })

const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!)

export const layer = HttpApiBuilder.group(OrderServiceApi, "auth", (handlers) =>
  Effect.gen(function* () {
    const auth = yield* Auth

    /** The service's own URL as the browser sees it: `auth.public_url`, or the request's Host. */
    const baseOf = (request: HttpServerRequest.HttpServerRequest): string =>
      Option.match(auth.publicUrl, {
        onSome: (url) => url.href.replace(/\/$/, ""),
        onNone: () => `http://${request.headers["host"] ?? "localhost"}`
      })

    /** The provider; while it is still being reached, a few seconds' wait, then 503. */
    const provider = Effect.suspend((): Effect.Effect<Provider, SignInOff | Unavailable> =>
      !auth.signIn
        ? Effect.fail(signInOff())
        : auth.provider.pipe(Effect.timeoutFail({ duration: PROVIDER_WAIT, onTimeout: providerDown }))
    )

    const loginCookie = (value: string, maxAge: Duration.Duration) =>
      Cookies.unsafeMakeCookie(LOGIN_COOKIE, value, {
        path: "/auth/",
        httpOnly: true,
        // Lax: the cookie must come back with the provider's top-level redirect to the callback.
        sameSite: "lax",
        secure: auth.secureCookies,
        maxAge
      })

    return handlers
      .handle("me", () =>
        Effect.gen(function* () {
          const request = yield* HttpServerRequest.HttpServerRequest
          const who = yield* auth.whoIs(NodeHttpServerRequest.toIncomingMessage(request))
          const open = auth.mode === "none"
          return {
            mode: auth.mode,
            signed_in: !open && who !== undefined,
            subject: open ? null : (who?.subject ?? null),
            name: open ? null : (who?.name ?? null),
            roles: ROLES.filter((r) => who?.roles.has(r) ?? false) as Array<Role>,
            sign_in: auth.signIn
          }
        }).pipe(
          Effect.map((me) => HttpServerResponse.unsafeJson(me, { headers: { "cache-control": "no-store" } }))
        )
      )
      .handle("login", ({ urlParams }) =>
        Effect.gen(function* () {
          const { config } = yield* provider
          const request = yield* HttpServerRequest.HttpServerRequest
          const verifier = client.randomPKCECodeVerifier()
          const state = client.randomState()
          const nonce = client.randomNonce()
          const challenge = yield* Effect.promise(() => client.calculatePKCECodeChallenge(verifier))
          const url = client.buildAuthorizationUrl(config, {
            redirect_uri: `${baseOf(request)}/auth/callback`,
            scope: auth.scopes,
            code_challenge: challenge,
            code_challenge_method: "S256",
            state,
            nonce
          })
          const login = encodeLogin({ state, nonce, verifier, return_to: safeReturnTo(urlParams.return_to) })
          return HttpServerResponse.empty({
            status: 302,
            headers: { location: url.href, "cache-control": "no-store" },
            cookies: Cookies.fromIterable([loginCookie(Buffer.from(login).toString("base64url"), LOGIN_TTL)])
          })
        })
      )
      .handle("callback", () =>
        Effect.gen(function* () {
          const { config, verify } = yield* provider
          const request = yield* HttpServerRequest.HttpServerRequest
          const saved = request.cookies[LOGIN_COOKIE]
          const login =
            saved === undefined ? Option.none() : decodeLogin(Buffer.from(saved, "base64url").toString())
          if (Option.isNone(login))
            return yield* new SignInFailed({
              message:
                "no sign-in is under way in this browser (it took over 10 minutes, or cookies are off); start again"
            })
          const { state, nonce, verifier, return_to } = login.value
          const current = new URL(request.url, baseOf(request))
          const tokens = yield* Effect.tryPromise({
            try: () =>
              client.authorizationCodeGrant(config, current, {
                pkceCodeVerifier: verifier,
                expectedState: state,
                expectedNonce: nonce,
                idTokenExpected: true
              }),
            catch: (e) =>
              new SignInFailed({
                message: `the provider's answer was refused: ${e instanceof Error ? e.message : String(e)}`
              })
          })
          const claims = tokens.claims()!
          // Roles are in the ID token with some providers; others (Keycloak) put them in the access token only.
          let roles = auth.rolesOf(claims)
          if (roles.size === 0 && tokens.access_token !== undefined) {
            const access = yield* Effect.promise(() => verify(tokens.access_token).catch(() => undefined))
            if (access !== undefined) roles = auth.rolesOf(access as Record<string, unknown>)
          }
          const name =
            [claims["name"], claims["preferred_username"], claims["email"]].find(
              (c): c is string => typeof c === "string"
            ) ?? undefined
          const session = yield* auth
            .startSession({ subject: claims.sub, name, roles, idToken: tokens.id_token })
            .pipe(Effect.mapError(databaseUnreachable))
          yield* Effect.logInfo("Signed in").pipe(
            Effect.annotateLogs({ subject: claims.sub, roles: [...roles].join(",") })
          )
          return HttpServerResponse.empty({
            status: 303,
            headers: { location: return_to, "cache-control": "no-store" },
            cookies: Cookies.fromIterable([loginCookie("", Duration.zero), session])
          })
        })
      )
      .handle("logout", () =>
        Effect.gen(function* () {
          const request = yield* HttpServerRequest.HttpServerRequest
          const req = NodeHttpServerRequest.toIncomingMessage(request)
          if (!auth.sameOrigin(req))
            return yield* new Forbidden({
              message: "sign-out must come from the service's own page",
              required_role: null
            })
          const who = yield* auth.whoIs(req)
          const idToken = yield* auth.endSession(req).pipe(Effect.mapError(databaseUnreachable))
          if (who !== undefined)
            yield* Effect.logInfo("Signed out").pipe(Effect.annotateLogs({ subject: who.subject }))
          // Then out of the provider too, so that "Sign in" asks again. A page, not a redirect: a form's
          // redirect to another origin is refused by the page's `form-action 'self'`.
          let next = "/"
          if (auth.signIn && auth.providerReady()) {
            const { config } = yield* auth.provider
            if (config.serverMetadata().end_session_endpoint !== undefined)
              next = client.buildEndSessionUrl(config, {
                post_logout_redirect_uri: `${baseOf(request)}/`,
                ...(idToken === undefined ? {} : { id_token_hint: idToken })
              }).href
          }
          const href = escapeHtml(next)
          return HttpServerResponse.text(
            `<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=${href}"><title>Signed out</title><p>Signed out. <a href="${href}">Continue</a></p>`,
            {
              contentType: "text/html; charset=utf-8",
              headers: { "cache-control": "no-store" },
              cookies: Cookies.fromIterable([auth.clearedCookie])
            }
          )
        })
      )
  })
)
