/** `dead_letters.replay_token`: off by default, read from the environment, checked, never logged. */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Option, Redacted } from "effect"
import { describeForLog } from "../../src/config/AppConfig.ts"
import { loadDefaults } from "../support/config.ts"

const load = loadDefaults

describe("the replay token", () => {
  it.effect("is unset by default: replay is off", () =>
    Effect.gen(function* () {
      const config = Either.getOrThrow(yield* load({}))
      expect(Option.isNone(config.deadLetters.replayToken)).toBe(true)
      expect(describeForLog(config).deadLetters).toEqual({ replay: "off" })
    })
  )

  it.effect("comes from DEAD_LETTERS_REPLAY_TOKEN and never shows in the start-up log line", () =>
    Effect.gen(function* () {
      const token = "a-long-enough-secret-token"
      const config = Either.getOrThrow(yield* load({ DEAD_LETTERS_REPLAY_TOKEN: token }))
      expect(Option.map(config.deadLetters.replayToken, Redacted.value)).toEqual(Option.some(token))
      const logged = JSON.stringify(describeForLog(config))
      expect(logged).toContain('"replay":"on (token set)"')
      expect(logged).not.toContain(token)
      expect(String(config.deadLetters.replayToken)).not.toContain(token)
    })
  )

  it.effect("a guessable one (under 16 characters) stops start-up, naming the key and its variable", () =>
    Effect.gen(function* () {
      const result = yield* load({ DEAD_LETTERS_REPLAY_TOKEN: "short" })
      if (Either.isRight(result)) throw new Error("a short token was accepted")
      expect(result.left.message).toContain("dead_letters.replay_token (env DEAD_LETTERS_REPLAY_TOKEN)")
      expect(result.left.message).toContain("at least 16 characters")
      expect(result.left.message).not.toContain("short")
    })
  )
})
