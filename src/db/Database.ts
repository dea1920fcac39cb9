/**
 * The PostgreSQL connection pool (`@effect/sql-pg`), with migrations run at start-up. It connects
 * to the database it is given and starts nothing: where no `database.url` is configured, the
 * composition (src/App.ts) gives it the URL of a local server.
 */
import { NodeContext } from "@effect/platform-node"
import { PgClient, PgMigrator } from "@effect/sql-pg"
import { MigrationError } from "@effect/sql/Migrator"
import { SqlError } from "@effect/sql/SqlError"
import { type Config, Duration, Effect, Layer, Option, Redacted, Schedule } from "effect"
import pg from "pg"
import { DatabaseConfig, DatabaseUrl } from "../config/AppConfig.ts"
import createOrders from "./migrations/0001_create_orders.ts"
import orderDocument from "./migrations/0002_order_document.ts"
import deadLetters from "./migrations/0003_dead_letters.ts"
import orderSearch from "./migrations/0004_order_search.ts"
import searchPlanIndexesOnly from "./migrations/0005_search_plan_indexes_only.ts"
import searchHashIndexes from "./migrations/0006_search_hash_indexes.ts"
import searchMatchesBatched from "./migrations/0007_search_matches_batched.ts"
import orderSummaryColumns from "./migrations/0008_order_summary_columns.ts"
import authSessions from "./migrations/0009_auth_sessions.ts"
import deadLetterReplays from "./migrations/0010_dead_letter_replays.ts"
import { databaseReason, isConnectionError } from "./SqlErrors.ts"
import { TimedPool } from "./TimedPool.ts"

// Listed here rather than loaded from the folder, so they work however the code is run or bundled.
const migrations = PgMigrator.fromRecord({
  "0001_create_orders": createOrders,
  "0002_order_document": orderDocument,
  "0003_dead_letters": deadLetters,
  "0004_order_search": orderSearch,
  "0005_search_plan_indexes_only": searchPlanIndexesOnly,
  "0006_search_hash_indexes": searchHashIndexes,
  "0007_search_matches_batched": searchMatchesBatched,
  "0008_order_summary_columns": orderSummaryColumns,
  "0009_auth_sessions": authSessions,
  "0010_dead_letter_replays": deadLetterReplays
})

/**
 * Runs the migrations not yet run. A migration PostgreSQL refuses fails start-up with its reason
 * (`Migration "1_create_orders" failed: relation "orders" already exists`): @effect/sql makes it a
 * defect whose message leaves the reason out.
 */
export const migrate = PgMigrator.run({ loader: migrations }).pipe(
  Effect.catchSomeDefect((defect) =>
    defect instanceof MigrationError
      ? Option.some(
          Effect.fail(
            new MigrationError({
              reason: defect.reason,
              cause: defect.cause,
              message: `${defect.message}: ${databaseReason(defect.cause)}`
            })
          )
        )
      : Option.none()
  ),
  Effect.provide(NodeContext.layer),
  Effect.withSpan("Database.migrate")
)

/**
 * The advisory lock migrations run under: any constant, the same in every version of the service,
 * taken by nothing else.
 */
const MIGRATION_LOCK = 7_460_113_905

/**
 * `migrate`, by one instance at a time. Replicas starting together on an empty database would
 * race: @effect/sql's migrator locks its table `effect_sql_migrations` for the run, but creates that
 * table first, unguarded, and the slower CREATE fails start-up ("relation … already exists"). Under
 * a session-level advisory lock the others wait, then find nothing left to run. The lock is held on
 * a connection of its own, not the pool's (a pool of one would wait on itself); a process that dies
 * holding it loses its session, and the lock with it. Succeeds with the migrations this call ran.
 */
export const migrateExclusively = (options: PoolOptions) =>
  Effect.acquireUseRelease(
    Effect.tryPromise({
      try: async () => {
        const client = new pg.Client({
          connectionString: Redacted.value(options.url),
          connectionTimeoutMillis: Duration.toMillis(options.connectTimeout ?? Duration.seconds(5)),
          application_name: "order-service migrations"
        })
        client.on("error", () => undefined)
        await client.connect().catch(async (error: unknown) => {
          await client.end().catch(() => undefined)
          throw error
        })
        return client
      },
      catch: (cause) => new SqlError({ cause, message: "PgClient: Failed to connect" })
    }),
    (client) =>
      Effect.tryPromise({
        try: () => client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]),
        catch: (cause) => new SqlError({ cause, message: "Failed to take the migration lock" })
      }).pipe(Effect.zipRight(migrate)),
    // Ending the session releases the lock.
    (client) => Effect.promise(() => client.end()).pipe(Effect.interruptible, Effect.timeoutOption(1000))
  )

export interface PoolOptions {
  readonly url: Redacted.Redacted
  readonly maxConnections?: number
  readonly connectTimeout?: Duration.DurationInput
  /** `statement_timeout` of reads for HTTP clients (see `TimedPool`); 5 seconds when not given. */
  readonly clientStatementTimeout?: Duration.DurationInput
}

/** A pool that has answered once; ended with its scope. */
const makePool = (options: PoolOptions) => {
  const connectTimeout = options.connectTimeout ?? Duration.seconds(5)
  return Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const pool = new TimedPool(
          {
            connectionString: Redacted.value(options.url),
            max: options.maxConnections ?? 10,
            connectionTimeoutMillis: Duration.toMillis(connectTimeout),
            application_name: "order-service"
          },
          Math.max(1, Math.round(Duration.toMillis(options.clientStatementTimeout ?? Duration.seconds(5))))
        )
        // An idle connection that breaks is dropped by the pool; without a listener it would crash us.
        pool.on("error", () => undefined)
        await pool.query("SELECT 1").catch(async (error: unknown) => {
          await pool.end().catch(() => undefined)
          throw error
        })
        return pool
      },
      catch: (cause) => new SqlError({ cause, message: "PgClient: Failed to connect" })
    }).pipe(
      Effect.timeoutFail({
        duration: connectTimeout,
        onTimeout: () =>
          new SqlError({
            cause: new Error("Connection timed out"),
            message: "PgClient: Connection timed out"
          })
      })
    ),
    (pool) => Effect.promise(() => pool.end()).pipe(Effect.interruptible, Effect.timeoutOption(1000))
  )
}

/**
 * The `pg` pool under the `SqlClient`, for the reads worth a named prepared statement (orders by
 * id on cache misses, searches: see `OrderRepository`). Everything else goes through the
 * `SqlClient`. Its connections carry the statement timeout of reads for clients while they serve
 * them (`TimedPool`). The service is the pool itself (`Effect.Service` keeps the prototype of a
 * class instance), built by `layer` together with the `SqlClient` on it.
 */
export class PgPool extends Effect.Service<PgPool>()("PgPool", { scoped: makePool }) {}

/** A pool on `url`, migrated. Connecting is retried for a while, so the database may start after us. */
export const layer = (options: PoolOptions) => {
  const pool = PgPool.Default(options)
  const client = Layer.unwrapEffect(
    Effect.map(PgPool, (pool) =>
      // Our JSON values are orders; their keys must stay as they are.
      PgClient.layerFromPool({ acquire: Effect.succeed(pool), transformJson: false })
    )
  )
  return Layer.effectDiscard(migrateExclusively(options)).pipe(
    Layer.provideMerge(client),
    Layer.provideMerge(pool),
    // Only while the server cannot be reached: a failing migration or a wrong password fails at once.
    Layer.retry(
      Schedule.exponential("200 millis").pipe(
        Schedule.union(Schedule.spaced("5 seconds")),
        Schedule.whileInputEffect((e: unknown) =>
          isConnectionError(e)
            ? Effect.as(
                Effect.logWarning("Database not reachable yet; retrying").pipe(
                  Effect.annotateLogs({ reason: databaseReason(e) })
                ),
                true
              )
            : Effect.succeed(false)
        ),
        Schedule.upTo("60 seconds")
      )
    )
  )
}

/** The pool's options as `database.*` sets them, for a server at `url`. */
export const optionsFromConfig = (
  url: Redacted.Redacted,
  config: Config.Config.Success<typeof DatabaseConfig>
) => ({
  url,
  maxConnections: config.poolMax,
  connectTimeout: config.connectTimeout,
  clientStatementTimeout: config.clientStatementTimeout
})

/** The pool on the configured database: `database.url` must be set. */
export const layerConfig = Layer.unwrapEffect(
  Effect.gen(function* () {
    const url = yield* DatabaseUrl
    const config = yield* DatabaseConfig
    return layer(optionsFromConfig(url, config))
  })
)
