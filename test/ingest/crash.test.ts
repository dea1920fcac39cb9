import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import * as Database from "../../src/db/Database.ts"
import { backlog, expectStoredExactlyOnce } from "../support/backlog.ts"
import { createTestDatabase } from "../support/database.ts"
import { eventually } from "../support/kafka.ts"
import { scopedService, serviceUrl, withServiceOutput } from "../support/service.ts"

const TOTAL = 20_000

describe("a crash in the middle of a backlog", () => {
  it.live(
    "the service SIGKILLed mid-backlog and started again stores exactly 20,000 orders, none twice, none dead-lettered",
    () =>
      Effect.gen(function* () {
        const databaseUrl = yield* createTestDatabase
        yield* crashAndRestart(databaseUrl).pipe(
          Effect.provide(Database.layer({ url: Redacted.make(databaseUrl), maxConnections: 2 }))
        )
      }).pipe(Effect.scoped),
    300_000
  )
})

const crashAndRestart = (databaseUrl: string) =>
  Effect.gen(function* () {
    const b = yield* backlog(TOTAL, 77, databaseUrl)
    const first = yield* scopedService(b.env)
    yield* eventually(
      "the first service is part-way through",
      Effect.map(b.stored, (n) => n >= 2_000),
      90_000
    ).pipe(withServiceOutput(first))
    first.child.kill("SIGKILL")
    expect(yield* Effect.promise(() => first.exited)).toBe("SIGKILL")
    const atCrash = yield* b.stored
    expect(atCrash).toBeLessThan(TOTAL)

    const second = yield* scopedService(b.env)
    yield* serviceUrl(second)
    yield* eventually(
      "every order is stored",
      Effect.map(b.stored, (n) => n === TOTAL),
      120_000
    ).pipe(withServiceOutput(second))
    yield* expectStoredExactlyOnce(b)
    second.child.kill("SIGTERM")
    expect(yield* Effect.promise(() => second.exited)).toBe(0)
    yield* Effect.logInfo(`stored ${atCrash} orders before the crash`)
  }).pipe(Effect.scoped)
