import { readdirSync } from "node:fs"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import * as Database from "../../src/db/Database.ts"
import { createTestDatabase } from "../support/database.ts"

const migrationFiles = readdirSync(new URL("../../src/db/migrations/", import.meta.url)).filter((f) =>
  /^\d{4}_.*\.ts$/.test(f)
)

describe("migrations when several replicas start at once", () => {
  it.live("two instances migrating one empty database both start, and the schema is applied once", () =>
    Effect.gen(function* () {
      const url = Redacted.make(yield* createTestDatabase)
      // Two replicas, each with its own pool, connected before either starts migrating.
      const replica = () => Layer.build(PgClient.layer({ url, transformJson: false }))
      const [first, second] = yield* Effect.all([replica(), replica()])
      const run = (context: typeof first) =>
        Database.migrateExclusively({ url }).pipe(Effect.provide(context))

      const [ranByFirst, ranBySecond] = yield* Effect.all([run(first), run(second)], { concurrency: 2 })

      // One ran every migration, the other found them done.
      expect([ranByFirst.length, ranBySecond.length].sort((a, b) => a - b)).toEqual([
        0,
        migrationFiles.length
      ])
      const sql = yield* Effect.provide(SqlClient.SqlClient, first)
      const [row] = yield* sql<{ applied: number; tables: number }>`
        SELECT (SELECT count(*)::int FROM effect_sql_migrations) AS applied,
               (SELECT count(*)::int FROM pg_tables WHERE tablename = 'orders') AS tables`
      expect(row).toEqual({ applied: migrationFiles.length, tables: 1 })
    }).pipe(Effect.scoped)
  )
})
