/**
 * `http.workers: 2`, the built service started as `npm start` starts it: a primary and two workers
 * behind one port. Both answer requests, both store orders from their share of the partitions,
 * `/metrics` adds the two up, a worker killed is started again, and one SIGINT to the primary
 * stops everything cleanly, leaving no worker behind.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process"
import { request } from "node:http"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { instanceOf } from "../../src/kafka/InstanceSpreadAssigner.ts"
import { sampleOrders } from "../support/arbitraries.ts"
import { backlog } from "../support/backlog.ts"
import { createTestDatabase } from "../support/database.ts"
import { eventually, kafkaFor, produce } from "../support/kafka.ts"
import { metricValue, parseMetrics } from "../support/metrics.ts"
import { listeningUrlIn, logLinesIn } from "../support/service.ts"

interface Started {
  readonly child: ChildProcess
  readonly output: () => string
  readonly exited: Promise<number | string>
}

/** `node dist/main.js`, as `npm start` runs it once built. */
const startBuilt = (env: Record<string, string>): Started => {
  const child = spawn(process.execPath, ["dist/main.js"], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout!.on("data", (d) => (output += d))
  child.stderr!.on("data", (d) => (output += d))
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown"))
  )
  return { child, output: () => output, exited }
}

type Line = Record<string, unknown> & { readonly message: string; readonly worker?: number }

/** The JSON log lines written so far, the primary's and the workers' in one stream. */
const linesOf = (started: Started): Array<Line> => logLinesIn(started.output()) as Array<Line>

/** The pid of each start of worker `n`, from the primary's "Worker n started" lines. */
const pidsOf = (lines: ReadonlyArray<Line>, n: number): Array<number> =>
  lines.filter((l) => l.message === `Worker ${n} started`).map((l) => Number(l["pid"]))

/** One GET on a connection of its own (the primary hands each new connection to the next worker). */
const get = (url: string): Promise<{ readonly status: number; readonly body: string }> =>
  new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
      let body = ""
      res.on("data", (d) => (body += d))
      res.on("end", () => resolve({ status: res.statusCode!, body }))
    })
    req.on("error", reject)
    req.end()
  })

const isRunning = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe("two workers behind one port", () => {
  it.live(
    "both serve and both ingest; /metrics adds them up; a worker killed is started again; one SIGINT stops all with status 0, leaving no worker running",
    () =>
      Effect.gen(function* () {
        yield* Effect.sync(() => execFileSync("npm", ["run", "--silent", "build"], { stdio: "inherit" }))
        const databaseUrl = yield* createTestDatabase
        const b = yield* backlog(0, 301, databaseUrl, {
          HTTP_WORKERS: "2",
          HTTP_ACCESS_LOG: "true",
          // "Batch committed" lines, which say how many orders each worker stored.
          LOG_LEVEL: "debug",
          LOG_FORMAT: "json",
          AUTH_MODE: "none"
        })
        const service = yield* Effect.acquireRelease(
          Effect.sync(() => startBuilt(b.env)),
          (s) =>
            Effect.promise(async () => {
              if (s.child.exitCode === null && s.child.signalCode === null) {
                s.child.kill("SIGKILL")
                await s.exited
              }
              for (const n of [1, 2])
                for (const pid of pidsOf(linesOf(s), n)) if (isRunning(pid)) process.kill(pid, "SIGKILL")
            })
        )
        yield* Effect.gen(function* () {
          const lines = () => linesOf(service)
          const said = (message: string) =>
            lines().some((l) => l.message === message && l.worker === undefined)
          yield* eventually(
            "both workers are ready",
            Effect.sync(() => said("Order service ready: every worker serves")),
            120_000
          )
          const url = listeningUrlIn(service.output())!
          const scrape = Effect.promise(async () => parseMetrics((await get(`${url}/metrics`)).body))

          // Both in the group: each worker's consumers name its process.
          const admin = kafkaFor(b.topics.brokers).admin()
          yield* Effect.acquireRelease(
            Effect.promise(() => admin.connect()),
            () => Effect.promise(() => admin.disconnect())
          )
          yield* eventually(
            "the group is stable with members in both workers",
            Effect.promise(async () => {
              const [group] = (await admin.describeGroups([b.topics.groupId])).groups
              const processes = new Set(group!.members.map((m) => instanceOf(m.memberId, m.memberMetadata)))
              return group!.state === "Stable" && processes.size === 2
            }),
            60_000
          )

          // Orders spread over the three partitions by key: each worker stores its share.
          const orders = sampleOrders(60, 301, "workers")
          yield* produce(
            b.topics.brokers,
            b.topics.topic,
            orders.map((o) => ({ key: o.order_uid, value: JSON.stringify(o) }))
          )
          yield* eventually(
            "every order is stored",
            Effect.map(scrape, (m) => metricValue(m, "ingest_orders_stored_total") === orders.length),
            60_000
          )
          const storedBy = (n: number) =>
            lines()
              .filter((l) => l.message === "Batch committed" && l.worker === n)
              .reduce((sum, l) => sum + Number(l["stored"]), 0)
          expect(storedBy(1)).toBeGreaterThan(0)
          expect(storedBy(2)).toBeGreaterThan(0)
          // /metrics counted both workers' orders, which neither stored alone.
          expect(storedBy(1) + storedBy(2)).toBe(orders.length)
          const metrics = yield* scrape
          expect(metricValue(metrics, "workers_scraped")).toBe(2)
          expect(metricValue(metrics, "workers_missing")).toBe(0)

          // Each request on a new connection: answered by both workers, each served from the database.
          for (const order of orders.slice(0, 10)) {
            const answer = yield* Effect.promise(() => get(`${url}/order/${order.order_uid}`))
            expect(answer.status).toBe(200)
            expect(JSON.parse(answer.body).order_uid).toBe(order.order_uid)
          }
          const servedBy = new Set(
            lines()
              .filter((l) => l.message === "http request" && String(l["path"]).startsWith("/order/"))
              .map((l) => l.worker)
          )
          expect([...servedBy].sort()).toEqual([1, 2])

          // A worker that dies is logged and started again; the service serves on.
          const [killed] = pidsOf(lines(), 2)
          process.kill(killed!, "SIGKILL")
          yield* eventually(
            "worker 2 is started again and ready",
            Effect.sync(
              () =>
                said("Worker 2 ended unexpectedly; starting it again") &&
                lines().filter((l) => l.message === "Worker 2 ready").length === 2
            ),
            90_000
          )
          const again = yield* scrape
          expect(metricValue(again, "workers_restarts_total")).toBe(1)
          expect(metricValue(again, "workers_scraped")).toBe(2)

          // One SIGINT to the primary alone (as `kill -INT` sends it): every worker drains and exits 0.
          const workers = [...pidsOf(lines(), 1), ...pidsOf(lines(), 2)]
          expect(workers).toHaveLength(3)
          service.child.kill("SIGINT")
          const status = yield* Effect.promise(() => service.exited).pipe(
            Effect.timeoutFail({
              duration: "60 seconds",
              onTimeout: () => new Error("still running 60 s after SIGINT")
            })
          )
          expect(status).toBe(0)
          const end = lines()
          expect(end.filter((l) => l.message === "Order service stopped").map((l) => l.worker)).toEqual(
            expect.arrayContaining([1, 2, undefined])
          )
          for (const n of [1, 2])
            expect(end.find((l) => l.message === `Worker ${n} stopped`)?.["status"], `worker ${n}`).toBe(0)
          expect(end.at(-1)).toMatchObject({ message: "Order service stopped" })
          expect(end.at(-1)?.worker).toBeUndefined()
          yield* eventually(
            "no worker is left running",
            Effect.sync(() => workers.every((pid) => !isRunning(pid))),
            5_000
          )
        }).pipe(
          Effect.tapErrorCause(() =>
            Effect.sync(() =>
              console.error(`service output (last 6000 chars):\n${service.output().slice(-6000)}`)
            )
          )
        )
      }).pipe(Effect.scoped),
    300_000
  )
})
