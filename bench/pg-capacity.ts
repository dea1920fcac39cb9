/**
 * What one PostgreSQL takes, for the capacity model (docs/capacity.md): an embedded server started
 * as the benchmark starts it, a database migrated by the service's own migrations, then
 *
 *   1. 100,000 generated orders stored through `OrderRepository.insertBatch` (the service's write
 *      path, 500 orders a transaction, one connection): orders/s, CPU and WAL per order;
 *   2. what they take on disk, per table and index: bytes per order;
 *   3. `pgbench` sending the same transaction as the service (its five statements, 500 orders of
 *      generated JSON, keys made unique per batch), on 1 and on 2 connections;
 *   4. `pgbench` reading orders by primary key and searching, as the service's statements do, one
 *      key a statement and eight (the service batches concurrent reads into one statement), and
 *      the live feed's read of the 200 orders a notification names.
 *
 * Beside each run, the CPU time of PostgreSQL's processes (this server's only) per operation: on a
 * machine shared with the load generator, that, not the throughput, says what a core of
 * PostgreSQL takes. Prints tables and writes them to bench/results/.
 *
 *   flock -s /tmp/machine.lock node --import tsx bench/pg-capacity.ts
 *   CAPACITY_SECONDS=20 CAPACITY_ORDERS=100000 …   (each pgbench run; the orders stored in step 1)
 */
import { execFileSync, spawn } from "node:child_process"
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { cpus, loadavg, tmpdir } from "node:os"
import path from "node:path"
import { Effect, Layer, Redacted, Schema } from "effect"
import pg from "pg"
import * as Database from "../src/db/Database.ts"
import * as EmbeddedPostgres from "../src/local/EmbeddedPostgres.ts"
import { Order } from "../src/orders/Order.ts"
import { orderToJsonString } from "../src/orders/OrderDecoder.ts"
import {
  headerRowOf,
  notifyPayloads,
  ORDERS_STORED_CHANNEL,
  OrderRepository
} from "../src/orders/OrderRepository.ts"
import { generateOrders } from "../src/tools/OrderGenerator.ts"
import { acquire } from "../test/support/scoped.ts"

const SECONDS = Number(process.env["CAPACITY_SECONDS"] ?? 20)
const ORDERS = Number(process.env["CAPACITY_ORDERS"] ?? 100_000)
const BATCH = 500
const PGBENCH = process.env["PGBENCH"] ?? "/usr/bin/pgbench"

const round = (n: number, digits = 0) => Math.round(n * 10 ** digits) / 10 ** digits
const CLOCK_TICKS = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100

// ---------------------------------------------------------------------------------------------
// CPU time of this server's processes (the postmaster, its live children, and the children that
// have ended, in the postmaster's cutime): other PostgreSQL servers on the machine do not count.

const statFields = (pid: number): Array<string> | undefined => {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  } catch {
    return undefined
  }
}

const cpuSeconds = (pid: number, withChildren: boolean): number => {
  const f = statFields(pid)
  if (f === undefined) return 0
  const own = Number(f[11]) + Number(f[12])
  return (withChildren ? own + Number(f[13]) + Number(f[14]) : own) / CLOCK_TICKS
}

const postgresCpu = (postmaster: number): number => {
  let sum = cpuSeconds(postmaster, true)
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const f = statFields(Number(entry))
    if (f !== undefined && f[1] === String(postmaster)) sum += cpuSeconds(Number(entry), false)
  }
  return sum
}

const machineTicks = () => {
  const ticks = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number)
  const total = ticks.reduce((a, b) => a + b, 0)
  return { busy: total - ticks[3]! - ticks[4]!, total }
}

/** From now on: wall seconds, PostgreSQL's CPU seconds and the machine's busy share. */
const measureFrom = (postmaster: number) => {
  const t0 = process.hrtime.bigint()
  const pg0 = postgresCpu(postmaster)
  const m0 = machineTicks()
  return () => {
    const m1 = machineTicks()
    return {
      seconds: Number(process.hrtime.bigint() - t0) / 1e9,
      postgresCpu: postgresCpu(postmaster) - pg0,
      machineBusyPct: round((100 * (m1.busy - m0.busy)) / (m1.total - m0.total)),
      load1: round(loadavg()[0]!, 1)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// pgbench

interface PgbenchResult {
  readonly tps: number
  readonly latencyMs: number
  readonly transactions: number
  readonly failed: number
  /** pgbench's own CPU seconds: the load generator's share of the two cores. */
  readonly clientCpu: number
}

const pgbench = (url: string, script: string, clients: number, mode: "simple" | "prepared") =>
  new Promise<PgbenchResult>((resolve, reject) => {
    const child = spawn(
      PGBENCH,
      [
        "-n",
        "-M",
        mode,
        "-c",
        String(clients),
        "-j",
        String(Math.min(clients, 2)),
        "-T",
        String(SECONDS)
      ].concat(["-f", script, url]),
      { stdio: ["ignore", "pipe", "pipe"] }
    )
    let out = ""
    child.stdout.on("data", (d: Buffer) => (out += d.toString()))
    child.stderr.on("data", (d: Buffer) => (out += d.toString()))
    let clientCpu = 0
    const sampler = setInterval(() => {
      if (child.pid !== undefined) clientCpu = Math.max(clientCpu, cpuSeconds(child.pid, false))
    }, 200)
    child.on("error", reject)
    child.on("exit", (code) => {
      clearInterval(sampler)
      const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(out)
      if (code !== 0 || tps === null)
        return reject(new Error(`pgbench failed (${code}):\n${out.slice(-2000)}`))
      resolve({
        tps: Number(tps[1]),
        latencyMs: Number(/latency average = ([\d.]+) ms/.exec(out)?.[1] ?? NaN),
        transactions: Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? NaN),
        failed: Number(/number of failed transactions: (\d+)/.exec(out)?.[1] ?? 0),
        clientCpu
      })
    })
  })

/** A SQL string literal (standard_conforming_strings is on: only quotes are doubled). */
const literal = (text: string) => `'${text.replaceAll("'", "''")}'`

// The keys of synthetic order `n` (1..500) of batch `b`: unique, of the generated orders' lengths.
// `b` and `n` are SQL expressions (a sequence's value and a row's position, or pgbench variables).
const keysOf = (b: string, n: string) => ({
  uid: `lpad((${b})::text, 10, '0') || lpad((${n})::text, 22, '0')`,
  track: `'WB' || lpad((${b})::text, 7, '0') || lpad((${n})::text, 5, '0')`,
  customer: `'cu' || (${b}) || 'x' || (${n})`,
  phone: `'+7 ' || ((${b}) * 1000 + (${n}))`,
  email: `'u' || (${b}) || '.' || (${n}) || '@example.com'`,
  rid: (position: string) =>
    `'r' || lpad((${b})::text, 10, '0') || lpad((${n})::text, 5, '0') || (${position})`
})

/**
 * One transaction as `OrderRepository.insertBatch` sends it for a batch of new orders: the orders
 * with their documents, the deliveries, the payments, the items (each one statement whose rows
 * arrive as JSON), the live feed's notifications. The service binds the JSON as parameters; here
 * it is in the statement's text (pgbench has no file parameters), and every key is made unique per
 * batch from a sequence.
 */
const insertScript = (orders: ReadonlyArray<Order>): string => {
  const b = "currval('capacity_batch')"
  const headers = orders.map((o, i) => ({ n: i + 1, ...headerRowOf(o, "0".repeat(64)) }))
  const documents = orders.map((o) => orderToJsonString(o)).join("\u001e")
  const deliveries = orders.map((o, i) => ({ n: i + 1, order_uid: o.order_uid, ...o.delivery }))
  const payments = orders.map((o, i) => ({ n: i + 1, order_uid: o.order_uid, ...o.payment }))
  const items = orders.flatMap((o, i) =>
    o.items.map((item, position) => ({ n: i + 1, order_uid: o.order_uid, position, ...item }))
  )
  const k = keysOf(b, "x.n")
  return `BEGIN;
SELECT nextval('capacity_batch');
INSERT INTO orders (order_uid, track_number, entry, locale, internal_signature, customer_id,
                    delivery_service, shardkey, sm_id, date_created, created_at, oof_shard, amount,
                    currency, item_count, content_hash, document)
SELECT ${k.uid}, ${k.track}, entry, locale, internal_signature, ${k.customer},
       delivery_service, shardkey, sm_id, date_created, date_created::timestamptz, oof_shard, amount,
       currency, item_count, decode(content_hash, 'hex'), document
FROM ROWS FROM (
  json_to_recordset(${literal(JSON.stringify(headers))}::json) AS (
    n integer, order_uid text, track_number text, entry text, locale text, internal_signature text,
    customer_id text, delivery_service text, shardkey text, sm_id bigint, date_created text,
    oof_shard text, amount bigint, currency text, item_count integer, content_hash text),
  unnest(string_to_array(${literal(documents)}::text, chr(30)))
) AS x(n, order_uid, track_number, entry, locale, internal_signature, customer_id, delivery_service,
       shardkey, sm_id, date_created, oof_shard, amount, currency, item_count, content_hash, document)
ON CONFLICT (order_uid) DO NOTHING
RETURNING order_uid;
INSERT INTO deliveries (order_uid, name, phone, zip, city, address, region, email)
SELECT ${k.uid}, name, ${k.phone}, zip, city, address, region, ${k.email}
FROM json_to_recordset(${literal(JSON.stringify(deliveries))}::json) AS x(
  n integer, order_uid text, name text, phone text, zip text, city text, address text, region text, email text);
INSERT INTO payments (order_uid, transaction, request_id, currency, provider, amount, payment_dt,
                      bank, delivery_cost, goods_total, custom_fee)
SELECT ${k.uid}, ${k.uid}, request_id, currency, provider, amount, payment_dt,
       bank, delivery_cost, goods_total, custom_fee
FROM json_to_recordset(${literal(JSON.stringify(payments))}::json) AS x(
  n integer, order_uid text, transaction text, request_id text, currency text, provider text, amount bigint,
  payment_dt bigint, bank text, delivery_cost bigint, goods_total bigint, custom_fee bigint);
INSERT INTO items (order_uid, position, chrt_id, track_number, price, rid, name, sale, size,
                   total_price, nm_id, brand, status)
SELECT ${k.uid}, position, chrt_id, ${k.track}, price, ${k.rid("x.position")}, name, sale, size,
       total_price, nm_id, brand, status
FROM json_to_recordset(${literal(JSON.stringify(items))}::json) AS x(
  n integer, order_uid text, position integer, chrt_id bigint, track_number text, price bigint, rid text,
  name text, sale integer, size text, total_price bigint, nm_id bigint, brand text, status bigint);
SELECT pg_notify(${literal(ORDERS_STORED_CHANNEL)}, payload)
FROM unnest(ARRAY[${notifyPayloads(orders.map((o) => o.order_uid))
    .map(literal)
    .join(", ")}]::text[]) AS payload;
COMMIT;
`
}

/** pgbench lines choosing `keys` synthetic orders at random of the `batches` stored. */
const chooseKeys = (keys: number, batches: number, withKind: boolean) =>
  Array.from({ length: keys }, (_, i) =>
    [
      `\\set b${i} random(1, ${batches})`,
      `\\set n${i} random(1, ${BATCH})`,
      ...(withKind ? [`\\set k${i} random(0, 6)`] : [])
    ].join("\n")
  ).join("\n")

const keyVars = (i: number) => keysOf(`:b${i}::bigint`, `:n${i}::bigint`)

/** A cache miss's read (`OrderRepository`'s `findJsonByUids`): `keys` orders by primary key. */
const readScript = (keys: number, batches: number) => `${chooseKeys(keys, batches, false)}
SELECT o.order_uid, o.document, translate(encode(o.content_hash, 'base64'), '+/=', '-_') AS digest
FROM orders o WHERE o.order_uid = ANY(ARRAY[${Array.from({ length: keys }, (_, i) => keyVars(i).uid).join(", ")}]::text[]);
`

/** Orders a live-feed notification names, about: its payload is cut at 7,000 bytes of uids. */
const NOTIFIED = 200

/**
 * What every instance reads for each notification of stored orders (`OrderRepository`'s
 * `feedEntries`): the summaries of the orders it names, consecutive orders of one batch. The
 * service sends the uids as a JSON array; here they are made by `generate_series`.
 */
const feedScript = (_keys: number, batches: number) => `\\set b random(1, ${batches})
\\set s random(0, ${BATCH - NOTIFIED})
SELECT o.order_uid, o.date_created, o.customer_id, o.amount, o.currency, o.item_count,
       to_char(created_at AT TIME ZONE 'UTC', ${CREATED_AT_FORMAT}) AS created_at, o.feed_seq
FROM orders o
WHERE o.order_uid IN (SELECT lpad((:b::bigint)::text, 10, '0') || lpad(g::text, 22, '0')
                      FROM generate_series(:s::int + 1, :s::int + ${NOTIFIED}) AS g)
  AND o.feed_seq IS NOT NULL
ORDER BY o.feed_seq;
`

/** The service's cursor format, its colons spelled apart: pgbench takes `:MI` for a variable. */
const CREATED_AT_FORMAT = `'YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.US"Z"'`

/**
 * Searches by `q` as `OrderRepository`'s `SEARCH_BY_KEYS` makes them (its statement, with the keys
 * computed in place of its array parameter): `keys` searches, each a key of one of the seven kinds
 * at random, a page of 20.
 */
const searchScript = (keys: number, batches: number) => {
  const key = (i: number) => {
    const k = keyVars(i)
    return `(CASE :k${i}::int WHEN 0 THEN ${k.uid} WHEN 1 THEN ${k.track} WHEN 2 THEN ${k.customer}
      WHEN 3 THEN ${k.phone} WHEN 4 THEN ${k.email} WHEN 5 THEN ${k.uid} ELSE ${k.rid("0")} END)`
  }
  const nulls = (type: string) => `ARRAY[${Array(keys).fill("NULL").join(", ")}]::${type}[]`
  return `${chooseKeys(keys, batches, true)}
WITH qs AS MATERIALIZED (SELECT ARRAY[${Array.from({ length: keys }, (_, i) => key(i)).join(", ")}]::text[] AS qs),
m AS MATERIALIZED (SELECT q, order_uid FROM order_search_matches((SELECT qs FROM qs)))
SELECT k.search, s.*
FROM unnest((SELECT qs FROM qs), ${nulls("timestamptz")}, ${nulls("timestamptz")}, ${nulls("timestamptz")},
            ${nulls("text")}, ARRAY[${Array(keys).fill("21").join(", ")}]::int[])
  WITH ORDINALITY AS k(q, since, until, after_at, after_uid, lim, search)
CROSS JOIN LATERAL (
  SELECT o.order_uid, o.date_created, o.customer_id, o.amount, o.currency, o.item_count,
         to_char(created_at AT TIME ZONE 'UTC', ${CREATED_AT_FORMAT}) AS created_at
  FROM orders o
  WHERE o.order_uid IN (SELECT m.order_uid FROM m WHERE m.q = k.q)
    AND (k.since IS NULL OR o.created_at >= k.since)
    AND (k.until IS NULL OR o.created_at < k.until)
    AND (k.after_at IS NULL OR (o.created_at, o.order_uid) < (k.after_at, k.after_uid))
  ORDER BY o.created_at DESC, o.order_uid DESC
  LIMIT k.lim) s;
`
}

// ---------------------------------------------------------------------------------------------

const servers = await acquire(EmbeddedPostgres.make())
const server = servers.value
const postmaster = Number(readFileSync(path.join(server.dataDir, "postmaster.pid"), "utf8").split("\n")[0])
const tables: Record<string, Array<Record<string, unknown>>> = {}
const figures: Record<string, number> = {}
const work = path.join(tmpdir(), `pg-capacity-${process.pid}`)
mkdirSync(work, { recursive: true })

try {
  const admin = new pg.Client({ connectionString: server.url() })
  await admin.connect()
  await admin.query(`CREATE DATABASE capacity`)
  await admin.end()
  const url = server.url("capacity")
  const client = new pg.Client({ connectionString: url })
  // Ended by the server's stop when a step fails: that step's error is the one to report.
  client.on("error", () => {})
  await client.connect()
  const one = async <A>(text: string): Promise<A> => (await client.query(text)).rows[0] as A
  const version = (await one<{ server_version: string }>("SHOW server_version")).server_version
  const settings = (
    await client.query<{ name: string; value: string }>(
      "SELECT name, current_setting(name) AS value FROM pg_settings WHERE name IN ('shared_buffers', 'fsync', 'synchronous_commit', 'wal_level', 'max_wal_size')"
    )
  ).rows.map((r) => `${r.name}=${r.value}`)
  console.log(`PostgreSQL ${version} (${settings.join(", ")}), ${cpus().length} cores ${cpus()[0]?.model}`)

  // 1. The service's write path.
  console.log(`generating ${ORDERS} orders…`)
  const decode = Schema.decodeUnknownSync(Order)
  const orders = generateOrders(ORDERS, 31).map((o) => decode(o))
  const walAt = async () => (await one<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn")).lsn
  const walSince = async (lsn: string) =>
    Number((await one<{ b: string }>(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '${lsn}') AS b`)).b)
  const layer = OrderRepository.Default.pipe(Layer.provide(Database.layer({ url: Redacted.make(url) })))
  // Migrate first (an empty batch), so that the timing holds only the writes.
  await Effect.runPromise(
    Effect.provide(OrderRepository.pipe(Effect.andThen((r) => r.insertBatch([]))), layer)
  )
  const wal0 = await walAt()
  const node0 = process.cpuUsage()
  const stop = measureFrom(postmaster)
  await Effect.runPromise(
    Effect.provide(
      Effect.gen(function* () {
        const repo = yield* OrderRepository
        for (let i = 0; i < orders.length; i += BATCH) yield* repo.insertBatch(orders.slice(i, i + BATCH))
      }),
      layer
    )
  )
  const seeded = stop()
  const nodeCpu = (process.cpuUsage(node0).user + process.cpuUsage(node0).system) / 1e6
  const walPerOrder = (await walSince(wal0)) / ORDERS
  tables["service write path"] = [
    {
      run: `OrderRepository.insertBatch, ${BATCH} a transaction, 1 connection`,
      orders: ORDERS,
      seconds: round(seeded.seconds, 2),
      "orders/s": round(ORDERS / seeded.seconds),
      "PostgreSQL CPU µs/order": round((seeded.postgresCpu * 1e6) / ORDERS, 1),
      "Node CPU µs/order": round((nodeCpu * 1e6) / ORDERS, 1),
      "WAL bytes/order": round(walPerOrder),
      "machine busy %": seeded.machineBusyPct,
      load1: seeded.load1
    }
  ]
  figures["pg_service_path_orders_per_s"] = round(ORDERS / seeded.seconds)
  figures["pg_insert_cpu_us_per_order_service_path"] = round((seeded.postgresCpu * 1e6) / ORDERS, 1)
  figures["pg_wal_bytes_per_order"] = round(walPerOrder)

  // 2. On disk, after VACUUM (ANALYZE), as autovacuum leaves it.
  await client.query("VACUUM (ANALYZE) orders, deliveries, payments, items")
  const sizes = (
    await client.query<{ relname: string; heap: string; toast: string; indexes: string; total: string }>(`
      SELECT c.relname,
             pg_relation_size(c.oid) AS heap,
             coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) AS toast,
             pg_indexes_size(c.oid) AS indexes,
             pg_total_relation_size(c.oid) AS total
      FROM pg_class c WHERE c.relname IN ('orders', 'deliveries', 'payments', 'items') ORDER BY c.relname`)
  ).rows
  const counts = await one<{ orders: string; items: string; doc: string }>(
    "SELECT (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM items) AS items, (SELECT avg(octet_length(document)) FROM orders) AS doc"
  )
  const n = Number(counts.orders)
  tables["bytes per order"] = sizes.map((r) => ({
    table: r.relname,
    "heap B/order": round(Number(r.heap) / n),
    "TOAST B/order": round(Number(r.toast) / n),
    "indexes B/order": round(Number(r.indexes) / n),
    "total B/order": round(Number(r.total) / n),
    "total MB": round(Number(r.total) / 2 ** 20, 1)
  }))
  const indexes = (
    await client.query<{ index: string; am: string; bytes: string }>(`
      SELECT i.indexrelid::regclass::text AS index, am.amname AS am, pg_relation_size(i.indexrelid) AS bytes
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
      WHERE i.indrelid::regclass::text IN ('orders', 'deliveries', 'payments', 'items') ORDER BY 3 DESC`)
  ).rows
  tables["indexes"] = indexes.map((r) => ({
    index: r.index,
    kind: r.am,
    "B/order": round(Number(r.bytes) / n)
  }))
  const total = sizes.reduce((s, r) => s + Number(r.total), 0)
  const indexTotal = sizes.reduce((s, r) => s + Number(r.indexes), 0)
  figures["pg_bytes_per_order"] = round(total / n)
  figures["pg_index_bytes_per_order"] = round(indexTotal / n)
  figures["pg_items_per_order"] = round(Number(counts.items) / n, 2)
  figures["pg_document_bytes_per_order"] = round(Number(counts.doc))
  console.table(tables["service write path"])
  console.table(tables["bytes per order"])
  console.table(tables["indexes"])
  console.log(
    `${n} orders, ${counts.items} items: ${round(total / n)} bytes an order, of which indexes ${round(indexTotal / n)}`
  )

  // 3. The same transaction from pgbench.
  await client.query("CREATE SEQUENCE capacity_batch")
  const insertFile = path.join(work, "insert.sql")
  writeFileSync(insertFile, insertScript(orders.slice(0, BATCH)))
  const insertRows: Array<Record<string, unknown>> = []
  for (const clients of [1, 2]) {
    const wal = await walAt()
    const stopRun = measureFrom(postmaster)
    const r = await pgbench(url, insertFile, clients, "simple")
    await new Promise((done) => setTimeout(done, 300)) // the backends' exit, into the postmaster's cutime
    const m = stopRun()
    const stored = r.transactions * BATCH
    insertRows.push({
      run: `pgbench, ${BATCH} orders a transaction, ${clients} connection${clients > 1 ? "s" : ""}`,
      "orders/s": round(r.tps * BATCH),
      "ms a transaction": round(r.latencyMs, 1),
      "PostgreSQL CPU µs/order": round((m.postgresCpu * 1e6) / stored, 1),
      "orders/s per PostgreSQL core": round(stored / m.postgresCpu),
      "WAL bytes/order": round((await walSince(wal)) / stored),
      "pgbench CPU %": round((100 * r.clientCpu) / m.seconds),
      "machine busy %": m.machineBusyPct,
      load1: m.load1,
      failed: r.failed
    })
    figures[`pg_insert_orders_per_s_${clients}c`] = round(r.tps * BATCH)
    figures[`pg_insert_cpu_us_per_order_${clients}c`] = round((m.postgresCpu * 1e6) / stored, 1)
  }
  tables["inserts"] = insertRows
  console.table(insertRows)
  const batches = Number(
    (await one<{ last_value: string }>("SELECT last_value FROM capacity_batch")).last_value
  )
  const synthetic = Number(
    (await one<{ n: string }>("SELECT count(*) AS n FROM orders WHERE order_uid ~ '^[0-9]{32}$'")).n
  )
  if (synthetic !== batches * BATCH) throw new Error(`${batches} batches, ${synthetic} synthetic orders`)
  await client.query("VACUUM (ANALYZE) orders, deliveries, payments, items")
  const after = await one<{ total: string; n: string; db: string }>(`
    SELECT (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c
             WHERE c.relname IN ('orders', 'deliveries', 'payments', 'items')) AS total,
           (SELECT count(*) FROM orders) AS n, pg_database_size(current_database()) AS db`)
  figures["pg_orders_after_inserts"] = Number(after.n)
  figures["pg_bytes_per_order_after_inserts"] = round(Number(after.total) / Number(after.n))
  figures["pg_database_mb_after_inserts"] = round(Number(after.db) / 2 ** 20)

  // Each key found once: the scripts read what they mean to.
  const probe = async (sql: string, expected = 1) => {
    const text = sql
      .split("\n")
      .filter((l) => !l.startsWith("\\set"))
      .join("\n")
      // pgbench's variables (:b0, :n0, :s), not casts (::bigint)
      .replace(/(?<!:):b\d*(?![a-z])/g, String(Math.max(1, batches - 1)))
      .replace(/(?<!:):n\d*(?![a-z])/g, "7")
      .replace(/(?<!:):s(?![a-z])/g, "0")
    for (const kind of [0, 1, 2, 3, 4, 5, 6]) {
      const rows = (await client.query(text.replace(/(?<!:):k\d+/g, String(kind)))).rows.length
      if (rows !== expected) throw new Error(`a probe of kind ${kind} found ${rows} rows:\n${text}`)
    }
  }
  await probe(readScript(1, batches))
  await probe(searchScript(1, batches))
  await probe(feedScript(NOTIFIED, batches), NOTIFIED)

  // 4. Reads by primary key and searches.
  const readRows: Array<Record<string, unknown>> = []
  const reads = [
    ["read by primary key", readScript, 1],
    ["read by primary key", readScript, 8],
    ["search", searchScript, 1],
    ["search", searchScript, 8],
    ["live feed read", feedScript, NOTIFIED]
  ] as const
  for (const [what, script, keys] of reads) {
    const file = path.join(work, `${what.replaceAll(" ", "-")}-${keys}.sql`)
    writeFileSync(file, script(keys, batches))
    const stopRun = measureFrom(postmaster)
    const r = await pgbench(url, file, 8, "prepared")
    await new Promise((done) => setTimeout(done, 300))
    const m = stopRun()
    const done = r.transactions * keys
    readRows.push({
      run: `${what}, ${keys} key${keys > 1 ? "s" : ""} a statement, 8 connections`,
      "reads/s": round(r.tps * keys),
      "ms a statement": round(r.latencyMs, 2),
      "PostgreSQL CPU µs/read": round((m.postgresCpu * 1e6) / done, 1),
      "reads/s per PostgreSQL core": round(done / m.postgresCpu),
      "pgbench CPU %": round((100 * r.clientCpu) / m.seconds),
      "machine busy %": m.machineBusyPct,
      load1: m.load1,
      failed: r.failed
    })
    const key = `pg_${{ search: "search", "read by primary key": "pk_read", "live feed read": "feed_read" }[what]}_${keys}k`
    figures[`${key}_per_s`] = round(r.tps * keys)
    figures[`${key}_cpu_us`] = round((m.postgresCpu * 1e6) / done, 1)
  }
  tables["reads"] = readRows
  console.table(readRows)
  await client.end()

  const report = {
    when: new Date().toISOString(),
    machine: { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version },
    versions: { postgresql: version, pgbench: PGBENCH, settings },
    tables,
    figures
  }
  mkdirSync("bench/results", { recursive: true })
  const file = `bench/results/${report.when.replace(/[:.]/g, "-")}-pg-capacity.json`
  writeFileSync(file, JSON.stringify(report, null, 2))
  console.log(`\n${JSON.stringify(figures, null, 2)}\nwritten to ${file}`)
} catch (error) {
  console.error(error)
  process.exitCode = 1
} finally {
  rmSync(work, { recursive: true, force: true })
  await servers.release()
}
