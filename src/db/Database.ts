/**
 * The PostgreSQL connection pool (`@effect/sql-pg`), with migrations run at start-up. Without a
 * configured `database.url` (`DATABASE_URL`) it starts the embedded PostgreSQL server first and
 * stops it after the pool is closed.
 */
import { NodeContext } from "@effect/platform-node"
import { SqlError } from "@effect/sql/SqlError"
import { PgClient, PgMigrator } from "@effect/sql-pg"
import { Duration, Effect, Layer, Option, Redacted, Schedule } from "effect"
import { DatabaseConfig } from "../config/AppConfig.ts"
import * as EmbeddedPostgres from "../local/EmbeddedPostgres.ts"
import createOrders from "./migrations/0001_create_orders.ts"
import orderDocument from "./migrations/0002_order_document.ts"

// Listed here rather than loaded from the folder, so they work however the code is run or bundled.
const migrations = PgMigrator.fromRecord({
  "0001_create_orders": createOrders,
  "0002_order_document": orderDocument
})

export const migrate = PgMigrator.run({ loader: migrations }).pipe(
  Effect.provide(NodeContext.layer),
  Effect.withSpan("Database.migrate")
)

export interface PoolOptions {
  readonly url: Redacted.Redacted
  readonly maxConnections?: number
  readonly connectTimeout?: Duration.DurationInput
}

/** A pool on `url`, migrated. Connecting is retried for a while, so the database may start after us. */
export const layerWith = (options: PoolOptions) =>
  Layer.effectDiscard(migrate).pipe(
    Layer.provideMerge(
      PgClient.layer({
        url: options.url,
        maxConnections: options.maxConnections ?? 10,
        connectTimeout: options.connectTimeout ?? Duration.seconds(5),
        applicationName: "order-service",
        // Our JSON values are orders; their keys must stay as they are.
        transformJson: false
      })
    ),
    Layer.retry(
      Schedule.exponential("200 millis").pipe(
        Schedule.whileInput((e: unknown) => e instanceof SqlError),
        Schedule.union(Schedule.spaced("5 seconds")),
        Schedule.upTo("60 seconds"),
        Schedule.tapInput((e: unknown) => Effect.logWarning("Database not reachable yet; retrying", e))
      )
    )
  )

/** The pool from configuration; the embedded server when no URL is configured. */
export const layer = Layer.unwrapScoped(
  Effect.gen(function* () {
    const config = yield* DatabaseConfig
    const url = yield* Option.match(config.url, {
      onSome: Effect.succeed,
      onNone: () =>
        Effect.gen(function* () {
          // Added first, so it runs after the server has stopped.
          yield* Effect.addFinalizer(() => Effect.logInfo("Stopped the embedded PostgreSQL server"))
          const server = yield* EmbeddedPostgres.make({
            ...Option.match(config.embeddedDataDir, {
              onNone: () => ({}),
              onSome: (dataDir) => ({ dataDir })
            }),
            ...Option.match(config.embeddedPort, { onNone: () => ({}), onSome: (port) => ({ port }) })
          })
          yield* Effect.logInfo("Started the embedded PostgreSQL server").pipe(
            Effect.annotateLogs({ port: server.port, data_dir: server.dataDir })
          )
          return Redacted.make(server.url())
        })
    })
    return layerWith({ url, maxConnections: config.poolMax, connectTimeout: config.connectTimeout })
  })
)
