/**
 * Ctrl-C again while the service closes down ends it at once, with status 1 — as the README's
 * "Shutdown" section says — but not a repeat within a second of the first: a single Ctrl-C can
 * reach the service twice (from the terminal and from npm) and must still close down gracefully.
 */
import { request } from "node:http"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import pg from "pg"
import { backlog } from "../support/backlog.ts"
import { createTestDatabase } from "../support/database.ts"
import { eventually } from "../support/kafka.ts"
import { scopedService, serviceUrl, withServiceOutput } from "../support/service.ts"

/** One GET on a connection of its own: its status, or the socket error when there was no answer. */
const send = (url: string): Promise<{ readonly status?: number; readonly error?: string }> =>
  new Promise((resolve) => {
    const req = request(url, { agent: false }, (res) => {
      res.resume()
      res.on("end", () => resolve({ status: res.statusCode! }))
      res.on("error", (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }))
    })
    req.on("error", (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }))
    req.end()
  })

describe("a second Ctrl-C while closing down", () => {
  it.live(
    "one within a second of the first is ignored; one more than a second later ends the process at once with status 1, without waiting for the request in flight",
    () =>
      Effect.gen(function* () {
        const databaseUrl = yield* createTestDatabase
        // Closing down would wait a minute for the request held in flight below.
        const b = yield* backlog(3, 93, databaseUrl, { HTTP_SHUTDOWN_TIMEOUT: "60 seconds" })
        const service = yield* scopedService(b.env)
        yield* Effect.gen(function* () {
          const url = yield* serviceUrl(service)
          yield* eventually(
            "the service is ready",
            Effect.promise(() => send(`${url}/readyz`).then((o) => o.status === 200)),
            60_000
          )

          // A request held in flight: the table it reads is locked until the test lets go.
          const locker = new pg.Client({ connectionString: databaseUrl })
          yield* Effect.acquireRelease(
            Effect.promise(() => locker.connect()),
            () => Effect.promise(() => locker.end())
          )
          yield* Effect.promise(() => locker.query("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"))
          let held: { readonly status?: number; readonly error?: string } | undefined
          const inFlight = send(`${url}/order/held-in-flight`).then((o) => (held = o))
          yield* eventually(
            "the request waits on the locked table",
            Effect.promise(async () => {
              const { rows } = await locker.query(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'order-service' AND wait_event_type = 'Lock'"
              )
              return rows.length > 0
            }),
            10_000
          )

          // Ctrl-C; once the service has taken it (it gives notice: 503), the same Ctrl-C again
          // (from the terminal and from npm), within the second.
          const signalledAt = Date.now()
          service.child.kill("SIGINT")
          yield* eventually(
            "the service answers that it is stopping",
            Effect.promise(() => send(`${url}/healthz`).then((o) => o.status === 503)),
            5_000
          )
          expect(Date.now() - signalledAt, "too slow to repeat the Ctrl-C within a second").toBeLessThan(900)
          service.child.kill("SIGINT")

          // Closing down goes on: the server gives notice for a second, then stops accepting
          // new connections while the request in flight holds it up.
          yield* eventually(
            "the server stops accepting, more than a second after the first Ctrl-C",
            Effect.promise(() =>
              send(`${url}/healthz`).then(
                (o) => o.error === "ECONNREFUSED" && Date.now() - signalledAt > 1_200
              )
            ),
            15_000
          )
          expect(service.child.exitCode, "the repeated Ctrl-C ended the process").toBeNull()
          expect(service.child.signalCode).toBeNull()
          expect(service.output()).not.toContain("again while closing down")
          expect(held, "the request in flight was answered before the table was free").toBeUndefined()

          // Ctrl-C once more, now more than a second after the first: the process ends at once.
          const againAt = Date.now()
          service.child.kill("SIGINT")
          const exit = yield* Effect.promise(() => service.exited).pipe(
            Effect.timeoutFail({
              duration: "5 seconds",
              onTimeout: () =>
                new Error("the process was still running 5 s after Ctrl-C more than a second later")
            })
          )
          const tookMs = Date.now() - againAt
          expect(exit).toBe(1)
          expect(tookMs).toBeLessThan(5_000)
          expect(service.output()).toContain("order-service: SIGINT again while closing down; exiting now")
          // It did not wait for the request in flight: that one was never answered.
          yield* Effect.promise(() => inFlight)
          expect(held?.status, JSON.stringify(held)).toBeUndefined()
          yield* Effect.promise(() => locker.query("ROLLBACK"))
        }).pipe(withServiceOutput(service))
      }).pipe(Effect.scoped),
    120_000
  )
})
