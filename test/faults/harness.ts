/**
 * What every fault case shares: a three-broker cluster and a PostgreSQL server, fresh topics and a
 * database per case, orders produced at a steady pace while the fault happens, the service as a
 * real process, and the accounting each case ends with.
 *
 * The accounting does not trust the test's own bookkeeping of what was sent: a producer retry
 * after a broker failure may write a message twice. It reads the orders topic back, and every
 * message carries a header saying what it should become (stored, or parked with which kind); the
 * dead-letter topic keeps the original headers, so each dead letter can be matched to its source.
 */
import { createWriteStream, mkdirSync } from "node:fs"
import path from "node:path"
import { Effect } from "effect"
import { AssignerProtocol, Kafka, logLevel, Partitioners, type IHeaders } from "kafkajs"
import pg from "pg"
import type { LocalKafka } from "../../src/local/LocalKafka.ts"
import type { OrderJson } from "../../src/orders/Order.ts"
import {
  DecodeRejectionKinds,
  type DecodeRejectionKind,
  type RejectionKind
} from "../../src/orders/Rejection.ts"
import { generateOrders, makeInvalid } from "../../src/tools/OrderGenerator.ts"
import { readToEnd } from "../support/kafka.ts"
import { serviceUrl, startService, type ServiceProcess } from "../support/service.ts"

/** Below Kafka's 1 MiB message limit, so `too_large` messages can be produced at all. */
export const MAX_MESSAGE_BYTES = 65_536
export const PARTITIONS = 3

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** A small seeded generator: a failing run can be repeated with FAULT_SEED. */
export const random = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export type ParkedKind = RejectionKind
/** What a message must become: stored (first time or again), or parked with this kind. */
export type Expectation = "stored" | "redelivery" | ParkedKind
const EXPECT_HEADER = "fault.expect"
/** The message's place in the plan: tells which acknowledged messages the topic does not hold. */
const SEQ_HEADER = "fault.seq"

const INVALID_KINDS: ReadonlyArray<DecodeRejectionKind> = DecodeRejectionKinds

export interface Outgoing {
  readonly key: string
  readonly value: Buffer
  readonly headers: IHeaders
}

export interface Plan {
  readonly messages: ReadonlyArray<Outgoing>
  /** The order each stored uid must hold: the first valid one sent under it. */
  readonly orders: ReadonlyMap<string, OrderJson>
}

export interface PlanOptions {
  /** Share of messages that must be parked, cycling through every kind (conflicts included). */
  readonly parkedShare: number
  /** Share of messages that repeat an earlier order byte for byte (stored once, never parked). */
  readonly redeliveryShare?: number
  readonly seed: number
}

/**
 * `count` messages: valid orders, with parked ones and redeliveries spread evenly among them.
 * A conflict reuses an earlier order's uid (so it lands on the same partition, after it) with other
 * content; invalid messages are made by `makeInvalid` from orders that are never sent as valid.
 */
export const plan = (count: number, options: PlanOptions): Plan => {
  const orders = generateOrders(count, options.seed)
  const next = random(options.seed)
  const kinds: ReadonlyArray<DecodeRejectionKind | "conflict"> = [...INVALID_KINDS, "conflict"]
  const sent: Array<OrderJson> = []
  const stored = new Map<string, OrderJson>()
  const messages: Array<Outgoing> = []
  let parked = 0
  let redeliveries = 0
  const message = (key: string, value: string | Uint8Array, expect: Expectation): Outgoing => ({
    key,
    value: Buffer.from(value),
    headers: { [EXPECT_HEADER]: expect, [SEQ_HEADER]: String(messages.length) }
  })
  orders.forEach((order, i) => {
    // Evenly spread: the i-th message is parked when the running share falls behind.
    if (sent.length > 10 && parked < (i + 1) * options.parkedShare) {
      const kind = kinds[parked % kinds.length]!
      parked++
      if (kind === "conflict") {
        const original = sent[Math.floor(next() * sent.length)]!
        const changed: OrderJson = {
          ...original,
          delivery: { ...original.delivery, city: `${original.delivery.city} (changed ${i})` }
        }
        messages.push(message(original.order_uid, JSON.stringify(changed), "conflict"))
      } else {
        messages.push(message(order.order_uid, makeInvalid(order, kind, i, MAX_MESSAGE_BYTES), kind))
      }
      return
    }
    if (sent.length > 10 && redeliveries < (i + 1) * (options.redeliveryShare ?? 0)) {
      redeliveries++
      const original = sent[Math.floor(next() * sent.length)]!
      messages.push(message(original.order_uid, JSON.stringify(original), "redelivery"))
      return
    }
    sent.push(order)
    stored.set(order.order_uid, order)
    messages.push(message(order.order_uid, JSON.stringify(order), "stored"))
  })
  return { messages, orders: stored }
}

export const kafkaOf = (cluster: LocalKafka, clientId = "faults") =>
  new Kafka({ clientId, brokers: cluster.brokers.slice(), logLevel: logLevel.NOTHING })

export interface Scenario {
  readonly name: string
  readonly topic: string
  readonly dlqTopic: string
  readonly groupId: string
  readonly databaseUrl: string
  readonly cluster: LocalKafka
  readonly plan: Plan
  /** Every service process started for this case, killed ones included (for diagnosis). */
  readonly services: Array<ServiceProcess>
}

let scenarios = 0

/** Fresh topics (replication factor 3, min.insync.replicas 2) and a fresh database. */
export const scenario = async (
  cluster: LocalKafka,
  databaseUrl: (name: string) => Promise<string>,
  thePlan: Plan
): Promise<Scenario> => {
  const name = `faults_${process.pid}_${scenarios++}`
  const admin = kafkaOf(cluster).admin()
  await admin.connect()
  try {
    await admin.createTopics({
      waitForLeaders: true,
      topics: [name, `${name}.dlq`].map((topic) => ({
        topic,
        numPartitions: PARTITIONS,
        replicationFactor: 3,
        configEntries: [{ name: "min.insync.replicas", value: "2" }]
      }))
    })
  } finally {
    await admin.disconnect()
  }
  return {
    name,
    topic: name,
    dlqTopic: `${name}.dlq`,
    groupId: name,
    databaseUrl: await databaseUrl(name),
    cluster,
    plan: thePlan,
    services: []
  }
}

export interface Production {
  /** Messages acknowledged by the cluster so far. */
  readonly produced: () => number
  readonly done: Promise<void>
  /** Sends that failed and were repeated, with kafkajs' reason. */
  readonly failures: Array<string>
}

const partitionOf = (() => {
  const partitioner = Partitioners.DefaultPartitioner()
  const partitionMetadata = Array.from({ length: PARTITIONS }, (_, partitionId) => ({
    partitionId,
    leader: 0
  }))
  return (key: string) =>
    partitioner({ topic: "", partitionMetadata: partitionMetadata as never, message: { key, value: null } })
})()

/**
 * Produce the plan at about `perSecond` messages a second, so that the fault happens while orders
 * stream in. The last `hold.share` waits for `hold.until` (the last fault), so production always
 * outlasts the faults. A send that fails (a broker down) is repeated until it succeeds.
 *
 * Each send carries one partition's messages only. kafkajs 2.2.4 remembers, within one `send`, which
 * brokers have answered, not which partitions: when a leader dies mid-send and its partition moves
 * to a broker that already answered for another partition, the retry skips that partition and the
 * send resolves without having written it (src/producer/sendMessages.js, `brokersWithoutResponse`).
 */
export const produce = (
  s: Scenario,
  perSecond: number,
  hold?: { readonly share: number; readonly until: Promise<unknown> }
): Production => {
  const messages = s.plan.messages
  let produced = 0
  const failures: Array<string> = []
  const done = (async () => {
    const producer = kafkaOf(s.cluster, `${s.name}-producer`).producer({
      // Idempotent: a retry inside kafkajs does not write a message twice.
      idempotent: true,
      maxInFlightRequests: 1
    })
    await producer.connect()
    try {
      const holdFrom = hold === undefined ? messages.length : Math.floor(messages.length * (1 - hold.share))
      const started = Date.now()
      let i = 0
      while (i < messages.length) {
        if (i >= holdFrom && hold !== undefined) await hold.until
        // Windows well under a request's size limit (too_large messages are 64 KiB each), never across the hold.
        let end = i
        let bytes = 0
        while (
          end < messages.length &&
          end - i < 200 &&
          bytes < 256 * 1024 &&
          (end < holdFrom || i >= holdFrom)
        ) {
          bytes += messages[end]!.value.byteLength
          end++
        }
        const wait = started + (i / perSecond) * 1000 - Date.now()
        if (wait > 0 && i < holdFrom) await sleep(wait)
        for (let partition = 0; partition < PARTITIONS; partition++) {
          const part = messages
            .slice(i, end)
            .filter((m) => partitionOf(m.key) === partition)
            .map((m) => ({ ...m, partition }))
          if (part.length === 0) continue
          for (let attempt = 1; ; attempt++) {
            try {
              await producer.send({ topic: s.topic, acks: -1, messages: part })
              break
            } catch (error) {
              failures.push(
                `messages ${i}..${end - 1} to partition ${partition}, attempt ${attempt}: ${String(error)}`
              )
              if (attempt >= 30) throw error
              await sleep(1_000)
            }
          }
        }
        produced = end
        i = end
      }
    } finally {
      await producer.disconnect().catch(() => undefined)
    }
  })()
  return { produced: () => produced, done, failures }
}

const logDir = path.join(process.cwd(), "test-results", "faults")

/** The service as a process on this case's topics and database; its output also goes to test-results/faults/. */
export const startInstance = async (s: Scenario, extra: Record<string, string> = {}) => {
  const p = startService({
    CONFIG_FILE: "config/config.yaml",
    DATABASE_URL: s.databaseUrl,
    KAFKA_BROKERS: s.cluster.bootstrapServers,
    KAFKA_TOPIC: s.topic,
    KAFKA_DLQ_TOPIC: s.dlqTopic,
    KAFKA_GROUP_ID: s.groupId,
    KAFKA_PARTITIONS: String(PARTITIONS),
    KAFKA_REPLICATION_FACTOR: "3",
    INGEST_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES),
    // Quicker recovery after an outage than the production default of 10 s between attempts.
    INGEST_RETRY_MAX: "2 seconds",
    HTTP_HOST: "127.0.0.1",
    // Any free port, read back from its log: one picked beforehand could be taken by an outgoing
    // connection before the instance binds it.
    HTTP_PORT: "0",
    HTTP_ACCESS_LOG: "false",
    CACHE_WARM_COUNT: "0",
    LOG_LEVEL: "info",
    ...extra
  })
  mkdirSync(logDir, { recursive: true })
  const log = createWriteStream(path.join(logDir, `${s.name}-${s.services.length}.log`))
  log.on("error", () => undefined)
  p.child.stdout!.pipe(log)
  p.child.stderr!.pipe(log)
  s.services.push(p)
  const url = await Effect.runPromise(serviceUrl(p, 120_000))
  return { process: p, url, port: Number(new URL(url).port) }
}

export const isRunning = (p: ServiceProcess) => p.child.exitCode === null && p.child.signalCode === null

export const kill = async (p: ServiceProcess) => {
  p.child.kill("SIGKILL")
  await p.exited
}

/** SIGTERM, and the exit code of a clean shutdown. */
export const stop = async (p: ServiceProcess): Promise<number | string> => {
  p.child.kill("SIGTERM")
  return p.exited
}

export const killAll = async (s: Scenario) => {
  for (const p of s.services) if (isRunning(p)) p.child.kill("SIGKILL")
  await Promise.all(s.services.map((p) => p.exited))
}

let lastQueryError = ""
const withDatabase = async <A>(url: string, f: (client: pg.Client) => Promise<A>): Promise<A> => {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  client.on("error", () => undefined)
  try {
    await client.connect()
    return await f(client)
  } finally {
    await client.end().catch(() => undefined)
  }
}

/** Orders stored so far; -1 while the database cannot be read (down, or no tables yet). */
export const storedCount = (s: Scenario): Promise<number> =>
  withDatabase(s.databaseUrl, async (c) => {
    const n = Number((await c.query("SELECT count(*) AS n FROM orders")).rows[0].n)
    lastQueryError = "" // an error from before the tables existed, or during an outage, is history
    return n
  }).catch((e: unknown) => {
    lastQueryError = String(e)
    return -1
  })

/** A number from the service's Prometheus text, summed over its label sets (0 if absent or unreachable). */
export const metric = async (url: string, name: string): Promise<number> => {
  try {
    const text = await (await fetch(`${url}/metrics`)).text()
    let sum = 0
    for (const line of text.split("\n")) {
      if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.split(" ").at(-1))
    }
    return sum
  } catch {
    return 0
  }
}

export const waitFor = async (
  s: Scenario,
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 240_000
) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return
    await sleep(250)
  }
  const outputs = s.services
    .map(
      (p, i) =>
        `--- instance ${i} (${isRunning(p) ? "running" : `exited ${p.child.exitCode ?? p.child.signalCode}`}):\n${p.output().slice(-3000)}`
    )
    .join("\n")
  throw new Error(
    `timed out waiting until ${what} (database: ${lastQueryError === "" ? "readable" : `last query failed with ${lastQueryError}`}); logs in ${logDir}\n${outputs}`
  )
}

/** The JSON log lines `p` printed from `from` (an offset into its output) on. */
export const logLinesSince = (p: ServiceProcess, from: number): Array<Record<string, unknown>> =>
  p
    .output()
    .slice(from)
    .split("\n")
    .flatMap((line) => {
      try {
        const value: unknown = JSON.parse(line)
        return typeof value === "object" && value !== null ? [value as Record<string, unknown>] : []
      } catch {
        return [] // a line cut at `from`, or not ours
      }
    })

/**
 * The process ids of the service instances with consumers in the case's group, once the group is
 * stable (each member names its process in its metadata: `host/pid/…`); empty while rebalancing.
 */
export const groupMemberPids = async (s: Scenario): Promise<Set<number>> => {
  const admin = kafkaOf(s.cluster).admin()
  await admin.connect()
  try {
    const { groups } = await admin.describeGroups([s.groupId])
    const group = groups[0]
    if (group === undefined || group.state !== "Stable") return new Set()
    return new Set(
      group.members.map((m) => {
        const userData = AssignerProtocol.MemberMetadata.decode(m.memberMetadata)?.userData
        return Number(userData?.toString("utf8").split("/")[1])
      })
    )
  } finally {
    await admin.disconnect()
  }
}

/** The partition leader of partition 0 of the case's topic, as a broker index (node id = index). */
export const leaderOfPartition0 = async (s: Scenario): Promise<number> => {
  const admin = kafkaOf(s.cluster).admin()
  await admin.connect()
  try {
    const metadata = await admin.fetchTopicMetadata({ topics: [s.topic] })
    return metadata.topics[0]!.partitions.find((p) => p.partitionId === 0)!.leader
  } finally {
    await admin.disconnect()
  }
}

interface Received {
  readonly partition: number
  readonly offset: string
  readonly key: string
  readonly headers: Record<string, string>
}

const text = (value: IHeaders[string]): string =>
  value === undefined
    ? ""
    : Buffer.isBuffer(value)
      ? value.toString("utf8")
      : Array.isArray(value)
        ? value.map(String).join(",")
        : String(value)

/** Every committed record of `topic`, read to its end offsets (see `readToEnd`). */
const readAll = async (s: Scenario, topic: string, timeoutMs: number): Promise<Array<Received>> =>
  (await readToEnd(kafkaOf(s.cluster), topic, timeoutMs)).map((m) => {
    const headers: Record<string, string> = {}
    for (const [k, v] of Object.entries(m.headers ?? {})) headers[k] = text(v)
    return { partition: m.partition, offset: m.offset, key: m.key?.toString("utf8") ?? "", headers }
  })

const offsetsOf = async (s: Scenario) => {
  const admin = kafkaOf(s.cluster).admin()
  await admin.connect()
  try {
    const [committed] = await admin.fetchOffsets({ groupId: s.groupId, topics: [s.topic] })
    const ends = await admin.fetchTopicOffsets(s.topic)
    return ends.map((e) => ({
      partition: e.partition,
      end: e.high,
      committed: committed?.partitions.find((p) => p.partition === e.partition)?.offset ?? "-1"
    }))
  } finally {
    await admin.disconnect()
  }
}

export interface Outcome {
  readonly expectedStored: number
  readonly stored: number
  readonly distinctStored: number
  /** Stored uids that should not be, and expected ones missing (at most a few of each). */
  readonly unexpected: ReadonlyArray<string>
  readonly missing: ReadonlyArray<string>
  /** Stored orders whose items (or total, or track number) differ from what was sent. */
  readonly mismatched: ReadonlyArray<string>
  readonly expectedParked: number
  readonly parked: number
  /** Sources (partition/offset) parked more than once, and parked ones that should not be. */
  readonly parkedTwice: ReadonlyArray<string>
  readonly parkedWrongly: ReadonlyArray<string>
  readonly notParked: ReadonlyArray<string>
  /** Dead letters whose kind differs from the one the message was made to have. */
  readonly wrongKind: ReadonlyArray<string>
  readonly parkedByKind: Readonly<Record<string, number>>
  readonly lag: ReadonlyArray<{ partition: number; end: string; committed: string }>
  /** Sent and acknowledged, yet not in the orders topic: ranges of plan positions. */
  readonly notInTopic: ReadonlyArray<string>
  /** Messages the topic holds, and the plan's messages, by partition; the producer's failed sends. */
  readonly topicCounts: Readonly<Record<number, number>>
  readonly plannedCounts: Readonly<Record<number, number>>
  readonly producerFailures: ReadonlyArray<string>
}

/** 3,4,5,9 → "3..5", "9". */
const ranges = (sorted: ReadonlyArray<number>): Array<string> => {
  const out: Array<string> = []
  for (let i = 0; i < sorted.length;) {
    let j = i
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++
    out.push(i === j ? `${sorted[i]}` : `${sorted[i]}..${sorted[j]}`)
    i = j + 1
  }
  return out
}

const itemsFingerprint = (o: OrderJson) =>
  [
    o.track_number,
    o.payment.amount,
    ...o.items.map((it, position) =>
      [
        position,
        it.chrt_id,
        it.track_number,
        it.price,
        it.rid,
        it.name,
        it.sale,
        it.size,
        it.total_price,
        it.nm_id,
        it.brand,
        it.status
      ].join("|")
    )
  ].join("\n")

/**
 * Wait until the case has settled (production done, the lag zero), then account for every message
 * sent. Returns what was found; the test asserts on it.
 */
export const settle = async (s: Scenario, production: Production): Promise<Outcome> => {
  await production.done
  // Ground truth: what the cluster holds (a producer retry may have written a message twice).
  const input = await readAll(s, s.topic, 120_000)
  const inTopic = new Set(input.map((m) => Number(m.headers[SEQ_HEADER])))
  const notInTopic = ranges(s.plan.messages.map((_, i) => i).filter((i) => !inTopic.has(i)))
  const topicCounts: Record<number, number> = {}
  for (const m of input) topicCounts[m.partition] = (topicCounts[m.partition] ?? 0) + 1
  const plannedCounts: Record<number, number> = {}
  for (const m of s.plan.messages) {
    const partition = partitionOf(m.key)
    plannedCounts[partition] = (plannedCounts[partition] ?? 0) + 1
  }
  const storedUids = new Set(input.filter((m) => m.headers[EXPECT_HEADER] === "stored").map((m) => m.key))
  const toPark = new Map(
    input
      .filter((m) => m.headers[EXPECT_HEADER] !== "stored" && m.headers[EXPECT_HEADER] !== "redelivery")
      .map((m) => [`${m.partition}/${m.offset}`, m.headers[EXPECT_HEADER]!])
  )

  await waitFor(s, "the consumer lag is zero", async () =>
    (await offsetsOf(s)).every((p) => p.committed === p.end)
  )
  const lag = await offsetsOf(s)

  const { stored, distinctStored, uids, fingerprints } = await withDatabase(s.databaseUrl, async (c) => {
    const counts = (await c.query("SELECT count(*) AS n, count(DISTINCT order_uid) AS d FROM orders")).rows[0]
    const rows = (
      await c.query(`
        SELECT o.order_uid, o.track_number, p.amount,
               string_agg(concat_ws('|', i.position, i.chrt_id, i.track_number, i.price, i.rid, i.name, i.sale,
                                    i.size, i.total_price, i.nm_id, i.brand, i.status), E'\\n' ORDER BY i.position) AS items
        FROM orders o JOIN payments p USING (order_uid) LEFT JOIN items i USING (order_uid)
        GROUP BY o.order_uid, o.track_number, p.amount`)
    ).rows as Array<{ order_uid: string; track_number: string; amount: string; items: string | null }>
    return {
      stored: Number(counts.n),
      distinctStored: Number(counts.d),
      uids: new Set(rows.map((r) => r.order_uid)),
      fingerprints: new Map(
        rows.map((r) => [r.order_uid, [r.track_number, r.amount, r.items ?? ""].join("\n")])
      )
    }
  })
  const mismatched: Array<string> = []
  for (const [uid, fingerprint] of fingerprints) {
    const order = s.plan.orders.get(uid)
    if (order !== undefined && itemsFingerprint(order) !== fingerprint) mismatched.push(uid)
  }

  // A transaction left open by a killed instance holds the reader up (it reads to the end offsets,
  // committed records only) until the broker aborts it, after the 15 s transaction timeout.
  const letters = await readAll(s, s.dlqTopic, 120_000)
  const bySource = new Map<string, number>()
  const parkedByKind: Record<string, number> = {}
  const wrongKind: Array<string> = []
  for (const l of letters) {
    const source = `${l.headers["dlq.source.partition"]}/${l.headers["dlq.source.offset"]}`
    bySource.set(source, (bySource.get(source) ?? 0) + 1)
    const kind = l.headers["dlq.error.kind"] ?? "none"
    parkedByKind[kind] = (parkedByKind[kind] ?? 0) + 1
    if (kind !== l.headers[EXPECT_HEADER])
      wrongKind.push(
        `${source}: ${l.headers[EXPECT_HEADER]} parked as ${kind} (${l.headers["dlq.error.detail"]})`
      )
  }
  return {
    expectedStored: storedUids.size,
    stored,
    distinctStored,
    unexpected: [...uids].filter((u) => !storedUids.has(u)).slice(0, 5),
    missing: [...storedUids].filter((u) => !uids.has(u)).slice(0, 5),
    mismatched: mismatched.slice(0, 5),
    expectedParked: toPark.size,
    parked: letters.length,
    parkedTwice: [...bySource]
      .filter(([, n]) => n > 1)
      .map(([k]) => k)
      .slice(0, 5),
    parkedWrongly: [...bySource.keys()].filter((k) => !toPark.has(k)).slice(0, 5),
    notParked: [...toPark.keys()].filter((k) => !bySource.has(k)).slice(0, 5),
    wrongKind: wrongKind.slice(0, 5),
    parkedByKind,
    lag,
    notInTopic: notInTopic.slice(0, 20),
    topicCounts,
    plannedCounts,
    producerFailures: production.failures.slice(0, 20)
  }
}
