/**
 * The access log, as the README's "Logs" section describes it: every HTTP request is one line at
 * `info`, naming its method, path, status and who asked; with `log.level` at `warning` there are
 * none. Two real processes of the service, the same requests to each.
 */
import { once } from "node:events"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { freePort } from "../../src/local/freePort.ts"
import { createTestDatabase } from "../support/database.ts"
import { eventually, freshTopics } from "../support/kafka.ts"
import {
  logLinesIn,
  scopedService,
  serviceEnv,
  serviceUrl,
  withServiceOutput,
  type ServiceProcess
} from "../support/service.ts"

/** Requests a person or a program makes, each answered its own way (by path). */
const REQUESTS = [
  { path: "/healthz", status: 200 },
  { path: "/order/no-such-order", status: 404 },
  { path: "/order/bad%01id", status: 400 },
  { path: "/orders?limit=5", status: 200 },
  { path: "/no-such-page", status: 404 }
] as const

/**
 * The service at `level` with its access log on, sent `REQUESTS`, then stopped: everything it
 * printed over its life, and the statuses it answered.
 */
const runAt = (level: "info" | "warning") =>
  Effect.gen(function* () {
    const databaseUrl = yield* createTestDatabase
    // Topics of its own, which it creates.
    const topics = freshTopics()
    // At warning the service does not log where it listens: it is given a free port. At info it
    // takes any and says which (a port chosen beforehand could be taken before it binds it).
    const port = level === "info" ? 0 : yield* Effect.promise(freePort)
    const service: ServiceProcess = yield* scopedService(
      serviceEnv(topics, databaseUrl, { HTTP_PORT: String(port), HTTP_ACCESS_LOG: "true", LOG_LEVEL: level })
    )
    const url = level === "info" ? yield* serviceUrl(service) : `http://127.0.0.1:${port}`
    return yield* Effect.gen(function* () {
      // Answering at all, ready or not (/readyz is not among the requests counted below).
      yield* eventually(
        `the service at ${level} answers`,
        Effect.promise(() =>
          fetch(`${url}/readyz`).then(
            () => true,
            () => false
          )
        ),
        60_000
      )
      const statuses: Array<number> = []
      for (const { path } of REQUESTS)
        statuses.push(yield* Effect.promise(() => fetch(`${url}${path}`).then((r) => r.status)))
      // Stopped, and everything it printed read to the end.
      const closed = once(service.child, "close")
      service.child.kill("SIGTERM")
      yield* Effect.promise(() => closed)
      expect(service.child.exitCode).toBe(0)
      return { lines: logLinesIn(service.output()), statuses }
    }).pipe(withServiceOutput(service))
  }).pipe(Effect.scoped)

/** The access-log lines of `REQUESTS`: lines naming the path and status of one of them. */
const accessLinesOf = (lines: ReadonlyArray<Record<string, unknown>>) =>
  lines.filter(
    (l) =>
      typeof l["status"] === "number" &&
      REQUESTS.some((r) => l["path"] === new URL(r.path, "http://x").pathname)
  )

describe("the access log", () => {
  it.live(
    "at info every request is one line with its method, path, status and who asked; at warning there are none",
    () =>
      Effect.gen(function* () {
        const [info, warning] = yield* Effect.all([runAt("info"), runAt("warning")], { concurrency: 2 })
        const expected = REQUESTS.map((r) => r.status)
        expect(info.statuses).toEqual(expected)
        expect(warning.statuses).toEqual(expected)

        expect(accessLinesOf(warning.lines)).toEqual([])
        // Nor any other line below warning.
        expect(warning.lines.filter((l) => l["level"] === "info" || l["level"] === "debug")).toEqual([])

        const logged = accessLinesOf(info.lines)
        expect(logged.map((l) => [l["level"], l["method"], l["path"], l["status"]])).toEqual(
          REQUESTS.map((r) => ["info", "GET", new URL(r.path, "http://x").pathname, r.status])
        )
        // Who asked: "-" where nobody had to say (a public route).
        for (const line of logged) expect(typeof line["principal"], JSON.stringify(line)).toBe("string")
      }),
    120_000
  )
})
