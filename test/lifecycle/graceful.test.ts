/**
 * SIGTERM as the README's "Shutdown" section describes it: for a second every new request is
 * answered 503 with `Connection: close` (a request already on the wire of a keep-alive connection
 * is answered, not reset), then the server stops accepting and lets the requests in flight finish;
 * the process exits 0. Under a backlog being ingested, the backlog is finished, exactly once, by
 * the next start.
 */
import { request, Agent } from "node:http"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import pg from "pg"
import * as Database from "../../src/db/Database.ts"
import { backlog, expectStoredExactlyOnce } from "../support/backlog.ts"
import { createTestDatabase } from "../support/database.ts"
import { eventually } from "../support/kafka.ts"
import { scopedService, serviceUrl, withServiceOutput, type ServiceProcess } from "../support/service.ts"

const TOTAL = 30_000

/** How long the server keeps answering 503 before it stops accepting (the README's "a second"). */
const NOTICE_MS = 1_000

/** What became of one request. */
interface Outcome {
  readonly path: string
  readonly sentAt: number
  /** When the answer (or the error) came. */
  readonly at: number
  /** Whether it went out on a keep-alive connection that had already carried a request. */
  readonly reusedSocket: boolean
  readonly status?: number
  readonly connection?: string
  readonly body?: string
  /** The socket error, when there was no answer. */
  readonly error?: string
}

/** One GET; never rejects: an error is an outcome too. */
const send = (url: string, path: string, agent: Agent | false): Promise<Outcome> =>
  new Promise((resolve) => {
    const sentAt = Date.now()
    const req = request(`${url}${path}`, { agent }, (res) => {
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => (body += chunk))
      res.on("end", () =>
        resolve({
          path,
          sentAt,
          at: Date.now(),
          reusedSocket: req.reusedSocket,
          status: res.statusCode!,
          connection: res.headers.connection ?? "",
          body
        })
      )
      res.on("error", (e: NodeJS.ErrnoException) =>
        resolve({ path, sentAt, at: Date.now(), reusedSocket: req.reusedSocket, error: e.code ?? e.message })
      )
    })
    req.on("error", (e: NodeJS.ErrnoException) =>
      resolve({ path, sentAt, at: Date.now(), reusedSocket: req.reusedSocket, error: e.code ?? e.message })
    )
    req.end()
  })

const isShuttingDown = (o: Outcome) =>
  o.status === 503 && o.body !== undefined && JSON.parse(o.body).error === "shutting_down"

const describeOutcome = (o: Outcome) =>
  `${o.path} sent at ${o.sentAt}: ${o.error ?? `${o.status} connection=${o.connection} ${o.body?.slice(0, 120)}`}`

/** What each path answers while the service runs normally. */
const isNormalAnswer = (o: Outcome): boolean => {
  if (o.status === undefined || o.body === undefined) return false
  const body = JSON.parse(o.body)
  if (o.path.startsWith("/order/")) {
    // Not ingested yet is a 404 that names the order.
    return o.status === 200 || (o.status === 404 && body.error === "order_not_found")
  }
  if (o.path.startsWith("/orders")) return o.status === 200 && Array.isArray(body.items)
  if (o.path === "/readyz") {
    // Ready, or a readiness answer naming what is not (ingestion stops before the server drains).
    return (o.status === 200 && body.status === "ready") || (o.status === 503 && body.status === "not_ready")
  }
  return o.status === 200
}

/** Keep `connections` keep-alive connections busy with GETs until the server stops accepting. */
const runLoad = (url: string, paths: ReadonlyArray<string>, connections: number, outcomes: Array<Outcome>) =>
  Effect.promise(async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: connections })
    // Each connection goes on until its own request fails (the server no longer accepts), so that
    // every one of them meets the end; a shared stop flag let some end on a 503 instead. Bounded.
    const deadline = Date.now() + 120_000
    const worker = async (w: number) => {
      for (let i = w; Date.now() < deadline; i += connections) {
        const outcome = await send(url, paths[i % paths.length]!, agent)
        outcomes.push(outcome)
        if (outcome.error !== undefined) return
      }
    }
    await Promise.all(Array.from({ length: connections }, (_, w) => worker(w)))
    agent.destroy()
  })

/** Exit code, or a failure if the process is still running after `ms`. */
const exitWithin = (service: ServiceProcess, ms: number) =>
  Effect.promise(() => service.exited).pipe(
    Effect.timeoutFail({
      duration: ms,
      onTimeout: () => new Error(`the service was still running ${ms} ms after SIGTERM`)
    }),
    withServiceOutput(service)
  )

describe("graceful shutdown", () => {
  it.live(
    "SIGTERM with a keep-alive connection idle and a request in flight: new requests get 503 and Connection: close for a second, then the server stops accepting, the request in flight is answered, and the process exits 0",
    () =>
      Effect.gen(function* () {
        const databaseUrl = yield* createTestDatabase
        yield* inFlightScenario(databaseUrl).pipe(
          Effect.provide(Database.layer({ url: Redacted.make(databaseUrl), maxConnections: 1 }))
        )
      }).pipe(Effect.scoped),
    180_000
  )

  it.live(
    "SIGTERM during a 30,000-order backlog and HTTP load: normal answers, then 503 with Connection: close for a second, then no new connections; no keep-alive request reset; exit 0 in time; every order stored once after a restart",
    () =>
      Effect.gen(function* () {
        const databaseUrl = yield* createTestDatabase
        yield* scenario(databaseUrl).pipe(
          Effect.provide(Database.layer({ url: Redacted.make(databaseUrl), maxConnections: 2 }))
        )
      }).pipe(Effect.scoped),
    300_000
  )
})

const inFlightScenario = (databaseUrl: string) =>
  Effect.gen(function* () {
    const b = yield* backlog(20, 92, databaseUrl, { HTTP_SHUTDOWN_TIMEOUT: "5 seconds" })
    const service = yield* scopedService(b.env)
    const url = yield* serviceUrl(service)
    yield* eventually(
      "the backlog is stored",
      Effect.map(b.stored, (n) => n === 20),
      90_000
    ).pipe(withServiceOutput(service))

    // A request held in flight: the table it reads is locked until the test lets go.
    const locker = new pg.Client({ connectionString: databaseUrl })
    yield* Effect.acquireRelease(
      Effect.promise(() => locker.connect()),
      () => Effect.promise(() => locker.end())
    )
    yield* Effect.promise(() => locker.query("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"))
    let heldEarly: Outcome | undefined
    const inFlight = send(url, "/order/held-in-flight", false).then((o) => (heldEarly = o))
    let activity: Array<unknown> = []
    yield* eventually(
      "the request waits on the locked table",
      Effect.promise(async () => {
        const { rows } = await locker.query(
          "SELECT application_name, state, wait_event_type, wait_event, query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        activity = rows
        return rows.some((r) => r.application_name === "order-service" && r.wait_event_type === "Lock")
      }),
      10_000
    ).pipe(
      Effect.tapDefect(() =>
        Effect.sync(() =>
          console.error(`held: ${heldEarly && describeOutcome(heldEarly)}; ${JSON.stringify(activity)}`)
        )
      )
    )

    // A keep-alive connection that has carried one request and now sits idle.
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 })
    yield* Effect.addFinalizer(() => Effect.sync(() => keepAlive.destroy()))
    const warmUp = yield* Effect.promise(() => send(url, "/healthz", keepAlive))
    expect(warmUp.status).toBe(200)

    const signalledAt = Date.now()
    service.child.kill("SIGTERM")

    // New connections, one after another, until one is refused; the idle keep-alive connection
    // is used as soon as the notice has begun. A connection that meets the server just as it
    // stops accepting may be reset rather than refused: the server never read its request.
    const polls: Array<Outcome> = []
    let idle: Outcome | undefined
    while (Date.now() - signalledAt < 10_000) {
      const outcome = yield* Effect.promise(() => send(url, "/healthz", false))
      polls.push(outcome)
      if (outcome.error !== undefined && outcome.error !== "ECONNRESET") break
      if (idle === undefined && isShuttingDown(outcome)) {
        idle = yield* Effect.promise(() => send(url, "/healthz", keepAlive))
      }
      yield* Effect.sleep("50 millis")
    }
    const answered = polls.filter((o) => o.error === undefined)
    const failed = polls.slice(answered.length)
    const report = polls.map(describeOutcome).join("\n")
    expect(failed.at(-1)?.error, report).toBe("ECONNREFUSED")
    // Answers first, then no more; at most the one connection that met the switch was reset.
    expect(polls.slice(0, answered.length), report).toEqual(answered)
    expect(failed.length, report).toBeLessThanOrEqual(2)

    // Before the notice: normal answers; during it: 503 with Connection: close; nothing else.
    const notice = answered.filter(isShuttingDown)
    const before = answered.slice(0, answered.length - notice.length)
    expect(answered.slice(before.length), report).toEqual(notice)
    expect(before.filter((o) => o.status !== 200).map(describeOutcome)).toEqual([])
    expect(notice.length).toBeGreaterThan(0)
    for (const o of notice) {
      expect(o.connection).toBe("close")
      expect(JSON.parse(o.body!)).toEqual({
        error: "shutting_down",
        message: "the service is stopping; retry shortly"
      })
    }
    // The notice lasted a second: the server began it after the signal and after the last normal
    // answer's request reached it, and stopped accepting a second later (not much more).
    const stopped = failed[0]!
    const noticeBegan = Math.max(signalledAt, before.at(-1)?.sentAt ?? signalledAt)
    expect(stopped.at - noticeBegan).toBeGreaterThanOrEqual(NOTICE_MS)
    expect(stopped.at - notice[0]!.at).toBeLessThan(NOTICE_MS + 1_000)

    // The request on the idle keep-alive connection was answered too, not reset.
    expect(idle).toBeDefined()
    expect(idle!.reusedSocket, describeOutcome(idle!)).toBe(true)
    expect(isShuttingDown(idle!), describeOutcome(idle!)).toBe(true)
    expect(idle!.connection).toBe("close")

    // The request in flight is still waiting after the server stopped accepting; once the table
    // is free it is answered in full.
    expect(heldEarly && describeOutcome(heldEarly), "ended before the table was free").toBeUndefined()
    yield* Effect.promise(() => locker.query("COMMIT"))
    const held = yield* Effect.promise(() => inFlight)
    expect(held.error, describeOutcome(held)).toBeUndefined()
    expect(held.status).toBe(404)
    expect(JSON.parse(held.body!)).toStrictEqual({
      _tag: "OrderNotFound",
      error: "order_not_found",
      order_uid: "held-in-flight"
    })

    expect(yield* exitWithin(service, 15_000)).toBe(0)
  }).pipe(Effect.scoped)

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
    const outcomes: Array<Outcome> = []
    const load = yield* Effect.fork(runLoad(url, paths, 20, outcomes))
    // The signal comes once the load is really running: requests answered, more in flight.
    yield* eventually(
      "the HTTP load is under way",
      Effect.sync(() => outcomes.filter((o) => o.status === 200).length > 20),
      30_000
    )
    const signalledAt = Date.now()
    first.child.kill("SIGTERM")
    const exit = yield* exitWithin(first, 30_000)
    const shutdownMs = Date.now() - signalledAt
    // The signal must have come mid-backlog for this to test anything.
    expect(yield* b.stored).toBeLessThan(TOTAL)
    yield* load.await.pipe(Effect.flatten)
    const notice = outcomes.filter(isShuttingDown)
    const errors = outcomes.filter((o) => o.error !== undefined)
    yield* Effect.logInfo(
      `shutdown took ${shutdownMs} ms; ${outcomes.length} requests: ${notice.length} answered 503, ${errors.length} not accepted`
    )
    expect(exit).toBe(0)
    // The HTTP drain deadline (5 s) plus the batch in flight and closing the clients.
    expect(shutdownMs).toBeLessThan(15_000)

    // Answered before the signal: normal answers only (no 500, no 503).
    const early = outcomes.filter((o) => o.at < signalledAt)
    expect(early.filter((o) => !isNormalAnswer(o)).map(describeOutcome)).toEqual([])
    // After it: normal answers (in flight when it came) or the notice, with Connection: close.
    const late = outcomes.filter((o) => o.at >= signalledAt && o.error === undefined)
    expect(late.filter((o) => !isNormalAnswer(o) && !isShuttingDown(o)).map(describeOutcome)).toEqual([])
    expect(notice.length).toBeGreaterThan(0)
    expect(notice.filter((o) => o.connection !== "close").map(describeOutcome)).toEqual([])
    // No request was reset on a keep-alive connection, and none failed while the server was giving
    // notice. Once it stops accepting, a new connection is refused — or reset, if the kernel or
    // the server had taken it in but the server had not read its request yet: either way the
    // request was never received.
    expect(errors.filter((o) => o.reusedSocket).map(describeOutcome)).toEqual([])
    expect(errors.filter((o) => o.at - signalledAt < NOTICE_MS).map(describeOutcome)).toEqual([])
    expect(
      errors.filter((o) => o.error !== "ECONNREFUSED" && o.error !== "ECONNRESET").map(describeOutcome)
    ).toEqual([])
    // Each of the 20 connections' last request met the server no longer accepting.
    expect(errors).toHaveLength(20)

    const second = yield* scopedService(b.env)
    yield* serviceUrl(second)
    yield* eventually(
      "every order is stored",
      Effect.map(b.stored, (n) => n === TOTAL),
      120_000
    ).pipe(withServiceOutput(second))
    yield* expectStoredExactlyOnce(b)
    second.child.kill("SIGTERM")
    expect(yield* exitWithin(second, 30_000)).toBe(0)
  }).pipe(Effect.scoped)
