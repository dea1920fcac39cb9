/**
 * Parks what cannot be stored on the dead-letter topic, and commits a batch's offsets — both in
 * one Kafka transaction. A batch is therefore settled all at once: its rejects appear on the
 * dead-letter topic exactly when its offsets move, so a crash in between cannot park a message
 * twice (for `read_committed` readers of the dead-letter topic) or lose it.
 */
import { hostname } from "node:os"
import { Cause, Effect, Exit, Runtime } from "effect"
import { CompressionTypes, Partitioners, type IHeaders, type Producer } from "kafkajs"
import { IngestConfig } from "../config/AppConfig.ts"
import type { RejectionKind } from "../orders/Rejection.ts"
import { KafkaClient } from "./KafkaClient.ts"
import { type KafkaError, kafkaError } from "./KafkaError.ts"

export type DeadLetterKind = RejectionKind

/** Header names on a dead letter. */
export const DeadLetterHeaders = {
  kind: "dlq.error.kind",
  detail: "dlq.error.detail",
  topic: "dlq.source.topic",
  partition: "dlq.source.partition",
  offset: "dlq.source.offset",
  failedAt: "dlq.failed.at"
} as const

/**
 * Headers on a replayed message: which dead letter it is a copy of (`topic/partition/offset` on
 * the dead-letter topic) and when it was sent. Parked again, it keeps them: the new letter names
 * its previous one.
 */
export const ReplayHeaders = {
  of: "replay.of",
  at: "replay.at"
} as const

export interface DeadLetter {
  readonly kind: DeadLetterKind
  readonly detail: string
  /**
   * The original message: key, value (bytes as received) and headers — `traceparent` and
   * `tracestate` among them, so that a replay continues the message's trace.
   */
  readonly key: Buffer | null
  readonly value: Buffer | null
  readonly headers?: IHeaders | undefined
  readonly source: { readonly topic: string; readonly partition: number; readonly offset: string }
}

export interface Settle {
  readonly topic: string
  readonly partition: number
  readonly nextOffset: string
}

export const toKafkaMessage = (letter: DeadLetter, now: Date) => ({
  key: letter.key,
  value: letter.value,
  headers: {
    ...letter.headers,
    [DeadLetterHeaders.kind]: letter.kind,
    [DeadLetterHeaders.detail]: letter.detail,
    [DeadLetterHeaders.topic]: letter.source.topic,
    [DeadLetterHeaders.partition]: String(letter.source.partition),
    [DeadLetterHeaders.offset]: letter.source.offset,
    [DeadLetterHeaders.failedAt]: now.toISOString()
  }
})

/**
 * Rejects can be large (a `too_large` message is parked whole): sending a batch's worth at once
 * would exceed the broker's request size and fail for ever. Well under Kafka's 1 MiB default.
 */
const MAX_SEND_BYTES = 512 * 1024

const sizeOf = (letter: DeadLetter): number =>
  (letter.value?.byteLength ?? 0) + (letter.key?.byteLength ?? 0) + letter.detail.length + 512

/** Consecutive groups of at most `maxBytes` (a single larger letter goes alone). */
export const chunksByBytes = (
  letters: ReadonlyArray<DeadLetter>,
  maxBytes: number
): Array<Array<DeadLetter>> => {
  const chunks: Array<Array<DeadLetter>> = []
  let current: Array<DeadLetter> = []
  let bytes = 0
  for (const letter of letters) {
    const size = sizeOf(letter)
    if (current.length > 0 && bytes + size > maxBytes) {
      chunks.push(current)
      current = []
      bytes = 0
    }
    current.push(letter)
    bytes += size
  }
  if (current.length > 0) chunks.push(current)
  return chunks
}

export class DeadLetters extends Effect.Service<DeadLetters>()("DeadLetters", {
  scoped: Effect.gen(function* () {
    const client = yield* KafkaClient
    const makeProducer = (lane: number): Producer =>
      client.kafka.producer({
        // Unique per process and lane: two instances must not fence each other off. A replacement
        // producer keeps its lane's id, so its start aborts whatever the broken one left open.
        transactionalId: `${client.clientId}-${hostname()}-${process.pid}-${lane}`,
        createPartitioner: Partitioners.DefaultPartitioner,
        idempotent: true,
        maxInFlightRequests: 1,
        // Short, so that a transaction left open by a crash is aborted soon and readers move on.
        transactionTimeout: 15_000,
        // Right after a commit the coordinator is still writing its markers and answers the next
        // transaction's first request with CONCURRENT_TRANSACTIONS. kafkajs' default first retry
        // (300 ms) made every transaction take ~270 ms on one broker; retrying after 25 ms (the
        // Java client retries this case after 20 ms) takes ~38 ms. Eight doublings still wait
        // out a leader election (~6 s) before our own retry starts over with a new producer.
        retry: { initialRetryTime: 25, retries: 8 }
      })

    /**
     * One transactional producer per lane (a lane per consumer of this process): a producer runs
     * one transaction at a time, and with one for the whole process the consumers' transactions
     * queued behind each other. After a failed transaction (a broker or the coordinator gone)
     * kafkajs' producer can stay in a state it never leaves; the next attempt starts a new one.
     */
    interface Lane {
      current: Producer | undefined
      readonly lock: Effect.Semaphore
    }
    const lanes = new Map<number, Lane>()
    const laneOf = (lane: number): Lane => {
      let found = lanes.get(lane)
      if (found === undefined) {
        found = { current: undefined, lock: Effect.unsafeMakeSemaphore(1) }
        lanes.set(lane, found)
      }
      return found
    }
    const producer = async (lane: number): Promise<Producer> => {
      const l = laneOf(lane)
      if (l.current === undefined) {
        const fresh = makeProducer(lane)
        await fresh.connect()
        l.current = fresh
      }
      return l.current
    }
    const discard = async (lane: number) => {
      const l = laneOf(lane)
      const broken = l.current
      l.current = undefined
      await broken?.disconnect().catch(() => undefined)
    }
    // Every consumer's lane connects at start-up: a Kafka without transactions shows at once, and
    // the first dead letters do not wait for a producer id.
    const { consumers } = yield* IngestConfig
    yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => Promise.all(Array.from({ length: consumers }, (_, lane) => producer(lane))),
        catch: kafkaError("Could not connect the dead-letter producer")
      }),
      () => Effect.promise(() => Promise.all([...lanes.keys()].map(discard)))
    )

    const runtime = yield* Effect.runtime<never>()

    /** Whether the group's committed offset of every partition in `offsets` has reached its `nextOffset`. */
    const committedAlready = async (offsets: ReadonlyArray<Settle>): Promise<boolean> => {
      const topics = [...new Set(offsets.map((o) => o.topic))]
      const committed = await client.admin.fetchOffsets({ groupId: client.groupId, topics })
      return offsets.every((o) => {
        const found = committed
          .find((t) => t.topic === o.topic)
          ?.partitions.find((p) => p.partition === o.partition)?.offset
        return found !== undefined && found !== "-1" && BigInt(found) >= BigInt(o.nextOffset)
      })
    }

    /**
     * Send `letters` to the dead-letter topic and commit `offsets` for the consumer group, in one
     * transaction (`acks: -1`), on `lane`'s producer. Fails without effect on Kafka if anything
     * goes wrong.
     *
     * `beforeCommit` runs once the letters are sent, just before the offsets join the
     * transaction; if it fails, the transaction is aborted with its error. kafkajs' transactional
     * offset commit carries no group generation, so this is where a consumer the group has dropped
     * (silent past its session timeout) is kept from parking what its partitions' new owner parks
     * too, and from moving the group's offset back. It comes before the offsets because the
     * coordinator lets the later of two offset records for a partition win: a plain commit made in
     * `beforeCommit` after them would undo them. A pause after it leaves an open transaction, which
     * the coordinator aborts on its timeout.
     *
     * `maybeSettled` says that an earlier attempt failed, possibly after its commit went through (a
     * reply lost while the coordinator was away): then the group's offsets are read first, once the
     * lane's new producer is ready — its start waits until the coordinator has completed whatever
     * the broken one left — and if they are all committed already there is nothing to do; sending
     * again would park every letter twice.
     */
    const settle = (
      letters: ReadonlyArray<DeadLetter>,
      offsets: ReadonlyArray<Settle>,
      options: {
        readonly lane?: number
        readonly beforeCommit?: Effect.Effect<void, KafkaError>
        readonly maybeSettled?: boolean
      } = {}
    ) => {
      const lane = options.lane ?? 0
      return laneOf(lane)
        .lock.withPermits(1)(
          Effect.tryPromise({
            try: async () => {
              try {
                const ready = await producer(lane)
                if (options.maybeSettled === true && (await committedAlready(offsets))) return
                const transaction = await ready.transaction()
                try {
                  const now = new Date()
                  for (const chunk of chunksByBytes(letters, MAX_SEND_BYTES)) {
                    await transaction.send({
                      topic: client.topics.deadLetters,
                      acks: -1,
                      compression: CompressionTypes.None,
                      messages: chunk.map((l) => toKafkaMessage(l, now))
                    })
                  }
                  if (options.beforeCommit) {
                    const confirmed = await Runtime.runPromiseExit(runtime)(options.beforeCommit)
                    if (Exit.isFailure(confirmed)) throw Cause.squash(confirmed.cause)
                  }
                  if (offsets.length > 0) {
                    await transaction.sendOffsets({
                      consumerGroupId: client.groupId,
                      topics: offsets.map((o) => ({
                        topic: o.topic,
                        partitions: [{ partition: o.partition, offset: o.nextOffset }]
                      }))
                    })
                  }
                  await transaction.commit()
                } catch (error) {
                  if (transaction.isActive()) await transaction.abort().catch(() => undefined)
                  throw error
                }
              } catch (error) {
                await discard(lane)
                throw error
              }
            },
            catch: kafkaError("Could not park dead letters and commit offsets")
          })
        )
        .pipe(Effect.withSpan("DeadLetters.settle", { attributes: { letters: letters.length } }))
    }

    return { settle, topic: client.topics.deadLetters } as const
  })
}) {}
