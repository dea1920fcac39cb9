/**
 * Sign-in for tests: a local OpenID provider (the real `oidc-provider`, src/local/LocalOidc.ts)
 * whose signing key the test knows, so that it can also make tokens the service must refuse
 * (expired, for another audience, from another key), and a sign-in through the service's own
 * `/auth/login` as a browser does it, by fetch with a cookie jar.
 */
import { createHash } from "node:crypto"
import { Effect, Layer, type Scope } from "effect"
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose"
import * as client from "openid-client"
import { discover } from "../../src/auth/Discovery.ts"
import * as LocalOidc from "../../src/local/LocalOidc.ts"

export const sha256hex = (s: string) => createHash("sha256").update(s).digest("hex")

/** API keys the tests' services accept, by role; `auth.api_keys` lists them by their SHA-256. */
export const API_KEYS = {
  agent: "agent-key-of-the-route-tests-0001",
  operator: "operator-key-of-the-route-tests-01",
  metrics: "metrics-key-of-the-route-tests-001"
} as const

export const apiKeysConfig = Object.entries(API_KEYS)
  .map(([role, key]) => `tests-${role}:${role}:${sha256hex(key)}`)
  .join(",")

/** A signing key for the provider that the test holds too, and one the provider has never seen. */
const makeKey = async (kid: string): Promise<{ readonly jwk: JWK; readonly privateKey: CryptoKey }> => {
  const { privateKey } = await generateKeyPair("RS256", { extractable: true })
  return {
    jwk: { ...(await exportJWK(privateKey)), kid, alg: "RS256", use: "sig" },
    privateKey: privateKey as CryptoKey
  }
}

export interface TestProvider {
  readonly server: LocalOidc.LocalOidcServer
  /** A token signed with the provider's own key: claims as given, on top of valid ones. */
  readonly sign: (
    claims: Record<string, unknown>,
    options?: { readonly foreignKey?: boolean }
  ) => Promise<string>
  /** An access token of the command-line client (operator), by the client-credentials grant. */
  readonly clientCredentialsToken: () => Promise<string>
}

export const startProvider: Effect.Effect<TestProvider, LocalOidc.LocalOidcError, Scope.Scope> = Effect.gen(
  function* () {
    const [own, foreign] = yield* Effect.promise(() =>
      Promise.all([makeKey("test-own"), makeKey("test-foreign")])
    )
    const server = yield* LocalOidc.make({ jwks: { keys: [own.jwk] } })
    const sign = (claims: Record<string, unknown>, options: { readonly foreignKey?: boolean } = {}) => {
      const now = Math.floor(Date.now() / 1000)
      const key = options.foreignKey ? foreign : own
      return new SignJWT({
        iss: server.issuer,
        aud: server.audience,
        sub: "token-user",
        iat: now,
        exp: now + 300,
        roles: ["agent"],
        ...claims
      })
        .setProtectedHeader({ alg: "RS256", kid: key.jwk.kid! })
        .sign(key.privateKey)
    }
    const clientCredentialsToken = async () =>
      (
        await client.clientCredentialsGrant(
          await discover(new URL(server.issuer), server.cliClient.id, server.cliClient.secret)
        )
      ).access_token
    return { server, sign, clientCredentialsToken }
  }
)

/** The `auth` section of a service that signs people in with `provider`. */
export const authConfig = (provider: LocalOidc.LocalOidcServer, extra: Record<string, unknown> = {}) => ({
  mode: "required",
  api_keys: apiKeysConfig,
  oidc: {
    issuer: provider.issuer,
    client_id: provider.webClient.id,
    client_secret: provider.webClient.secret,
    audience: provider.audience,
    roles_claim: "roles"
  },
  ...extra
})

/** A browser's cookies, by hand: name → value, whatever the path. */
export const cookieJar = () => {
  const cookies = new Map<string, string>()
  return {
    cookies,
    header: () => [...cookies].map(([name, value]) => `${name}=${value}`).join("; "),
    take: (response: Response) => {
      for (const line of response.headers.getSetCookie()) {
        const [pair = "", ...attributes] = line.split(";")
        const at = pair.indexOf("=")
        const name = pair.slice(0, at).trim()
        const value = pair.slice(at + 1).trim()
        const expired = attributes.some((a) => /^\s*(expires=.*1970|max-age=0)/i.test(a))
        if (value === "" || expired) cookies.delete(name)
        else cookies.set(name, value)
      }
    }
  }
}
export type Jar = ReturnType<typeof cookieJar>

/** `fetch` with the jar's cookies, redirects not followed. */
export const fetchWith = async (jar: Jar, url: string, init: RequestInit = {}) => {
  const headers = new Headers(init.headers)
  if (jar.cookies.size > 0) headers.set("cookie", jar.header())
  const response = await fetch(url, { ...init, headers, redirect: "manual" })
  jar.take(response)
  return response
}

/**
 * Signs `username` in through the service at `serviceUrl`, as a browser would: `/auth/login`, the
 * provider's form, back to `/auth/callback`. The jar then holds the session cookie.
 */
export const signIn = async (
  serviceUrl: string,
  username: string,
  password: string,
  jar: Jar = cookieJar()
) => {
  let response = await fetchWith(jar, `${serviceUrl}/auth/login?return_to=/`)
  let location = new URL(response.headers.get("location") ?? "", serviceUrl).href
  for (let hop = 0; hop < 10 && !location.startsWith(serviceUrl); hop++) {
    if (/\/interaction\/[\w-]+$/.test(location)) {
      response = await fetchWith(jar, location, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ login: username, password }).toString()
      })
      if (response.status !== 303)
        throw new Error(`sign-in refused: ${response.status} ${await response.text()}`)
    } else response = await fetchWith(jar, location)
    location = new URL(response.headers.get("location") ?? "", location).href
  }
  response = await fetchWith(jar, location)
  if (response.status !== 303)
    throw new Error(`callback answered ${response.status}: ${await response.text()}`)
  return { jar, landed: response.headers.get("location") }
}

/** A layer that starts the provider for a test file and hands it over by reference. */
export const providerRef = () => {
  let current: TestProvider | undefined
  return {
    get: () => {
      if (current === undefined) throw new Error("the test provider has not started")
      return current
    },
    layer: Layer.scopedDiscard(Effect.tap(startProvider, (p) => Effect.sync(() => (current = p))))
  }
}
