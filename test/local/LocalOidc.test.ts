import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose"
import * as client from "openid-client"
import * as LocalOidc from "../../src/local/LocalOidc.ts"
import { cookieJar } from "../support/auth.ts"

/** Nothing listens there: the test reads the code from the `Location` that points to it. */
const REDIRECT_URI = "http://127.0.0.1:45678/auth/callback"

const discover = (server: LocalOidc.LocalOidcServer, credentials: { id: string; secret: string }) =>
  Effect.promise(() =>
    client.discovery(new URL(server.issuer), credentials.id, credentials.secret, undefined, {
      execute: [client.allowInsecureRequests]
    })
  )

/** Verifies an access token as a resource server would, with the keys the provider publishes. */
const verifyAccessToken = (config: client.Configuration, token: string) =>
  Effect.promise(() => {
    const metadata = config.serverMetadata()
    return jwtVerify(token, createRemoteJWKSet(new URL(metadata.jwks_uri ?? "")), {
      issuer: metadata.issuer,
      audience: "order-service",
      algorithms: ["RS256"]
    })
  })

type Jar = ReturnType<typeof cookieJar>

/** The OAuth `error` of a refused token request. */
const errorCode = (error: unknown) =>
  error instanceof client.ResponseBodyError ? error.error : String(error)

const request = (jar: Jar, url: string | URL, init: RequestInit = {}) =>
  Effect.promise(async () => {
    const headers = new Headers(init.headers)
    headers.set("cookie", jar.header())
    const response = await fetch(url, { ...init, headers, redirect: "manual" })
    jar.take(response)
    return {
      status: response.status,
      location: response.headers.get("location"),
      body: await response.text()
    }
  })

const form = (fields: Record<string, string>): RequestInit => ({
  method: "POST",
  headers: { "content-type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams(fields).toString()
})

/** Follows the provider's redirects until one leaves it (to the client); that one's `Location`. */
const followToClient = (jar: Jar, issuer: string, start: string) =>
  Effect.gen(function* () {
    let location = start
    for (let hop = 0; hop < 10 && location.startsWith(issuer); hop++) {
      const response = yield* request(jar, location)
      expect(response.status, `${location} answered ${response.body}`).toBeOneOf([302, 303])
      location = new URL(response.location ?? "", location).href
    }
    return location
  })

describe("LocalOidc", () => {
  it.scopedLive("the command-line client gets an operator access token for the service", () =>
    Effect.gen(function* () {
      const server = yield* LocalOidc.make()
      expect(server.issuer).toBe(`http://127.0.0.1:${server.port}`)
      const config = yield* discover(server, server.cliClient)
      const tokens = yield* Effect.promise(() => client.clientCredentialsGrant(config))
      const { payload } = yield* verifyAccessToken(config, tokens.access_token)
      expect(payload.roles).toEqual(["operator"])
      expect(payload.sub).toBe("order-service-cli")
      expect(payload.aud).toBe("order-service")
      expect(payload.exp! - payload.iat!).toBe(600)
      expect(decodeProtectedHeader(tokens.access_token).alg).toBe("RS256")

      // The web client may not use this grant, nor a wrong secret anything.
      const web = yield* discover(server, server.webClient)
      const refused = yield* Effect.promise(() =>
        client.clientCredentialsGrant(web).then(() => "issued", errorCode)
      )
      // oidc-provider 9 says invalid_request ("requested grant type is not allowed for this client").
      expect(refused).toBeOneOf(["invalid_request", "unauthorized_client"])
      const wrong = yield* discover(server, { id: server.cliClient.id, secret: "not-the-secret" })
      const denied = yield* Effect.promise(() =>
        client.clientCredentialsGrant(wrong).then(() => "issued", errorCode)
      )
      expect(denied).toBe("invalid_client")
    })
  )

  it.scopedLive("a user signs in with the code flow and PKCE; the ID token names them and their roles", () =>
    Effect.gen(function* () {
      const server = yield* LocalOidc.make({ accessTokenTtlSeconds: 120 })
      const config = yield* discover(server, server.webClient)
      const codeVerifier = client.randomPKCECodeVerifier()
      const state = client.randomState()
      const nonce = client.randomNonce()
      const authorizationUrl = client.buildAuthorizationUrl(config, {
        redirect_uri: REDIRECT_URI,
        scope: "openid profile email",
        code_challenge: yield* Effect.promise(() => client.calculatePKCECodeChallenge(codeVerifier)),
        code_challenge_method: "S256",
        state,
        nonce
      })
      const jar = cookieJar()

      // To the sign-in form.
      const start = yield* request(jar, authorizationUrl)
      expect(start.status).toBe(303)
      const loginUrl = new URL(start.location ?? "", server.issuer).href
      expect(loginUrl).toMatch(/\/interaction\/[\w-]+$/)
      const formPage = yield* request(jar, loginUrl)
      expect(formPage.status).toBe(200)
      expect(formPage.body).toContain('name="login"')
      expect(formPage.body).toContain('name="password"')
      expect(formPage.body).toMatch(/<button type="submit">Sign in<\/button>/)

      // A wrong password (or user) gets the form again, what was typed escaped.
      const wrong = yield* request(jar, loginUrl, form({ login: "agent", password: "operator" }))
      expect(wrong.status).toBe(401)
      expect(wrong.body).toContain("wrong user name or password")
      const unknown = yield* request(jar, loginUrl, form({ login: '<x">', password: "x" }))
      expect(unknown.status).toBe(401)
      expect(unknown.body).toContain('value="&lt;x&quot;&gt;"')
      expect(unknown.body).not.toContain('<x">')
      const tooLarge = yield* request(jar, loginUrl, form({ login: "agent", password: "x".repeat(17_000) }))
      expect(tooLarge.status).toBe(413)

      // The right one: through consent (granted without asking) back to the client with a code.
      const signedIn = yield* request(jar, loginUrl, form({ login: "agent", password: "agent" }))
      expect(signedIn.status).toBe(303)
      const callback = yield* followToClient(
        jar,
        server.issuer,
        new URL(signedIn.location ?? "", loginUrl).href
      )
      expect(callback.startsWith(`${REDIRECT_URI}?`)).toBe(true)
      expect(new URL(callback).searchParams.get("state")).toBe(state)

      const tokens = yield* Effect.promise(() =>
        client.authorizationCodeGrant(config, new URL(callback), {
          pkceCodeVerifier: codeVerifier,
          expectedState: state,
          expectedNonce: nonce
        })
      )
      const claims = tokens.claims()
      expect(claims).toMatchObject({
        iss: server.issuer,
        aud: "order-service",
        sub: "agent",
        name: "Agent",
        email: "agent@example.test",
        roles: ["agent"]
      })
      const { payload } = yield* verifyAccessToken(config, tokens.access_token)
      expect(payload).toMatchObject({ sub: "agent", roles: ["agent"], aud: "order-service" })
      expect(payload.exp! - payload.iat!).toBe(120)

      // A second sign-in in the same browser needs no form.
      const again = client.buildAuthorizationUrl(config, {
        redirect_uri: "http://localhost:9/auth/callback",
        scope: "openid",
        code_challenge: yield* Effect.promise(() => client.calculatePKCECodeChallenge(codeVerifier)),
        code_challenge_method: "S256",
        state
      })
      const silent = yield* followToClient(jar, server.issuer, again.href)
      expect(silent).toMatch(/^http:\/\/localhost:9\/auth\/callback\?code=/)
      // With the `openid` scope alone the ID token still carries the roles.
      const openidOnly = yield* Effect.promise(() =>
        client.authorizationCodeGrant(config, new URL(silent), {
          pkceCodeVerifier: codeVerifier,
          expectedState: state
        })
      )
      expect(openidOnly.claims()).toMatchObject({ sub: "agent", roles: ["agent"] })
      expect(openidOnly.claims()).not.toHaveProperty("email")

      // Sign-out back to any loopback page of the service.
      const endSession = client.buildEndSessionUrl(config, {
        id_token_hint: tokens.id_token ?? "",
        post_logout_redirect_uri: "http://127.0.0.1:45678/"
      })
      const confirm = yield* request(jar, endSession)
      expect(confirm.status).toBe(200)
      const action = /action="([^"]+)"/.exec(confirm.body)?.[1] ?? ""
      const xsrf = /name="xsrf" value="([^"]+)"/.exec(confirm.body)?.[1] ?? ""
      const signedOut = yield* request(jar, new URL(action, server.issuer), form({ xsrf, logout: "yes" }))
      expect(signedOut.status).toBe(303)
      expect(signedOut.location).toBe("http://127.0.0.1:45678/")
    })
  )

  it.scopedLive("redirect URIs off loopback or off /auth/callback are refused", () =>
    Effect.gen(function* () {
      const server = yield* LocalOidc.make()
      const config = yield* discover(server, server.webClient)
      const challenge = yield* Effect.promise(() =>
        client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier())
      )
      const attempt = (redirectUri: string, extra: Record<string, string> = {}) =>
        request(
          cookieJar(),
          client.buildAuthorizationUrl(config, {
            redirect_uri: redirectUri,
            scope: "openid",
            code_challenge: challenge,
            code_challenge_method: "S256",
            ...extra
          })
        )
      for (const uri of [
        "http://evil.example:45678/auth/callback",
        "http://127.0.0.1:45678/other",
        "https://127.0.0.1:45678/auth/callback",
        "http://127.0.0.1.evil.example/auth/callback"
      ]) {
        const response = yield* attempt(uri)
        expect(response.status, uri).toBe(400)
        expect(response.body).toContain("redirect_uri did not match")
      }
      // PKCE is required of this confidential client too.
      const withoutPkce = yield* request(
        cookieJar(),
        client.buildAuthorizationUrl(config, { redirect_uri: REDIRECT_URI, scope: "openid" })
      )
      expect(withoutPkce.status).toBe(303)
      expect(withoutPkce.location).toMatch(/error=invalid_request/)
    })
  )
})
