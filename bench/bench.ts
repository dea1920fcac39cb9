/**
 * Benchmarks: ingest throughput and latency, HTTP serving, start-up and memory. Prints tables and writes
 * JSON to bench/results/. Everything runs on this machine against real servers started here
 * (embedded PostgreSQL, a local Kafka broker, the service as its own process), on loopback only.
 *
 *   npm run bench                # all parts
 *   npm run bench -- ingest      # one part: ingest | latency | http | mixed | startup | search | live | dlq | overload | workers | tracing
 *   BENCH_INGEST_N=50000 npm run bench -- ingest
 *   BENCH_INGEST_N=0 BENCH_INGEST_PER_MESSAGE_N=0 npm run bench -- ingest   # only the run with rejects
 *   npm run bench -- latency     # produce → stored, at a steady 1,000 messages/s
 *   npm run bench -- search      # GET /orders/search p99 per key kind, 50 connections (wrk)
 *   BENCH_SEARCH_N=20000 npm run bench -- search
 *   BENCH_SEARCH_DATABASE_URL=postgres://… npm run bench -- search   # search a database stored before
 *   npm run bench -- live        # ingest time with 100 clients on GET /orders/live vs none
 *   BENCH_NODE_FLAGS="--cpu-prof --cpu-prof-dir=bench/results" npm run bench -- ingest   # profile the service
 *   npm run bench -- dlq         # index 100,000 parked letters, time the dead-letter listing (BENCH_DLQ_N)
 *   npm run bench -- overload    # bounded under overload: ingest and cached reads, quiet then under abuse
 *     BENCH_OVERLOAD_RATE=2000       orders/s produced throughout
 *     BENCH_OVERLOAD_LIVE=10000      idle live-feed clients (Last-Event-ID inside the resume window, never reading)
 *     BENCH_OVERLOAD_SLOW=1000       connections sending their headers one byte a second
 *     BENCH_OVERLOAD_SEARCH=200      wrk connections searching a key BENCH_OVERLOAD_SHARED orders share
 *     BENCH_OVERLOAD_SHARED=100000   orders stored with that key (one customer e-mail)
 *     BENCH_OVERLOAD_SECONDS=20      the quiet measure; the abuse is held 5 s less (at least 5)
 *     BENCH_OVERLOAD_LIVE_PER_ADDRESS=…  the service's live.max_clients_per_address for the run (default:
 *                                    the service's, 50: the clients, all from 127.0.0.1, mostly get 503)
 *     BENCH_OVERLOAD_LIVE_ENCODING=identity  what the live clients accept (gzip: as browsers do)
 *     BENCH_OVERLOAD_SERVICE_NICE=-10  the service's niceness (ahead of its neighbours; 0: an equal)
 *     BENCH_OVERLOAD_NICE=0          the abusive clients' niceness (10: they yield to everything else)
 *   BENCH_OVERLOAD_LIVE=500 BENCH_OVERLOAD_SLOW=100 BENCH_OVERLOAD_SEARCH=20 BENCH_OVERLOAD_SHARED=5000 \
 *     BENCH_OVERLOAD_SECONDS=8 npm run bench -- overload   # a small run
 *   npm run bench -- workers     # hits, misses and ingest with 1 and 2 workers; Node 24 round-robin vs reusePort; memory
 *     BENCH_WORKERS_SECONDS=15       wrk's measure; BENCH_WORKERS_INGEST_N=100000 orders ingested (0: none)
 *     BENCH_WORKERS_CACHE_N=250000   orders warmed into each worker's cache for the memory measure
 *     BENCH_WRK_CPU=1                the core wrk is pinned to (default: the last; none: not pinned)
 *   npm run bench -- tracing     # ingest of a backlog and cache hits, traces off then on (every span sent)
 *     BENCH_TRACING_N=100000         orders ingested; BENCH_TRACING_SECONDS=10 wrk's measure
 */
import { createHash, randomBytes } from "node:crypto"
import { execFileSync, fork, spawn, type ChildProcess } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { connect, type Socket } from "node:net"
import { createServer, request as httpRequest } from "node:http"
import { cpus, setPriority } from "node:os"
import { createGunzip } from "node:zlib"
import path from "node:path"
import { Effect } from "effect"
import { Kafka, logLevel, Partitioners } from "kafkajs"
import pg from "pg"
import "../src/kafka/kafkajsRequestQueue.ts"
import * as EmbeddedPostgres from "../src/local/EmbeddedPostgres.ts"
import { freePort } from "../src/local/freePort.ts"
import * as LocalKafka from "../src/local/LocalKafka.ts"
import { toKafkaMessage } from "../src/kafka/DeadLetters.ts"
import type { OrderJson } from "../src/orders/Order.ts"
import { RejectionKinds } from "../src/orders/Rejection.ts"
import { generateOrders } from "../src/tools/OrderGenerator.ts"
import { acquire } from "../test/support/scoped.ts"
import { parseWrk, requireWrk, wrk } from "./wrk.ts"

const INGEST_N = Number(process.env["BENCH_INGEST_N"] ?? 200_000)
const INGEST_PER_MESSAGE_N = Number(process.env["BENCH_INGEST_PER_MESSAGE_N"] ?? 20_000)
const INGEST_REJECTS_N = Number(process.env["BENCH_INGEST_REJECTS_N"] ?? 50_000)
const HTTP_ORDERS = 10_000
const HTTP_SECONDS = Number(process.env["BENCH_HTTP_SECONDS"] ?? 15)
const STARTUP_ORDERS = Number(process.env["BENCH_STARTUP_N"] ?? 100_000)
const LATENCY_RATE = Number(process.env["BENCH_LATENCY_RATE"] ?? 1_000)
const LATENCY_SECONDS = Number(process.env["BENCH_LATENCY_SECONDS"] ?? 30)
const MIXED_RATE = Number(process.env["BENCH_MIXED_RATE"] ?? 2_000)
const MIXED_SECONDS = Number(process.env["BENCH_MIXED_SECONDS"] ?? 60)
const SEARCH_N = Number(process.env["BENCH_SEARCH_N"] ?? 1_000_000)
const SEARCH_SECONDS = Number(process.env["BENCH_SEARCH_SECONDS"] ?? 10)
/** A database an earlier run stored (its orders are kept), searched instead of storing new ones. */
const SEARCH_DATABASE_URL = process.env["BENCH_SEARCH_DATABASE_URL"]
const LIVE_N = Number(process.env["BENCH_LIVE_N"] ?? 100_000)
const LIVE_CLIENTS = Number(process.env["BENCH_LIVE_CLIENTS"] ?? 100)
const LIVE_ROUNDS = Number(process.env["BENCH_LIVE_ROUNDS"] ?? 3)
const DLQ_N = Number(process.env["BENCH_DLQ_N"] ?? 100_000)
const DLQ_REQUESTS = Number(process.env["BENCH_DLQ_REQUESTS"] ?? 50)
const OVERLOAD_RATE = Number(process.env["BENCH_OVERLOAD_RATE"] ?? 2_000)
const OVERLOAD_LIVE = Number(process.env["BENCH_OVERLOAD_LIVE"] ?? 10_000)
const OVERLOAD_SLOW = Number(process.env["BENCH_OVERLOAD_SLOW"] ?? 1_000)
const OVERLOAD_SEARCH = Number(process.env["BENCH_OVERLOAD_SEARCH"] ?? 200)
const OVERLOAD_SHARED = Number(process.env["BENCH_OVERLOAD_SHARED"] ?? 100_000)
const OVERLOAD_SECONDS = Number(process.env["BENCH_OVERLOAD_SECONDS"] ?? 20)
/** The service's live.max_clients_per_address for the overload run; unset: the service's default. */
const OVERLOAD_LIVE_PER_ADDRESS = process.env["BENCH_OVERLOAD_LIVE_PER_ADDRESS"]
const OVERLOAD_LIVE_ENCODING = process.env["BENCH_OVERLOAD_LIVE_ENCODING"] ?? "identity"
/**
 * The abusive clients' niceness (this process's sockets and the search's wrk): they stand for
 * clients on other machines, whose CPU is not the service's. 0 runs them as the service runs.
 */
const OVERLOAD_NICE = Number(process.env["BENCH_OVERLOAD_NICE"] ?? 0)
/**
 * The service's niceness in the drill (every thread of it; below 0 needs root): the service ahead
 * of its neighbours on the two cores (PostgreSQL, Kafka, the producer and the load generators), as
 * a service with cores of its own is in a deployment. 0 runs it as an equal.
 */
const OVERLOAD_SERVICE_NICE = Number(process.env["BENCH_OVERLOAD_SERVICE_NICE"] ?? -10)

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const round = (n: number, digits = 0) => Math.round(n * 10 ** digits) / 10 ** digits

const waitUntil = async (what: string, check: () => Promise<boolean>, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return
    await sleep(100)
  }
  throw new Error(`timed out waiting until ${what}`)
}

const table = (title: string, rows: Array<Record<string, string | number>>) => {
  console.log(`\n${title}`)
  console.table(rows)
}

interface Env {
  readonly pg: EmbeddedPostgres.EmbeddedPostgres
  readonly kafka: LocalKafka.LocalKafka
}

let databases = 0
const freshDatabase = async (env: Env): Promise<string> => {
  const name = `bench_${process.pid}_${databases++}`
  const admin = new pg.Client({ connectionString: env.pg.url() })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`).finally(() => admin.end())
  return env.pg.url(name)
}

/** Extra Node flags for the service, e.g. BENCH_NODE_FLAGS="--cpu-prof --cpu-prof-dir=bench/results". */
const serviceFlags = (process.env["BENCH_NODE_FLAGS"] ?? "").split(" ").filter(Boolean)

/**
 * The service as `npm start` runs it: the bundle, built once per benchmark run; by this Node
 * unless `node` names another, with `flags` after BENCH_NODE_FLAGS.
 */
const startService = (
  vars: Record<string, string>,
  {
    node = process.execPath,
    flags = []
  }: { readonly node?: string; readonly flags?: ReadonlyArray<string> } = {}
): ChildProcess =>
  spawn(node, [...serviceFlags, ...flags, "dist/main.js"], {
    env: {
      ...process.env,
      CONFIG_FILE: "config/config.yaml",
      HTTP_HOST: "127.0.0.1",
      HTTP_ACCESS_LOG: "false",
      // Open, as under `npm start`: the public order lookup costs the same either way, and search
      // measures its authenticated cost on a service of its own (below).
      AUTH_MODE: "none",
      LOG_LEVEL: process.env["BENCH_LOG_LEVEL"] ?? "warning",
      LOG_FORMAT: "json",
      // One process, as every figure before workers was measured; the workers part sets its own.
      HTTP_WORKERS: "1",
      ...vars
    },
    stdio: ["ignore", "inherit", "inherit"]
  })

/** The service on `topic` (and its `.dlq`) with a group of the same name, storing into `url`. */
const startOnTopic = (url: string, port: number, topic: string, vars: Record<string, string> = {}) =>
  startService({
    DATABASE_URL: url,
    KAFKA_TOPIC: topic,
    KAFKA_DLQ_TOPIC: `${topic}.dlq`,
    KAFKA_GROUP_ID: topic,
    HTTP_PORT: String(port),
    CACHE_WARM_COUNT: "0",
    ...vars
  })

/** Messages the service has stored or parked so far, from its own counters. */
const settledCount = async (base: string) =>
  (await metric(base, "ingest_orders_stored_total")) +
  // A batch stored just before a rebalance took its partition comes again and is acknowledged as
  // duplicates: those messages are settled too.
  (await metric(base, "ingest_orders_duplicate_total")) +
  (await metric(base, "ingest_messages_dead_lettered_total"))

const stopService = async (child: ChildProcess) => {
  if (child.exitCode !== null) return
  const exited = new Promise((r) => child.once("exit", r))
  child.kill("SIGTERM")
  await Promise.race([exited, sleep(20_000)])
  if (child.exitCode === null) child.kill("SIGKILL")
}

/**
 * The event-loop stalls of a service run with bench/loop-stalls.mjs preloaded, between `from` and
 * `to` (epoch ms), split by whether its thread was busy (CPU ≥ 60 % of the stall) or waiting for a
 * core; printed as a table. Nothing when the service ran without it.
 */
const printLoopStalls = (pid: number, from: number, to: number) => {
  const file = path.resolve(`bench/results/loop-stalls-${pid}.json`)
  if (!existsSync(file)) return
  const stalls = (
    JSON.parse(readFileSync(file, "utf8")) as Array<{ at: number; wallMs: number; cpuMs: number }>
  ).filter((s) => s.at >= from && s.at <= to)
  const summary = (kind: string, list: typeof stalls) => {
    const walls = list.map((s) => s.wallMs).sort((a, b) => a - b)
    return {
      stalls: kind,
      count: walls.length,
      "total ms": walls.reduce((a, b) => a + b, 0),
      "median ms": median(walls),
      "max ms": walls.at(-1) ?? 0
    }
  }
  table(
    `Event-loop stalls over 12 ms in the ${round((to - from) / 1000)} s measured (bench/loop-stalls.mjs)`,
    [
      summary(
        "thread busy",
        stalls.filter((s) => s.cpuMs >= 0.6 * s.wallMs)
      ),
      summary(
        "waiting for a core",
        stalls.filter((s) => s.cpuMs < 0.6 * s.wallMs)
      )
    ]
  )
}

const count = async (url: string, sql: string): Promise<number> => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return Number((await client.query(sql)).rows[0].n)
  } catch {
    return 0 // tables not created yet
  } finally {
    await client.end()
  }
}

/** One scrape of the service's `/metrics`: a series' value by name, summed over its labels. */
const scrape = async (base: string) => {
  const lines = (await (await fetch(`${base}/metrics`)).text()).split("\n")
  return (name: string): number => {
    let sum = 0
    for (const line of lines) {
      if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.split(" ").at(-1))
    }
    return sum
  }
}

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0 ? 0 : sorted[Math.floor(sorted.length / 2)]!
}

/**
 * The service's young-generation garbage collections so far (prom-client's
 * `nodejs_gc_duration_seconds{kind="minor"}`): how many, and the seconds they stopped it for.
 */
const youngGcs = async (base: string): Promise<{ count: number; seconds: number }> => {
  const read = await scrape(base)
  return {
    count: read(`nodejs_gc_duration_seconds_count{kind="minor"}`),
    seconds: read(`nodejs_gc_duration_seconds_sum{kind="minor"}`)
  }
}

/** A counter from the service's Prometheus text, summed over its label sets. */
const metric = async (base: string, name: string): Promise<number> => (await scrape(base))(name)

interface Outgoing {
  readonly key: string
  readonly value: string
}

/** A W3C `traceparent` starting a trace of its own (random ids, sampled), as `npm run produce` sends. */
const newTraceparent = () => `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`

/** Sends `messages` in order; `traceparent: true` gives each one a trace of its own. */
const produceAll = async (
  brokers: string,
  topic: string,
  messages: ReadonlyArray<Outgoing>,
  options: { readonly traceparent?: boolean } = {}
) => {
  const kafka = new Kafka({ clientId: "bench", brokers: brokers.split(","), logLevel: logLevel.NOTHING })
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({
    waitForLeaders: true,
    topics: [
      { topic, numPartitions: 3 },
      { topic: `${topic}.dlq`, numPartitions: 3 }
    ]
  })
  await admin.disconnect()
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
  await producer.connect()
  // A send is one record batch per partition, which the broker takes up to `message.max.bytes`
  // (1 MB): with a header each, 2,000 orders went over it.
  const perSend = options.traceparent ? 1000 : 2000
  for (let i = 0; i < messages.length; i += perSend) {
    const slice = messages.slice(i, i + perSend)
    await producer.send({
      topic,
      acks: -1,
      messages: options.traceparent
        ? slice.map((m) => ({ ...m, headers: { traceparent: newTraceparent() } }))
        : slice
    })
  }
  await producer.disconnect()
}

/** Store orders straight into a migrated database through a short-lived service-less path. */
const seedDatabase = async (url: string, orders: ReadonlyArray<OrderJson>) => {
  const { Effect, Layer, Redacted, Schema } = await import("effect")
  const Database = await import("../src/db/Database.ts")
  const { OrderRepository } = await import("../src/orders/OrderRepository.ts")
  const { Order } = await import("../src/orders/Order.ts")
  const decode = Schema.decodeUnknownSync(Order)
  const program = Effect.gen(function* () {
    const repo = yield* OrderRepository
    for (let i = 0; i < orders.length; i += 1000) {
      yield* repo.insertBatch(orders.slice(i, i + 1000).map((o) => decode(o)))
    }
  }).pipe(
    Effect.provide(OrderRepository.Default.pipe(Layer.provide(Database.layer({ url: Redacted.make(url) }))))
  )
  await Effect.runPromise(program)
}

// ---------------------------------------------------------------------------------------------

/**
 * Every 50th message (2 %) a reject, alternating malformed JSON and an order without items, so
 * that nearly every batch parks something and settles in a Kafka transaction.
 */
const isReject = (i: number) => i % 50 === 49

const withRejects = (orders: ReadonlyArray<OrderJson>): Array<Outgoing> =>
  orders.map((o, i) =>
    !isReject(i)
      ? { key: o.order_uid, value: JSON.stringify(o) }
      : {
          key: o.order_uid,
          value: i % 100 === 99 ? `{"order_uid":"${o.order_uid}",` : JSON.stringify({ ...o, items: [] })
        }
  )

/** The search indexes of migration 0004: dropped for the run that measures ingest without them. */
const SEARCH_INDEXES = [
  "orders_track_number_search_idx",
  "orders_customer_id_search_idx",
  "deliveries_phone_search_idx",
  "deliveries_email_search_idx",
  "payments_transaction_search_idx",
  "items_rid_search_idx"
]

/** A migrated database without the search indexes (the schema before search existed). */
const withoutSearchIndexes = async (url: string) => {
  await seedDatabase(url, [])
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    for (const index of SEARCH_INDEXES) await client.query(`DROP INDEX ${index}`)
  } finally {
    await client.end()
  }
}

const ingestModes = [
  { mode: "batch", n: INGEST_N, rejects: false, key: "ingest_orders_per_s" },
  {
    mode: "batch",
    n: INGEST_N,
    rejects: false,
    key: "ingest_orders_per_s_without_search_indexes",
    prepare: withoutSearchIndexes
  },
  { mode: "message", n: INGEST_PER_MESSAGE_N, rejects: false, key: "ingest_orders_per_s_per_message_tx" },
  { mode: "batch", n: INGEST_REJECTS_N, rejects: true, key: "ingest_messages_per_s_with_2pct_rejects" }
] as const

const ingest = async (env: Env) => {
  const rows: Array<Record<string, string | number>> = []
  const result: Record<string, number> = {}
  for (const { mode, n, rejects, key, ...options } of ingestModes) {
    if (n === 0) continue // BENCH_INGEST_…_N=0 skips a run
    const prepare = "prepare" in options ? options.prepare : undefined
    const label = `${rejects ? `${mode}, 2 % rejects` : mode}${prepare ? ", without the search indexes" : ""}`
    const topic = `bench-${mode}${rejects ? "-rejects" : ""}-${Date.now()}`
    console.log(`ingest (${label}): generating and producing ${n} messages…`)
    const orders = generateOrders(n, 7)
    const messages = rejects
      ? withRejects(orders)
      : orders.map((o) => ({ key: o.order_uid, value: JSON.stringify(o) }))
    const valid = rejects ? orders.filter((_, i) => !isReject(i)) : orders
    const items = valid.reduce((s, o) => s + o.items.length, 0)
    await produceAll(env.kafka.bootstrapServers, topic, messages)
    const url = await freshDatabase(env)
    await prepare?.(url)
    const port = await freePort()
    const service = startOnTopic(url, port, topic, {
      KAFKA_BROKERS: env.kafka.bootstrapServers,
      INGEST_TRANSACTION: mode
    })
    try {
      // Progress from the service's own counters: polling count(*) ten times a second would
      // cost PostgreSQL a table scan each time, on the cores the service needs.
      const base = `http://127.0.0.1:${port}`
      const settled = () => settledCount(base)
      await waitUntil("the first message is settled", async () => (await settled()) > 0, 120_000)
      const started = Date.now()
      await waitUntil("every message is stored or parked", async () => (await settled()) >= n, 1_800_000)
      const seconds = (Date.now() - started) / 1000
      const counted = await count(url, "SELECT count(*) AS n FROM orders")
      if (counted !== valid.length)
        throw new Error(`${valid.length} valid orders were produced, the database holds ${counted}`)
      const perS = n / seconds
      const rowsPerS = (valid.length * 3 + items) / seconds
      rows.push({
        mode: label,
        messages: n,
        seconds: round(seconds, 2),
        "messages/s": round(perS),
        "rows/s": round(rowsPerS)
      })
      result[key] = round(perS)
    } finally {
      await stopService(service)
    }
  }
  table("Ingest: from the first settled message until all are stored or parked (3 partitions)", rows)
  const withIndexes = result["ingest_orders_per_s"]
  const without = result["ingest_orders_per_s_without_search_indexes"]
  if (withIndexes !== undefined && without !== undefined) {
    result["ingest_with_search_indexes_ratio"] = round(withIndexes / without, 3)
    console.log(`with / without the search indexes = ${result["ingest_with_search_indexes_ratio"]}`)
  }
  return { rows, result }
}

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!

/**
 * Produce → stored while orders arrive at a steady rate (not a backlog): batches are small, so
 * nearly every batch is its own PostgreSQL transaction and, with 2 % rejects, its own Kafka
 * transaction. Latency per order = its row's `stored_at` (the storing transaction's start) minus
 * the moment its send was acknowledged by the broker — both clocks are this machine's.
 */
const latency = async (env: Env) => {
  const topic = `bench-latency-${Date.now()}`
  const n = LATENCY_RATE * LATENCY_SECONDS
  const orders = generateOrders(n, 17)
  const messages = withRejects(orders)
  const valid = new Set(orders.filter((_, i) => !isReject(i)).map((o) => o.order_uid))
  await produceAll(env.kafka.bootstrapServers, topic, []) // the topics, nothing in them
  const url = await freshDatabase(env)
  const port = await freePort()
  const service = startOnTopic(url, port, topic, { KAFKA_BROKERS: env.kafka.bootstrapServers })
  try {
    const base = `http://127.0.0.1:${port}`
    await waitUntil("ready", async () => (await fetch(`${base}/readyz`)).status === 200, 120_000)
    console.log(`latency: producing ${n} messages at ${LATENCY_RATE}/s (2 % rejects)…`)
    const kafka = new Kafka({
      clientId: "bench",
      brokers: env.kafka.bootstrapServers.split(","),
      logLevel: logLevel.NOTHING
    })
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
    await producer.connect()
    const sentAt = new Map<string, number>()
    const tick = 50 // ms: 20 sends a second
    const perTick = Math.max(1, Math.round((LATENCY_RATE * tick) / 1000))
    const t0 = Date.now()
    for (let i = 0; i < messages.length; i += perTick) {
      const due = t0 + (i / perTick) * tick
      if (due > Date.now()) await sleep(due - Date.now())
      const chunk = messages.slice(i, i + perTick)
      await producer.send({ topic, acks: -1, messages: chunk })
      const acked = Date.now()
      for (const m of chunk) sentAt.set(m.key, acked)
    }
    const producedS = (Date.now() - t0) / 1000
    await producer.disconnect()
    const settled = () => settledCount(base)
    await waitUntil("every message is stored or parked", async () => (await settled()) >= n, 300_000)

    const client = new pg.Client({ connectionString: url })
    await client.connect()
    const { rows } = await client
      .query<{ order_uid: string; at: string }>(
        "SELECT order_uid, (extract(epoch FROM stored_at) * 1000)::float8 AS at FROM orders"
      )
      .finally(() => client.end())
    if (rows.length !== valid.size)
      throw new Error(`${valid.size} valid orders were produced, the database holds ${rows.length}`)
    const latencies = rows
      .map((r) => Math.max(0, Number(r.at) - sentAt.get(r.order_uid)!))
      .sort((a, b) => a - b)
    const result = {
      ingest_latency_p50_ms: round(percentile(latencies, 50)),
      ingest_latency_p99_ms: round(percentile(latencies, 99)),
      ingest_latency_max_ms: round(latencies.at(-1)!)
    }
    const table_ = [
      {
        "messages/s": round(n / producedS),
        messages: n,
        p50_ms: result.ingest_latency_p50_ms,
        p90_ms: round(percentile(latencies, 90)),
        p99_ms: result.ingest_latency_p99_ms,
        max_ms: result.ingest_latency_max_ms
      }
    ]
    table("Ingest latency: broker acknowledged → order stored, at a steady rate with 2 % rejects", table_)
    return { rows: table_, result }
  } finally {
    await stopService(service)
  }
}

const orderPaths = (uids: ReadonlyArray<string>) => uids.map((uid) => `/order/${encodeURIComponent(uid)}`)

const rssMbOf = (pid: number) =>
  round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024)

/**
 * User and system CPU seconds the processes have used so far, with that of their children that
 * have ended: a PostgreSQL backend that exits mid-measure moves its time to the postmaster's count
 * instead of taking it out of the sum.
 */
const cpuSecondsOf = (pids: ReadonlyArray<number>): number =>
  pids.reduce((sum, pid) => {
    try {
      // Fields after the command's closing parenthesis; utime, stime, cutime and cstime are the
      // 12th to 15th.
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
      return (
        sum +
        (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS
      )
    } catch {
      return sum
    }
  }, 0)

/**
 * From now on, the CPU seconds used by the process `pid` and by PostgreSQL's processes: call the
 * result to read them.
 */
const cpuFrom = (pid: number) => {
  const start = { process: cpuSecondsOf([pid]), postgres: cpuSecondsOf(postgresPids()) }
  return () => ({
    process: cpuSecondsOf([pid]) - start.process,
    postgres: cpuSecondsOf(postgresPids()) - start.postgres
  })
}

/** The machine's CPU time so far, busy and in all, in clock ticks (/proc/stat, every core). */
const machineTicks = () => {
  const [, ...fields] = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/)
  const ticks = fields.map(Number)
  const total = ticks.reduce((a, b) => a + b, 0)
  return { busy: total - ticks[3]! - ticks[4]!, total }
}

/** How busy the machine's cores were, in %, from when it is called to when its result is. */
const machineBusyFrom = () => {
  const start = machineTicks()
  return () => {
    const end = machineTicks()
    return round((100 * (end.busy - start.busy)) / (end.total - start.total))
  }
}

/** Clock ticks per second, as /proc counts CPU time (`getconf CLK_TCK`). */
const CLOCK_TICKS = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100

/** The PostgreSQL server's processes on this machine. */
const postgresPids = (): Array<number> =>
  readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/comm`, "utf8").trim() === "postgres"
      } catch {
        return false
      }
    })
    .map(Number)

const waitReady = (port: number, timeoutMs = 120_000) =>
  waitUntil("ready", async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, timeoutMs)

/** A fresh database holding HTTP_ORDERS orders (seed 11), and the paths that read them. */
const seededForHttp = async (env: Env) => {
  const orders = generateOrders(HTTP_ORDERS, 11)
  const url = await freshDatabase(env)
  await seedDatabase(url, orders)
  return { orders, paths: orderPaths(orders.map((o) => o.order_uid)), url }
}

/**
 * GET /order/{uid} under wrk (one thread, 50 connections), each request a uid at random of
 * HTTP_ORDERS: the bare node:http floor, the service answering from its cache, and the service with
 * the cache off (every request one PostgreSQL read), in one run.
 */
const http = async (env: Env) => {
  requireWrk()
  const { orders, paths, url } = await seededForHttp(env)
  const rows: Array<Record<string, string | number>> = []
  const result: Record<string, number> = {}
  /** wrk on `base`, with the CPU time the server (`pid`) and PostgreSQL spent per request. */
  const measure = async (name: string, base: string, pid: number) => {
    await wrk(base, paths, { connections: 50, seconds: 2, name }) // warm the JIT and connections
    const cpu = cpuFrom(pid)
    const r = await wrk(base, paths, { connections: 50, seconds: HTTP_SECONDS, name })
    const used = cpu()
    const usPerRequest = (seconds: number) => round((seconds * 1e6) / (r.rps * HTTP_SECONDS), 1)
    rows.push({
      server: name,
      "req/s": round(r.rps),
      p50_ms: round(r.p50Ms, 2),
      p90_ms: round(r.p90Ms, 2),
      p99_ms: round(r.p99Ms, 2),
      max_ms: round(r.maxMs, 2),
      errors_or_non2xx: r.non2xx + r.socketErrors,
      "server CPU µs/req": usPerRequest(used.process),
      "PostgreSQL CPU µs/req": usPerRequest(used.postgres)
    })
    return r
  }

  // The floors, each in its own process: bare node:http returning the same bytes from a Map; the
  // same with the headers the service sends; and one PostgreSQL read per request, no cache.
  const bodies = path.resolve("bench/results/bodies.json")
  mkdirSync(path.dirname(bodies), { recursive: true })
  writeFileSync(
    bodies,
    JSON.stringify(Object.fromEntries(orders.map((o) => [o.order_uid, JSON.stringify(o)])))
  )
  const floor = async (name: string, mode: "map" | "headers" | "pg", source: string) => {
    const port = await freePort()
    const server = fork(path.resolve("bench/bare-server.ts"), [String(port), mode, source], {
      execArgv: ["--import", "tsx", ...serviceFlags]
    })
    try {
      await waitUntil(
        `the ${mode} floor listens`,
        async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok,
        30_000
      )
      return await measure(name, `http://127.0.0.1:${port}`, server.pid!)
    } finally {
      // An orderly exit (see bare-server.ts), so that a profile asked for is written.
      server.kill("SIGINT")
      await new Promise((resolve) => server.once("exit", resolve))
    }
  }
  const bareResult = await floor("bare node:http (Map)", "map", bodies)
  result["http_bare_headers_rps"] = round(
    (await floor("bare node:http (Map), the service's headers", "headers", bodies)).rps
  )
  result["http_bare_pg_rps"] = round(
    (await floor("bare node:http + pg (one read per request)", "pg", url)).rps
  )

  for (const [name, vars] of [
    [
      "service, cache hits",
      { CACHE_WARM_COUNT: String(HTTP_ORDERS), CACHE_MAX_ENTRIES: String(HTTP_ORDERS * 2) }
    ],
    ["service, cache off (database)", { CACHE_WARM_COUNT: "0", CACHE_MAX_ENTRIES: "0" }]
  ] as const) {
    const port = await freePort()
    const service = startOnTopic(url, port, `bench-http-${port}`, {
      KAFKA_BROKERS: env.kafka.bootstrapServers,
      ...vars
    })
    try {
      await waitReady(port)
      const r = await measure(name, `http://127.0.0.1:${port}`, service.pid!)
      if (name.includes("hits")) {
        result["http_hit_rps"] = round(r.rps)
        result["http_hit_p99_ms"] = round(r.p99Ms, 2)
      } else {
        result["http_miss_rps"] = round(r.rps)
        result["http_miss_p99_ms"] = round(r.p99Ms, 2)
      }
    } finally {
      await stopService(service)
    }
  }
  result["http_bare_node_rps"] = round(bareResult.rps)
  table(`HTTP: GET /order/{uid}, a uid at random of ${HTTP_ORDERS}, wrk -t1 -c50, ${HTTP_SECONDS} s`, rows)
  console.log(`hits / bare = ${round(result["http_hit_rps"]! / result["http_bare_node_rps"]!, 2)}`)
  return { rows, result }
}

/**
 * Reading while orders arrive: the producer sends MIXED_RATE messages/s (2 % invalid, 2 %
 * duplicates) for MIXED_SECONDS while wrk asks for stored orders (measured: 10 connections) and,
 * beside it, for unknown ids and /orders pages (10 connections). The service runs with the
 * default cache bounds; its RSS is sampled every second.
 */
const mixed = async (env: Env) => {
  requireWrk()
  const known = generateOrders(HTTP_ORDERS, 17)
  const url = await freshDatabase(env)
  await seedDatabase(url, known)
  const port = await freePort()
  const topic = `bench-mixed-${port}`
  await produceAll(env.kafka.bootstrapServers, topic, []) // the topics, nothing in them
  const service = startOnTopic(url, port, topic, {
    KAFKA_BROKERS: env.kafka.bootstrapServers,
    CACHE_WARM_COUNT: String(HTTP_ORDERS)
  })
  /** The measured stretch (epoch ms), for the loop stalls. */
  const window = { from: 0, to: 0 }
  try {
    await waitReady(port)
    const base = `http://127.0.0.1:${port}`
    // Every second: RSS, and where it is by the service's own metrics.
    interface Sample {
      readonly rss: number
      readonly heapUsed: number
      readonly heapTotal: number
      readonly external: number
      readonly cacheEntries: number
      readonly cacheMb: number
      /** The event loop's longest delay and its 99th percentile in the second before (prom-client). */
      readonly loopMaxMs: number
      readonly loopP99Ms: number
    }
    const samples: Array<Sample> = []
    const sampler = setInterval(() => {
      const rss = rssMbOf(service.pid!)
      scrape(base)
        .then((value) => {
          const mb = (name: string) => round(value(name) / 1024 / 1024)
          samples.push({
            rss,
            heapUsed: mb("nodejs_heap_size_used_bytes"),
            heapTotal: mb("nodejs_heap_size_total_bytes"),
            external: mb("nodejs_external_memory_bytes"),
            cacheEntries: value("cache_entries"),
            cacheMb: mb("cache_bytes"),
            loopMaxMs: round(value("nodejs_eventloop_lag_max_seconds") * 1000, 1),
            loopP99Ms: round(value("nodejs_eventloop_lag_p99_seconds") * 1000, 1)
          })
        })
        .catch(() => undefined)
    }, 1000)
    const rss = () => samples.map((s) => s.rss)
    const count = MIXED_RATE * MIXED_SECONDS
    const producer = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "src/tools/produce.ts",
        "--brokers",
        env.kafka.bootstrapServers,
        "--topic",
        topic,
        "--count",
        String(count),
        "--rate",
        String(MIXED_RATE),
        "--invalid-ratio",
        "0.02",
        "--duplicate-ratio",
        "0.02"
      ],
      { stdio: ["ignore", "ignore", "inherit"] }
    )
    const produced = new Promise((resolve) => producer.once("exit", resolve))
    await sleep(5_000) // the producer is up and sending
    const other = [
      ...Array.from({ length: 500 }, (_, i) => `/order/unknown-${i}`),
      ...Array.from({ length: 500 }, () => "/orders?limit=20")
    ]
    const seconds = Math.max(10, MIXED_SECONDS - 15)
    const cpu = cpuFrom(service.pid!)
    const machine = machineBusyFrom()
    const measuredFrom = samples.length
    window.from = Date.now()
    const [hits] = await Promise.all([
      wrk(base, orderPaths(known.map((o) => o.order_uid)), { connections: 10, seconds, name: "mixed-hits" }),
      wrk(base, other, { connections: 10, seconds, name: "mixed-other" })
    ])
    const used = cpu()
    const machineBusy = machine()
    window.to = Date.now()
    const measured = samples.slice(measuredFrom)
    await produced
    // Duplicates are acknowledged without a write: they settle too.
    const settledWithDuplicates = async () =>
      (await settledCount(base)) + (await metric(base, "ingest_orders_duplicate_total"))
    await waitUntil("every message settled", async () => (await settledWithDuplicates()) >= count, 300_000)
    const settled = await settledWithDuplicates()
    clearInterval(sampler)
    const ingested = await scrape(base)
    const rows = [
      {
        messages: count,
        "rate/s": MIXED_RATE,
        settled,
        "hit req/s": round(hits.rps),
        hit_p50_ms: round(hits.p50Ms, 2),
        hit_p99_ms: round(hits.p99Ms, 2),
        hit_max_ms: round(hits.maxMs, 2),
        rss_max_mb: Math.max(...rss()),
        rss_end_mb: rssMbOf(service.pid!),
        // Where a hit's wait comes from: the service's one thread busy (CPU, loop delay) or not.
        "service CPU %": round((100 * used.process) / seconds),
        "PostgreSQL CPU %": round((100 * used.postgres) / seconds),
        "machine busy % (of all cores)": machineBusy,
        "messages a batch (mean)": round(
          ingested("ingest_batch_size_sum") / ingested("ingest_batch_size_count"),
          1
        ),
        "loop delay p99 ms (median second)": median(measured.map((s) => s.loopP99Ms)),
        "loop delay max ms (worst second)": Math.max(...measured.map((s) => s.loopMaxMs))
      }
    ]
    // The moment of the highest RSS, broken down.
    const peak = samples.reduce((a, b) => (b.rss > a.rss ? b : a))
    const peakRows = [
      {
        rss_mb: peak.rss,
        heap_used_mb: peak.heapUsed,
        heap_total_mb: peak.heapTotal,
        external_mb: peak.external,
        cache_entries: peak.cacheEntries,
        cache_mb: peak.cacheMb
      }
    ]
    table(
      `Serving while ingesting ${MIXED_RATE} messages/s (wrk -c10 hits, -c10 unknown ids and /orders)`,
      rows
    )
    table("… at its highest RSS: the heap V8 holds (used of total), memory outside it, the cache", peakRows)
    return {
      rows: [...rows, ...peakRows],
      result: { mixed_hit_p99_ms: round(hits.p99Ms, 2), mixed_rss_mb: Math.max(...rss()) }
    }
  } finally {
    await stopService(service)
    printLoopStalls(service.pid!, window.from, window.to)
  }
}

const startup = async (env: Env) => {
  const url = await freshDatabase(env)
  console.log(`startup: storing ${STARTUP_ORDERS} orders…`)
  const orders = generateOrders(STARTUP_ORDERS, 13)
  await seedDatabase(url, orders)
  // What the cache must hold at the least: each order's JSON, one byte per character in V8 when
  // every character is Latin-1, two otherwise.
  const jsonBytes = (json: string) => (/[^\u0000-\u00ff]/.test(json) ? 2 : 1) * json.length
  const jsonMb = round(orders.reduce((n, o) => n + jsonBytes(JSON.stringify(o)), 0) / 1024 / 1024)
  const rows: Array<Record<string, string | number>> = []
  const result: Record<string, number> = {}
  // The same service with nothing cached, then with every order warmed: the difference is what
  // the cached orders cost.
  for (const warm of [0, STARTUP_ORDERS]) {
    const port = await freePort()
    const t0 = Date.now()
    const service = startOnTopic(url, port, `bench-startup-${port}`, {
      KAFKA_BROKERS: env.kafka.bootstrapServers,
      CACHE_WARM_COUNT: String(warm),
      CACHE_MAX_ENTRIES: String(Math.max(warm, 1))
    })
    try {
      await waitUntil(
        "ready",
        async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200,
        300_000
      )
      const readyS = (Date.now() - t0) / 1000
      const rssMb = () => rssMbOf(service.pid!)
      await sleep(1000)
      const rss = rssMb()
      // Where the memory is, from the service's own metrics.
      const value = await scrape(`http://127.0.0.1:${port}`)
      const mb = (name: string) => round(value(name) / 1024 / 1024)
      rows.push({
        orders_cached: warm,
        json_mb: warm === 0 ? 0 : jsonMb,
        ready_s: round(readyS, 2),
        rss_mb: rss,
        heap_used_mb: mb("nodejs_heap_size_used_bytes"),
        heap_total_mb: mb("nodejs_heap_size_total_bytes"),
        external_mb: mb("nodejs_external_memory_bytes"),
        // The same process left alone a little longer (V8 returns memory once allocation stops).
        rss_after_30s_mb: await sleep(29_000).then(rssMb)
      })
      if (warm > 0) {
        result["startup_ready_s"] = round(readyS, 2)
        result["rss_after_warm_mb"] = rss
        result["rss_100k_cached_mb"] = rss
      }
    } finally {
      await stopService(service)
    }
  }
  table("Start-up: spawn → /readyz 200, nothing cached and the cache warmed from the database", rows)
  const [empty, full] = rows as [Record<string, number>, Record<string, number>]
  const perEntry = (mbs: number) => round(((mbs - jsonMb) * 1024 * 1024) / STARTUP_ORDERS)
  console.log(
    `${STARTUP_ORDERS} cached orders: ${jsonMb} MB of JSON; heap used +${round(full["heap_used_mb"]! - empty["heap_used_mb"]!)} MB ` +
      `(${perEntry(full["heap_used_mb"]! - empty["heap_used_mb"]!)} bytes per order beyond its JSON), ` +
      `RSS +${round(full["rss_mb"]! - empty["rss_mb"]!)} MB over ${empty["rss_mb"]} MB with nothing cached`
  )
  return { rows, result }
}

/** What a support agent would type for each kind of key, per order: phones as written, e-mails in capitals. */
const searchKeys: Record<string, (o: OrderJson) => string> = {
  order_uid: (o) => o.order_uid,
  track_number: (o) => o.track_number,
  customer_id: (o) => o.customer_id,
  phone: (o) => o.delivery.phone,
  email: (o) => o.delivery.email.toUpperCase(),
  transaction: (o) => o.payment.transaction,
  rid: (o) => o.items[0]!.rid
}

/**
 * GET /orders/search with `BENCH_SEARCH_N` orders stored: for each kind of key, 50 connections
 * searching random keys of that kind (one order each, or a few for a common customer id).
 */
const search = async (env: Env) => {
  requireWrk()
  mkdirSync("bench/results", { recursive: true })
  const keys: Record<string, Array<string>> = Object.fromEntries(Object.keys(searchKeys).map((k) => [k, []]))
  const addKeys = (o: OrderJson) => {
    for (const [kind, key] of Object.entries(searchKeys)) keys[kind]!.push(key(o))
  }
  const url = SEARCH_DATABASE_URL ?? (await freshDatabase(env))
  let ordersStored = SEARCH_N
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    if (SEARCH_DATABASE_URL !== undefined) {
      // A database stored by an earlier run: keys from 20,000 of its orders, picked at random.
      const { rows } = await client.query<{ document: string; stored: string }>(
        "SELECT document, (SELECT count(*) FROM orders) AS stored FROM orders ORDER BY random() LIMIT 20000"
      )
      ordersStored = Number(rows[0]?.stored ?? 0)
      for (const { document } of rows) addKeys(JSON.parse(document) as OrderJson)
      console.log(`search: ${rows.length} orders' keys from the database given`)
    } else {
      const CHUNK = 50_000
      console.log(`search: storing ${SEARCH_N} orders…`)
      for (let stored = 0; stored < SEARCH_N; stored += CHUNK) {
        const orders = generateOrders(Math.min(CHUNK, SEARCH_N - stored), 1_000 + stored / CHUNK)
        await seedDatabase(url, orders)
        // Keys from every part of the table, not only the newest rows.
        orders.filter((_, i) => i % Math.max(1, Math.floor(SEARCH_N / 20_000)) === 0).forEach(addKeys)
        if (stored % 200_000 === 0) console.log(`  ${stored + orders.length} stored`)
      }
      await client.query("ANALYZE")
    }
  } finally {
    await client.end()
  }
  const port = await freePort()
  const service = startService({
    DATABASE_URL: url,
    KAFKA_BROKERS: env.kafka.bootstrapServers,
    KAFKA_TOPIC: `bench-search-${port}`,
    KAFKA_DLQ_TOPIC: `bench-search-${port}.dlq`,
    HTTP_PORT: String(port),
    CACHE_WARM_COUNT: "0"
  })
  const rows: Array<Record<string, string | number>> = []
  const result: Record<string, number> = {}
  try {
    const base = `http://127.0.0.1:${port}`
    await waitUntil("ready", async () => (await fetch(`${base}/readyz`)).status === 200, 120_000)
    // Every key found (a wrong key would measure the empty answer).
    for (const [kind, list] of Object.entries(keys)) {
      const page = (await (
        await fetch(`${base}/orders/search?q=${encodeURIComponent(list[0]!)}`)
      ).json()) as {
        items: Array<unknown>
      }
      if (page.items.length === 0) throw new Error(`search by ${kind} found nothing for ${list[0]}`)
    }
    const searchPaths = (list: ReadonlyArray<string>) =>
      list.map((key) => `/orders/search?q=${encodeURIComponent(key)}`)
    // Warm the JIT, the pool and PostgreSQL's cache with searches of every kind: the kinds search
    // the same orders, so otherwise the one measured first pays for reading them in for the rest.
    await wrk(base, searchPaths(Object.values(keys).flat()), {
      connections: 50,
      seconds: 8,
      name: "search-warm"
    })
    for (const [kind, list] of Object.entries(keys)) {
      const gcBefore = await youngGcs(base)
      const cpu = cpuFrom(service.pid!)
      const w = await wrk(base, searchPaths(list), {
        connections: 50,
        seconds: SEARCH_SECONDS,
        name: `search-${kind}`
      })
      const used = cpu()
      const gcAfter = await youngGcs(base)
      const gcs = gcAfter.count - gcBefore.count
      const usPerRequest = (cpuSeconds: number) => round((cpuSeconds * 1e6) / (w.rps * SEARCH_SECONDS))
      const r = {
        rps: round(w.rps),
        p50: round(w.p50Ms, 2),
        p99: round(w.p99Ms, 2),
        errors: w.non2xx + w.socketErrors
      }
      rows.push({
        key: kind,
        orders: ordersStored,
        keys: list.length,
        "req/s": r.rps,
        p50_ms: r.p50,
        p99_ms: r.p99,
        errors_or_non2xx: r.errors,
        "service CPU µs/req": usPerRequest(used.process),
        "PostgreSQL CPU µs/req": usPerRequest(used.postgres),
        "young GCs": gcs,
        "young GC ms (mean)": gcs === 0 ? 0 : round(((gcAfter.seconds - gcBefore.seconds) * 1000) / gcs, 2)
      })
      result[`search_${kind}_p99_ms`] = r.p99
      result[`search_${kind}_rps`] = r.rps
    }
  } finally {
    await stopService(service)
  }
  table(
    `Search: GET /orders/search?q= with ${ordersStored} orders stored, 50 connections, ${SEARCH_SECONDS} s per kind`,
    rows
  )
  // The same searches by e-mail with sign-in required, each request carrying an agent's API key
  // (checked like a cached access token or session: a hash and a map), against the open figures.
  const authRows = await authenticatedSearch(
    env,
    url,
    keys["email"]!,
    rows.find((r) => r["key"] === "email")!
  )
  Object.assign(result, authRows.result)
  table("Search by e-mail, open against signed in (an agent's API key on every request)", authRows.rows)
  return { rows: [...rows, ...authRows.rows], result }
}

const BENCH_AGENT_KEY = "bench-agent-key-0123456789abcdef"

const authenticatedSearch = async (
  env: Env,
  url: string,
  keys: ReadonlyArray<string>,
  open: Record<string, string | number>
) => {
  const port = await freePort()
  const service = startService({
    DATABASE_URL: url,
    KAFKA_BROKERS: env.kafka.bootstrapServers,
    KAFKA_TOPIC: `bench-search-${port}`,
    KAFKA_DLQ_TOPIC: `bench-search-${port}.dlq`,
    HTTP_PORT: String(port),
    CACHE_WARM_COUNT: "0",
    AUTH_MODE: "required",
    AUTH_API_KEYS: `bench:agent:${createHash("sha256").update(BENCH_AGENT_KEY).digest("hex")}`
  })
  try {
    const base = `http://127.0.0.1:${port}`
    const headers = { authorization: `Bearer ${BENCH_AGENT_KEY}` }
    await waitUntil("ready", async () => (await fetch(`${base}/readyz`)).status === 200, 120_000)
    const check = await fetch(`${base}/orders/search?q=${encodeURIComponent(keys[0]!)}`, { headers })
    if (check.status !== 200) throw new Error(`an agent's search answered ${check.status}`)
    const paths = keys.map((key) => `/orders/search?q=${encodeURIComponent(key)}`)
    await wrk(base, paths, { connections: 50, seconds: 8, name: "search-auth-warm", headers })
    const cpu = cpuFrom(service.pid!)
    const w = await wrk(base, paths, {
      connections: 50,
      seconds: SEARCH_SECONDS,
      name: "search-auth",
      headers
    })
    const used = cpu()
    const usPerRequest = round((used.process * 1e6) / (w.rps * SEARCH_SECONDS))
    const signedIn = {
      key: "email (signed in)",
      "req/s": round(w.rps),
      p50_ms: round(w.p50Ms, 2),
      p99_ms: round(w.p99Ms, 2),
      errors_or_non2xx: w.non2xx + w.socketErrors,
      "service CPU µs/req": usPerRequest
    }
    const openRow = {
      key: "email (open)",
      "req/s": open["req/s"]!,
      p50_ms: open["p50_ms"]!,
      p99_ms: open["p99_ms"]!,
      errors_or_non2xx: open["errors_or_non2xx"]!,
      "service CPU µs/req": open["service CPU µs/req"]!
    }
    return {
      rows: [openRow, signedIn],
      result: {
        search_authenticated_cpu_ratio: round(usPerRequest / Number(open["service CPU µs/req"]), 3),
        search_authenticated_p99_ratio: round(w.p99Ms / Number(open["p99_ms"]), 3)
      }
    }
  } finally {
    await stopService(service)
  }
}

const ORDER_EVENT = Buffer.from("event: order\n")

/** Counts the `order` events in a stream of event-stream bytes, across chunk boundaries. */
const eventCounter = () => {
  const overlap = ORDER_EVENT.length - 1
  let tail: Buffer = Buffer.alloc(0)
  let count = 0
  return {
    count: () => count,
    add: (chunk: Buffer) => {
      // One split between the last chunk and this one lies within their last and first bytes.
      if (tail.length > 0 && Buffer.concat([tail, chunk.subarray(0, overlap)]).includes(ORDER_EVENT)) count++
      for (
        let at = chunk.indexOf(ORDER_EVENT);
        at !== -1;
        at = chunk.indexOf(ORDER_EVENT, at + ORDER_EVENT.length)
      )
        count++
      const last = chunk.length >= overlap ? chunk : Buffer.concat([tail, chunk])
      tail = Buffer.from(last.subarray(Math.max(0, last.length - overlap)))
    }
  }
}

/**
 * `n` clients reading GET /orders/live, as plain sockets: the load generator shares the cores with
 * the service, so its own reading must cost as little as a browser's would cost the service
 * (nothing). Without gzip every client counts its events. With gzip (what browsers ask for)
 * every client is sent the same bytes, so the first decodes and counts the events, and the others
 * count the bytes they are sent, which must come to the first one's.
 */
const liveClients = async (base: string, n: number, encoding: "gzip" | "identity") => {
  const { hostname, port } = new URL(base)
  const events = Array.from({ length: n }, eventCounter)
  const bodyBytes = new Array<number>(n).fill(0)
  const sockets = await Promise.all(
    events.map(
      (counter, i) =>
        new Promise<Socket>((resolve, reject) => {
          const socket = connect({ host: hostname, port: Number(port) }, () => {
            socket.write(
              `GET /orders/live HTTP/1.0\r\nHost: ${hostname}\r\nAccept-Encoding: ${encoding}\r\n\r\n`
            )
            resolve(socket)
          })
          const gunzip = encoding === "gzip" && i === 0 ? createGunzip() : undefined
          gunzip?.on("data", counter.add)
          // The response's head, then the body (HTTP/1.0: not chunked), which is what is counted.
          let head: Buffer | undefined = Buffer.alloc(0)
          socket.on("data", (chunk: Buffer) => {
            if (head !== undefined) {
              const data: Buffer = Buffer.concat([head, chunk])
              const at = data.indexOf("\r\n\r\n")
              if (at === -1) {
                head = data
                return
              }
              head = undefined
              chunk = data.subarray(at + 4)
            }
            bodyBytes[i]! += chunk.length
            if (encoding === "identity") counter.add(chunk)
            else gunzip?.write(chunk)
          })
          socket.once("error", reject)
        })
    )
  )
  const counts = () =>
    encoding === "identity"
      ? events.map((e) => e.count())
      : bodyBytes.map((b) => (b === bodyBytes[0] ? events[0]!.count() : -1))
  return { counts, bodyBytes, close: () => sockets.forEach((s) => s.destroy()) }
}

/**
 * Ingest of a backlog of `BENCH_LIVE_N` orders: with nobody on the live feed, with
 * `BENCH_LIVE_CLIENTS` clients taking gzip (as browsers do), and with as many taking it plain; in
 * one run, each on its own topic and fresh database: what the feed adds to ingest time.
 */
const live = async (env: Env) => {
  const orders = generateOrders(LIVE_N, 17)
  const rows: Array<Record<string, string | number>> = []
  const seconds: Record<string, Array<number>> = { none: [], gzip: [], identity: [] }
  const runs = [
    { clients: 0, encoding: "—" },
    { clients: LIVE_CLIENTS, encoding: "gzip" },
    { clients: LIVE_CLIENTS, encoding: "identity" }
  ] as const
  // One topic read by every run, each in its own consumer group, into its own fresh database.
  const topic = `bench-live-${Date.now()}`
  await produceAll(
    env.kafka.bootstrapServers,
    topic,
    orders.map((o) => ({ key: o.order_uid, value: JSON.stringify(o) }))
  )
  // The three kinds of run in turn, `LIVE_ROUNDS` times: the machine's drift from minute to minute
  // falls on each alike, and the medians are compared.
  for (let pass = 1; pass <= LIVE_ROUNDS; pass++)
    for (const { clients, encoding } of runs) {
      const name = clients === 0 ? "none" : encoding
      console.log(
        `live, round ${pass}: ${LIVE_N} orders with ${clients} clients on the live feed (${encoding})…`
      )
      const url = await freshDatabase(env)
      const port = await freePort()
      // The clients connect as soon as HTTP answers, seconds before the consumer has joined its group.
      const service = startOnTopic(url, port, topic, {
        KAFKA_BROKERS: env.kafka.bootstrapServers,
        KAFKA_GROUP_ID: `${topic}-${pass}-${name}`
      })
      const base = `http://127.0.0.1:${port}`
      try {
        await waitUntil("HTTP answers", async () => (await fetch(`${base}/healthz`)).ok, 120_000)
        const feed = encoding === "—" ? undefined : await liveClients(base, clients, encoding)
        const settled = () => settledCount(base)
        await waitUntil("the first order is stored", async () => (await settled()) > 0, 120_000)
        const started = Date.now()
        // CPU seconds while ingesting: the service's, PostgreSQL's, and this process's (the clients').
        const serverCpu = cpuFrom(service.pid!)
        const clientsBefore = process.cpuUsage()
        await waitUntil("every order is stored", async () => (await settled()) >= LIVE_N, 1_800_000)
        const took = (Date.now() - started) / 1000
        seconds[name]!.push(took)
        const used = serverCpu()
        const clientsUsed = process.cpuUsage(clientsBefore)
        let received = "—"
        let megabytes = "—"
        if (feed !== undefined) {
          // A client too slow for the feed is dropped: the table shows it as fewer events.
          await waitUntil(
            "every client has every order",
            async () => Math.min(...feed.counts()) >= LIVE_N,
            60_000
          ).catch(() => undefined)
          const counts = feed.counts()
          received = `${Math.min(...counts)}–${Math.max(...counts)}`
          megabytes = `${round(Math.min(...feed.bodyBytes) / 1e6, 1)}–${round(Math.max(...feed.bodyBytes) / 1e6, 1)}`
          feed.close()
        }
        rows.push({
          round: pass,
          clients,
          encoding,
          seconds: round(took, 2),
          "orders/s": round(LIVE_N / took),
          "service CPU s": round(used.process, 2),
          "PostgreSQL CPU s": round(used.postgres, 2),
          "bench process (clients) CPU s": round((clientsUsed.user + clientsUsed.system) / 1e6, 2),
          "MB per client": megabytes,
          "events per client (min–max)": received
        })
      } finally {
        await stopService(service)
      }
    }
  table(
    `Live feed: ingest of ${LIVE_N} orders, without and with ${LIVE_CLIENTS} clients on GET /orders/live`,
    rows
  )
  const median = (values: ReadonlyArray<number>) => {
    const sorted = [...values].sort((a, b) => a - b)
    const mid = Math.floor(sorted.length / 2)
    return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
  }
  console.log(
    `median seconds over ${LIVE_ROUNDS} rounds: no client ${round(median(seconds["none"]!), 2)}, ` +
      `gzip ${round(median(seconds["gzip"]!), 2)}, plain ${round(median(seconds["identity"]!), 2)}`
  )
  const added = (name: string) => round((median(seconds[name]!) / median(seconds["none"]!) - 1) * 100, 1)
  console.log(
    `the live feed with ${LIVE_CLIENTS} clients adds ${added("gzip")} % to ingest time (gzip, as browsers take it); ` +
      `${added("identity")} % when every client takes it plain`
  )
  return {
    rows,
    result: {
      live_ingest_time_added_pct: added("gzip"),
      live_ingest_time_added_pct_plain: added("identity")
    }
  }
}

/**
 * `DLQ_N` letters on the dead-letter topic, as the service parks them (every kind in turn, an order
 * of about 1 KB as the value, one a second apart), then the service started on it: how long its
 * index takes to catch up with the topic, and how long a first page of the listing takes — all
 * letters, one kind, and an hour's range (whose counts are a scan of that hour).
 */
const dlq = async (env: Env) => {
  const url = await freshDatabase(env)
  const port = await freePort()
  const topic = `bench-dlq-${port}`
  const deadLetterTopic = `${topic}.dlq`
  const kafka = new Kafka({ clientId: "bench", brokers: [...env.kafka.brokers], logLevel: logLevel.NOTHING })
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({
    waitForLeaders: true,
    topics: [topic, deadLetterTopic].map((t) => ({ topic: t, numPartitions: 3 }))
  })
  await admin.disconnect()
  const orders = generateOrders(Math.min(DLQ_N, 1000), 17).map((o) => Buffer.from(JSON.stringify(o)))
  const firstAt = Date.parse("2026-11-01T00:00:00Z")
  console.log(`dlq: parking ${DLQ_N} letters…`)
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
  await producer.connect()
  // 500 letters of about 1.3 KB a send: each partition's share stays under the broker's 1 MiB.
  for (let i = 0; i < DLQ_N; i += 500) {
    const messages = Array.from({ length: Math.min(500, DLQ_N - i) }, (_, j) => {
      const n = i + j
      const value = orders[n % orders.length]!
      return toKafkaMessage(
        {
          kind: RejectionKinds[n % RejectionKinds.length]!,
          detail: `bench letter ${n}`,
          key: Buffer.from(`bench-${n}`),
          value,
          source: { topic, partition: n % 3, offset: String(n) }
        },
        new Date(firstAt + n * 1000)
      )
    })
    await producer.send({ topic: deadLetterTopic, acks: -1, messages })
  }
  await producer.disconnect()

  const base = `http://127.0.0.1:${port}`
  const t0 = Date.now()
  const service = startOnTopic(url, port, topic, { KAFKA_BROKERS: env.kafka.bootstrapServers })
  const listed = async () => {
    const page = (await (await fetch(`${base}/dead-letters?limit=1`)).json()) as {
      counts: Record<string, number>
    }
    return Object.values(page.counts).reduce((a, b) => a + b, 0)
  }
  try {
    await waitUntil("every letter is indexed", async () => (await listed()) === DLQ_N, 900_000)
    const indexS = (Date.now() - t0) / 1000
    const hourFrom = new Date(firstAt + Math.floor(DLQ_N / 2) * 1000).toISOString()
    const hourTo = new Date(firstAt + Math.floor(DLQ_N / 2) * 1000 + 3_600_000).toISOString()
    const queries = {
      all: "limit=50",
      one_kind: "kind=schema&limit=50",
      an_hour: `since=${hourFrom}&until=${hourTo}&limit=50`
    }
    const rows = []
    const result: Record<string, number> = {
      dlq_letters: DLQ_N,
      dlq_index_s: round(indexS, 1),
      dlq_index_letters_per_s: round(DLQ_N / indexS)
    }
    for (const [name, query] of Object.entries(queries)) {
      const times: Array<number> = []
      for (let i = 0; i < DLQ_REQUESTS + 3; i++) {
        const started = performance.now()
        const response = await fetch(`${base}/dead-letters?${query}`, {
          headers: { accept: "application/json" }
        })
        const page = (await response.json()) as { items: Array<unknown> }
        if (response.status !== 200 || page.items.length === 0)
          throw new Error(`${query}: ${response.status}`)
        if (i >= 3) times.push(performance.now() - started)
      }
      times.sort((a, b) => a - b)
      const p50 = percentile(times, 50)
      rows.push({
        query,
        requests: times.length,
        p50_ms: round(p50, 2),
        p90_ms: round(percentile(times, 90), 2),
        max_ms: round(times.at(-1)!, 2)
      })
      result[`dlq_first_page_${name}_p50_ms`] = round(p50, 2)
    }
    table(
      `Dead letters: ${DLQ_N} indexed in ${round(indexS, 1)} s from the service's start; GET /dead-letters, first page`,
      rows
    )
    return { rows, result }
  } finally {
    await stopService(service)
  }
}

/** Every series of one metric by its labels as written (`{reason="connections"}`), from `/metrics`. */
const scrapeSeries = async (base: string, name: string): Promise<Record<string, number>> => {
  const out: Record<string, number> = {}
  for (const line of (await (await fetch(`${base}/metrics`)).text()).split("\n")) {
    if (!line.startsWith(`${name}{`)) continue
    const labels = line.slice(name.length, line.lastIndexOf("}") + 1)
    out[labels] = (out[labels] ?? 0) + Number(line.split(" ").at(-1))
  }
  return out
}

/** `{reason="connections"}` → `connections`. */
const reasonOf = (labels: string) => /reason="([^"]*)"/.exec(labels)?.[1] ?? labels

/**
 * Connections waiting to be accepted on the listening socket of `port` (its Recv-Q, from
 * /proc/net/tcp): past the listen backlog (511) new ones are not answered at all.
 */
const acceptQueueOf = (port: number): number => {
  const local = `:${port.toString(16).toUpperCase().padStart(4, "0")}`
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/)
    // local_address rem_address st tx_queue:rx_queue; 0A: listening
    if (f[1]?.endsWith(local) && f[3] === "0A") return parseInt(f[4]!.split(":")[1]!, 16)
  }
  return 0
}

const fdsOf = (pid: number) => {
  try {
    return readdirSync(`/proc/${pid}/fd`).length
  } catch {
    return 0
  }
}

/** The status code of an HTTP response's first bytes, or 0 when they are not one. */
const statusOf = (chunk: Buffer) =>
  Number(/^HTTP\/1\.[01] (\d{3})/.exec(chunk.toString("latin1", 0, 16))?.[1] ?? 0)

/**
 * Opens `n` sockets in batches of `batch`, each batch given until its sockets connect (at most
 * `SETTLE_MS` each: a connection waiting in a full accept queue is not waited for) and `pauseMs`
 * more before the next, and none after `deadline` (epoch ms). Resolves with how many were opened.
 */
const inBatches = async (
  n: number,
  batch: number,
  pauseMs: number,
  deadline: number,
  open: (i: number) => Promise<void>
) => {
  let i = 0
  for (; i < n && Date.now() < deadline; i += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, n - i) }, (_, j) => open(i + j)))
    await sleep(pauseMs)
  }
  return Math.min(i, n)
}
const SETTLE_MS = 250

/**
 * `n` idle live-feed clients: each asks for GET /orders/live resuming after `lastEventId` (its
 * backlog is written at once), reads only the first chunk of the answer (its status line) and then
 * never reads again (`socket.pause()`), as a frozen browser tab would. A client answered anything
 * but 200 lets go. Counts what each was answered and, of those taken in, how many the service let
 * go of while they were held.
 */
const idleLiveClients = async (port: number, n: number, lastEventId: string, deadline: number) => {
  const sockets = new Set<Socket>()
  /** Answered 200, and open. */
  const held = new Set<Socket>()
  const answered: Record<string, number> = {}
  const note = (what: string) => (answered[what] = (answered[what] ?? 0) + 1)
  let closedByService = 0
  let gaps = 0
  let closing = false
  const request =
    `GET /orders/live HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n` +
    `Accept-Encoding: ${OVERLOAD_LIVE_ENCODING}\r\nLast-Event-ID: ${lastEventId}\r\n\r\n`
  const open = () =>
    new Promise<void>((resolve) => {
      const socket = connect({ host: "127.0.0.1", port })
      // Every socket from its start: one still connecting when the abuse ends is closed too.
      sockets.add(socket)
      let status = -1 // -1: no answer yet
      const settle = setTimeout(() => resolve(), SETTLE_MS) // a connect the service leaves waiting
      socket.once("connect", () => {
        socket.write(request)
        resolve()
      })
      socket.once("data", (chunk: Buffer) => {
        status = statusOf(chunk)
        note(String(status))
        if (status === 200) {
          held.add(socket)
          if (chunk.includes("event: gap")) gaps++
          socket.pause()
        } else socket.destroy()
      })
      socket.on("error", (error: NodeJS.ErrnoException) => {
        if (status === -1) note(error.code ?? "error")
      })
      socket.once("close", () => {
        clearTimeout(settle)
        sockets.delete(socket)
        held.delete(socket)
        if (status === -1) note("no answer")
        else if (status === 200 && !closing) closedByService++
        resolve()
      })
    })
  const started = Date.now()
  const asked = await inBatches(n, 250, 50, deadline, open)
  return {
    openSeconds: (Date.now() - started) / 1000,
    /** Sockets opened: fewer than asked when opening them took past the deadline. */
    asked,
    answered,
    open: () => held.size,
    /** Connecting or connected, and not answered yet. */
    waiting: () => sockets.size - held.size,
    closedByService: () => closedByService,
    gaps: () => gaps,
    close: () => {
      closing = true
      for (const s of sockets) s.destroy()
    }
  }
}

/**
 * `n` connections sending a request's headers one byte a second, never finishing them. One the
 * service closes is opened again while the abuse lasts (at most `n * 20` openings in all).
 */
const slowClients = (port: number, n: number, deadline: number) => {
  const head = Buffer.from(`GET /orders?limit=20 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Slow: `)
  const byteAt = (i: number) => (i < head.length ? head.subarray(i, i + 1) : Buffer.from("a"))
  const sockets = new Map<Socket, { sent: number }>()
  const answered: Record<string, number> = {}
  const note = (what: string) => (answered[what] = (answered[what] ?? 0) + 1)
  let openings = 0
  let closedByService = 0
  let stopping = false
  const open = () =>
    new Promise<void>((resolve) => {
      if (stopping || openings >= n * 20) return resolve()
      openings++
      const socket = connect({ host: "127.0.0.1", port })
      const state = { sent: 0 }
      sockets.set(socket, state) // from its start: one still connecting at the end is closed too
      const settle = setTimeout(() => resolve(), SETTLE_MS)
      socket.once("connect", () => {
        socket.write(byteAt(state.sent++))
        resolve()
      })
      socket.once("data", (chunk: Buffer) => note(String(statusOf(chunk))))
      socket.on("error", () => undefined)
      socket.once("close", () => {
        clearTimeout(settle)
        sockets.delete(socket)
        resolve()
        if (!stopping) {
          closedByService++
          void open()
        }
      })
    })
  const ticker = setInterval(() => {
    for (const [socket, state] of sockets)
      if (!socket.connecting && socket.writable) socket.write(byteAt(state.sent++))
  }, 1000)
  const opened = inBatches(n, 100, 50, deadline, open)
  return {
    opened,
    open: () => sockets.size,
    openings: () => openings,
    closedByService: () => closedByService,
    answered,
    close: () => {
      stopping = true
      clearInterval(ticker)
      for (const s of sockets.keys()) s.destroy()
    }
  }
}

/** The service's RSS, descriptors and gauges every 500 ms, as the highest values in a window. */
/**
 * A new connection every half second until `until`, each asking for one of `paths` with
 * `Connection: close` and timed from before its connect to the end of its answer: what a client
 * arriving during the abuse waits. One not answered by `until` counts as waiting until then.
 */
const newConnectionProbe = (port: number, paths: ReadonlyArray<string>, until: number) => {
  const waits: Array<number> = []
  let unanswered = 0
  const pending: Array<Promise<void>> = []
  const one = (i: number) =>
    new Promise<void>((resolve) => {
      const started = performance.now()
      const req = httpRequest(
        {
          host: "127.0.0.1",
          port,
          path: paths[i % paths.length],
          agent: false,
          headers: { connection: "close" }
        },
        (res) => {
          res.resume()
          res.once("end", () => {
            if (res.statusCode === 200 || res.statusCode === 304) waits.push(performance.now() - started)
            else unanswered++
            resolve()
          })
        }
      )
      req.setTimeout(Math.max(1, until - Date.now()) + 2_000, () => req.destroy())
      req.once("error", () => {
        unanswered++
        waits.push(performance.now() - started)
        resolve()
      })
      req.end()
    })
  let i = 0
  const timer = setInterval(() => {
    if (Date.now() >= until) return clearInterval(timer)
    pending.push(one(i++))
  }, 500)
  return {
    done: new Promise<{ asked: number; answered: number; p50Ms: number; maxMs: number }>((resolve) => {
      const finish = () =>
        void Promise.all(pending).then(() => {
          const sorted = [...waits].sort((a, b) => a - b)
          resolve({
            asked: pending.length,
            answered: pending.length - unanswered,
            p50Ms: sorted.length === 0 ? Number.NaN : sorted[Math.floor(sorted.length / 2)]!,
            maxMs: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]!
          })
        })
      setTimeout(finish, Math.max(0, until - Date.now()) + 50)
    })
  }
}

const overloadSampler = (pid: number, base: string) => {
  const port = Number(new URL(base).port)
  let window = { rssMb: 0, fds: 0, liveClients: 0, readsQueued: 0, acceptQueue: 0 }
  /** When each shed reason was first counted, ms after `mark`. */
  const firstShed = new Map<string, number>()
  let mark = Date.now()
  let busy = false
  /** A line a second: where the service is (CPU, loop delay, what it holds), from `mark` on. */
  const timeline: Array<Record<string, number>> = []
  let tick = 0
  let last = { at: Date.now(), cpu: cpuSecondsOf([pid]), machine: machineTicks() }
  let loopMaxMs = 0
  let liveNow = 0
  const timer = setInterval(() => {
    let rss = 0
    try {
      rss = rssMbOf(pid)
    } catch {
      // the service has exited
    }
    const fds = fdsOf(pid)
    window.rssMb = Math.max(window.rssMb, rss)
    window.fds = Math.max(window.fds, fds)
    const acceptQueue = acceptQueueOf(port)
    window.acceptQueue = Math.max(window.acceptQueue, acceptQueue)
    if (++tick % 2 === 0) {
      const now = { at: Date.now(), cpu: cpuSecondsOf([pid]), machine: machineTicks() }
      timeline.push({
        at: now.at,
        "service CPU %": round((100 * (now.cpu - last.cpu)) / ((now.at - last.at) / 1000)),
        "machine busy %": round(
          (100 * (now.machine.busy - last.machine.busy)) / Math.max(1, now.machine.total - last.machine.total)
        ),
        "loop delay max ms (scraped)": loopMaxMs,
        rss_mb: rss,
        fds,
        "accept queue": acceptQueue,
        live_clients: liveNow
      })
      last = now
    }
    // A scrape a second (it costs the service too), none while one is unanswered.
    if (busy || tick % 2 === 1) return
    busy = true
    fetch(`${base}/metrics`, { signal: AbortSignal.timeout(2_000) })
      .then((r) => r.text())
      .then((text) => {
        for (const line of text.split("\n")) {
          const value = Number(line.split(" ").at(-1))
          if (line.startsWith("nodejs_eventloop_lag_max_seconds ")) loopMaxMs = round(value * 1000)
          if (line.startsWith("live_clients ") || line.startsWith("live_clients{")) {
            liveNow = value
            window.liveClients = Math.max(window.liveClients, value)
          } else if (line.startsWith("client_reads_queued ") || line.startsWith("client_reads_queued{"))
            window.readsQueued = Math.max(window.readsQueued, value)
          else if (line.startsWith("http_shed_requests_total{") && value > 0) {
            const reason = reasonOf(line)
            if (!firstShed.has(reason)) firstShed.set(reason, Date.now() - mark)
          }
        }
      })
      .catch(() => undefined)
      .finally(() => (busy = false))
  }, 500)
  return {
    /** Starts a new window; returns the one that ended. */
    next: () => {
      const ended = window
      window = { rssMb: 0, fds: 0, liveClients: 0, readsQueued: 0, acceptQueue: 0 }
      mark = Date.now()
      return ended
    },
    /** The lines a second since `next` was last called, and a fresh start. */
    timeline: () => timeline.splice(0),
    firstShed,
    stop: () => clearInterval(timer)
  }
}

/**
 * Bounded under overload: the service ingesting `BENCH_OVERLOAD_RATE` orders/s (the producer, as in
 * `mixed`) and answering cached orders to wrk -c50, first alone (quiet), then with abusive clients
 * besides (abuse): `BENCH_OVERLOAD_LIVE` idle live-feed clients resuming inside the resume window
 * and never reading, `BENCH_OVERLOAD_SLOW` connections trickling their headers a byte a second, and
 * `BENCH_OVERLOAD_SEARCH` connections searching a key `BENCH_OVERLOAD_SHARED` orders share. What
 * the service keeps doing (hits, ingest), what it holds (RSS, descriptors), what it sheds, how long
 * it takes to come back, and that no order was lost or stored twice.
 *
 * The hits measured under abuse come on wrk's 50 keep-alive connections, opened just before the
 * abuse (as a browser's, or a proxy's pool in front of the service, are); a client connecting anew
 * during the abuse is measured apart, one new connection every half second.
 */
const overload = async (env: Env) => {
  requireWrk()
  const limit = Number(execFileSync("sh", ["-c", "ulimit -n"], { encoding: "utf8" }).trim()) || 1024
  // This process holds the live and slow sockets (wrk holds its own): keep under its descriptors.
  const spare = limit - OVERLOAD_SLOW - 500
  const liveN = Math.max(0, Math.min(OVERLOAD_LIVE, spare))
  if (liveN < OVERLOAD_LIVE)
    console.log(`overload: ulimit -n is ${limit}: ${liveN} live clients instead of ${OVERLOAD_LIVE}`)
  const known = generateOrders(HTTP_ORDERS, 23)
  const sharedEmail = "overload.shared@example.com"
  const url = await freshDatabase(env)
  console.log(
    `overload: storing ${OVERLOAD_SHARED} orders sharing ${sharedEmail}, then ${HTTP_ORDERS} to read…`
  )
  // Older than every generated order, so that the cache is warmed with the known ones.
  for (let stored = 0; stored < OVERLOAD_SHARED; stored += 50_000) {
    const shared = generateOrders(Math.min(50_000, OVERLOAD_SHARED - stored), 5_000 + stored / 50_000).map(
      (o) => ({ ...o, date_created: "2020-01-01T00:00:00Z", delivery: { ...o.delivery, email: sharedEmail } })
    )
    await seedDatabase(url, shared)
  }
  await seedDatabase(url, known)
  const seeded = await count(url, "SELECT count(*) AS n FROM orders")
  {
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    await client.query("ANALYZE").finally(() => client.end())
  }
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const topic = `bench-overload-${port}`
  await produceAll(env.kafka.bootstrapServers, topic, []) // the topics, nothing in them
  // How many messages the producer has sent so far: the topic's offsets (what ingest could store).
  const admin = new Kafka({
    clientId: "bench",
    brokers: env.kafka.bootstrapServers.split(","),
    logLevel: logLevel.NOTHING
  }).admin()
  await admin.connect()
  const sentSoFar = async () =>
    (await admin.fetchTopicOffsets(topic)).reduce((sum, p) => sum + Number(p.high), 0)
  const service = startOnTopic(url, port, topic, {
    KAFKA_BROKERS: env.kafka.bootstrapServers,
    CACHE_WARM_COUNT: String(HTTP_ORDERS),
    ...(OVERLOAD_LIVE_PER_ADDRESS === undefined
      ? {}
      : { LIVE_MAX_CLIENTS_PER_ADDRESS: OVERLOAD_LIVE_PER_ADDRESS })
  })
  let producer: ChildProcess | undefined
  let sampler: ReturnType<typeof overloadSampler> | undefined
  let abuse: { close: () => void } | undefined
  try {
    await waitReady(port)
    if (OVERLOAD_SERVICE_NICE !== 0) {
      // Linux keeps a niceness per thread: each of the service's.
      for (const task of readdirSync(`/proc/${service.pid}/task`))
        setPriority(Number(task), OVERLOAD_SERVICE_NICE)
      console.log(
        `overload: the service runs at niceness ${OVERLOAD_SERVICE_NICE} (BENCH_OVERLOAD_SERVICE_NICE)`
      )
    }
    const hitPaths = orderPaths(known.map((o) => o.order_uid))
    const found = await fetch(`${base}${hitPaths[0]}`)
    if (found.status !== 200) throw new Error(`a seeded order answered ${found.status}`)
    const searched = await fetch(`${base}/orders/search?q=${encodeURIComponent(sharedEmail)}`, {
      headers: { accept: "application/json" }
    })
    if (searched.status !== 200) throw new Error(`the shared key's search answered ${searched.status}`)
    await wrk(base, hitPaths, { connections: 50, seconds: 2, name: "overload-warm" }) // JIT, connections

    const hold = Math.max(5, OVERLOAD_SECONDS - 5)
    const plannedS = 5 + OVERLOAD_SECONDS + 3 + hold + 15
    const toProduce = OVERLOAD_RATE * plannedS
    console.log(
      `overload: producing ${toProduce} messages at ${OVERLOAD_RATE}/s (2 % invalid, 2 % duplicates) for ~${plannedS} s…`
    )
    // The producer is the service's own load, not abuse: it runs at the service's niceness.
    producer = spawn(
      "nice",
      [
        "-n",
        String(OVERLOAD_SERVICE_NICE),
        process.execPath,
        "--import",
        "tsx",
        "src/tools/produce.ts",
        "--brokers",
        env.kafka.bootstrapServers,
        "--topic",
        topic,
        "--count",
        String(toProduce),
        "--rate",
        String(OVERLOAD_RATE),
        "--invalid-ratio",
        "0.02",
        "--duplicate-ratio",
        "0.02",
        "--seed",
        "29"
      ],
      { stdio: ["ignore", "pipe", "inherit"] }
    )
    let producerOutput = ""
    producer.stdout!.on("data", (chunk: Buffer) => (producerOutput += chunk.toString()))
    const produced = new Promise<number | null>((resolve) => producer!.once("exit", resolve))
    // The producer up and sending (tsx and faker take a while on a busy machine), and a little more.
    await waitUntil("the producer sends", async () => (await sentSoFar()) > 0, 120_000)
    await sleep(3_000)
    sampler = overloadSampler(service.pid!, base)

    /** The figures of one stretch: hits under wrk, orders stored a second, the sampler's highs. */
    const stretch = async (
      hits: Awaited<ReturnType<typeof wrk>>,
      from: { at: number; stored: number; sent: number }
    ) => {
      const to = await storedNow()
      const seconds = (to.at - from.at) / 1000
      return {
        hits,
        ingestPerS: (to.stored - from.stored) / seconds,
        sentPerS: (to.sent - from.sent) / seconds,
        ...sampler!.next()
      }
    }
    const storedNow = async () => ({
      at: Date.now(),
      stored: await metric(base, "ingest_orders_stored_total"),
      sent: await sentSoFar()
    })

    // Quiet.
    console.log(`overload: quiet, ${OVERLOAD_SECONDS} s…`)
    sampler.next()
    let from = await storedNow()
    const quiet = await stretch(
      await wrk(base, hitPaths, { connections: 50, seconds: OVERLOAD_SECONDS, name: "overload-hits" }),
      from
    )
    const quietCacheEntries = await metric(base, "cache_entries")
    await sleep(3_000)

    // Abuse.
    const lastEventId = String(
      await count(
        url,
        `SELECT feed_seq AS n FROM orders WHERE feed_seq IS NOT NULL ORDER BY feed_seq DESC OFFSET ${Math.min(
          2_000,
          OVERLOAD_RATE
        )} LIMIT 1`
      )
    )
    const shedBefore = await scrapeSeries(base, "http_shed_requests_total")
    console.log(
      `overload: abuse, ${hold} s: ${liveN} idle live clients (Last-Event-ID ${lastEventId}), ` +
        `${OVERLOAD_SLOW} slow-header connections, ${OVERLOAD_SEARCH} searching a key ${OVERLOAD_SHARED} orders share…`
    )
    sampler.timeline() // from here on
    const abuseStarted = Date.now()
    const step = (what: string) => console.log(`  ${round((Date.now() - abuseStarted) / 1000, 1)} s: ${what}`)
    sampler.next()
    from = await storedNow()
    // The measured hits: wrk's 50 connections opened before the abuse and kept (keep-alive), as a
    // browser's, or a load balancer's pool in front of the service, are. New connections are
    // probed apart, one every half second, each timed from its connect to its answer.
    const hitSeconds = hold + 1
    const hitRun = wrk(base, hitPaths, { connections: 50, seconds: hitSeconds, name: "overload-hits" })
    await sleep(500)
    const probe = newConnectionProbe(port, hitPaths, abuseStarted + hitSeconds * 1000)
    if (OVERLOAD_NICE !== 0) setPriority(OVERLOAD_NICE) // the abuse from here on, and what it spawns
    const searchRun =
      OVERLOAD_SEARCH > 0
        ? wrk(base, [`/orders/search?q=${encodeURIComponent(sharedEmail)}`], {
            connections: OVERLOAD_SEARCH,
            seconds: hold,
            name: "overload-search",
            headers: { accept: "application/json" }
          })
        : Promise.resolve({ ...parseWrk(""), rps: 0, report: "" })
    // Opening the sockets takes at most half the hold; those not opened by then are not.
    const openBy = abuseStarted + (hold * 1000) / 2
    const slow = slowClients(port, OVERLOAD_SLOW, openBy)
    const liveFeed = await idleLiveClients(port, liveN, lastEventId, openBy)
    step(`${liveFeed.open()} live clients open (${JSON.stringify(liveFeed.answered)})`)
    abuse = {
      close: () => {
        liveFeed.close()
        slow.close()
      }
    }
    const slowAsked = await slow.opened
    step(`${slow.open()} slow connections open`)
    const measuredHits = await hitRun
    step(`hits measured: ${round(measuredHits.rps)} req/s`)
    const newConnections = await probe.done
    // Not one answer in the window: every wait was longer than it, which is what p99 is taken as.
    const noHitAnswered = !(measuredHits.rps > 0)
    const abuseHits = noHitAnswered
      ? {
          ...measuredHits,
          rps: 0,
          p50Ms: hitSeconds * 1000,
          p90Ms: hitSeconds * 1000,
          p99Ms: hitSeconds * 1000
        }
      : measuredHits
    if (noHitAnswered)
      console.log(
        `  not one hit was answered in ${hitSeconds} s: p99 is taken as ${hitSeconds} s (a lower bound)`
      )
    const search = await searchRun
    step("search measured")
    const held = {
      live: liveFeed.open(),
      liveWaiting: liveFeed.waiting(),
      liveClosedByService: liveFeed.closedByService(),
      gaps: liveFeed.gaps(),
      slow: slow.open(),
      slowOpenings: slow.openings(),
      slowClosedByService: slow.closedByService()
    }
    abuse.close()
    abuse = undefined
    if (OVERLOAD_NICE !== 0) setPriority(0)
    const abuseEnded = Date.now()
    step("abuse stopped")
    // The stretch's figures are read once the abuse has stopped: a scrape may wait behind it.
    const abused = await stretch(abuseHits, from)
    const shedAfter = await scrapeSeries(base, "http_shed_requests_total")
    const firstShed = [...sampler.firstShed.entries()].sort((a, b) => a[1] - b[1])

    // Recovery: 1 s windows of hits until their p99 and rate are near the quiet figures (60 s at
    // most). RSS is not among them: the orders stored meanwhile go on filling the cache up to its
    // bound, abuse or none; it is shown beside the cache's entries.
    const p99Near = Math.max(quiet.hits.p99Ms * 1.5, quiet.hits.p99Ms + 1)
    const rpsNear = quiet.hits.rps * 0.8
    let recoverS: number | undefined
    let last = { p99: 0, rps: 0 }
    while (Date.now() - abuseEnded < 60_000) {
      const w = await wrk(base, hitPaths, { connections: 50, seconds: 1, name: "overload-recover" })
      const at = (Date.now() - abuseEnded) / 1000
      last = { p99: w.p99Ms, rps: w.rps }
      if (w.p99Ms <= p99Near && w.rps >= rpsNear) {
        recoverS = at
        break
      }
    }
    const afterwards = { rssMb: rssMbOf(service.pid!), cacheEntries: await metric(base, "cache_entries") }
    sampler.next()
    const timeline = sampler.timeline().map(({ at, ...line }): Record<string, number> => ({
      s: round((at! - abuseStarted) / 1000, 1),
      ...line
    }))
    table(
      "… a line a second from the abuse's start: the service's CPU, its event loop's delay, what it holds",
      timeline
    )

    // Every message settled: orders stored = valid orders produced, none twice.
    let giveUp: NodeJS.Timeout | undefined
    const exit = await Promise.race([
      produced,
      new Promise<string>((resolve) => (giveUp = setTimeout(() => resolve("timeout"), 120_000)))
    ])
    clearTimeout(giveUp)
    if (exit !== 0) throw new Error(`the producer ended with ${exit}`)
    const valid = /valid\s+(\d+), of which (\d+) duplicates/.exec(producerOutput)
    if (valid === null) throw new Error(`no summary from the producer:\n${producerOutput}`)
    const expected = Number(valid[1]) - Number(valid[2])
    await waitUntil(
      "every valid order is stored",
      async () => (await metric(base, "ingest_orders_stored_total")) >= expected,
      120_000
    ).catch(() => undefined)
    await sleep(2_000) // anything more that would come (it must not)
    const storedCounter = await metric(base, "ingest_orders_stored_total")
    const stored = (await count(url, "SELECT count(*) AS n FROM orders")) - seeded
    const distinct = await count(url, "SELECT count(DISTINCT order_uid) AS n FROM orders")
    const exact = stored === expected && distinct === stored + seeded
    console.log(
      `\noverload: ${expected} distinct valid orders produced (${valid[1]} valid, ${valid[2]} duplicates); ` +
        `PostgreSQL holds ${stored} new ones (service counter ${storedCounter}), ${distinct - seeded} distinct: ` +
        (exact ? "none lost, none stored twice" : "MISMATCH")
    )

    const sheds: Record<string, number> = {}
    for (const [labels, value] of Object.entries(shedAfter)) {
      const delta = value - (shedBefore[labels] ?? 0)
      if (delta > 0) sheds[reasonOf(labels)] = delta
    }
    const row = (name: string, s: typeof quiet, extra: Record<string, string | number>) => ({
      run: name,
      "hit req/s": round(s.hits.rps),
      hit_p50_ms: s.hits.rps > 0 ? round(s.hits.p50Ms, 2) : "—",
      hit_p99_ms: s.hits.rps > 0 ? round(s.hits.p99Ms, 2) : `≥ ${round(s.hits.p99Ms)} (none answered)`,
      hit_errors_or_non2xx: s.hits.non2xx + s.hits.socketErrors,
      "messages sent/s (producer)": round(s.sentPerS),
      "ingest orders/s": round(s.ingestPerS),
      rss_max_mb: s.rssMb,
      fds_max: s.fds,
      accept_queue_max: s.acceptQueue,
      live_clients_max: s.liveClients,
      client_reads_queued_max: s.readsQueued,
      ...extra
    })
    const rows = [
      row("quiet", quiet, {
        "new connections answered": "—",
        "new connection wait p50 / max ms": "—",
        "search req/s": "—",
        search_p99_ms: "—",
        search_non2xx_or_errors: "—"
      }),
      row("abuse", abused, {
        "new connections answered": `${newConnections.answered} of ${newConnections.asked}`,
        "new connection wait p50 / max ms": `${round(newConnections.p50Ms)} / ${round(newConnections.maxMs)}`,
        "search req/s": round(search.rps),
        search_p99_ms: round(search.p99Ms, 2),
        search_non2xx_or_errors: search.non2xx + search.socketErrors
      })
    ]
    table(
      `Overload: ${OVERLOAD_RATE} orders/s in, wrk -c50 on cached orders; abuse: ${liveN} idle live clients, ` +
        `${OVERLOAD_SLOW} slow-header connections, ${OVERLOAD_SEARCH} searching ${OVERLOAD_SHARED} orders' key`,
      rows
    )
    const clientRows = [
      {
        clients: "idle live feed",
        asked: liveFeed.asked,
        answered: Object.entries(liveFeed.answered)
          .map(([k, v]) => `${k}: ${v}`)
          .join(", "),
        "held at the end": held.live,
        "connected, not answered at the end": held.liveWaiting,
        "let go by the service while held": held.liveClosedByService,
        "answered gap": held.gaps,
        "seconds to open": round(liveFeed.openSeconds, 1)
      },
      {
        clients: "slow headers",
        asked: slowAsked,
        answered:
          Object.entries(slow.answered)
            .map(([k, v]) => `${k}: ${v}`)
            .join(", ") || "—",
        "held at the end": held.slow,
        "connected, not answered at the end": "—",
        "let go by the service while held": held.slowClosedByService,
        "answered gap": "—",
        "seconds to open": `${held.slowOpenings} openings`
      }
    ]
    table("… the abusive clients: what they were answered, and held", clientRows)
    table(
      "… shed during the abuse (http_shed_requests_total by reason), in the order first seen",
      Object.keys(sheds).length === 0
        ? [{ reason: "(none)", count: 0, "first seen s after start": "—" }]
        : Object.entries(sheds)
            .sort((a, b) => (sampler!.firstShed.get(a[0]) ?? 1e9) - (sampler!.firstShed.get(b[0]) ?? 1e9))
            .map(([reason, n]) => ({
              reason,
              count: n,
              "first seen s after start": round((sampler!.firstShed.get(reason) ?? Number.NaN) / 1000, 1)
            }))
    )
    const perAddress = OVERLOAD_LIVE_PER_ADDRESS === undefined ? 50 : Number(OVERLOAD_LIVE_PER_ADDRESS)
    if ((sheds["live_clients_per_address"] ?? 0) > 0)
      console.log(
        `Every live client comes from 127.0.0.1: past live.max_clients_per_address (${perAddress}` +
          `${OVERLOAD_LIVE_PER_ADDRESS === undefined ? ", the default" : ""}) they are answered 503 — the bound working. ` +
          `BENCH_OVERLOAD_LIVE_PER_ADDRESS=${liveN} raises it for the run so that live.max_clients is exercised.`
      )
    if (abused.hits.rps > 0 && abused.hits.rps < quiet.hits.rps / 10)
      console.log(
        `hits under abuse: ${round(abused.hits.rps)} req/s against ${round(quiet.hits.rps)} quiet; their p99 is of the few ` +
          `answered (wrk's connections that never got in count no latency), not a recovery of latency`
      )
    // The kernel's listen backlog (511 by default, net.core.somaxconn) is a bound too, below the
    // service: past it a connection is not answered at all, whoever it is from.
    const backlogFull = timeline.find((line) => (line["accept queue"] ?? 0) >= 500)
    if (backlogFull !== undefined)
      console.log(
        `the listen backlog was full (${backlogFull["accept queue"]} connections waiting to be accepted) ` +
          `${backlogFull.s} s after the abuse began: new connections, the measured hits' too, waited in it`
      )
    if (firstShed.length > 0)
      console.log(
        `first of the service's bounds to shed: ${firstShed[0]![0]} (${round(firstShed[0]![1] / 1000, 1)} s in)`
      )
    console.log(
      recoverS === undefined
        ? `not back near the quiet hits 60 s after the abuse stopped (p99 ${round(last.p99, 2)} ms, ${round(last.rps)} req/s; ` +
            `near: p99 ≤ ${round(p99Near, 2)} ms, ≥ ${round(rpsNear)} req/s)`
        : `back near the quiet hits ${round(recoverS, 1)} s after the abuse stopped ` +
            `(near: p99 ≤ ${round(p99Near, 2)} ms, ≥ ${round(rpsNear)} req/s); then RSS ${afterwards.rssMb} MB ` +
            `with ${afterwards.cacheEntries} orders cached (quiet: ${quiet.rssMb} MB, ${quietCacheEntries})`
    )
    const result: Record<string, number> = {
      // -1: nothing was stored in the quiet stretch, no ratio.
      overload_ingest_ratio: quiet.ingestPerS > 0 ? round(abused.ingestPerS / quiet.ingestPerS, 3) : -1,
      overload_hit_p99_ratio: round(abused.hits.p99Ms / quiet.hits.p99Ms, 3),
      // wrk's percentiles are of the requests answered: read the p99 ratio beside this one.
      overload_hit_rps_ratio: round(abused.hits.rps / quiet.hits.rps, 3),
      overload_rss_mb: abused.rssMb,
      overload_max_fds: abused.fds,
      overload_recover_s: round(recoverS ?? 60, 1),
      overload_rss_after_mb: afterwards.rssMb,
      overload_recovered: recoverS === undefined ? 0 : 1,
      overload_orders_exact: exact ? 1 : 0,
      ...Object.fromEntries(Object.entries(sheds).map(([reason, n]) => [`overload_shed_${reason}`, n])),
      overload_live_clients_max: abused.liveClients,
      overload_new_connections_answered_ratio:
        newConnections.asked > 0 ? round(newConnections.answered / newConnections.asked, 3) : -1,
      overload_new_connection_p50_ms: round(newConnections.p50Ms),
      overload_new_connection_max_ms: round(newConnections.maxMs)
    }
    return {
      rows: [...rows, ...clientRows, { sheds, firstShed: Object.fromEntries(firstShed) }],
      result
    }
  } finally {
    abuse?.close()
    sampler?.stop()
    if (producer !== undefined && producer.exitCode === null) producer.kill("SIGTERM")
    await admin.disconnect().catch(() => undefined)
    await stopService(service)
  }
}

// ---------------------------------------------------------------------------------------------

const WORKERS_SECONDS = Number(process.env["BENCH_WORKERS_SECONDS"] ?? 15)
const WORKERS_INGEST_N = Number(process.env["BENCH_WORKERS_INGEST_N"] ?? 100_000)
/** Orders warmed into each worker's cache for the memory measure: more than `cache.max_bytes` holds. */
const WORKERS_CACHE_N = Number(process.env["BENCH_WORKERS_CACHE_N"] ?? 250_000)
/**
 * The core wrk runs on (`taskset -c`): the last one, so that it does not wander onto whichever
 * core a worker has; BENCH_WRK_CPU=none leaves it to the scheduler. On two cores it still shares
 * one with a worker (and PostgreSQL, Kafka): there is no core of its own to give it.
 */
const WRK_CPU =
  process.env["BENCH_WRK_CPU"] === "none"
    ? undefined
    : Number(process.env["BENCH_WRK_CPU"] ?? Math.max(0, cpus().length - 1))

/** `pid` and its children: the primary and its workers, or a single process alone. */
const processTree = (pid: number): Array<number> => [
  pid,
  ...readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        // After the command's closing parenthesis: the state, then the parent's pid.
        return readFileSync(`/proc/${p}/stat`, "utf8").split(") ")[1]!.split(" ")[1] === String(pid)
      } catch {
        return false
      }
    })
    .map(Number)
]

/** The status of one GET on a connection of its own: under workers, each goes to the next worker. */
const statusOnNewConnection = (url: string) =>
  new Promise<number>((resolve) => {
    const req = httpRequest(url, { agent: false }, (res) => {
      res.resume()
      res.on("end", () => resolve(res.statusCode ?? 0))
    })
    req.on("error", () => resolve(0))
    req.end()
  })

/** Every one of `workers` workers answers /metrics, and each is ready (its cache warmed). */
const waitWorkersReady = async (port: number, workers: number) => {
  const base = `http://127.0.0.1:${port}`
  if (workers > 1)
    await waitUntil(
      `${workers} workers answer /metrics`,
      async () => (await metric(base, "workers_scraped")) === workers,
      300_000
    )
  await waitUntil(
    "every worker is ready",
    async () => {
      for (let i = 0; i < 2 * workers; i++)
        if ((await statusOnNewConnection(`${base}/readyz`)) !== 200) return false
      return true
    },
    300_000
  )
}

/** The consumer group on `topic` is stable with members in `workers` processes. */
const waitGroupSpread = async (brokers: string, group: string, workers: number) => {
  const { instanceOf } = await import("../src/kafka/InstanceSpreadAssigner.ts")
  const admin = new Kafka({
    clientId: "bench",
    brokers: brokers.split(","),
    logLevel: logLevel.NOTHING
  }).admin()
  await admin.connect()
  try {
    await waitUntil(
      `the group spreads over ${workers} workers`,
      async () => {
        const [g] = (await admin.describeGroups([group])).groups
        const processes = new Set(g!.members.map((m) => instanceOf(m.memberId, m.memberMetadata)))
        return g!.state === "Stable" && processes.size === workers
      },
      120_000
    )
  } finally {
    await admin.disconnect()
  }
}

/** The service on `url` with `workers` workers, on a topic and group of its own. */
const startWorkers = (
  env: Env,
  url: string,
  port: number,
  workers: number,
  vars: Record<string, string> = {},
  options: { readonly node?: string; readonly flags?: ReadonlyArray<string> } = {}
) =>
  startService(
    {
      DATABASE_URL: url,
      KAFKA_BROKERS: env.kafka.bootstrapServers,
      KAFKA_TOPIC: `bench-workers-${port}`,
      KAFKA_DLQ_TOPIC: `bench-workers-${port}.dlq`,
      KAFKA_GROUP_ID: `bench-workers-${port}`,
      HTTP_PORT: String(port),
      HTTP_WORKERS: String(workers),
      CACHE_WARM_COUNT: "0",
      ...vars
    },
    options
  )

/**
 * GET /order/{uid} with `workers` workers under wrk (50 connections): req/s, latency, the CPU time
 * per request of the service (primary and workers) and of PostgreSQL, and how the service's CPU
 * time split between its workers (how evenly connections were spread).
 */
const measureWorkers = async (
  env: Env,
  url: string,
  paths: ReadonlyArray<string>,
  workers: number,
  name: string,
  vars: Record<string, string>,
  options: {
    readonly node?: string
    readonly flags?: ReadonlyArray<string>
    /** Sent with every request: `connection: close` makes each request a new connection. */
    readonly headers?: Readonly<Record<string, string>>
  } = {}
) => {
  const port = await freePort()
  const { headers, ...how } = options
  const service = startWorkers(env, url, port, workers, vars, how)
  const load = {
    connections: 50,
    name,
    ...(WRK_CPU === undefined ? {} : { cpu: WRK_CPU }),
    ...(headers === undefined ? {} : { headers })
  }
  try {
    await waitWorkersReady(port, workers)
    const base = `http://127.0.0.1:${port}`
    await wrk(base, paths, { ...load, seconds: 2 }) // warm the JIT and connections
    const pids = processTree(service.pid!)
    const before = pids.map((pid) => cpuSecondsOf([pid]))
    const postgres = cpuSecondsOf(postgresPids())
    const r = await wrk(base, paths, { ...load, seconds: WORKERS_SECONDS })
    const used = pids.map((pid, i) => cpuSecondsOf([pid]) - before[i]!)
    const usPerRequest = (seconds: number) => round((seconds * 1e6) / (r.rps * WORKERS_SECONDS), 1)
    const workerShares = (workers > 1 ? used.slice(1) : used).map((s) => round(s / WORKERS_SECONDS, 2))
    return {
      rps: r.rps,
      row: {
        run: name,
        workers,
        "req/s": round(r.rps),
        p50_ms: round(r.p50Ms, 2),
        p99_ms: round(r.p99Ms, 2),
        errors_or_non2xx: r.non2xx + r.socketErrors,
        "service CPU µs/req": usPerRequest(used.reduce((a, b) => a + b, 0)),
        "PostgreSQL CPU µs/req": usPerRequest(cpuSecondsOf(postgresPids()) - postgres),
        "cores used by each worker": workerShares.join(" / ")
      }
    }
  } finally {
    await stopService(service)
  }
}

/**
 * Seconds from the first of `n` orders settled by the service at `base` to the last, once the
 * database at `url` is seen to hold exactly `n` orders.
 */
const timedIngest = async (base: string, url: string, n: number) => {
  await waitUntil("the first order is settled", async () => (await settledCount(base)) > 0, 120_000)
  const started = Date.now()
  await waitUntil("every order is stored", async () => (await settledCount(base)) >= n, 1_800_000)
  const seconds = (Date.now() - started) / 1000
  const counted = await count(url, "SELECT count(*) AS n FROM orders")
  if (counted !== n) throw new Error(`${n} orders were produced, the database holds ${counted}`)
  return seconds
}

/** Ingest of `orders` by `workers` workers, produced once all are in the group: orders/s. */
const ingestWithWorkers = async (env: Env, orders: ReadonlyArray<OrderJson>, workers: number) => {
  const url = await freshDatabase(env)
  const port = await freePort()
  const topic = `bench-workers-${port}`
  await produceAll(env.kafka.bootstrapServers, topic, []) // the topics, empty
  const service = startWorkers(env, url, port, workers)
  try {
    await waitWorkersReady(port, workers)
    await waitGroupSpread(env.kafka.bootstrapServers, topic, workers)
    const base = `http://127.0.0.1:${port}`
    const produced = produceAll(
      env.kafka.bootstrapServers,
      topic,
      orders.map((o) => ({ key: o.order_uid, value: JSON.stringify(o) }))
    )
    const seconds = await timedIngest(base, url, orders.length)
    await produced
    return { perS: orders.length / seconds, seconds }
  } finally {
    await stopService(service)
  }
}

/**
 * What each worker's cache costs: RSS of the primary and of each of two workers with nothing
 * cached, with the cache full at the default bounds (`cache.max_entries` 100,000 is reached
 * first), and full at the default `cache.max_bytes` (256 MiB; entries unbounded).
 */
const workersMemory = async (env: Env) => {
  console.log(`workers: storing ${WORKERS_CACHE_N} orders for the memory measure…`)
  const url = await freshDatabase(env)
  await seedDatabase(url, generateOrders(WORKERS_CACHE_N, 29))
  const rows: Array<Record<string, string | number>> = []
  for (const [cache, vars] of [
    ["empty", { CACHE_WARM_COUNT: "0" }],
    ["full at the default bounds", { CACHE_WARM_COUNT: String(WORKERS_CACHE_N) }],
    [
      "full at cache.max_bytes",
      { CACHE_WARM_COUNT: String(WORKERS_CACHE_N), CACHE_MAX_ENTRIES: String(4 * WORKERS_CACHE_N) }
    ]
  ] as const) {
    const port = await freePort()
    const service = startWorkers(env, url, port, 2, vars)
    try {
      await waitWorkersReady(port, 2)
      await sleep(2000)
      const [primary, ...workers] = processTree(service.pid!).map(rssMbOf)
      const value = await scrape(`http://127.0.0.1:${port}`)
      rows.push({
        cache,
        "entries per worker": round(value("cache_entries") / 2),
        "cache MB per worker": round(value("cache_bytes") / 2 / 1024 / 1024),
        "RSS MB per worker": round(workers.reduce((a, b) => a + b, 0) / workers.length),
        "primary RSS MB": primary!
      })
    } finally {
      await stopService(service)
    }
  }
  return rows
}

/**
 * One machine's cores: cache hits, cache misses and ingest with 1 and 2 workers in one run (Node's
 * round-robin); then, on Node 24, round-robin against `reusePort` for hits; then what each
 * worker's cache costs in memory.
 */
const workers = async (env: Env) => {
  requireWrk()
  const { paths, url } = await seededForHttp(env)
  const rows: Array<Record<string, string | number>> = []
  const result: Record<string, number> = {}
  const hits = { CACHE_WARM_COUNT: String(HTTP_ORDERS), CACHE_MAX_ENTRIES: String(HTTP_ORDERS * 2) }
  const misses = { CACHE_MAX_ENTRIES: "0" }
  for (const [kind, vars] of [
    ["hit", hits],
    ["miss", misses]
  ] as const) {
    for (const n of [1, 2]) {
      const m = await measureWorkers(
        env,
        url,
        paths,
        n,
        `workers ${n}, cache ${kind === "hit" ? "hits" : "misses"}`,
        vars
      )
      rows.push(m.row)
      result[`workers_${n}_${kind}_rps`] = round(m.rps)
    }
    result[`workers_2_${kind}_ratio`] = round(
      result[`workers_2_${kind}_rps`]! / result[`workers_1_${kind}_rps`]!,
      2
    )
  }
  if (WORKERS_INGEST_N > 0) {
    const backlog = generateOrders(WORKERS_INGEST_N, 23)
    for (const n of [1, 2]) {
      console.log(`workers: ingest of ${WORKERS_INGEST_N} orders with ${n} worker(s)…`)
      const { perS, seconds } = await ingestWithWorkers(env, backlog, n)
      rows.push({
        run: `workers ${n}, ingest`,
        workers: n,
        "orders/s": round(perS),
        seconds: round(seconds, 2)
      })
      result[`workers_${n}_ingest_per_s`] = round(perS)
    }
    result["workers_2_ingest_ratio"] = round(
      result["workers_2_ingest_per_s"]! / result["workers_1_ingest_per_s"]!,
      2
    )
  }
  table(
    `Workers: 1 and 2 on ${cpus().length} cores (Node ${process.versions.node}, round-robin), wrk -t1 -c50 ${WRKS_PINNED()}, ${WORKERS_SECONDS} s; ingest of ${WORKERS_INGEST_N} orders produced once every worker is in the group`,
    rows
  )

  // Node 24: each worker listening on its own socket (`reusePort`, bench/reuse-port.mjs) against
  // the primary handing connections round, for hits: wrk's 50 keep-alive connections, then a new
  // connection for every request (`Connection: close`), where the primary accepts each one.
  const node24 = execFileSync(process.execPath, ["scripts/node24.mjs", "node", "-p", "process.execPath"], {
    encoding: "utf8"
  }).trim()
  const spread: Array<Record<string, string | number>> = []
  for (const [clients, headers, key] of [
    ["keep-alive", undefined, "hit"],
    ["a connection per request", { connection: "close" }, "hit_new_connections"]
  ] as const) {
    for (const [how, flags, name] of [
      ["round-robin", [], "round_robin"],
      ["reusePort", ["--import", path.resolve("bench/reuse-port.mjs")], "reuseport"]
    ] as const) {
      const m = await measureWorkers(env, url, paths, 2, `workers 2, Node 24, ${how}, ${clients}`, hits, {
        node: node24,
        flags,
        ...(headers === undefined ? {} : { headers })
      })
      spread.push({ connections: how, clients, ...m.row })
      result[`workers_2_node24_${name}_${key}_rps`] = round(m.rps)
    }
  }
  table(
    `Connections to 2 workers on Node 24 (${node24}): the primary's round-robin or reusePort, cache hits`,
    spread
  )

  const memory = await workersMemory(env)
  table("Memory: each of 2 workers' RSS by what its cache holds, and the primary's", memory)
  const [empty, , full] = memory as [Record<string, number>, Record<string, number>, Record<string, number>]
  result["worker_rss_mb_cache_empty"] = empty["RSS MB per worker"]!
  result["worker_rss_mb_cache_full_max_bytes"] = full["RSS MB per worker"]!
  result["primary_rss_mb"] = empty["primary RSS MB"]!
  console.log(
    `2 workers / 1: hits ${result["workers_2_hit_ratio"]}, misses ${result["workers_2_miss_ratio"]}, ingest ${result["workers_2_ingest_ratio"]}`
  )
  return { rows: [...rows, ...spread, ...memory], result }
}

/** What wrk was pinned to, for the table's title. */
const WRKS_PINNED = () => (WRK_CPU === undefined ? "(not pinned)" : `(pinned to core ${WRK_CPU})`)

// ---------------------------------------------------------------------------------------------

const TRACING_N = Number(process.env["BENCH_TRACING_N"] ?? 100_000)
const TRACING_SECONDS = Number(process.env["BENCH_TRACING_SECONDS"] ?? 10)

/**
 * A collector that takes every OTLP/HTTP export (`POST /v1/traces`) and throws it away, counting
 * the spans (the `"spanId"` keys of OTLP/JSON) so that the table shows how many were sent.
 */
const discardingCollector = async () => {
  let spans = 0
  const server = createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8")
      for (let at = body.indexOf('"spanId"'); at !== -1; at = body.indexOf('"spanId"', at + 1)) spans++
      res.writeHead(200, { "content-type": "application/json" })
      res.end("{}")
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    /** Spans received since the last call. */
    take: () => {
      const n = spans
      spans = 0
      return n
    },
    close: () => new Promise((resolve) => server.close(resolve))
  }
}

/**
 * What tracing costs, measured in one run: ingest of a backlog of TRACING_N orders (each message
 * with a `traceparent`, as `npm run produce` sends them, when traces are on) and cache hits under
 * wrk (requests without a `traceparent`: each still gets a server span, a root), with traces off
 * and then on, every span sampled and sent to a collector on this machine that discards them.
 */
const tracing = async (env: Env) => {
  requireWrk()
  const collector = await discardingCollector()
  const { paths, url } = await seededForHttp(env)
  const backlog = generateOrders(TRACING_N, 29)
  const rows: Array<Record<string, string | number>> = []
  const result: Record<string, number> = {}
  try {
    for (const on of [false, true]) {
      const traces = on ? "on" : "off"
      const vars = {
        KAFKA_BROKERS: env.kafka.bootstrapServers,
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "",
        OTEL_EXPORTER_OTLP_ENDPOINT: on ? collector.endpoint : "",
        OTEL_TRACES_SAMPLER: "always_on",
        OTEL_SDK_DISABLED: "false",
        OTEL_TRACES_EXPORTER: "otlp"
      }

      console.log(`tracing ${traces}: producing ${TRACING_N} orders…`)
      const topic = `bench-tracing-${traces}-${Date.now()}`
      await produceAll(
        env.kafka.bootstrapServers,
        topic,
        backlog.map((o) => ({ key: o.order_uid, value: JSON.stringify(o) })),
        { traceparent: on }
      )
      const ingestUrl = await freshDatabase(env)
      const ingestPort = await freePort()
      collector.take()
      const ingesting = startOnTopic(ingestUrl, ingestPort, topic, vars)
      try {
        const base = `http://127.0.0.1:${ingestPort}`
        const seconds = await timedIngest(base, ingestUrl, TRACING_N)
        result[`tracing_${traces}_ingest_orders_per_s`] = round(TRACING_N / seconds)
        rows.push({
          run: `ingest of ${TRACING_N}, traces ${traces}`,
          "orders/s or req/s": round(TRACING_N / seconds),
          seconds: round(seconds, 2),
          "spans received": collector.take()
        })
      } finally {
        await stopService(ingesting)
      }

      const port = await freePort()
      const serving = startOnTopic(url, port, `bench-tracing-http-${port}`, {
        ...vars,
        CACHE_WARM_COUNT: String(HTTP_ORDERS),
        CACHE_MAX_ENTRIES: String(HTTP_ORDERS * 2)
      })
      try {
        await waitReady(port)
        const base = `http://127.0.0.1:${port}`
        const name = `tracing ${traces}, cache hits`
        await wrk(base, paths, { connections: 50, seconds: 2, name }) // warm the JIT and connections
        collector.take()
        const r = await wrk(base, paths, { connections: 50, seconds: TRACING_SECONDS, name })
        result[`tracing_${traces}_hit_rps`] = round(r.rps)
        rows.push({
          run: `cache hits, traces ${traces}`,
          "orders/s or req/s": round(r.rps),
          seconds: TRACING_SECONDS,
          p99_ms: round(r.p99Ms, 2),
          errors_or_non2xx: r.non2xx + r.socketErrors,
          "spans received": collector.take()
        })
      } finally {
        await stopService(serving)
      }
    }
  } finally {
    await collector.close()
  }
  result["tracing_ingest_ratio"] = round(
    result["tracing_on_ingest_orders_per_s"]! / result["tracing_off_ingest_orders_per_s"]!,
    3
  )
  result["tracing_hit_ratio"] = round(result["tracing_on_hit_rps"]! / result["tracing_off_hit_rps"]!, 3)
  table(
    `Tracing off and on (OTEL_TRACES_SAMPLER=always_on, a collector on this machine that discards): ingest of a backlog of ${TRACING_N}; GET /order/{uid} cache hits, wrk -t1 -c50, ${TRACING_SECONDS} s`,
    rows
  )
  console.log(`on / off: ingest ${result["tracing_ingest_ratio"]}, cache hits ${result["tracing_hit_ratio"]}`)
  return { rows, result }
}

// ---------------------------------------------------------------------------------------------

const parts = {
  ingest,
  latency,
  http,
  mixed,
  startup,
  dlq,
  search,
  live,
  overload,
  workers,
  tracing
} as const
const wanted = process.argv.slice(2).filter((a) => a in parts) as Array<keyof typeof parts>
const run = wanted.length > 0 ? wanted : (Object.keys(parts) as Array<keyof typeof parts>)

execFileSync("npm", ["run", "--silent", "build"], { stdio: "inherit" })
const servers = await acquire(
  Effect.all([EmbeddedPostgres.make(), LocalKafka.make({ brokers: 1, numPartitions: 3 })], {
    concurrency: "unbounded"
  })
)
const env: Env = { pg: servers.value[0], kafka: servers.value[1] }
const figures: Record<string, number> = {}
const tables: Record<string, unknown> = {}
try {
  for (const part of run) {
    const { rows, result } = await parts[part](env)
    tables[part] = rows
    Object.assign(figures, result)
  }
} finally {
  await servers.release()
}
const pkg = (name: string) =>
  JSON.parse(readFileSync(`node_modules/${name}/package.json`, "utf8")).version as string
const report = {
  when: new Date().toISOString(),
  machine: { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version },
  versions: Object.fromEntries(
    ["effect", "@effect/platform", "@effect/sql-pg", "kafkajs", "pg"].map((n) => [n, pkg(n)])
  ),
  tables,
  figures
}
mkdirSync("bench/results", { recursive: true })
const file = `bench/results/${report.when.replace(/[:.]/g, "-")}.json`
writeFileSync(file, JSON.stringify(report, null, 2))
console.log(`\n${JSON.stringify(figures, null, 2)}\nwritten to ${file}`)
