import { createHash } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, LogLevel, Redacted, Schema } from "effect"
import { PartitionAssigners, type PartitionAssigner } from "kafkajs"
import pg from "pg"
import * as App from "../../src/App.ts"
import { KafkaClient } from "../../src/kafka/KafkaClient.ts"
import { IngestStatus } from "../../src/ingest/IngestStatus.ts"
import * as Database from "../../src/db/Database.ts"
import * as EmbeddedPostgres from "../../src/local/EmbeddedPostgres.ts"
import { InvalidQuery, OrderNotFound } from "../../src/http/Api.ts"
import { Order, type OrderJson } from "../../src/orders/Order.ts"
import { OrderRepository } from "../../src/orders/OrderRepository.ts"
import { OrderCache } from "../../src/cache/OrderCache.ts"
import { sampleOrders } from "../support/arbitraries.ts"
import * as Logging from "../../src/observability/Logging.ts"
import { scrape } from "../../src/observability/Prometheus.ts"
import { apiClient, baseUrl, get, httpStack } from "../support/app.ts"
import { createTestDatabase, TestDatabase } from "../support/database.ts"
import { readFixture, readFixtureJson } from "../support/fixtures.ts"
import {
  createTopics,
  eventually,
  freshTopics,
  kafkaFor,
  offsets,
  produce,
  testConfig,
  type Outgoing,
  type TestTopics
} from "../support/kafka.ts"
import { deltaOf, metricValue, parseMetrics, scrapeMetrics, type Series } from "../support/metrics.ts"

const toOrder = Schema.decodeUnknownSync(Order)
const model = readFixtureJson("valid/model.json") as OrderJson
const unicode = readFixtureJson("valid/multi-item-unicode.json") as OrderJson
const awkward = { ...model, order_uid: "a b/ç?#%&=+ü", payment: { ...model.payment, transaction: "awkward" } }
const many = sampleOrders(45, 31, "page")

const seed = Effect.flatMap(OrderRepository, (repo) =>
  repo.insertBatch([model, unicode, awkward, ...many].map((o) => toOrder(o)))
)

const json = (response: Response) => Effect.promise(() => response.json() as Promise<any>)

describe("the HTTP API on a real PostgreSQL", () => {
  const stack = httpStack(TestDatabase, { cache: { max_entries: 1000, warm_count: 0 } })

  it.live(
    "GET /order/{uid} answers 200 with the order exactly as received, from the database and then the cache",
    () =>
      Effect.gen(function* () {
        yield* seed
        for (const attempt of ["miss", "hit"]) {
          const response = yield* get(`/order/${model.order_uid}`)
          expect(response.status, attempt).toBe(200)
          expect(response.headers.get("content-type"), attempt).toMatch(/^application\/json/)
          expect(response.headers.get("etag"), attempt).toMatch(/^".+"$/)
          expect(response.headers.get("cache-control"), attempt).toBe("no-store")
          expect(response.headers.get("x-content-type-options"), attempt).toBe("nosniff")
          expect(response.headers.get("content-security-policy"), attempt).toContain("default-src 'self'")
          expect(yield* json(response), attempt).toStrictEqual(model)
        }
        // One lookup that missed and went to the database, one that the cache answered.
        const stats = yield* Effect.flatMap(OrderCache, (c) => c.stats)
        expect({ hits: stats.hits, misses: stats.misses, entries: stats.entries }).toEqual({
          hits: 1,
          misses: 1,
          entries: 1
        })
        const unicodeResponse = yield* get(`/order/${unicode.order_uid}`)
        expect(yield* json(unicodeResponse)).toStrictEqual(unicode)
      }).pipe(Effect.provide(stack))
  )

  it.live("an unknown id is 404 order_not_found; ids that cannot be ids are 400 with a reason", () =>
    Effect.gen(function* () {
      const missing = yield* get("/order/no-such-order")
      expect(missing.status).toBe(404)
      expect(yield* json(missing)).toStrictEqual({
        _tag: "OrderNotFound",
        error: "order_not_found",
        order_uid: "no-such-order"
      })
      for (const bad of ["x".repeat(129), "a%01b", "tab%09", "%7F"]) {
        const response = yield* get(`/order/${bad}`)
        expect(response.status, bad).toBe(400)
        const body = yield* json(response)
        expect(body._tag, bad).toBe("InvalidOrderUid")
        expect(body.error, bad).toBe("invalid_order_uid")
        expect(body.message, bad).toMatch(/order_uid/)
      }
      const empty = yield* get("/order/")
      expect(empty.status).toBe(400)
      expect((yield* json(empty)).error).toBe("invalid_order_uid")
    }).pipe(Effect.provide(stack))
  )

  it.live(
    "misses asked for all at once (read together from the database) each get their own order, or their own 404",
    () =>
      Effect.gen(function* () {
        yield* seed
        const stored = [model, unicode, awkward, ...many]
        const asked = [
          ...stored.map((o) => o.order_uid),
          ...stored.slice(0, 5).map((o) => o.order_uid), // the same ids again, in the same moment
          "no-such-order-1",
          "no-such-order-2"
        ]
        // Connections opened beforehand, so that the requests arrive together.
        yield* Effect.all(
          asked.map(() => get("/healthz")),
          { concurrency: "unbounded" }
        )
        const answers = yield* Effect.all(
          asked.map((uid) =>
            Effect.flatMap(get(`/order/${encodeURIComponent(uid)}`), (response) =>
              Effect.map(json(response), (body) => ({ uid, status: response.status, body }))
            )
          ),
          { concurrency: "unbounded" }
        )
        const byUid = new Map(stored.map((o) => [o.order_uid, o]))
        for (const { uid, status, body } of answers) {
          const order = byUid.get(uid)
          if (order === undefined) {
            expect(status, uid).toBe(404)
            expect(body.order_uid, uid).toBe(uid)
          } else {
            expect(status, uid).toBe(200)
            expect(body, uid).toStrictEqual(order)
          }
        }
      }).pipe(Effect.provide(stack))
  )

  it.live(
    "the typed client derived from the API reads every answer as the API declares it: hit, miss, 404, 400, pages",
    () =>
      Effect.gen(function* () {
        yield* seed
        const client = yield* apiClient
        // From the database, then from the cache (the server's fast path): both decode as an Order.
        for (const attempt of ["miss", "hit"]) {
          const order = yield* client.orders.getOrder({ path: { order_uid: unicode.order_uid } })
          expect(order, attempt).toStrictEqual(toOrder(unicode))
        }
        const missing = yield* Effect.flip(client.orders.getOrder({ path: { order_uid: "no-such-order" } }))
        expect(missing).toStrictEqual(new OrderNotFound({ order_uid: "no-such-order" }))
        for (const bad of ["x".repeat(129), "a\u0001b"]) {
          const refused = yield* Effect.flip(client.orders.getOrder({ path: { order_uid: bad } }))
          expect(refused._tag, bad).toBe("InvalidOrderUid")
        }
        const first = yield* client.orders.listOrders({ urlParams: { limit: 5 } })
        expect(first.items).toHaveLength(5)
        const second = yield* client.orders.listOrders({
          urlParams: { limit: 5, cursor: first.next_cursor! }
        })
        expect(second.items.map((o) => o.order_uid)).not.toContain(first.items[0]!.order_uid)
        // A limit out of range cannot be sent through the typed client (it checks the same schema);
        // a cursor the service never gave comes back as the declared error.
        const refused = yield* Effect.flip(client.orders.listOrders({ urlParams: { cursor: "garbage" } }))
        expect(refused).toStrictEqual(
          new InvalidQuery({ message: "cursor: the cursor is not one this service gave out" })
        )
      }).pipe(Effect.provide(stack))
  )

  it.live("ids with characters that need URL encoding work, and the ETag gives 304 on a repeat", () =>
    Effect.gen(function* () {
      yield* seed
      const path = `/order/${encodeURIComponent(awkward.order_uid)}`
      const first = yield* get(path)
      expect(first.status).toBe(200)
      expect(yield* json(first)).toStrictEqual(awkward)
      const etag = first.headers.get("etag")!
      // The second request is served from the cache; both paths honour If-None-Match.
      for (const attempt of ["hit", "hit again"]) {
        const again = yield* get(path, { "if-none-match": etag })
        expect(again.status, attempt).toBe(304)
        expect(again.headers.get("etag")).toBe(etag)
      }
      const other = yield* get(`/order/${encodeURIComponent(unicode.order_uid)}`, { "if-none-match": etag })
      expect(other.status).toBe(200)
    }).pipe(Effect.provide(stack))
  )

  it.live("GET /orders pages through the most recent orders; a bad limit or cursor is 400", () =>
    Effect.gen(function* () {
      yield* seed
      const seen: Array<string> = []
      let cursor: string | null = null
      do {
        const response: Response = yield* get(
          `/orders?limit=10${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`
        )
        expect(response.status).toBe(200)
        const page = yield* json(response)
        for (const item of page.items) {
          expect(Object.keys(item).sort()).toEqual([
            "amount",
            "currency",
            "customer_id",
            "date_created",
            "item_count",
            "order_uid"
          ])
        }
        seen.push(...page.items.map((i: { order_uid: string }) => i.order_uid))
        cursor = page.next_cursor
      } while (cursor !== null)
      expect(seen).toHaveLength(48)
      expect(new Set(seen).size).toBe(48)
      for (const query of ["limit=0", "limit=101", "limit=abc", "cursor=garbage"]) {
        const response = yield* get(`/orders?${query}`)
        expect(response.status, query).toBe(400)
        expect((yield* json(response)).error, query).toBe("invalid_query")
      }
    }).pipe(Effect.provide(stack))
  )

  it.live("the page, its scripts, the OpenAPI document and the docs are served with the right types", () =>
    Effect.gen(function* () {
      const page = yield* get("/")
      expect(page.status).toBe(200)
      expect(page.headers.get("content-type")).toMatch(/^text\/html/)
      expect(page.headers.get("referrer-policy")).toBe("no-referrer")
      // The page runs and styles only files of its own: no inline code, no other origin.
      expect(page.headers.get("content-security-policy")).toMatch(/script-src 'self';/)
      expect(page.headers.get("content-security-policy")).toMatch(/style-src 'self';/)
      // Every stylesheet and script the page links, and every module those import (preloaded
      // too), with its type and revalidated by ETag.
      const pageHtml = yield* Effect.promise(() => page.text())
      const linked = Array.from(pageHtml.matchAll(/(?:href|src)="(\/[\w.-]+\.(?:css|js))"/g), (m) => m[1]!)
      expect(linked).toEqual(expect.arrayContaining(["/base.css", "/recent.css", "/script.js", "/lookup.js"]))
      const files = new Set(linked)
      for (const path of files) {
        const file = yield* get(path)
        expect(file.status, path).toBe(200)
        expect(file.headers.get("content-type"), path).toMatch(
          path.endsWith(".css") ? /^text\/css/ : /^text\/javascript/
        )
        expect(file.headers.get("cache-control"), path).toBe("no-cache")
        expect((yield* get(path, { "if-none-match": file.headers.get("etag")! })).status, path).toBe(304)
        if (!path.endsWith(".js")) continue
        const code = yield* Effect.promise(() => file.text())
        for (const [, name] of code.matchAll(/^import .* from "\.\/([\w.-]+\.js)"$/gm)) {
          expect(linked, `${path} imports ${name}`).toContain(`/${name}`)
          files.add(`/${name}`)
        }
      }
      expect(files.size).toBeGreaterThan(8)

      // Swagger UI, its code inline: the docs' policy allows that code by hash and nothing else.
      const docs = yield* get("/docs")
      expect(docs.status).toBe(200)
      expect(docs.headers.get("content-type")).toMatch(/^text\/html/)
      const docsHtml = yield* Effect.promise(() => docs.text())
      expect(docsHtml).toContain("SwaggerUIBundle")
      expect(docsHtml).toContain("/order/{order_uid}")
      const hash = (code: string) => `'sha256-${createHash("sha256").update(code).digest("base64")}'`
      const inline = (pattern: RegExp) => Array.from(docsHtml.matchAll(pattern), (m) => hash(m[1]!))
      const scripts = inline(/<script>([\s\S]*?)<\/script>/g)
      const styles = inline(/<style>([\s\S]*?)<\/style>/g)
      expect(scripts).toHaveLength(1)
      expect(styles).toHaveLength(1)
      const policy = docs.headers.get("content-security-policy")!
      expect(policy).toContain(`script-src 'self' ${scripts.join(" ")};`)
      expect(policy).toContain(`style-src 'self' ${styles.join(" ")};`)
      expect(policy).not.toMatch(/'unsafe-|\*|https?:/)
      expect(policy).toContain("frame-ancestors 'none'")
      // A revalidation updates the headers the browser keeps: the 304 carries the same policy.
      const again = yield* get("/docs", { "if-none-match": docs.headers.get("etag")! })
      expect(again.status).toBe(304)
      expect(again.headers.get("content-security-policy")).toBe(policy)
      expect((yield* get("/")).headers.get("content-security-policy")).not.toContain("sha256")

      const spec = yield* json(yield* get("/openapi.json"))
      expect(Object.keys(spec.paths)).toEqual(
        expect.arrayContaining(["/order/{order_uid}", "/orders", "/healthz", "/readyz"])
      )
      expect(Object.keys(spec.paths["/order/{order_uid}"].get.responses)).toEqual(
        expect.arrayContaining(["200", "400", "404", "503"])
      )
      // Dead letters are part of the API, their refusals named.
      expect(Object.keys(spec.paths["/dead-letters"].get.responses)).toEqual(
        expect.arrayContaining(["200", "400", "503"])
      )
      expect(Object.keys(spec.paths["/dead-letters/{partition}/{offset}"].get.responses)).toEqual(
        expect.arrayContaining(["200", "400", "404"])
      )
      expect(Object.keys(spec.paths["/dead-letters/replay"].post.responses)).toEqual(
        expect.arrayContaining(["200", "400", "401", "403", "503"])
      )
    }).pipe(Effect.provide(stack))
  )

  it.live("/metrics is Prometheus text that counts each request by method, route and status", () =>
    Effect.gen(function* () {
      yield* seed
      const before = yield* scrapeMetrics
      for (let i = 0; i < 3; i++) expect((yield* get(`/order/${model.order_uid}`)).status).toBe(200)
      expect((yield* get("/order/nope")).status).toBe(404)
      expect((yield* get("/orders?limit=0")).status).toBe(400)
      const response = yield* get("/metrics")
      expect(response.status).toBe(200)
      expect(response.headers.get("content-type")).toMatch(/^text\/plain/)
      const text = yield* Effect.promise(() => response.text())
      const delta = deltaOf(before.samples, parseMetrics(text))
      const requests = (route: string, status: string) =>
        delta("http_request_duration_seconds_count", { method: "GET", route, status })
      // The first of the three is read from the database, the other two from the cache: both count.
      expect(requests("/order/{order_uid}", "200")).toBe(3)
      expect(requests("/order/{order_uid}", "404")).toBe(1)
      expect(requests("/orders", "400")).toBe(1)
      expect(requests("/orders", "200")).toBe(0)
      // The scrape taken before is counted once it has been answered.
      expect(requests("/metrics", "200")).toBe(1)
      expect(text).toContain("# TYPE http_request_duration_seconds histogram")
    }).pipe(Effect.provide(stack))
  )

  it.live(
    "the cache's metrics move by exactly the hits, misses, evictions and size a few requests cause",
    () =>
      Effect.gen(function* () {
        yield* seed
        const [a, b, c] = [model, unicode, awkward].map((o) => `/order/${encodeURIComponent(o.order_uid)}`)
        const before = yield* scrapeMetrics
        // Two entries fit: a and b are read from the database; c evicts a; c is a hit; a is read again
        // and evicts b. An unknown id is a miss that stores nothing.
        const bodyBytes = new Map<string, number>()
        for (const path of [a, b, c, c, a]) {
          const response = yield* get(path)
          expect(response.status, path).toBe(200)
          bodyBytes.set(path, Buffer.byteLength(yield* Effect.promise(() => response.text())))
        }
        expect((yield* get("/order/no-such-order")).status).toBe(404)
        const after = (yield* scrapeMetrics).samples
        const delta = deltaOf(before.samples, after)
        const orders = { cache: "orders" }
        expect(delta("cache_hits_total", orders)).toBe(1)
        expect(delta("cache_misses_total", orders)).toBe(5)
        expect(delta("cache_evictions_total", { ...orders, reason: "capacity" })).toBe(2)
        expect(delta("cache_evictions_total", { ...orders, reason: "bytes" })).toBe(0)
        expect(delta("cache_evictions_total", { ...orders, reason: "ttl" })).toBe(0)
        // The gauges are the cache's state now: awkward and model.
        expect(metricValue(after, "cache_entries", orders)).toBe(2)
        expect(metricValue(after, "cache_bytes", orders)).toBe(bodyBytes.get(c)! + bodyBytes.get(a)!)
      }).pipe(Effect.provide(httpStack(TestDatabase, { cache: { max_entries: 2, warm_count: 0 } })))
  )

  it.live("every request is one JSON access-log line with its method, path, status and bytes", () =>
    Effect.gen(function* () {
      yield* seed
      const captured = yield* capturingStdout
      const before = yield* recorded
      const sent = yield* sendAll(accessLogRequests(model.order_uid))
      expect(sent.map((r) => r.status)).toEqual([200, 200, 304, 404, 400, 200, 200, 200, 404, 404])
      // A line is written when its response is done, which may be just after the client has it,
      // in the same step as the request is counted in the metrics.
      yield* eventually(
        "every request recorded",
        Effect.map(recorded, (n) => n - before >= sent.length)
      )
      const logged = accessLines(captured.lines)
      const key = (r: { method: string; path: string; status: number }) => `${r.method} ${r.path} ${r.status}`
      expect(logged.map(key).sort()).toEqual(sent.map(key).sort())
      for (const line of logged) {
        expect(line.level).toBe("info")
        expect(new Date(line.time).toISOString()).toBe(line.time)
        expect(line.ms).toBeGreaterThanOrEqual(0)
      }
      // The bytes of each body as sent, fast path or not.
      const bytes = (r: { method: string; path: string; status: number; bytes: number }) =>
        `${key(r)} ${r.bytes}`
      expect(logged.map(bytes).sort()).toEqual(sent.map(bytes).sort())
    }).pipe(
      Effect.scoped,
      Effect.provide(
        httpStack(TestDatabase, {
          http: { host: "127.0.0.1", port: 0, access_log: true, shutdown_timeout: "5 seconds" },
          cache: { max_entries: 1000, warm_count: 0 }
        })
      ),
      Effect.provide(Logging.layer({ format: "json", level: LogLevel.Info }))
    )
  )

  it.live("with http.access_log false, requests write no access-log line", () =>
    Effect.gen(function* () {
      yield* seed
      const captured = yield* capturingStdout
      const before = yield* recorded
      const sent = yield* sendAll(accessLogRequests(model.order_uid))
      // Each request is counted in the metrics in the step that would write its line.
      yield* eventually(
        "every request recorded",
        Effect.map(recorded, (n) => n - before >= sent.length)
      )
      expect(sent).toHaveLength(10)
      expect(accessLines(captured.lines)).toEqual([])
    }).pipe(
      Effect.scoped,
      Effect.provide(stack),
      Effect.provide(Logging.layer({ format: "json", level: LogLevel.Info }))
    )
  )

  it.live(
    "/healthz is 200; /readyz turns 503 naming the database while it is down, and ready again after",
    () =>
      Effect.gen(function* () {
        const pg = yield* EmbeddedPostgres.make()
        const database = Database.layer({ url: Redacted.make(pg.url()), maxConnections: 2 })
        yield* Effect.gen(function* () {
          expect((yield* get("/healthz")).status).toBe(200)
          yield* waitForReady(200)
          yield* pg.pause
          const down = yield* get("/readyz")
          expect(down.status).toBe(503)
          expect(yield* json(down)).toStrictEqual({
            _tag: "NotReady",
            status: "not_ready",
            checks: { database: "unreachable", consumer: "ok", cache: "ok" }
          })
          expect((yield* get("/healthz")).status).toBe(200)
          const unavailable = yield* get("/order/not-cached")
          expect(unavailable.status).toBe(503)
          yield* pg.resume
          yield* waitForReady(200)
        }).pipe(Effect.provide(httpStack(database)))
      }).pipe(Effect.scoped)
  )

  it.live("/readyz is 503 naming the cache while its warm-up has not finished, and ready once it has", () =>
    Effect.gen(function* () {
      const url = yield* createTestDatabase
      const database = Database.layer({ url: Redacted.make(url), maxConnections: 4 })
      yield* seed.pipe(Effect.provide(OrderRepository.Default.pipe(Layer.provide(database))))
      // The warm-up reads the orders table: locked, it waits until the test lets go.
      const locker = new pg.Client({ connectionString: url })
      yield* Effect.acquireRelease(
        Effect.promise(() => locker.connect()),
        () => Effect.promise(() => locker.end())
      )
      yield* Effect.promise(() => locker.query("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"))
      yield* Effect.gen(function* () {
        const warming = {
          _tag: "NotReady",
          status: "not_ready",
          checks: { database: "ok", consumer: "ok", cache: "warming" }
        }
        for (const attempt of ["at once", "a moment later"]) {
          const response = yield* get("/readyz")
          expect(response.status, attempt).toBe(503)
          expect(yield* json(response), attempt).toStrictEqual(warming)
          yield* Effect.sleep("500 millis")
        }
        expect((yield* Effect.flatMap(OrderCache, (c) => c.stats)).entries).toBe(0)
        yield* Effect.promise(() => locker.query("COMMIT"))
        yield* waitForReady(200)
        expect(yield* json(yield* get("/readyz"))).toStrictEqual({
          status: "ready",
          checks: { database: "ok", consumer: "ok", cache: "ok" }
        })
        expect((yield* Effect.flatMap(OrderCache, (c) => c.stats)).entries).toBe(48)
      }).pipe(Effect.provide(httpStack(database, { cache: { max_entries: 1000, warm_count: 100 } })))
    }).pipe(Effect.scoped)
  )
})

/** An order as a Kafka message, keyed by its uid. */
const asMessage = (order: OrderJson): Outgoing => ({ key: order.order_uid, value: JSON.stringify(order) })

/** The whole service (HTTP, ingestion, warm-up) on its own topics and database. */
const serviceStack = (topics: TestTopics) =>
  App.layerServices(KafkaClient.Default).pipe(
    Layer.provide(TestDatabase),
    Layer.provide(
      testConfig(topics, {
        http: { host: "127.0.0.1", port: 0, access_log: false, shutdown_timeout: "5 seconds" }
      })
    )
  )

describe("the service with ingestion from a real Kafka broker", () => {
  it.live(
    "/metrics counts exactly the messages ingestion consumed, stored, found redelivered or conflicting, and dead-lettered by kind",
    () => {
      const topics = freshTopics()
      const valid = sampleOrders(6, 61, "metrics")
      const invalid = [
        "invalid/not-json.txt",
        "invalid/amount-as-string.json",
        "invalid/amount-mismatch.json"
      ]
      const messages: Array<Outgoing> = [
        ...valid.map(asMessage),
        ...invalid.map((name, i) => ({ key: `bad-${i}`, value: readFixture(name) })),
        { key: "too-large", value: JSON.stringify({ ...valid[0], padding: "x".repeat(70_000) }) },
        // The same order again (a redelivery), and a different order under a stored uid.
        asMessage(valid[1]!),
        asMessage({ ...valid[2]!, customer_id: "someone-else" })
      ]
      return Effect.gen(function* () {
        yield* waitForReady(200)
        const before = (yield* scrapeMetrics).samples
        yield* produce(topics.brokers, topics.topic, messages, 0)
        yield* eventually(
          "every offset is committed",
          Effect.map(offsets(topics.brokers, topics.topic, topics.groupId), ({ committed, ends }) =>
            Object.entries(ends).every(([p, end]) => end === 0 || committed[Number(p)] === end)
          )
        )
        const expected = {
          consumed: messages.length,
          stored: 6,
          duplicate: 1,
          conflict: 1,
          invalid_json: 1,
          schema: 1,
          business_rule: 1,
          too_large: 1,
          conflict_letters: 1
        }
        const counts = (after: ReadonlyArray<Series>) => {
          const delta = deltaOf(before, after)
          const parked = (kind: string) => delta("ingest_messages_dead_lettered_total", { kind })
          return {
            consumed: delta("ingest_messages_consumed_total"),
            stored: delta("ingest_orders_stored_total"),
            duplicate: delta("ingest_orders_duplicate_total"),
            conflict: delta("ingest_orders_conflict_total"),
            invalid_json: parked("invalid_json"),
            schema: parked("schema"),
            business_rule: parked("business_rule"),
            too_large: parked("too_large"),
            conflict_letters: parked("conflict")
          }
        }
        // The counters move just after a batch is committed: wait for them, then check that
        // nothing more arrives.
        let latest = counts((yield* scrapeMetrics).samples)
        const deadline = Date.now() + 10_000
        while (JSON.stringify(latest) !== JSON.stringify(expected) && Date.now() < deadline) {
          yield* Effect.sleep("100 millis")
          latest = counts((yield* scrapeMetrics).samples)
        }
        yield* Effect.sleep("500 millis")
        const after = (yield* scrapeMetrics).samples
        expect(counts(after)).toEqual(expected)
        // Every message consumed went through a batch.
        expect(deltaOf(before, after)("ingest_batch_size_sum")).toBe(messages.length)
      }).pipe(Effect.provide(serviceStack(topics)))
    },
    90_000
  )

  it.live(
    "/readyz is 503 naming the consumer once ingestion has stopped for good, while HTTP still answers",
    () => {
      const topics = freshTopics()
      return Effect.gen(function* () {
        yield* createTopics(topics)
        // Another application's consumer holds the group with a protocol ours does not speak.
        const foreign = kafkaFor(topics.brokers).consumer({
          groupId: topics.groupId,
          partitionAssigners: [foreignAssigner]
        })
        yield* Effect.acquireRelease(
          Effect.promise(async () => {
            await foreign.connect()
            await foreign.subscribe({ topics: [topics.topic] })
            await foreign.run({ autoCommit: false, eachBatch: async () => new Promise(() => undefined) })
          }),
          () => Effect.promise(() => foreign.disconnect())
        )
        const admin = kafkaFor(topics.brokers).admin()
        yield* Effect.acquireRelease(
          Effect.promise(() => admin.connect()),
          () => Effect.promise(() => admin.disconnect())
        )
        yield* eventually(
          "the other application's consumer holds the group",
          Effect.promise(() => admin.describeGroups([topics.groupId])).pipe(
            Effect.map(({ groups }) => groups[0]?.state === "Stable")
          ),
          60_000
        )
        yield* Effect.gen(function* () {
          const status = yield* IngestStatus
          const stopped = yield* status.stoppedByItself.pipe(
            Effect.flip,
            Effect.timeoutFail({
              duration: "90 seconds",
              onTimeout: () => new Error("ingestion never gave up on the group")
            })
          )
          expect(stopped.message).toMatch(/^Ingestion stopped: /)
          const response = yield* get("/readyz")
          expect(response.status).toBe(503)
          expect(yield* json(response)).toStrictEqual({
            _tag: "NotReady",
            status: "not_ready",
            checks: { database: "ok", consumer: "stopped", cache: "ok" }
          })
          expect((yield* get("/healthz")).status).toBe(200)
          expect((yield* get("/order/no-such-order")).status).toBe(404)
        }).pipe(Effect.provide(serviceStack(topics)))
      }).pipe(Effect.scoped)
    },
    180_000
  )
})

/** Round-robin under another name: a consumer of some other application's making. */
const foreignAssigner: PartitionAssigner = (config) => ({
  ...PartitionAssigners.roundRobin(config),
  name: "AnotherApplicationsAssigner"
})

/**
 * The service's JSON log lines written while `effect` runs (the real logger, writing to stdout),
 * instead of printing them.
 */
const capturingStdout = Effect.acquireRelease(
  Effect.sync(() => {
    const write = process.stdout.write
    const lines: Array<string> = []
    let partial = ""
    process.stdout.write = ((chunk: string | Uint8Array) => {
      partial += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8")
      const complete = partial.split("\n")
      partial = complete.pop()!
      lines.push(...complete)
      return true
    }) as typeof process.stdout.write
    return { lines, restore: () => (process.stdout.write = write) }
  }),
  (captured) => Effect.sync(() => captured.restore())
)

/** Requests of every kind: app and fast path, hits and misses, errors, static files, a POST. */
const accessLogRequests = (uid: string) => [
  { method: "GET", path: `/order/${uid}` },
  { method: "GET", path: `/order/${uid}` },
  { method: "GET", path: `/order/${uid}`, etag: true },
  { method: "GET", path: "/order/no-such-order" },
  { method: "GET", path: "/order/a%01b" },
  { method: "GET", path: "/orders?limit=2" },
  { method: "GET", path: "/healthz" },
  { method: "GET", path: "/base.css" },
  { method: "GET", path: "/no-such-page" },
  { method: "POST", path: "/orders" }
]

const sendAll = (requests: ReadonlyArray<{ method: string; path: string; etag?: boolean }>) =>
  Effect.gen(function* () {
    const url = yield* baseUrl
    const sent: Array<{ method: string; path: string; status: number; bytes: number }> = []
    let etag = ""
    for (const r of requests) {
      const response = yield* Effect.promise(() =>
        fetch(`${url}${r.path}`, { method: r.method, headers: r.etag ? { "if-none-match": etag } : {} })
      )
      etag = response.headers.get("etag") ?? etag
      const body = yield* Effect.promise(() => response.arrayBuffer())
      sent.push({
        method: r.method,
        path: r.path.split("?")[0]!,
        status: response.status,
        bytes: body.byteLength
      })
    }
    return sent
  })

/** Requests recorded so far by this process's servers, every route and status. */
const recorded = Effect.map(scrape, (text) =>
  parseMetrics(text)
    .filter((s) => s.name === "http_request_duration_seconds_count")
    .reduce((n, s) => n + s.value, 0)
)

const accessLines = (lines: ReadonlyArray<string>) =>
  lines
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l))
    .filter((l) => l.message === "http request")

const waitForReady = (status: number) =>
  Effect.gen(function* () {
    const deadline = Date.now() + 20_000
    while (Date.now() < deadline) {
      const response = yield* get("/readyz")
      if (response.status === status) return
      yield* Effect.sleep("200 millis")
    }
    return yield* Effect.die(new Error(`/readyz never answered ${status}`))
  })
