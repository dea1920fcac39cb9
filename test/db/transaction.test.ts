import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option } from "effect"
import { transaction } from "../../src/db/transaction.ts"
import { TestDatabase } from "../support/database.ts"

/** The connection of the transaction dies inside it, as when PostgreSQL restarts mid-batch. */
const connectionDiesInside = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  return yield* sql`SELECT pg_terminate_backend(pg_backend_pid())`
})

describe("a transaction whose connection dies", () => {
  it.live("fails with the SqlError, so it can be retried, where @effect/sql alone would die", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const plain = yield* Effect.exit(sql.withTransaction(connectionDiesInside))
      expect(Exit.isFailure(plain) && Cause.isDie(plain.cause)).toBe(true)

      const ours = yield* Effect.exit(transaction(sql)(connectionDiesInside))
      expect(Exit.isFailure(ours) && !Cause.isDie(ours.cause)).toBe(true)
      const failure = Exit.isFailure(ours) ? Cause.failureOption(ours.cause) : Option.none()
      expect(Option.getOrThrow(failure)).toBeInstanceOf(SqlError)

      // The pool replaces the dead connection: the next transaction works.
      const [row] = yield* transaction(sql)(sql<{ one: number }>`SELECT 1 AS one`)
      expect(row!.one).toBe(1)
    }).pipe(Effect.provide(TestDatabase))
  )
})
