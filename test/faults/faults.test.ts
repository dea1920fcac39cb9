/**
 * Faults while orders stream in, against a three-broker Kafka cluster (replication factor 3,
 * min.insync.replicas 2) and a real PostgreSQL. Each case ends with the same accounting: every
 * valid order stored exactly once, every invalid message on the dead-letter topic exactly once,
 * and the consumer group's lag back to zero.
 */
import { request } from "node:http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as fc from "fast-check"
import { Kafka, logLevel, Partitioners } from "kafkajs"
import pg from "pg"
import { EmbeddedPostgres } from "../../src/local/EmbeddedPostgres.ts"
import { freePort } from "../../src/local/freePort.ts"
import { LocalKafka } from "../../src/local/LocalKafka.ts"
import type { OrderJson } from "../../src/orders/Order.ts"
import { generateOrders, makeInvalid, REJECTION_KINDS } from "../../src/tools/OrderGenerator.ts"
import { startService, type ServiceProcess } from "../support/service.ts"

const MAX_MESSAGE_BYTES = 65_536
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

let cluster: LocalKafka
let postgres: EmbeddedPostgres
const running = new Set<ServiceProcess>()

beforeAll(async () => {
  ;[cluster, postgres] = await Promise.all([LocalKafka.start({ brokers: 3 }), EmbeddedPostgres.start()])
}, 300_000)

afterAll(async () => {
  for (const s of running) s.child.kill("SIGKILL")
  await Promise.all([cluster?.stop(), postgres?.stop()])
}, 120_000)

const kafka = () =>
  new Kafka({ clientId: "faults", brokers: cluster.brokers.slice(), logLevel: logLevel.NOTHING })

interface Scenario {
  readonly name: string
  readonly topic: string
  readonly databaseUrl: string
  readonly valid: ReadonlyArray<OrderJson>
  readonly invalid: number
}

let scenarios = 0
/** Fresh topics (RF 3) and database, and `count` messages of which `invalidShare` are invalid, all kinds in turn. */
const prepare = async (count: number, invalidShare: number, databaseUrl?: string): Promise<Scenario> => {
  const name = `faults${process.pid}x${scenarios++}`
  const admin = kafka().admin()
  await admin.connect()
  await admin.createTopics({
    waitForLeaders: true,
    topics: [name, `${name}.dlq`].map((topic) => ({
      topic,
      numPartitions: 3,
      replicationFactor: 3,
      configEntries: [{ name: "min.insync.replicas", value: "2" }]
    }))
  })
  await admin.disconnect()
  let url = databaseUrl
  if (url === undefined) {
    await postgres.createDatabase(name)
    url = postgres.url(name)
  }
  const orders = generateOrders(count, scenarios * 1000)
  const everyNth = invalidShare > 0 ? Math.round(1 / invalidShare) : Number.POSITIVE_INFINITY
  const valid: Array<OrderJson> = []
  let invalid = 0
  const messages = orders.map((order, i) => {
    if ((i + 1) % everyNth === 0) {
      const kind = REJECTION_KINDS[invalid % REJECTION_KINDS.length]!
      invalid++
      return { key: `invalid-${i}`, value: Buffer.from(makeInvalid(order, kind, i, MAX_MESSAGE_BYTES)) }
    }
    valid.push(order)
    return { key: order.order_uid, value: JSON.stringify(order) }
  })
  const producer = kafka().producer({ createPartitioner: Partitioners.DefaultPartitioner })
  await producer.connect()
  // Small sends: the too_large messages are 64 KiB each, and a request has a size limit.
  for (let i = 0; i < messages.length; i += 100) {
    await producer.send({ topic: name, acks: -1, messages: messages.slice(i, i + 100) })
  }
  await producer.disconnect()
  return { name, topic: name, databaseUrl: url, valid, invalid }
}

const service = async (s: Scenario, extra: Record<string, string> = {}) => {
  const port = await freePort()
  const p = startService({
    CONFIG_FILE: "config/config.yaml",
    DATABASE_URL: s.databaseUrl,
    KAFKA_BROKERS: cluster.bootstrapServers,
    KAFKA_TOPIC: s.topic,
    KAFKA_DLQ_TOPIC: `${s.topic}.dlq`,
    KAFKA_GROUP_ID: s.name,
    KAFKA_REPLICATION_FACTOR: "3",
    INGEST_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES),
    HTTP_HOST: "127.0.0.1",
    HTTP_PORT: String(port),
    HTTP_ACCESS_LOG: "false",
    CACHE_WARM_COUNT: "0",
    LOG_LEVEL: "warning",
    ...extra
  })
  running.add(p)
  void p.exited.then(() => running.delete(p))
  return { process: p, url: `http://127.0.0.1:${port}` }
}

let lastQueryError = ""
const query = async (url: string, sql: string): Promise<number> => {
  const client = new pg.Client({ connectionString: url })
  try {
    await client.connect()
    return Number((await client.query(sql)).rows[0].n)
  } catch (e) {
    lastQueryError = String(e)
    return -1
  } finally {
    await client.end().catch(() => undefined)
  }
}
const stored = (s: Scenario) => query(s.databaseUrl, "SELECT count(*) AS n FROM orders")

const waitFor = async (what: string, check: () => Promise<boolean>, timeoutMs = 180_000) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return
    await sleep(250)
  }
  const outputs = [...running].map((s) => s.output().slice(-3000)).join("\n---\n")
  throw new Error(
    `timed out waiting until ${what} (last query error: ${lastQueryError}); the services said:\n${outputs}`
  )
}

const lagIsZero = async (s: Scenario) => {
  const admin = kafka().admin()
  await admin.connect()
  try {
    const [committed] = await admin.fetchOffsets({ groupId: s.name, topics: [s.topic] })
    const ends = await admin.fetchTopicOffsets(s.topic)
    return ends.every(
      (e) => committed?.partitions.find((p) => p.partition === e.partition)?.offset === e.high
    )
  } finally {
    await admin.disconnect()
  }
}

/** The dead letters (committed ones only), read until `expected` arrived and a little longer. */
const deadLetters = async (s: Scenario, expected: number) => {
  const consumer = kafka().consumer({ groupId: `${s.name}-reader` })
  const seen: Array<string> = []
  await consumer.connect()
  await consumer.subscribe({ topics: [`${s.topic}.dlq`], fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ message }) => {
      seen.push(`${message.headers?.["dlq.source.partition"]}/${message.headers?.["dlq.source.offset"]}`)
    }
  })
  // A transaction left open by a killed process blocks readers until it times out (15 s).
  const deadline = Date.now() + 60_000
  while (seen.length < expected && Date.now() < deadline) await sleep(250)
  await sleep(2_000)
  await consumer.disconnect()
  return seen
}

/** The accounting every case ends with. */
const settled = async (s: Scenario) => {
  await waitFor(
    `all ${s.valid.length} valid orders are stored`,
    async () => (await stored(s)) === s.valid.length
  )
  await waitFor("the consumer lag is zero", () => lagIsZero(s), 60_000)
  expect(await query(s.databaseUrl, "SELECT count(DISTINCT order_uid) AS n FROM orders")).toBe(s.valid.length)
  expect(await query(s.databaseUrl, "SELECT count(*) AS n FROM items")).toBe(
    s.valid.reduce((n, o) => n + o.items.length, 0)
  )
  const letters = await deadLetters(s, s.invalid)
  expect(letters).toHaveLength(s.invalid)
  expect(new Set(letters).size).toBe(s.invalid)
}

const stop = async (p: ServiceProcess) => {
  p.child.kill("SIGTERM")
  expect(await p.exited).toBe(0)
}

describe("faults while 10,000 messages stream in (3 brokers, RF 3)", () => {
  it("a poison-message storm: 10% invalid messages of every kind, interleaved", async () => {
    const s = await prepare(10_000, 0.1)
    const svc = await service(s)
    await settled(s)
    await stop(svc.process)
  }, 300_000)

  it("the service SIGKILLed three times at random moments and started again", async () => {
    const s = await prepare(10_000, 0.05)
    for (let kill = 0; kill < 3; kill++) {
      const before = Math.max(0, await stored(s))
      const svc = await service(s)
      // Somewhere between "has just started storing" and "well into the backlog".
      // (With large batches the backlog may be gone before a later kill: then there is nothing left to interrupt.)
      await waitFor(
        "it stores something",
        async () => {
          const n = await stored(s)
          return n > before || n === s.valid.length
        },
        120_000
      )
      await sleep(Math.floor(Math.random() * 1_500))
      svc.process.child.kill("SIGKILL")
      await svc.process.exited
    }
    const last = await service(s)
    await settled(s)
    await stop(last.process)
  }, 420_000)

  it("the leader of a partition killed mid-ingest and restarted", async () => {
    const s = await prepare(10_000, 0.05)
    const admin = kafka().admin()
    await admin.connect()
    const metadata = await admin.fetchTopicMetadata({ topics: [s.topic] })
    await admin.disconnect()
    const leader = metadata.topics[0]!.partitions.find((p) => p.partitionId === 0)!.leader
    // Broker i has node id i.
    const index = leader
    const svc = await service(s)
    await waitFor("it stores something", async () => (await stored(s)) > 0, 120_000)
    await cluster.killBroker(index)
    await sleep(5_000)
    await cluster.restartBroker(index)
    await settled(s)
    await stop(svc.process)
  }, 420_000)

  it("PostgreSQL stopped for 10 s mid-ingest and started again", async () => {
    const own = await EmbeddedPostgres.start()
    try {
      const s = await prepare(10_000, 0.05, own.url())
      const svc = await service(s)
      await waitFor("it stores something", async () => (await stored(s)) > 0, 120_000)
      await own.pause()
      await sleep(10_000)
      await own.resume()
      await settled(s)
      await stop(svc.process)
    } finally {
      await own.stop()
    }
  }, 420_000)

  it("two instances in one group, one SIGKILLed: the other takes over its partitions", async () => {
    const s = await prepare(10_000, 0.05)
    const a = await service(s)
    const b = await service(s)
    await waitFor("they store something", async () => (await stored(s)) > 0, 120_000)
    a.process.child.kill("SIGKILL")
    await settled(s)
    await stop(b.process)
  }, 420_000)

  it("10,000 random and malicious ids get only 400 or 404, and the service stays healthy", async () => {
    const s = await prepare(100, 0)
    const svc = await service(s)
    await settled(s)
    const curated = [
      "' OR 1=1 --",
      "1; DROP TABLE orders",
      "../../etc/passwd",
      "..%2F..%2Fetc%2Fpasswd",
      "%2e%2e%2f",
      "%C3%28",
      "%FF",
      "%",
      "%00",
      "a%00b",
      "%E2%80%AE",
      "x".repeat(10_000),
      "%F0%9F%8E%A7",
      "<script>alert(1)</script>",
      "${jndi:ldap://x}"
    ]
    const random = fc.sample(
      fc.oneof(
        fc.string({ maxLength: 300 }),
        fc.fullUnicodeString({ maxLength: 50 }),
        fc.stringMatching(/^[%0-9A-Fa-f]{1,30}$/)
      ),
      { numRuns: 10_000 - curated.length, seed: 7 }
    )
    // Raw percent sequences are sent as they are (malformed escapes included); anything else
    // is encoded, since a request path cannot carry spaces or raw non-ASCII.
    const raw = (id: string) => (/^[%0-9A-Za-z./_-]+$/.test(id) ? id : encodeURIComponent(id))
    const ids = [...curated, ...random].map(raw)
    const statuses = new Map<number | string, number>()
    const get = (raw: string) =>
      new Promise<number | string>((resolve) => {
        const req = request(`${svc.url}/order/`, { path: `/order/${raw}` }, (res) => {
          res.resume()
          res.on("end", () => resolve(res.statusCode ?? 0))
        })
        req.on("error", (e) => resolve(`error ${e.message}`))
        req.end()
      })
    for (let i = 0; i < ids.length; i += 50) {
      for (const status of await Promise.all(ids.slice(i, i + 50).map(get))) {
        statuses.set(status, (statuses.get(status) ?? 0) + 1)
      }
    }
    expect([...statuses.keys()].filter((k) => k !== 400 && k !== 404)).toEqual([])
    expect((await fetch(`${svc.url}/healthz`)).status).toBe(200)
    expect((await fetch(`${svc.url}/order/${s.valid[0]!.order_uid}`)).status).toBe(200)
    await stop(svc.process)
  }, 300_000)
})
