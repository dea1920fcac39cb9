/**
 * The path of every message: decode → store the valid orders (one transaction) → park rejects and
 * conflicts on the dead-letter topic and commit the offsets (one Kafka transaction; a batch with
 * nothing to park just commits its offsets) → cache the orders, stored now or found stored
 * already. A batch that fails for a passing reason (PostgreSQL or Kafka down) is retried in place
 * with backoff, holding its partition: nothing is committed past an offset that is neither stored
 * nor dead-lettered.
 */
import type { SqlError } from "@effect/sql/SqlError"
import {
  Cause,
  Clock,
  Duration,
  Effect,
  Either,
  Exit,
  Layer,
  Metric,
  MetricBoundaries,
  Option,
  Schedule,
  Stream
} from "effect"
import type { KafkaMessage } from "kafkajs"
import { CachedOrder, OrderCache } from "../cache/OrderCache.ts"
import { IngestConfig } from "../config/AppConfig.ts"
import { databaseReason, isDataError } from "../db/SqlErrors.ts"
import { DeadLetters, type DeadLetter } from "../kafka/DeadLetters.ts"
import { KafkaConsumer, type ConsumedBatch } from "../kafka/KafkaConsumer.ts"
import { KafkaError } from "../kafka/KafkaError.ts"
import type { Order } from "../orders/Order.ts"
import { decodeOrderBytes, orderToJsonString } from "../orders/OrderDecoder.ts"
import { OrderRepository } from "../orders/OrderRepository.ts"
import { boundDetail, describeFailure } from "../orders/Rejection.ts"
import {
  fromInsert,
  parked,
  summarize,
  type BatchSummary,
  type MessageOutcome,
  type ParkedMessage
} from "./BatchOutcome.ts"
import * as BatchTrace from "./BatchTrace.ts"
import { IngestStatus, IngestStopped } from "./IngestStatus.ts"

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
  replayed: Metric.counter("ingest_replayed_messages_total", {
    description:
      "Replayed dead letters read back from the orders topic, by outcome (stored, duplicate, parked)"
  }),
  retries: Metric.counter("ingest_batch_retries_total", {
    description: "Batch attempts that failed and were retried"
  }),
  abandoned: Metric.counter("ingest_batches_abandoned_total", {
    description:
      "Batches given back uncommitted because they stopped being ours (rebalance, dropped from the group)"
  }),
  inFlight: Metric.gauge("ingest_batches_in_flight", {
    description:
      "Batches taken from Kafka and not yet committed or given back; one that stays shows a partition waiting out an outage"
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

const keyOf = (message: KafkaMessage): string | null => message.key?.toString("utf8") ?? null

export interface BatchResult {
  readonly stored: number
  readonly duplicates: number
  readonly deadLettered: number
  /** True if the batch was given back uncommitted (shutdown or rebalance). */
  readonly abandoned: boolean
}

const abandoned: BatchResult = { stored: 0, duplicates: 0, deadLettered: 0, abandoned: true }

/**
 * A batch goes through three steps: `judge` decides what becomes of each message (decode, store
 * the valid ones), `settle` parks the rejects and commits the offsets, `publish` caches, counts and
 * logs. Whatever fails while judging one message is contained to that message: it is parked as
 * `unprocessable` with the reason and the others go on. Only failures that may pass (PostgreSQL or
 * Kafka unreachable) are retried in place, holding the partition.
 */
export const makeBatchHandler = Effect.gen(function* () {
  const config = yield* IngestConfig
  const repository = yield* OrderRepository
  const deadLetters = yield* DeadLetters
  const cache = yield* OrderCache

  /** One order in its own transaction: PostgreSQL refusing it, or anything dying on it, parks it. */
  const storeOne = (order: Order) =>
    repository.insertBatch([order]).pipe(
      Effect.flatMap(([outcome]) =>
        outcome === undefined
          ? Effect.dieMessage("the repository gave no outcome for the order")
          : Effect.succeed(fromInsert(order, outcome))
      ),
      Effect.catchIf(isDataError, (e) =>
        Effect.succeed(parked("schema", `the database refused the order: ${boundDetail(databaseReason(e))}`))
      ),
      Effect.catchAllDefect((defect) => Effect.succeed(parked("unprocessable", describeFailure(defect))))
    )

  /**
   * Store the orders in one transaction. If PostgreSQL refuses the data itself, or storing them
   * dies, store them one by one so that only the culprit is set aside (a poison message must not
   * stall its partition). With `ingest.transaction: message` every order gets its own transaction.
   */
  const store = (orders: ReadonlyArray<Order>): Effect.Effect<Array<MessageOutcome>, SqlError> =>
    config.transaction === "message"
      ? Effect.forEach(orders, storeOne)
      : repository.insertBatch(orders).pipe(
          Effect.flatMap((outcomes) =>
            outcomes.length === orders.length
              ? Effect.succeed(outcomes.map((o, i) => fromInsert(orders[i]!, o)))
              : Effect.dieMessage(
                  `the repository gave ${outcomes.length} outcomes for ${orders.length} orders`
                )
          ),
          Effect.catchIf(isDataError, () => Effect.forEach(orders, storeOne)),
          Effect.catchAllDefect((defect) =>
            Effect.logWarning("Storing a batch failed; storing its orders one by one").pipe(
              Effect.annotateLogs({ error: describeFailure(defect) }),
              Effect.zipRight(Effect.forEach(orders, storeOne))
            )
          )
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
    }).pipe(
      // Nothing here is specific to one message any more: whatever dies is retried like an outage.
      Effect.catchAllDefect((defect) => Effect.fail({ message: describeFailure(defect) }))
    )
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

  /**
   * What becomes of each of `messages`, in order: decoded and stored, or parked with its reason.
   * `None` if the batch stopped being ours while an outage was being waited out.
   */
  const judge = (
    batch: ConsumedBatch,
    messages: ReadonlyArray<KafkaMessage>,
    trace: BatchTrace.BatchTrace | undefined
  ) =>
    Effect.gen(function* () {
      const outcomes: Array<MessageOutcome> = new Array(messages.length)
      const valid: Array<{ readonly index: number; readonly order: Order }> = []
      yield* Effect.sync(() =>
        messages.forEach((message, index) => {
          const decoded = decodeOrderBytes(message.value, config.maxMessageBytes)
          if (Either.isRight(decoded)) valid.push({ index, order: decoded.right })
          else outcomes[index] = parked(decoded.left.kind, decoded.left.detail)
        })
      ).pipe(Effect.withSpan("IngestPipeline.decode", { attributes: { messages: messages.length } }))
      if (valid.length > 0) {
        const started = yield* Clock.currentTimeNanos
        const stored = yield* retryInPlace(batch, "store", store(valid.map((v) => v.order))).pipe(
          Effect.withSpan("IngestPipeline.store", { attributes: { orders: valid.length } })
        )
        if (Option.isNone(stored)) return Option.none<Array<MessageOutcome>>()
        stored.value.forEach((outcome, i) => {
          outcomes[valid[i]!.index] = outcome
        })
        if (trace !== undefined)
          yield* trace.stored(
            valid.map((v) => messages[v.index]!),
            stored.value,
            started
          )
      }
      return Option.some(outcomes)
    })

  /**
   * `judge`, contained: if judging the batch dies, its messages are judged one at a time, and the
   * one whose judging dies on its own is parked as `unprocessable` with the reason.
   */
  const judgeContained = (batch: ConsumedBatch, trace: BatchTrace.BatchTrace | undefined) =>
    judge(batch, batch.messages, trace).pipe(
      Effect.catchAllDefect((defect) =>
        Effect.logWarning("Handling a batch failed; handling its messages one at a time").pipe(
          Effect.annotateLogs({ partition: batch.partition, error: describeFailure(defect) }),
          Effect.zipRight(
            Effect.forEach(batch.messages, (message) =>
              judge(batch, [message], trace).pipe(
                Effect.map(Option.map(([outcome]) => outcome!)),
                Effect.catchAllDefect((d) =>
                  Effect.succeed(Option.some(parked("unprocessable", describeFailure(d))))
                )
              )
            )
          ),
          Effect.map(Option.all)
        )
      )
    )

  const letterOf = (batch: ConsumedBatch, p: ParkedMessage): DeadLetter => ({
    kind: p.kind,
    detail: p.detail,
    key: p.message.key ?? null,
    value: p.message.value ?? null,
    headers: p.message.headers,
    source: { topic: batch.topic, partition: batch.partition, offset: p.message.offset }
  })

  /**
   * Rejects and offsets move together in one Kafka transaction; with nothing to park, a plain
   * offset commit does the same in one round trip. The coordinator checks a plain commit's group
   * generation, but kafkajs' transactional offset commit carries none: before committing one, the
   * consumer asks the coordinator whether the partition is still its own (`confirmMember`). One
   * that was silent past its session timeout (paused, cut off) finds out that its partitions went
   * to others, and leaves the batch to them. The batch is marked done as soon as its commit is
   * through, uninterruptibly: kafkajs then never fetches again what the group has committed. A
   * transaction reported failed may have committed all the same: every attempt after the first
   * asks the coordinator before parking anything again.
   */
  const settle = (batch: ConsumedBatch, letters: ReadonlyArray<DeadLetter>) => {
    const beforeCommit = Effect.flatMap(batch.isStale, (stale) =>
      stale
        ? Effect.fail(
            new KafkaError({ message: "the group has given this consumer's partition to another member" })
          )
        : batch.confirmMember
    )
    let attempts = 0
    const commit =
      letters.length === 0
        ? batch.commit
        : Effect.suspend(() =>
            deadLetters.settle(letters, [batch], {
              lane: batch.member,
              beforeCommit,
              maybeSettled: attempts++ > 0
            })
          )
    return retryInPlace(
      batch,
      letters.length === 0 ? "commit" : "dead-letter and commit",
      Effect.uninterruptibleMask((restore) => Effect.zipLeft(restore(commit), batch.done))
    )
  }

  /** After the commit: cache what was stored, count and log. Nothing here can undo the batch. */
  const publish = (batch: ConsumedBatch, summary: BatchSummary, startedMillis: number) =>
    Effect.gen(function* () {
      // One atomic step for the whole batch, oldest first (the order they arrived in).
      yield* cache
        .putAll(
          summary.toCache.map((order) => CachedOrder.fromJson(order.order_uid, orderToJsonString(order)))
        )
        .pipe(Effect.withSpan("IngestPipeline.cache", { attributes: { orders: summary.toCache.length } }))
      for (const p of summary.parked) {
        yield* Metric.increment(Metric.tagged(IngestMetrics.deadLettered, "kind", p.kind))
        yield* Effect.logInfo("Message parked on the dead-letter topic").pipe(
          Effect.annotateLogs({
            kind: p.kind,
            detail: p.detail,
            order_uid: keyOf(p.message),
            partition: batch.partition,
            offset: p.message.offset
          })
        )
      }
      const conflicts = summary.parked.filter((p) => p.kind === "conflict").length
      yield* Metric.incrementBy(IngestMetrics.consumed, batch.messages.length)
      yield* Metric.incrementBy(IngestMetrics.stored, summary.stored.length)
      yield* Metric.incrementBy(IngestMetrics.duplicates, summary.duplicates)
      yield* Metric.incrementBy(IngestMetrics.conflicts, conflicts)
      for (const [outcome, count] of Object.entries(summary.replayed)) {
        if (count > 0)
          yield* Metric.incrementBy(Metric.tagged(IngestMetrics.replayed, "outcome", outcome), count)
      }
      yield* Metric.update(IngestMetrics.batchSize, batch.messages.length)
      const now = yield* Clock.currentTimeMillis
      yield* Metric.update(IngestMetrics.batchDuration, (now - startedMillis) / 1000)
      yield* Effect.logDebug("Batch committed").pipe(
        Effect.annotateLogs({
          partition: batch.partition,
          batch_size: batch.messages.length,
          next_offset: batch.nextOffset,
          stored: summary.stored.length,
          duplicates: summary.duplicates,
          dead_lettered: summary.parked.length,
          first_key: batch.messages[0] ? keyOf(batch.messages[0]) : null
        })
      )
    }).pipe(
      Effect.catchAllDefect((defect) =>
        Effect.logError("After committing a batch, caching or counting it failed").pipe(
          Effect.annotateLogs({ partition: batch.partition, error: describeFailure(defect) })
        )
      )
    )

  /** The batch stopped being ours while it was handled: nothing committed, its new owner reads it. */
  const giveBack = (batch: ConsumedBatch, step: string) =>
    Effect.all([
      batch.abandon,
      Metric.increment(IngestMetrics.abandoned),
      Effect.logInfo("Batch given back uncommitted: its partition is no longer ours").pipe(
        Effect.annotateLogs({ partition: batch.partition, step, batch_size: batch.messages.length })
      )
    ])

  const handleTraced = (batch: ConsumedBatch, trace: BatchTrace.BatchTrace | undefined) =>
    Effect.gen(function* () {
      const started = yield* Clock.currentTimeMillis
      const outcomes = yield* judgeContained(batch, trace)
      if (Option.isNone(outcomes)) {
        yield* giveBack(batch, "store")
        return abandoned
      }
      const summary = summarize(batch.messages, outcomes.value)
      const settleStarted = yield* Clock.currentTimeNanos
      const settled = yield* settle(
        batch,
        summary.parked.map((p) => letterOf(batch, p))
      ).pipe(
        Effect.withSpan(summary.parked.length === 0 ? "IngestPipeline.commit" : "IngestPipeline.park", {
          attributes: { letters: summary.parked.length }
        })
      )
      if (Option.isNone(settled)) {
        yield* giveBack(batch, "settle")
        return { ...abandoned, stored: summary.stored.length }
      }
      if (trace !== undefined && summary.parked.length > 0) yield* trace.parked(summary.parked, settleStarted)
      yield* publish(batch, summary, started)
      return {
        stored: summary.stored.length,
        duplicates: summary.duplicates,
        deadLettered: summary.parked.length,
        abandoned: false
      }
    })

  /** A batch in a span of its own that links the context of each message that carries one. */
  const handle = (batch: ConsumedBatch): Effect.Effect<BatchResult> =>
    Effect.flatMap(BatchTrace.make(batch), (trace) =>
      handleTraced(batch, trace).pipe(
        Effect.withSpan("IngestPipeline.batch", {
          kind: "consumer",
          attributes: {
            partition: batch.partition,
            "messaging.system": "kafka",
            "messaging.destination.name": batch.topic,
            "messaging.batch.message_count": batch.messages.length
          },
          links: trace?.links ?? []
        })
      )
    )

  return { handle } as const
})

/**
 * Runs the pipeline for as long as the layer lives. On shutdown it stops fetching first and lets
 * the batches in flight finish and commit, then closes the consumer.
 */
export const run = Layer.scopedDiscard(
  Effect.gen(function* () {
    const consumer = yield* KafkaConsumer
    const status = yield* IngestStatus
    const { handle } = yield* makeBatchHandler
    yield* consumer.batches.pipe(
      // A batch cut short (shutdown) is given back uncommitted, so kafkajs is never left waiting.
      Stream.mapEffect(
        (batch) =>
          Effect.zipRight(
            Metric.modify(IngestMetrics.inFlight, 1),
            handle(batch).pipe(
              Effect.onInterrupt(() => batch.abandon),
              Effect.ensuring(Metric.modify(IngestMetrics.inFlight, -1))
            )
          ),
        {
          concurrency: consumer.concurrency,
          unordered: true
        }
      ),
      // Kafka gave up: stop, and give back the batches in flight.
      Stream.interruptWhen(consumer.crashed),
      Stream.runDrain,
      Effect.onExit((exit) =>
        Effect.zipRight(
          status.set(false),
          // Interrupted means shut down on purpose; anything else (kafkajs gave up, a defect)
          // leaves the service unable to ingest, and a process that cannot ingest should exit
          // so that whatever supervises it starts a new one.
          Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)
            ? Effect.logError("The ingest pipeline stopped", exit.cause).pipe(
                Effect.zipRight(status.stop(IngestStopped.fromCause(exit.cause)))
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
        // Finalizers run uninterruptibly: without `interruptible` the timeout could not end the wait.
        Effect.zipRight(
          consumer.stop.pipe(Effect.interruptible, Effect.timeout(Duration.seconds(10)), Effect.ignore)
        )
      )
    )
  })
)

/** Kafka → PostgreSQL, with its consumers and dead-letter producers on the `KafkaClient` it is given. */
export const layer = run.pipe(Layer.provide(Layer.mergeAll(KafkaConsumer.Default, DeadLetters.Default)))
