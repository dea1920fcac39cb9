/**
 * In-memory stand-ins for the ingest pipeline's dependencies, so that the real `IngestPipeline`
 * runs thousands of messages in milliseconds. Each keeps the one contract the pipeline relies on,
 * and records what a test needs to check that the pipeline kept its own:
 *
 * - `FakeKafka`: partitions of messages handed over as batches, one batch per partition at a time,
 *   in offset order; a settled batch moves the fetch position past it, an abandoned one is handed
 *   over again from the group's committed offset (kafkajs' `resolveOffset`, and where a new owner
 *   starts). Batches can be made stale (a rebalance took them), or handed to two consumers at once.
 * - `FakeDeadLetters`: a Kafka transaction — the letters and the offsets land together, or nothing.
 * - `FakeRepository`: `order_uid` as primary key; the same content again is a duplicate, other
 *   content a conflict; the first under a uid in a batch wins. Like PostgreSQL, it refuses text
 *   with a lone UTF-16 surrogate (SQLSTATE 22P02) or a NUL (22P05).
 *
 * Faults are injected on purpose: transient failures (an outage that passes), commits that take
 * effect but are reported failed (the reply was lost), two consumers racing on the same batch and,
 * keyed by marks in the order, a refusal of the data (SQLSTATE 23514) or a defect while storing it.
 */
import { SqlError } from "@effect/sql/SqlError"
import { Context, Deferred, Effect, Layer, Option, Queue, Ref, Stream } from "effect"
import type { KafkaMessage } from "kafkajs"
import { DeadLetters, type DeadLetter, type Settle } from "../../src/kafka/DeadLetters.ts"
import { KafkaError } from "../../src/kafka/KafkaError.ts"
import { KafkaConsumer, type ConsumedBatch } from "../../src/kafka/KafkaConsumer.ts"
import type { Order } from "../../src/orders/Order.ts"
import { orderToJsonString } from "../../src/orders/OrderDecoder.ts"
import { OrderRepository, type InsertOutcome } from "../../src/orders/OrderRepository.ts"

/** Marks in an order's `customer_id` that make the fake database misbehave on that order alone. */
export const REFUSED_BY_DATABASE = "fake-db-refuses-this-order"
export const DIES_IN_STORE = "fake-db-dies-on-this-order"

export interface Incoming {
  readonly key: string | null
  readonly value: Buffer | null
}

/** Coin flips the fakes use to inject faults; deterministic per test run. */
export type Chance = () => boolean

export const never: Chance = () => false

export const seededChance = (seed: number, probability: number): Chance => {
  let t = seed >>> 0
  return () => {
    // mulberry32
    t = (t + 0x6d2b79f5) >>> 0
    let r = Math.imul(t ^ (t >>> 15), 1 | t)
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296 < probability
  }
}

export interface Ledger {
  /** Messages by partition, in offset order (offset = index). */
  readonly partitions: Array<Array<KafkaMessage>>
  /** Committed offset by partition (the next offset to read). */
  readonly committed: Array<number>
  /** Every letter parked, in the order the transactions committed. */
  readonly parked: Array<DeadLetter>
  /** Stored orders by uid: their canonical JSON. */
  readonly stored: Map<string, string>
  /** How many times each fault was injected (so a test can show the run met it). */
  readonly faults: Record<"lostCommitReply" | "lostTransactionReply" | "lostStoreReply" | "racing", number>
  /** Broken promises found while the pipeline ran (a commit past an unsettled message, say). */
  readonly violations: Array<string>
}

export const makeLedger = (partitions: number): Ledger => ({
  partitions: Array.from({ length: partitions }, () => []),
  committed: Array.from({ length: partitions }, () => 0),
  parked: [],
  stored: new Map(),
  faults: { lostCommitReply: 0, lostTransactionReply: 0, lostStoreReply: 0, racing: 0 },
  violations: []
})

const TOPIC = "orders"

/** Append messages to a partition, as a producer would. */
export const append = (ledger: Ledger, partition: number, messages: ReadonlyArray<Incoming>) => {
  const log = ledger.partitions[partition]!
  for (const m of messages) {
    log.push({
      key: m.key === null ? null : Buffer.from(m.key),
      value: m.value,
      offset: String(log.length),
      timestamp: String(Date.now()),
      attributes: 0,
      headers: {},
      size: m.value?.byteLength ?? 0
    } as KafkaMessage)
  }
}

/** Parked letters of one message, by its coordinates. */
export const lettersOf = (ledger: Ledger, partition: number, offset: number) =>
  ledger.parked.filter((l) => l.source.partition === partition && l.source.offset === String(offset))

/**
 * Whether a message is settled: parked, or its order is stored (now or before) with the same
 * content. Used when offsets are committed: nothing may be committed past a message that is not.
 */
const isSettled = (
  ledger: Ledger,
  partition: number,
  offset: number,
  parse: (m: KafkaMessage) => Option.Option<Order>
) => {
  if (lettersOf(ledger, partition, offset).length > 0) return true
  const message = ledger.partitions[partition]![offset]!
  return Option.match(parse(message), {
    onNone: () => false,
    onSome: (order) => ledger.stored.get(order.order_uid) === orderToJsonString(order)
  })
}

const commitOffset = (
  ledger: Ledger,
  partition: number,
  next: number,
  parse: (m: KafkaMessage) => Option.Option<Order>
) => {
  for (let offset = ledger.committed[partition]!; offset < next; offset++) {
    if (!isSettled(ledger, partition, offset, parse)) {
      ledger.violations.push(
        `offset ${next} committed on partition ${partition} past unsettled offset ${offset}`
      )
    }
  }
  if (next < ledger.committed[partition]!) {
    ledger.violations.push(`partition ${partition}'s committed offset went back to ${next}`)
  }
  ledger.committed[partition] = next
}

export interface FakeKafkaOptions {
  readonly batchSize: number
  /** A handed-over batch is taken away (a rebalance) before it is settled. */
  readonly stale: Chance
  /**
   * A handed-over batch is taken away without the consumer knowing (it was paused past its session
   * timeout): it looks fresh until the coordinator answers a commit or a membership check.
   */
  readonly dropped?: Chance
  /**
   * Two consumers race on the same messages: a batch is also handed to a consumer the group has
   * already dropped (it fetched the same offsets before its partition moved), and both handle it
   * at once. Only the coordinator's answers tell the dropped one.
   */
  readonly racing?: Chance
  /** A commit or a dead-letter transaction fails without effect (the broker is away). */
  readonly transientFailure: Chance
  /** A commit or a dead-letter transaction takes effect, but is reported failed (the reply was lost). */
  readonly lostReply?: Chance
  /** Decode a message for the settledness check (the real decoder: tests never change it). */
  readonly parse: (m: KafkaMessage) => Option.Option<Order>
  /** Make the batch stream fail: kafkajs gave up on the consumer. */
  readonly crash?: Deferred.Deferred<never, KafkaError>
}

/** What the coordinator knows of one handed-over batch. */
interface BatchState {
  /** Known to be no longer ours. */
  stale: boolean
  /** No longer ours, not known yet: the coordinator says so when asked. */
  dropped: boolean
  /** Handed to a consumer the group dropped before it fetched: it never owned the partition. */
  readonly ghost: boolean
}

/** The consumer side of a Kafka topic kept in `ledger`, and the dead-letter side committing to it. */
export const fakeKafka = (ledger: Ledger, options: FakeKafkaOptions) =>
  Layer.scopedContext(
    Effect.gen(function* () {
      // A ghost batch may be in flight beside each partition's own.
      const concurrency = ledger.partitions.length * 2
      const queue = yield* Queue.bounded<ConsumedBatch>(concurrency)
      const running = yield* Ref.make(true)
      // Fetch position by partition: where the next batch starts.
      const position = ledger.partitions.map(() => 0)
      const inFlight = ledger.partitions.map(() => false)
      const states = new WeakMap<object, BatchState>()
      const lostReply = options.lostReply ?? never
      const fail = (what: string) => Effect.fail(new KafkaError({ message: `fake broker: ${what}` }))

      const makeBatch = (partition: number, ghost: boolean): ConsumedBatch => {
        const from = position[partition]!
        const messages = ledger.partitions[partition]!.slice(from, from + options.batchSize)
        const nextOffset = from + messages.length
        const state: BatchState = ghost
          ? { stale: false, dropped: true, ghost }
          : { stale: options.stale(), dropped: options.dropped?.() ?? false, ghost }
        /** The coordinator's answer: once it has said "not a member", the batch is known stale. */
        const notAMember = () => {
          if (state.dropped) state.stale = true
          return state.stale
        }
        const batch: ConsumedBatch = {
          topic: TOPIC,
          partition,
          messages,
          member: ghost ? 1 : 0,
          nextOffset: String(nextOffset),
          heartbeat: Effect.void,
          isStale: Effect.sync(() => state.stale),
          commit: Effect.suspend(() => {
            if (notAMember()) return fail("not a member of this generation")
            if (options.transientFailure()) return fail("commit failed, broker away")
            commitOffset(ledger, partition, nextOffset, options.parse)
            if (lostReply()) {
              ledger.faults.lostCommitReply++
              return fail("no reply to the commit (it was made)")
            }
            return Effect.void
          }),
          confirmMember: Effect.suspend(() =>
            notAMember() ? fail("not a member of this generation") : Effect.void
          ),
          // A ghost's position is not the partition's: only its owner moves it.
          done: Effect.sync(() => {
            if (ghost) return
            position[partition] = nextOffset
            inFlight[partition] = false
          }),
          // Given back: whoever owns the partition next starts where the group committed.
          abandon: Effect.sync(() => {
            if (ghost) return
            position[partition] = ledger.committed[partition]!
            inFlight[partition] = false
          })
        }
        states.set(batch, state)
        return batch
      }

      /** Hand over a batch for each partition with messages past its position and none in flight. */
      const feed = Effect.gen(function* () {
        for (let p = 0; p < ledger.partitions.length; p++) {
          if (!inFlight[p] && position[p]! < ledger.partitions[p]!.length) {
            inFlight[p] = true
            if (options.racing?.()) {
              ledger.faults.racing++
              yield* Queue.offer(queue, makeBatch(p, true))
            }
            yield* Queue.offer(queue, makeBatch(p, false))
          }
        }
      })
      yield* feed.pipe(Effect.zipRight(Effect.sleep("1 millis")), Effect.forever, Effect.forkScoped)

      const consumer = KafkaConsumer.make({
        batches: Stream.fromQueue(queue),
        crashed: options.crash ? Deferred.await(options.crash) : Effect.never,
        stop: Ref.set(running, false).pipe(Effect.as([])),
        isRunning: Ref.get(running),
        concurrency,
        groupId: "fake-group",
        instanceId: "fake-instance"
      })

      const settle = (
        letters: ReadonlyArray<DeadLetter>,
        offsets: ReadonlyArray<Settle>,
        settleOptions: {
          readonly lane?: number
          readonly beforeCommit?: Effect.Effect<void, KafkaError>
          readonly maybeSettled?: boolean
        } = {}
      ): Effect.Effect<void, KafkaError> =>
        Effect.gen(function* () {
          if (options.transientFailure()) return yield* fail("transaction failed")
          // An earlier attempt may have committed: the group's offsets say.
          if (
            settleOptions.maybeSettled === true &&
            offsets.every((o) => ledger.committed[o.partition]! >= Number(o.nextOffset))
          ) {
            return
          }
          if (settleOptions.beforeCommit) yield* settleOptions.beforeCommit
          // Like Kafka's, the fake's transactional offset commit checks no group generation.
          for (const o of offsets) {
            if (states.get(o)?.dropped) {
              ledger.violations.push(
                `partition ${o.partition} settled up to ${o.nextOffset} by a consumer the group had dropped`
              )
            }
          }
          // Committed: the letters and the offsets together.
          ledger.parked.push(...letters)
          for (const o of offsets) commitOffset(ledger, o.partition, Number(o.nextOffset), options.parse)
          if (lostReply()) {
            ledger.faults.lostTransactionReply++
            return yield* fail("no reply to the transaction's commit (it was committed)")
          }
        })
      const deadLetters = DeadLetters.make({ settle, topic: `${TOPIC}.dlq` })
      // Both services from one scope: they share the ledger and the fetch positions.
      return Context.make(KafkaConsumer, consumer).pipe(Context.add(DeadLetters, deadLetters))
    })
  )

export interface FakeRepositoryOptions {
  /** A batch fails without effect (PostgreSQL away). */
  readonly transientFailure: Chance
  /** A batch is stored, but the connection drops before the commit is acknowledged. */
  readonly lostReply?: Chance
}

/** A lone UTF-16 surrogate: PostgreSQL refuses `\ud800` (and `\u0000`) in JSON it turns into text. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

/** Every string in a JSON-like value. */
const stringsOf = (value: unknown): Array<string> =>
  typeof value === "string"
    ? [value]
    : typeof value === "object" && value !== null
      ? Object.values(value).flatMap(stringsOf)
      : []

/** `OrderRepository.insertBatch` over a Map, with the real one's outcomes; nothing else. */
export const fakeRepository = (ledger: Ledger, options: FakeRepositoryOptions) => {
  const lostReply = options.lostReply ?? never
  const insertBatch = (orders: ReadonlyArray<Order>) =>
    Effect.suspend((): Effect.Effect<Array<InsertOutcome>, SqlError> => {
      if (options.transientFailure()) {
        return Effect.fail(new SqlError({ cause: new Error("connect ECONNREFUSED"), message: "fake: away" }))
      }
      if (orders.some((o) => o.customer_id === DIES_IN_STORE)) {
        return Effect.dieMessage("the fake database broke on this order")
      }
      const refusal = (code: string, message: string) =>
        Effect.fail(
          new SqlError({ cause: Object.assign(new Error(message), { code }), message: "fake: refused" })
        )
      if (orders.some((o) => o.customer_id === REFUSED_BY_DATABASE)) {
        return refusal("23514", 'new row violates check constraint "fake"')
      }
      if (orders.some((o) => stringsOf(o).some((s) => LONE_SURROGATE.test(s)))) {
        return refusal("22P02", "invalid input syntax for type json")
      }
      if (orders.some((o) => stringsOf(o).some((s) => s.includes("\u0000")))) {
        return refusal("22P05", "unsupported Unicode escape sequence")
      }
      // One transaction: compute everything, then apply.
      const fresh = new Map<string, string>()
      const outcomes = orders.map((order): InsertOutcome => {
        const json = orderToJsonString(order)
        const existing = ledger.stored.get(order.order_uid) ?? fresh.get(order.order_uid)
        if (existing === undefined) {
          fresh.set(order.order_uid, json)
          return "inserted"
        }
        return existing === json ? "duplicate" : "conflict"
      })
      for (const [uid, json] of fresh) ledger.stored.set(uid, json)
      if (lostReply()) {
        ledger.faults.lostStoreReply++
        return Effect.fail(new SqlError({ cause: new Error("read ECONNRESET"), message: "fake: reply lost" }))
      }
      return Effect.succeed(outcomes)
    })
  // The pipeline needs `insertBatch` alone: anything else it asks for is a defect of the test.
  const repository = new Proxy(
    { insertBatch, ping: Effect.void },
    {
      get: (target, name) =>
        name in target || typeof name === "symbol" || name === "then"
          ? Reflect.get(target, name)
          : () => Effect.dieMessage(`${name} is not part of the fake repository`)
    }
  )
  return Layer.succeed(OrderRepository, repository as unknown as OrderRepository)
}
