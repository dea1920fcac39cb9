/**
 * The `pg` pool, whose connections carry `database.client_statement_timeout` while they serve reads
 * for HTTP clients, and the server's own setting (none, unless the server sets one) while they
 * serve anything else: ingestion, warm-up, migrations, the dead-letter index, sessions.
 *
 * How, and why this way. `statement_timeout` is a session setting of PostgreSQL; pg's client
 * option of that name only sends it when a connection opens, for every statement on it, and its
 * `query_timeout` is a timer in the client: the statement runs on in the server, and the
 * connection is dropped. Per read, the choices were: `BEGIN; SET LOCAL …; read; COMMIT` (three
 * more round trips), `SET` before and `RESET` after (two), or a pool of its own for client reads
 * (no cost, but up to `pool_max − 2` more connections to the server). Measured on the embedded
 * PostgreSQL, 4 connections reading an order by key with a named prepared statement: 8,300
 * reads/s alone, 4,600 with a `SET` before each, 3,800 with `SET`/`RESET`, 3,400 in a transaction
 * with `SET LOCAL`. So the setting stays on the connection: each connection remembers which it
 * has, and is switched (one `SET` or `RESET`, one round trip) only when it goes from one kind of
 * work to the other. Reads in a row cost nothing more; a statement elsewhere never runs with
 * the clients' timeout, nor a client read without it.
 *
 * Which a connection is taken for: `clientQuery` (the named prepared statements of
 * `OrderRepository`) asks for a client read; `connect`, through which the `SqlClient`, `query` and
 * every other user get theirs, asks for one when the fiber asking runs with `readingForClient`
 * set (`ClientReads.run`: pages of orders and of dead letters), else for the server's setting.
 */
import { Fiber, FiberRef, Option } from "effect"
import pg from "pg"
import { observePool } from "../observability/Prometheus.ts"

/** Set on the fibers of reads for HTTP clients (`ClientReads.run`): their statements get the timeout. */
export const readingForClient: FiberRef.FiberRef<boolean> = FiberRef.unsafeMake(false)

/** `connect` is called synchronously by the fiber that runs the statement (`Effect.async`). */
const askedForClient = (): boolean => {
  const fiber = Fiber.getCurrentFiber()
  return Option.isSome(fiber) && fiber.value.getFiberRef(readingForClient)
}

type Release = (release?: unknown) => void
type Connected = (err: Error | undefined, client: pg.PoolClient | undefined, done: Release) => void

/** The connections whose session has the client timeout set; the others have the server's own. */
const timed = new WeakSet<pg.PoolClient>()

const noop: Release = () => undefined

export class TimedPool extends pg.Pool {
  constructor(
    config: pg.PoolConfig,
    /** `statement_timeout` of reads for clients, in milliseconds (whole, ≥ 1). */
    readonly clientStatementTimeoutMillis: number
  ) {
    super(config)
    // Its connections in /metrics (used, idle, waiting), read at scrape time.
    observePool(this)
  }

  override connect(): Promise<pg.PoolClient>
  override connect(callback: Connected): void
  override connect(callback?: Connected): Promise<pg.PoolClient> | void {
    const forClient = askedForClient()
    if (callback !== undefined) return this.connectFor(forClient, callback)
    return new Promise((resolve, reject) =>
      this.connectFor(forClient, (err, client) => (err !== undefined ? reject(err) : resolve(client!)))
    )
  }

  /** A connection with the setting of a client read (`forClient`) or of anything else. */
  connectFor(forClient: boolean, callback: Connected): void {
    super.connect((err, client, done) => {
      if (err !== undefined || client === undefined || timed.has(client) === forClient)
        return callback(err, client, done)
      const switchTo = forClient
        ? `SET statement_timeout = ${this.clientStatementTimeoutMillis}`
        : "RESET statement_timeout"
      client.query(switchTo, (switchError: Error | null) => {
        if (switchError) {
          done(switchError)
          return callback(switchError, undefined, noop)
        }
        if (forClient) timed.add(client)
        else timed.delete(client)
        callback(undefined, client, done)
      })
    })
  }

  /**
   * `query` as a read for an HTTP client, with its timeout; `callback` is called once. Unlike
   * `pool.query`, a statement PostgreSQL refused (cancelled by the timeout, say) leaves its
   * connection in the pool: only a connection that broke is dropped.
   */
  clientQuery<R extends pg.QueryResultRow>(
    config: pg.QueryConfig,
    callback: (err: Error | undefined, result: pg.QueryResult<R> | undefined) => void
  ): void {
    this.connectFor(true, (err, client, done) => {
      if (err !== undefined || client === undefined)
        return callback(err ?? new Error("No connection was handed out"), undefined)
      let settled = false
      const broke = (error: Error) => {
        if (settled) return
        settled = true
        done(error)
        callback(error, undefined)
      }
      client.once("error", broke)
      client.query<R>(config, (queryError: Error | null, result: pg.QueryResult<R>) => {
        client.removeListener("error", broke)
        if (settled) return
        settled = true
        done(queryError && !(queryError instanceof pg.DatabaseError) ? queryError : undefined)
        if (queryError) callback(queryError, undefined)
        else callback(undefined, result)
      })
    })
  }
}
