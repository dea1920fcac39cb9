/**
 * `npm run demo`, as the README describes it: the service starts and publishes 200 generated
 * orders at once, which are stored and served. Run in a copy of the checkout (its own `dist/`), on
 * the test run's PostgreSQL and Kafka rather than servers of its own.
 */
import { spawn } from "node:child_process"
import { cpSync, mkdtempSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import pg from "pg"
import { createTestDatabase } from "../support/database.ts"
import { eventually, freshTopics } from "../support/kafka.ts"
import { listeningUrlIn, logLinesIn } from "../support/service.ts"

/** What `npm run demo` builds and runs, copied; the dependencies are shared. */
const checkoutCopy = Effect.acquireRelease(
  Effect.sync(() => {
    const copy = mkdtempSync(path.join(tmpdir(), "order-service-demo-"))
    for (const entry of ["package.json", "tsconfig.json", "src", "static", "config", "scripts"])
      cpSync(path.join(process.cwd(), entry), path.join(copy, entry), { recursive: true })
    symlinkSync(path.join(process.cwd(), "node_modules"), path.join(copy, "node_modules"))
    return copy
  }),
  (copy) => Effect.sync(() => rmSync(copy, { recursive: true, force: true }))
)

/** `npm run demo` in `cwd`, in a process group of its own; Ctrl-C to the group when the scope closes. */
const npmRunDemo = (cwd: string, env: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn("npm", ["run", "demo"], { cwd, env: { ...process.env, ...env }, detached: true })
      let output = ""
      child.stdout.on("data", (d) => (output += d))
      child.stderr.on("data", (d) => (output += d))
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
      return { child, output: () => output, exited }
    }),
    ({ child, exited }) =>
      Effect.promise(async () => {
        if (child.exitCode !== null || child.signalCode !== null) return
        process.kill(-child.pid!, "SIGINT")
        const stopped = await Promise.race([
          exited.then(() => true),
          new Promise((r) => setTimeout(r, 30_000))
        ])
        if (stopped !== true) process.kill(-child.pid!, "SIGKILL")
      })
  )

describe("npm run demo", () => {
  it.live(
    "starts the service and publishes 200 generated orders, which are stored and served",
    () =>
      Effect.gen(function* () {
        const copy = yield* checkoutCopy
        const databaseUrl = yield* createTestDatabase
        // Topics that do not exist yet: the service creates them, as on a first start.
        const topics = freshTopics()
        const demo = yield* npmRunDemo(copy, {
          DATABASE_URL: databaseUrl,
          KAFKA_BROKERS: topics.brokers,
          KAFKA_TOPIC: topics.topic,
          KAFKA_DLQ_TOPIC: topics.dlqTopic,
          KAFKA_GROUP_ID: topics.groupId,
          HTTP_PORT: "0",
          LOG_FORMAT: "json"
        })
        yield* Effect.gen(function* () {
          yield* eventually(
            "the demo orders are published",
            Effect.sync(() =>
              logLinesIn(demo.output()).some((l) => l["message"] === "Published demo orders")
            ),
            120_000
          )
          const published = logLinesIn(demo.output()).find((l) => l["message"] === "Published demo orders")!
          expect(published["count"]).toBe(200)
          const url = listeningUrlIn(demo.output())!.replace("0.0.0.0", "127.0.0.1")

          const db = new pg.Client({ connectionString: databaseUrl })
          yield* Effect.acquireRelease(
            Effect.promise(() => db.connect()),
            () => Effect.promise(() => db.end())
          )
          const stored = Effect.promise(() =>
            db.query<{ n: string }>("SELECT count(*) AS n FROM orders").then((r) => Number(r.rows[0]!.n))
          )
          yield* eventually(
            "200 orders are stored",
            Effect.map(stored, (n) => n >= 200),
            60_000
          )
          expect(yield* stored).toBe(200)

          // Served: the one the log names, and every other through the list of recent orders.
          const uid = String(published["try_order_uid"])
          const one = yield* Effect.promise(() => fetch(`${url}/order/${encodeURIComponent(uid)}`))
          expect(one.status).toBe(200)
          expect(((yield* Effect.promise(() => one.json())) as { order_uid: string }).order_uid).toBe(uid)
          const uids = new Set<string>()
          let cursor: string | null = null
          do {
            const page: { items: Array<{ order_uid: string }>; next_cursor: string | null } =
              yield* Effect.promise(() =>
                fetch(`${url}/orders?limit=100${cursor === null ? "" : `&cursor=${cursor}`}`).then((r) =>
                  r.json()
                )
              )
            for (const item of page.items) uids.add(item.order_uid)
            cursor = page.next_cursor
          } while (cursor !== null && uids.size < 1_000)
          expect(uids.size).toBe(200)
          expect(uids.has(uid)).toBe(true)
        }).pipe(
          Effect.tapErrorCause(() =>
            Effect.sync(() => console.error(`npm run demo printed:\n${demo.output().slice(-6000)}`))
          )
        )
      }).pipe(Effect.scoped),
    180_000
  )
})
