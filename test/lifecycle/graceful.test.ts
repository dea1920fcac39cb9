/**
 * SIGTERM in the middle of everything: a backlog being ingested and HTTP requests in flight.
 * The service must exit 0 within its deadline, answer every request it had accepted, and leave
 * the backlog to be finished, exactly once, by the next start.
 */
import { request, Agent } from "node:http"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import * as Database from "../../src/db/Database.ts"
import { backlog, expectStoredExactlyOnce } from "../support/backlog.ts"
import { createTestDatabase } from "../support/database.ts"
import { eventually } from "../support/kafka.ts"
import { scopedService, serviceUrl, withServiceOutput } from "../support/service.ts"

const TOTAL = 30_000

interface LoadResult {
  ok: number
  unavailable: number
  /** Requests sent before the signal that failed at the socket (reset, hang-up). */
  brokenBeforeSignal: Array<string>
}

/** Keep `connections` keep-alive connections busy with GETs until `stop` resolves. */
const runLoad = (
  url: string,
  paths: ReadonlyArray<string>,
  connections: number,
  signalledAt: () => number,
  result: LoadResult
) =>
  Effect.promise(async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: connections })
    let running = true
    const one = (path: string) =>
      new Promise<void>((resolve) => {
        const sentAt = Date.now()
        const req = request(`${url}${path}`, { agent }, (res) => {
          res.resume()
          res.on("end", () => {
            if (res.statusCode === 503) result.unavailable++
            else result.ok++
            resolve()
          })
        })
        req.on("error", (e: NodeJS.ErrnoException) => {
          const signal = signalledAt()
          // Refused connections after the signal are expected: the server stopped listening.
          if (signal === 0 || sentAt < signal)
            result.brokenBeforeSignal.push(`${e.code ?? e.message} ${path}`)
          running = false
          resolve()
        })
        req.end()
      })
    const worker = async (w: number) => {
      for (let i = w; running; i += connections) await one(paths[i % paths.length]!)
    }
    await Promise.all(Array.from({ length: connections }, (_, w) => worker(w)))
    agent.destroy()
    return result
  })

describe("graceful shutdown", () => {
  it.live(
    "SIGTERM during a 30,000-order backlog and HTTP load: exit 0 in time, no accepted request reset, every order stored once after a restart",
    () =>
      Effect.gen(function* () {
        const databaseUrl = yield* createTestDatabase
        yield* scenario(databaseUrl).pipe(
          Effect.provide(Database.layerWith({ url: Redacted.make(databaseUrl), maxConnections: 2 }))
        )
      }).pipe(Effect.scoped),
    300_000
  )
})

const scenario = (databaseUrl: string) =>
  Effect.gen(function* () {
    const b = yield* backlog(TOTAL, 91, databaseUrl, { HTTP_SHUTDOWN_TIMEOUT: "5 seconds" })
    const first = yield* scopedService(b.env)
    const url = yield* serviceUrl(first)
    yield* eventually(
      "ingestion is part-way",
      Effect.map(b.stored, (n) => n >= 1),
      90_000
    ).pipe(withServiceOutput(first))
    const paths = [
      ...b.orders.slice(0, 500).map((o) => `/order/${encodeURIComponent(o.order_uid)}`),
      "/readyz",
      "/orders?limit=20"
    ]
    let signalledAt = 0
    const live: LoadResult = { ok: 0, unavailable: 0, brokenBeforeSignal: [] }
    const load = yield* Effect.fork(runLoad(url, paths, 20, () => signalledAt, live))
    // The signal comes once the load is really running: requests answered, more in flight.
    yield* eventually(
      "the HTTP load is under way",
      Effect.sync(() => live.ok > 20),
      30_000
    )
    signalledAt = Date.now()
    first.child.kill("SIGTERM")
    const exit = yield* Effect.promise(() => first.exited)
    const shutdownMs = Date.now() - signalledAt
    // The signal must have come mid-backlog for this to test anything.
    expect(yield* b.stored).toBeLessThan(TOTAL)
    const result = yield* load.await.pipe(Effect.flatten)
    yield* Effect.logInfo(
      `shutdown took ${shutdownMs} ms; load: ${JSON.stringify({ ...result, brokenBeforeSignal: result.brokenBeforeSignal.length })}`
    )
    expect(exit).toBe(0)
    // The HTTP drain deadline (5 s) plus the batch in flight and closing the clients.
    expect(shutdownMs).toBeLessThan(15_000)
    expect(result.brokenBeforeSignal).toEqual([])

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
  }).pipe(Effect.scoped)
