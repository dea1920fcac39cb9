/**
 * Closing down when what it waits on never answers. An HTTP request stuck on the database (a
 * session of the test holds a lock on `orders` for as long as it likes) is cut at
 * `http.shutdown_timeout`. A Kafka client whose disconnect never returns (loaded into the
 * service's process: kafka-disconnect-hangs.mjs) keeps closing down from finishing for good, and
 * the process exits at `http.shutdown_timeout` + 30 s, with code 1, saying so.
 */
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import pg from "pg"
import { createTestDatabase } from "../support/database.ts"
import { eventually, freshTopics } from "../support/kafka.ts"
import { scopedService, serviceUrl, withServiceOutput, type ServiceProcess } from "../support/service.ts"

const SHUTDOWN_TIMEOUT_S = 2
const GRACE_S = 30
/** What the HTTP server waits before it stops accepting (`DRAIN_NOTICE`), and then for requests. */
const DRAIN_NOTICE_S = 1

/** The service on `databaseUrl` and `brokers`, its reads for clients never timed out by PostgreSQL. */
const startService = (databaseUrl: string, brokers: string, env: Record<string, string> = {}) =>
  scopedService({
    CONFIG_FILE: "config/config.yaml",
    DATABASE_URL: databaseUrl,
    KAFKA_BROKERS: brokers,
    HTTP_HOST: "127.0.0.1",
    // Any free port, bound by the service itself and read from its log: a port picked here
    // could be taken (by an outgoing connection's local end) before the service binds it.
    HTTP_PORT: "0",
    HTTP_SHUTDOWN_TIMEOUT: `${SHUTDOWN_TIMEOUT_S} seconds`,
    DATABASE_CLIENT_STATEMENT_TIMEOUT: "10 minutes",
    CACHE_WARM_COUNT: "0",
    LOG_LEVEL: "info",
    ...env
  })

/** Once ready: consuming, the group joined and the dead-letter producers connected. */
const ready = (service: ServiceProcess) =>
  Effect.gen(function* () {
    const url = yield* serviceUrl(service)
    yield* eventually(
      "the service is ready",
      Effect.promise(() =>
        fetch(`${url}/readyz`).then(
          (r) => r.status === 200,
          () => false
        )
      ),
      60_000
    )
    return url
  })

/**
 * A session holding `orders` locked (ACCESS EXCLUSIVE: no read or write of it goes on), released
 * with the scope; and how many of the service's connections wait on it.
 */
const lockOrders = (databaseUrl: string) =>
  Effect.gen(function* () {
    const session = yield* Effect.acquireRelease(
      Effect.promise(async () => {
        const client = new pg.Client({ connectionString: databaseUrl })
        await client.connect()
        await client.query("BEGIN")
        await client.query("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        return client
      }),
      (client) => Effect.promise(() => client.end().catch(() => undefined))
    )
    // A statement waiting on the lock may still show as idle, with the text of the one before:
    // the lock is taken while it is parsed. pg_locks shows it waiting.
    const waiting = Effect.promise(async () => {
      const { rows } = await session.query<{ n: number }>(
        `SELECT count(DISTINCT pid)::int AS n FROM pg_locks WHERE relation = 'orders'::regclass AND NOT granted`
      )
      return rows[0]!.n
    })
    return { waiting }
  })

/** Signals SIGTERM; the exit code and how long the process took to end. */
const terminate = (service: ServiceProcess, limitMs: number) =>
  Effect.gen(function* () {
    const signalled = Date.now()
    service.child.kill("SIGTERM")
    const exit = yield* Effect.promise(() => service.exited).pipe(
      Effect.timeoutFail({
        duration: `${limitMs + 10_000} millis`,
        onTimeout: () => new Error("the process was still running 10 s past its shutdown limit")
      })
    )
    return { exit, signalled, tookMs: Date.now() - signalled }
  })

describe("closing down while what it waits on never answers", () => {
  it.live(
    "an HTTP request stuck on the database is cut at http.shutdown_timeout, with a warning, and the process then closes by itself",
    () =>
      Effect.gen(function* () {
        const databaseUrl = yield* createTestDatabase
        const topics = freshTopics()
        const service = yield* startService(databaseUrl, topics.brokers, {
          KAFKA_TOPIC: topics.topic,
          KAFKA_DLQ_TOPIC: topics.dlqTopic,
          KAFKA_GROUP_ID: topics.groupId
        })
        yield* Effect.gen(function* () {
          const url = yield* ready(service)
          const { waiting } = yield* lockOrders(databaseUrl)
          // A cache miss: its read waits on the lock, and its client on the answer.
          const stuck = fetch(`${url}/order/not-stored-anywhere`).then(
            (r) => r.text().then(() => ({ at: Date.now(), status: r.status })),
            () => ({ at: Date.now(), status: "connection closed" as const })
          )
          // Nothing else reads or writes orders here: no order was sent.
          yield* eventually(
            "the request's read waits on the lock",
            Effect.map(waiting, (n) => n >= 1)
          )

          const { exit, signalled, tookMs } = yield* terminate(service, (SHUTDOWN_TIMEOUT_S + GRACE_S) * 1000)
          const cut = yield* Effect.promise(() => stuck)
          console.info(
            `a stuck request was cut ${cut.at - signalled} ms after SIGTERM; exit ${exit} after ${tookMs} ms`
          )
          // Cut at the deadline — not answered, and not waited on until the process's own limit.
          expect(cut.status).toBe("connection closed")
          expect(cut.at - signalled).toBeGreaterThanOrEqual(SHUTDOWN_TIMEOUT_S * 1000)
          expect(cut.at - signalled).toBeLessThan((DRAIN_NOTICE_S + SHUTDOWN_TIMEOUT_S + 3) * 1000)
          expect(service.output()).toContain(
            "HTTP requests still running at the shutdown deadline; closing them"
          )
          // Nothing else was stuck: closing went on and ended by itself.
          expect(exit).toBe(0)
          expect(tookMs).toBeLessThan((SHUTDOWN_TIMEOUT_S + 15) * 1000)
        }).pipe(withServiceOutput(service))
      }).pipe(Effect.scoped),
    180_000
  )

  it.live(
    "a Kafka client that never finishes disconnecting: SIGTERM ends the process at http.shutdown_timeout + 30 s, with code 1, saying so",
    () =>
      Effect.gen(function* () {
        const databaseUrl = yield* createTestDatabase
        const topics = freshTopics()
        const hangs = fileURLToPath(new URL("kafka-disconnect-hangs.mjs", import.meta.url))
        const service = yield* startService(databaseUrl, topics.brokers, {
          KAFKA_TOPIC: topics.topic,
          KAFKA_DLQ_TOPIC: topics.dlqTopic,
          KAFKA_GROUP_ID: topics.groupId,
          NODE_OPTIONS: `${process.env["NODE_OPTIONS"] ?? ""} --import=${hangs}`.trim()
        })
        yield* Effect.gen(function* () {
          yield* ready(service)
          const limitMs = (SHUTDOWN_TIMEOUT_S + GRACE_S) * 1000
          const { exit, tookMs } = yield* terminate(service, limitMs)
          console.info(`closing down with a disconnect that never returns: exit ${exit} after ${tookMs} ms`)
          // Ended by its limit — not before (it was stuck), and not much after.
          expect(exit).toBe(1)
          expect(tookMs).toBeGreaterThanOrEqual(limitMs - 500)
          expect(tookMs).toBeLessThan(limitMs + 5_000)
          expect(service.output()).toContain(
            `order-service: closing down took longer than ${SHUTDOWN_TIMEOUT_S + GRACE_S}s; exiting without waiting further`
          )
        }).pipe(withServiceOutput(service))
      }).pipe(Effect.scoped),
    180_000
  )
})
