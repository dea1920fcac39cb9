/**
 * Who may call what, route by route: every path of the OpenAPI document, the routes outside it
 * (metrics, the page, the docs) and the three answered below the router, each asked by anonymous,
 * an agent and an operator (by API key, by the provider's access token and by a session signed
 * in through the real provider), and by a metrics scraper; then with credentials that must not
 * hold. The expected outcomes are written here, not read from the service's own table, and a path
 * of the OpenAPI document missing below fails the test: a route added without a rule cannot pass.
 */
import { expect, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { baseUrl, httpStack } from "../support/app.ts"
import {
  API_KEYS,
  authConfig,
  cookieJar,
  fetchWith,
  signIn,
  startProvider,
  type Jar,
  type TestProvider
} from "../support/auth.ts"
import { TestDatabase } from "../support/database.ts"

let provider: TestProvider

const stack = Layer.unwrapScoped(
  Effect.map(startProvider, (p) => {
    provider = p
    return httpStack(TestDatabase, {
      auth: authConfig(p.server),
      http: { host: "127.0.0.1", port: 0, access_log: false }
    })
  })
)

type Who = "anonymous" | "agent" | "operator" | "metrics"
/** `pass`: the request reached its handler (whatever it answered); 401 and 403: refused. */
type Outcome = "pass" | 401 | 403

const open: Record<Who, Outcome> = { anonymous: "pass", agent: "pass", operator: "pass", metrics: "pass" }
const agents: Record<Who, Outcome> = { anonymous: 401, agent: "pass", operator: "pass", metrics: 403 }
const operators: Record<Who, Outcome> = { anonymous: 401, agent: 403, operator: "pass", metrics: 403 }
const scrapers: Record<Who, Outcome> = { anonymous: 401, agent: 403, operator: "pass", metrics: "pass" }

interface Case {
  readonly method: "GET" | "POST"
  /** The OpenAPI path this exercises, if it is one. */
  readonly documented?: string
  readonly path: string
  readonly headers?: Record<string, string>
  readonly body?: string
  readonly expect: Record<Who, Outcome>
}

const json = { "content-type": "application/json" }
const CASES: ReadonlyArray<Case> = [
  { method: "GET", documented: "/order/{order_uid}", path: "/order/no-such-order", expect: open },
  { method: "GET", documented: "/orders", path: "/orders", expect: agents },
  {
    method: "GET",
    documented: "/orders/search",
    path: "/orders/search?q=nobody%40example.com",
    expect: agents
  },
  { method: "GET", documented: "/orders/live", path: "/orders/live", expect: agents },
  { method: "GET", documented: "/healthz", path: "/healthz", expect: open },
  { method: "GET", documented: "/readyz", path: "/readyz", expect: open },
  { method: "GET", documented: "/dead-letters", path: "/dead-letters", expect: operators },
  { method: "GET", path: "/dead-letters", headers: { accept: "text/html" }, expect: open },
  {
    method: "GET",
    documented: "/dead-letters/{partition}/{offset}",
    path: "/dead-letters/0/1",
    expect: operators
  },
  {
    method: "POST",
    documented: "/dead-letters/replay",
    path: "/dead-letters/replay",
    headers: json,
    body: JSON.stringify({ dry_run: true }),
    expect: operators
  },
  { method: "GET", documented: "/auth/me", path: "/auth/me", expect: open },
  { method: "GET", documented: "/auth/login", path: "/auth/login", expect: open },
  { method: "GET", documented: "/auth/callback", path: "/auth/callback", expect: open },
  // Sign-out is anyone's, from the service's own page (Origin is set for every case below).
  { method: "POST", documented: "/auth/logout", path: "/auth/logout", expect: open },
  { method: "GET", path: "/metrics", expect: scrapers },
  { method: "GET", path: "/", expect: open },
  { method: "GET", path: "/script.js", expect: open },
  { method: "GET", path: "/openapi.json", expect: open },
  { method: "GET", path: "/docs", expect: open },
  { method: "GET", path: "/no-such-thing", expect: open }
]

/** What a request carried and got: the status, and whether the authorization step refused it. */
const ask = (url: string, c: Case, credentials: Record<string, string>, jar: Jar = cookieJar()) =>
  Effect.promise(async () => {
    const abort = new AbortController()
    const response = await fetchWith(jar, `${url}${c.path}`, {
      method: c.method,
      headers: { origin: url, ...c.headers, ...credentials },
      ...(c.body === undefined ? {} : { body: c.body }),
      signal: abort.signal
    })
    // The live feed never ends: its status is all there is to read.
    const body = response.headers.get("content-type")?.includes("event-stream") ? "" : await response.text()
    abort.abort()
    return { status: response.status, body, headers: response.headers }
  })

const outcomeOf = (answer: { status: number; body: string }): Outcome =>
  (answer.status === 401 && answer.body.includes('"unauthorized"')) ||
  (answer.status === 403 && answer.body.includes('"forbidden"'))
    ? (answer.status as 401 | 403)
    : "pass"

layer(stack, { excludeTestServices: true, timeout: "120 seconds" })("who may call what", (it) => {
  it.effect("every path of the OpenAPI document has its expected outcome here", () =>
    Effect.gen(function* () {
      const url = yield* baseUrl
      const document = yield* Effect.promise(() => fetch(`${url}/openapi.json`).then((r) => r.json()))
      const documented = Object.entries(document.paths as Record<string, Record<string, unknown>>).flatMap(
        ([path, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`)
      )
      const covered = CASES.filter((c) => c.documented !== undefined).map(
        (c) => `${c.method} ${c.documented}`
      )
      expect(documented.filter((route) => !covered.includes(route))).toEqual([])
    })
  )

  it.effect(
    "each route answers anonymous, agent, operator and scraper as the table says, however they prove it",
    () =>
      Effect.gen(function* () {
        const url = yield* baseUrl
        const agentSession = (yield* Effect.promise(() => signIn(url, "agent", "agent"))).jar
        const operatorSession = (yield* Effect.promise(() => signIn(url, "operator", "operator"))).jar
        const agentToken = yield* Effect.promise(() =>
          provider.sign({ sub: "token-agent", roles: ["agent"] })
        )
        const operatorToken = yield* Effect.promise(() => provider.clientCredentialsToken())
        const ways: ReadonlyArray<{ who: Who; how: string; credentials: Record<string, string>; jar?: Jar }> =
          [
            { who: "anonymous", how: "nothing", credentials: {} },
            { who: "agent", how: "API key", credentials: { authorization: `Bearer ${API_KEYS.agent}` } },
            { who: "agent", how: "access token", credentials: { authorization: `Bearer ${agentToken}` } },
            { who: "agent", how: "session", credentials: {}, jar: agentSession },
            {
              who: "operator",
              how: "API key",
              credentials: { authorization: `Bearer ${API_KEYS.operator}` }
            },
            {
              who: "operator",
              how: "client-credentials token",
              credentials: { authorization: `Bearer ${operatorToken}` }
            },
            { who: "operator", how: "session", credentials: {}, jar: operatorSession },
            { who: "metrics", how: "API key", credentials: { authorization: `Bearer ${API_KEYS.metrics}` } }
          ]
        const wrong: Array<string> = []
        for (const c of CASES)
          for (const way of ways) {
            // Signing out would end the session the rows after it use: it is asked last, below.
            if (c.documented === "/auth/logout" && way.jar !== undefined) continue
            const answer = yield* ask(url, c, way.credentials, way.jar)
            const got = outcomeOf(answer)
            if (got !== c.expect[way.who])
              wrong.push(
                `${c.method} ${c.path} ${JSON.stringify(c.headers ?? {})} as ${way.who} by ${way.how}: expected ${c.expect[way.who]}, got ${answer.status} ${answer.body.slice(0, 120)}`
              )
            if (got !== "pass") expect(answer.headers.get("cache-control")).toBe("no-store")
            if (got === 401)
              expect(answer.headers.get("www-authenticate")).toMatch(/^Bearer realm="order-service"/)
          }
        expect(wrong).toEqual([])
      })
  )

  it.effect(
    "forged, expired, unsigned, wrong-audience and wrong-issuer tokens and a tampered cookie are refused with 401",
    () =>
      Effect.gen(function* () {
        const url = yield* baseUrl
        const now = Math.floor(Date.now() / 1000)
        const valid = yield* Effect.promise(() => provider.sign({ roles: ["operator"] }))
        const [header, payload] = valid.split(".")
        const unsigned = `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${payload}.`
        const tokens: Record<string, string> = {
          "signed with another key": yield* Effect.promise(() =>
            provider.sign({ roles: ["operator"] }, { foreignKey: true })
          ),
          expired: yield* Effect.promise(() =>
            provider.sign({ roles: ["operator"], iat: now - 600, exp: now - 60 })
          ),
          "alg none": unsigned,
          "for another audience": yield* Effect.promise(() =>
            provider.sign({ roles: ["operator"], aud: "someone-else" })
          ),
          "from another issuer": yield* Effect.promise(() =>
            provider.sign({ roles: ["operator"], iss: "http://127.0.0.1:1" })
          ),
          "its payload changed": `${header}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload!, "base64url").toString()), roles: ["operator", "x"] })).toString("base64url")}.${valid.split(".")[2]}`,
          "an unknown API key": "not-a-key-of-this-service-at-all",
          "an API key with a character changed": `${API_KEYS.operator.slice(0, -1)}2`
        }
        const route: Case = CASES.find((c) => c.path === "/dead-letters" && c.headers === undefined)!
        for (const [what, token] of Object.entries(tokens)) {
          const answer = yield* ask(url, route, { authorization: `Bearer ${token}` })
          expect(answer.status, what).toBe(401)
          expect(answer.body, what).toContain('"unauthorized"')
          expect(answer.headers.get("www-authenticate"), what).toContain('error="invalid_token"')
        }
        // The valid one, for contrast.
        expect((yield* ask(url, route, { authorization: `Bearer ${valid}` })).status).toBe(200)

        const { jar } = yield* Effect.promise(() => signIn(url, "operator", "operator"))
        expect((yield* ask(url, route, {}, jar)).status).toBe(200)
        const [name, value] = [...jar.cookies].find(([n]) => n === "order_session")!
        const tampered = cookieJar()
        tampered.cookies.set(name, `${value.slice(0, -1)}${value.endsWith("A") ? "B" : "A"}`)
        const refused = yield* ask(url, route, {}, tampered)
        expect(refused.status).toBe(401)
        expect(refused.body).toContain("your session has ended")
      })
  )

  it.effect("a session's POST from another site is refused; signing out ends the session", () =>
    Effect.gen(function* () {
      const url = yield* baseUrl
      const { jar } = yield* Effect.promise(() => signIn(url, "operator", "operator"))
      const replay = CASES.find((c) => c.path === "/dead-letters/replay")!
      const crossSite = yield* ask(
        url,
        { ...replay, headers: { ...json, origin: "https://evil.example" } },
        {},
        jar
      )
      expect(crossSite.status).toBe(403)
      expect(crossSite.body).toContain("service's own page")
      expect((yield* ask(url, replay, {}, jar)).status).toBe(200)

      const me = yield* Effect.promise(() => fetchWith(jar, `${url}/auth/me`).then((r) => r.json()))
      expect(me).toMatchObject({
        mode: "required",
        signed_in: true,
        subject: "operator",
        roles: ["agent", "operator"].filter((r) => r === "operator")
      })

      const session = jar.cookies.get("order_session")!
      const out = yield* Effect.promise(() =>
        fetchWith(jar, `${url}/auth/logout`, { method: "POST", headers: { origin: url } })
      )
      expect(out.status).toBe(200)
      expect(jar.cookies.has("order_session")).toBe(false)
      // The old cookie, kept by someone, no longer opens anything.
      const stale = cookieJar()
      stale.cookies.set("order_session", session)
      expect((yield* ask(url, replay, {}, stale)).status).toBe(401)
      const after = yield* Effect.promise(() => fetchWith(stale, `${url}/auth/me`).then((r) => r.json()))
      expect(after).toMatchObject({ signed_in: false, roles: [] })
    })
  )
})
