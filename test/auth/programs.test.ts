/**
 * Programs and operators without a browser: `npm run dlq -- replay` with an API key, with a token
 * it gets from the provider by the client-credentials grant, and with the replay token of earlier
 * versions; and a service that will not start open on a network address.
 */
import { randomBytes } from "node:crypto"
import { describe, expect, it, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { baseUrl, serviceStack } from "../support/app.ts"
import { API_KEYS, authConfig, startProvider, type TestProvider } from "../support/auth.ts"
import { TestDatabase } from "../support/database.ts"
import { runDlq } from "../support/dlq.ts"
import { readFixture } from "../support/fixtures.ts"
import { eventually, freshTopics, produce } from "../support/kafka.ts"
import { startService } from "../support/service.ts"

const topics = freshTopics()
const OLD_REPLAY_TOKEN = "the-replay-token-of-an-older-version"
let provider: TestProvider

const stack = Layer.unwrapScoped(
  Effect.map(startProvider, (p) => {
    provider = p
    return serviceStack(topics, TestDatabase, {
      auth: authConfig(p.server),
      dead_letters: { replay_token: OLD_REPLAY_TOKEN }
    })
  })
)

/** The letters parked under `key`, as an operator lists them. */
const lettersUnder = (key: string) =>
  Effect.flatMap(baseUrl, (url) =>
    Effect.promise(async () => {
      const response = await fetch(`${url}/dead-letters?limit=200`, {
        headers: { authorization: `Bearer ${API_KEYS.operator}` }
      })
      const page = (await response.json()) as { items: Array<{ key: { data: string } | null }> }
      return page.items.filter((l) => l.key?.data === key)
    })
  )

layer(stack, { excludeTestServices: true, timeout: "180 seconds" })(
  "npm run dlq against a service with sign-in",
  (it) => {
    it.effect(
      "replays with an API key, with a client-credentials token and with the old replay token; without credentials, or as an agent, it is refused and says why",
      () =>
        Effect.gen(function* () {
          const key = `${randomBytes(4).toString("hex")}-programs`
          const since = new Date(Date.now() - 1000).toISOString()
          yield* produce(
            topics.brokers,
            topics.topic,
            [{ key, value: readFixture("invalid/amount-mismatch.json") }],
            0
          )
          yield* eventually(
            "the letter is listed",
            Effect.map(lettersUnder(key), (l) => l.length === 1),
            60_000
          )
          const selection = ["replay", "--kind", "business_rule", "--since", since]

          const anonymous = yield* runDlq(selection, {})
          expect(anonymous.code).toBe(1)
          expect(anonymous.stderr).toContain("the service wants credentials")
          const agent = yield* runDlq(selection, { ORDER_SERVICE_TOKEN: API_KEYS.agent })
          expect(agent.code).toBe(1)
          expect(agent.stderr).toContain("Replay needs the operator role")
          expect(agent.stderr).toContain("this needs the operator role")
          expect(yield* lettersUnder(key)).toHaveLength(1)

          // An API key: the letter goes back, and is parked again (it is still invalid).
          const byKey = yield* runDlq(selection, { ORDER_SERVICE_TOKEN: API_KEYS.operator })
          expect(byKey.code, byKey.stderr).toBe(0)
          expect(byKey.stdout).toContain("sent 1 of 1 selected letters to the orders topic (business_rule 1)")
          yield* eventually(
            "the replayed letter is parked again",
            Effect.map(lettersUnder(key), (l) => l.length === 2),
            60_000
          )

          // A token the command asks the provider for.
          const byClient = yield* runDlq([...selection, "--dry-run"], {
            ORDER_SERVICE_OIDC_ISSUER: provider.server.issuer,
            ORDER_SERVICE_CLIENT_ID: provider.server.cliClient.id,
            ORDER_SERVICE_CLIENT_SECRET: provider.server.cliClient.secret
          })
          expect(byClient.code, byClient.stderr).toBe(0)
          expect(byClient.stdout).toMatch(/would send \d+ of \d+ selected letters/)
          const wrongSecret = yield* runDlq(selection, {
            ORDER_SERVICE_OIDC_ISSUER: provider.server.issuer,
            ORDER_SERVICE_CLIENT_ID: provider.server.cliClient.id,
            ORDER_SERVICE_CLIENT_SECRET: "not-the-secret"
          })
          expect(wrongSecret.code).toBe(1)
          expect(wrongSecret.stderr).toContain("gave no access token")

          // The replay token of earlier versions still works, as an operator's key.
          const byOldToken = yield* runDlq([...selection, "--dry-run"], {
            DEAD_LETTERS_REPLAY_TOKEN: OLD_REPLAY_TOKEN
          })
          expect(byOldToken.code, byOldToken.stderr).toBe(0)
        }),
      150_000
    )
  }
)

describe("start-up without sign-in", () => {
  it.live(
    "on a network address with no provider, no API key and no auth.mode: none, the service refuses to start and names the key",
    () =>
      Effect.gen(function* () {
        // No database or broker is needed: the configuration is checked before anything starts.
        const service = startService({
          AUTH_MODE: "",
          HTTP_HOST: "0.0.0.0",
          HTTP_PORT: "0",
          CONFIG_FILE: "config/config.yaml"
        })
        const code = yield* Effect.promise(() => service.exited)
        expect(code).toBe(1)
        expect(service.output()).toContain(
          "auth.mode (env AUTH_MODE): required, but neither auth.oidc.issuer nor auth.api_keys is set"
        )
        expect(service.output()).not.toContain("HTTP server listening")
      })
  )
})
