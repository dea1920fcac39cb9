import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Redacted } from "effect"
import pg from "pg"
import * as Database from "../../src/db/Database.ts"
import { isConnectionError, isDataError, sqlState } from "../../src/db/SqlErrors.ts"
import { freePort } from "../../src/local/freePort.ts"
import { createTestDatabase } from "../support/database.ts"
import { startTcpRelay, throughRelay } from "../support/tcpRelay.ts"

const pgError = (code: string) => new SqlError({ cause: Object.assign(new Error("refused"), { code }) })

describe("what a failed statement means", () => {
  it("tells PostgreSQL's SQLSTATEs from Node's own error codes", () => {
    expect(sqlState(pgError("42P07"))).toBe("42P07")
    expect(sqlState(pgError("EPIPE"))).toBeUndefined()
    expect(sqlState(pgError("3D000"))).toBe("3D000")
    expect(sqlState(pgError("ECONNREFUSED"))).toBeUndefined()
    expect(sqlState(new SqlError({ cause: new Error("no code") }))).toBeUndefined()
  })

  it("retries only what may pass: no answer, a connection exception, a server starting or full", () => {
    for (const code of ["ECONNREFUSED", "ECONNRESET", "08006", "08001", "53300", "57P01", "57P03"])
      expect(isConnectionError(pgError(code)), code).toBe(true)
    for (const code of ["42P07", "28P01", "3D000", "23505", "22P02", "57014", "XX000"])
      expect(isConnectionError(pgError(code)), code).toBe(false)
    expect(isConnectionError(new Error("not SQL"))).toBe(false)
  })

  it("blames the data for classes 22, 23 and 54 only", () => {
    for (const code of ["22P02", "23505", "54000"]) expect(isDataError(pgError(code)), code).toBe(true)
    for (const code of ["08006", "42P07", "ECONNREFUSED"])
      expect(isDataError(pgError(code)), code).toBe(false)
  })
})

describe("the database layer", () => {
  it.live("fails at once, with PostgreSQL's reason, when a migration is refused", () =>
    Effect.gen(function* () {
      const url = yield* createTestDatabase
      // A table the first migration would create, already there: CREATE TABLE is refused (42P07).
      yield* Effect.promise(async () => {
        const client = new pg.Client({ connectionString: url })
        await client.connect()
        await client.query("CREATE TABLE orders (unrelated int)")
        await client.end()
      })
      const started = Date.now()
      const exit = yield* Effect.exit(Layer.build(Database.layer({ url: Redacted.make(url) })))
      const elapsed = Date.now() - started
      expect(Exit.isFailure(exit)).toBe(true)
      // Retried, it would go on for a minute; refused, it ends after the one attempt.
      expect(elapsed).toBeLessThan(10_000)
      expect(Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "").toMatch(/already exists/)
    }).pipe(Effect.scoped)
  )

  it.live("waits for a server that is not reachable yet, and connects once it is", () =>
    Effect.gen(function* () {
      const url = yield* createTestDatabase
      const server = new URL(url)
      const target = { host: server.hostname, port: Number(server.port) }
      // Nothing listens on `port` at first; after a while a relay to the real server does.
      const port = yield* Effect.promise(freePort)
      yield* Effect.sleep("1500 millis").pipe(
        Effect.zipRight(
          Effect.acquireRelease(
            Effect.promise(() => startTcpRelay(target, port)),
            (relay) => Effect.promise(relay.close)
          )
        ),
        Effect.forkScoped
      )
      const context = yield* Layer.build(Database.layer({ url: Redacted.make(throughRelay(url, port)) }))
      const sql = yield* Effect.provide(SqlClient.SqlClient, context)
      const [row] = yield* sql<{ tables: number }>`
        SELECT count(*)::int AS tables FROM pg_tables WHERE tablename = 'orders'`
      expect(row!.tables).toBe(1)
    }).pipe(Effect.scoped)
  )
})
