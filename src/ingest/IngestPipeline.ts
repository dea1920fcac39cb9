/**
 * The path of every message: decode → store the valid orders (one transaction) → park rejects and
 * conflicts on the dead-letter topic and commit the offsets (one Kafka transaction; a batch with
 * nothing to park just commits its offsets) → cache the stored orders. A batch that fails for a
 * passing reason (PostgreSQL or Kafka down) is retried in place with backoff, holding its
 * partition: nothing is committed past an offset that is neither stored nor dead-lettered.
 */
import type { SqlError } from "@effect/sql/SqlError"
import {
  Cause,
  Data,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  Layer,
  Metric,
  MetricBoundaries,
  Option,
  Ref,
  Schedule,
  Stream
} from "effect"
import type { KafkaMessage } from "kafkajs"
import { CachedOrder, OrderCache } from "../cache/OrderCache.ts"
import { IngestConfig } from "../config/AppConfig.ts"
import { DeadLetters, type DeadLetter } from "../kafka/DeadLetters.ts"
import { KafkaClient } from "../kafka/KafkaClient.ts"
import { KafkaConsumer, type ConsumedBatch } from "../kafka/KafkaConsumer.ts"
import type { Order } from "../orders/Order.ts"
import { decodeOrderBytes, orderToJsonString } from "../orders/OrderDecoder.ts"
import { OrderRepository, type InsertOutcome } from "../orders/OrderRepository.ts"

export const IngestMetrics = {
  consumed: Metric.counter("ingest_messages_consumed_total", {
    description: "Messages read from the orders topic"
  }),
  stored: Metric.counter("ingest_orders_stored_total", { description: "Orders stored for the first time" }),
  duplicates: Metric.counter("ingest_orders_duplicate_total", {
    description: "Redelivered orders that were already stored (acknowledged, nothing written)"
  }),
  conflicts: Metric.counter("ingest_orders_conflict_total", {
    description: "Orders whose uid was already stored with other content"
  }),
  deadLettered: Metric.counter("ingest_messages_dead_lettered_total", {
    description: "Messages parked on the dead-letter topic, by kind"
  }),
  retries: Metric.counter("ingest_batch_retries_total", {
    description: "Batch attempts that failed and were retried"
  }),
  batchDuration: Metric.histogram(
    "ingest_batch_duration_seconds",
    MetricBoundaries.exponential({ start: 0.005, factor: 2, count: 12 }),
    "Time from receiving a batch to committing it"
  ),
  batchSize: Metric.histogram(
    "ingest_batch_size",
    MetricBoundaries.exponential({ start: 1, factor: 2, count: 12 }),
    "Messages per batch"
  )
}

/** PostgreSQL said no to the data itself (SQLSTATE classes 22 and 23): retrying will not help. */
export const isDataError = (error: SqlError): boolean => {
  const code = (error.cause as { code?: unknown } | undefined)?.code
  return typeof code === "string" && (code.startsWith("22") || code.startsWith("23"))
}

/** PostgreSQL's own words (e.g. which constraint), rather than the client's generic message. */
const databaseReason = (error: SqlError): string => {
  const cause = error.cause as { message?: unknown; detail?: unknown } | undefined
  const message = typeof cause?.message === "string" ? cause.message : error.message
  return typeof cause?.detail === "string" ? `${message} (${cause.detail})` : message
}

const keyOf = (message: KafkaMessage): string | undefined => message.key?.toString("utf8")

interface Decoded {
  readonly message: KafkaMessage
  readonly order: Order
}

export interface BatchResult {
  readonly stored: number
  readonly duplicates: number
  readonly deadLettered: number
  /** True if the batch was given back uncommitted (shutdown or rebalance). */
  readonly abandoned: boolean
}

export const makeBatchHandler = Effect.gen(function* () {
  const config = yield* IngestConfig
  const repository = yield* OrderRepository
  const deadLetters = yield* DeadLetters
  const cache = yield* OrderCache

  const letter = (
    batch: ConsumedBatch,
    message: KafkaMessage,
    kind: DeadLetter["kind"],
    detail: string
  ): DeadLetter => ({
    kind,
    detail,
    key: message.key ?? null,
    value: message.value ?? null,
    headers: message.headers,
    source: { topic: batch.topic, partition: batch.partition, offset: message.offset }
  })

  /** One order in its own transaction; PostgreSQL refusing it as data sets it aside with the reason. */
  const storeOne = (d: Decoded) =>
    repository.insertBatch([d.order]).pipe(
      Effect.map(([outcome]): Either.Either<InsertOutcome, string> => Either.right(outcome!)),
      Effect.catchIf(isDataError, (e) =>
        Effect.succeed(Either.left(`the database refused the order: ${databaseReason(e)}`))
      )
    )

  /**
   * Store the batch in one transaction; if PostgreSQL refuses the data itself, store the orders
   * one by one so that only the ones it refuses are set aside (a poison message must not stall
   * its partition). With `ingest.transaction: message` every order gets its own transaction.
   */
  const store = (orders: ReadonlyArray<Decoded>) =>
    config.transaction === "message"
      ? Effect.forEach(orders, storeOne)
      : repository.insertBatch(orders.map((d) => d.order)).pipe(
          Effect.map((outcomes) =>
            outcomes.map((o): Either.Either<InsertOutcome, string> => Either.right(o))
          ),
          Effect.catchIf(isDataError, () => Effect.forEach(orders, storeOne))
        )

  /**
   * Retry a step of a batch until it succeeds, with exponential backoff and jitter, heartbeating
   * so the group keeps the partition with us; give up only when the partition was taken away.
   */
  const retryInPlace = <A, E extends { readonly message: string }, R>(
    batch: ConsumedBatch,
    step: string,
    effect: Effect.Effect<A, E, R>
  ): Effect.Effect<Option.Option<A>, never, R> => {
    const attempt = Effect.gen(function* () {
      if (yield* batch.isStale) return Option.none<A>()
      return Option.some(yield* effect)
    })
    return attempt.pipe(
      Effect.tapError((e) =>
        Effect.all([
          Metric.increment(IngestMetrics.retries),
          batch.heartbeat,
          Effect.logWarning(`Ingest ${step} failed; retrying`).pipe(
            Effect.annotateLogs({ partition: batch.partition, error: e.message })
          )
        ])
      ),
      Effect.retry(
        // Doubling from retry_base with jitter, never longer apart than retry_max, for as long as it takes.
        Schedule.exponential(config.retryBase, 2).pipe(
          Schedule.jittered,
          Schedule.union(Schedule.spaced(config.retryMax))
        )
      ),
      Effect.catchAll(() => Effect.succeed(Option.none<A>()))
    )
  }

  const handle = (batch: ConsumedBatch): Effect.Effect<BatchResult> =>
    Effect.gen(function* () {
      const started = Date.now()
      const letters: Array<DeadLetter> = []
      const valid: Array<Decoded> = []
      for (const message of batch.messages) {
        const decoded = decodeOrderBytes(message.value, config.maxMessageBytes)
        if (Either.isRight(decoded)) valid.push({ message, order: decoded.right })
        else letters.push(letter(batch, message, decoded.left.kind, decoded.left.detail))
      }

      const outcomes =
        valid.length === 0 ? Option.some([]) : yield* retryInPlace(batch, "store", store(valid))
      if (Option.isNone(outcomes)) {
        yield* batch.abandon
        return { stored: 0, duplicates: 0, deadLettered: 0, abandoned: true }
      }
      const fresh: Array<Order> = []
      let duplicates = 0
      let conflicts = 0
      outcomes.value.forEach((outcome, i) => {
        const { message, order } = valid[i]!
        if (Either.isLeft(outcome)) {
          letters.push(letter(batch, message, "schema", outcome.left))
        } else if (outcome.right === "inserted") {
          fresh.push(order)
        } else if (outcome.right === "duplicate") {
          duplicates++
        } else {
          conflicts++
          letters.push(
            letter(
              batch,
              message,
              "conflict",
              `a different order is already stored under order_uid ${JSON.stringify(order.order_uid)}; the stored one was kept`
            )
          )
        }
      })

      // Rejects and offsets move together in one Kafka transaction; with nothing to park, a plain
      // offset commit does the same in one round trip. The coordinator checks a plain commit's
      // group generation, but kafkajs' transactional offset commit carries none: before committing
      // one, a consumer that was silent past its session timeout (paused, cut off) finds out from
      // a heartbeat that its partitions went to others, and leaves the batch to them.
      const stillOurs = Effect.zipRight(
        batch.heartbeat,
        Effect.map(batch.isStale, (stale) => !stale)
      )
      const settled = yield* retryInPlace(
        batch,
        letters.length === 0 ? "commit" : "dead-letter and commit",
        letters.length === 0
          ? batch.commit
          : deadLetters.settle(letters, [batch], { lane: batch.member, stillOurs })
      )
      if (Option.isNone(settled)) {
        yield* batch.abandon
        return { stored: fresh.length, duplicates, deadLettered: 0, abandoned: true }
      }
      yield* batch.done

      // One atomic step for the whole batch, oldest first (the order they arrived in).
      yield* cache.putAll(
        fresh.map((order) => CachedOrder.fromJson(order.order_uid, orderToJsonString(order)))
      )
      for (const l of letters) {
        yield* Metric.increment(Metric.tagged(IngestMetrics.deadLettered, "kind", l.kind))
        yield* Effect.logInfo("Message parked on the dead-letter topic").pipe(
          Effect.annotateLogs({
            kind: l.kind,
            detail: l.detail,
            order_uid: l.key?.toString("utf8") ?? null,
            partition: l.source.partition,
            offset: l.source.offset
          })
        )
      }
      yield* Metric.incrementBy(IngestMetrics.consumed, batch.messages.length)
      yield* Metric.incrementBy(IngestMetrics.stored, fresh.length)
      yield* Metric.incrementBy(IngestMetrics.duplicates, duplicates)
      yield* Metric.incrementBy(IngestMetrics.conflicts, conflicts)
      yield* Metric.update(IngestMetrics.batchSize, batch.messages.length)
      yield* Metric.update(IngestMetrics.batchDuration, (Date.now() - started) / 1000)
      yield* Effect.logDebug("Batch committed").pipe(
        Effect.annotateLogs({
          partition: batch.partition,
          batch_size: batch.messages.length,
          next_offset: batch.nextOffset,
          stored: fresh.length,
          duplicates,
          dead_lettered: letters.length,
          first_key: batch.messages[0] ? (keyOf(batch.messages[0]) ?? null) : null
        })
      )
      return { stored: fresh.length, duplicates, deadLettered: letters.length, abandoned: false }
    }).pipe(Effect.withSpan("IngestPipeline.batch", { attributes: { partition: batch.partition } }))

  return { handle } as const
})

/** Ingestion stopped by itself (not for a shutdown): the service can no longer do its job. */
export class IngestStopped extends Data.TaggedError("IngestStopped")<{
  readonly message: string
  readonly cause: Cause.Cause<unknown>
}> {}

const reason = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  return error instanceof Error ? error.message : String(error)
}

/** Ingest status, for `/readyz` and for the process to exit when ingestion cannot go on. */
export class IngestStatus extends Effect.Service<IngestStatus>()("IngestStatus", {
  effect: Effect.gen(function* () {
    const running = yield* Ref.make(false)
    const stopped = yield* Deferred.make<never, IngestStopped>()
    return {
      /** Consuming: `/readyz` reports it. */
      running: Ref.get(running),
      set: (value: boolean) => Ref.set(running, value),
      /** Never succeeds; fails once ingestion has stopped by itself. The process waits on it to exit. */
      stoppedByItself: Deferred.await(stopped),
      stop: (error: IngestStopped) => Deferred.fail(stopped, error).pipe(Effect.asVoid)
    }
  })
}) {}

/**
 * Runs the pipeline for as long as the layer lives. On shutdown it stops fetching first and lets
 * the batches in flight finish and commit, then closes the consumer.
 */
export const IngestPipeline = Layer.scopedDiscard(
  Effect.gen(function* () {
    const consumer = yield* KafkaConsumer
    const status = yield* IngestStatus
    const { handle } = yield* makeBatchHandler
    yield* consumer.batches.pipe(
      // A batch cut short (shutdown) is given back uncommitted, so kafkajs is never left waiting.
      Stream.mapEffect((batch) => handle(batch).pipe(Effect.onInterrupt(() => batch.abandon)), {
        concurrency: consumer.concurrency,
        unordered: true
      }),
      Stream.runDrain,
      Effect.onExit((exit) =>
        Effect.zipRight(
          status.set(false),
          // Interrupted means shut down on purpose; anything else (kafkajs gave up, a defect)
          // leaves the service unable to ingest, and a process that cannot ingest should exit
          // so that whatever supervises it starts a new one.
          Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)
            ? Effect.logError("The ingest pipeline stopped", exit.cause).pipe(
                Effect.zipRight(
                  status.stop(
                    new IngestStopped({
                      message: `Ingestion stopped: ${reason(exit.cause)}`,
                      cause: exit.cause
                    })
                  )
                )
              )
            : Effect.void
        )
      ),
      Effect.forkScoped
    )
    yield* status.set(true)
    yield* Effect.logInfo("Consuming orders").pipe(
      Effect.annotateLogs({ groupId: consumer.groupId, instanceId: consumer.instanceId })
    )
    yield* Effect.addFinalizer(() =>
      Effect.logInfo("Stopping ingestion: finishing the batches in flight").pipe(
        Effect.zipRight(consumer.stop.pipe(Effect.timeout(Duration.seconds(30)), Effect.ignore))
      )
    )
  })
)

/** Kafka → PostgreSQL, with its Kafka clients. */
export const IngestLive = IngestPipeline.pipe(
  Layer.provide(Layer.mergeAll(KafkaConsumer.Default, DeadLetters.Default)),
  Layer.provide(KafkaClient.Default)
)
