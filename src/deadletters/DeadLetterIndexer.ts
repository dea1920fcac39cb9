/**
 * Keeps the dead-letter index (`DeadLetterIndex`) up with the dead-letter topic: a read_committed
 * consumer of the topic, in a group of its own, writes every letter it reads to the table.
 *
 * Reading the topic rather than recording what the pipeline parks means one path for everything:
 * a letter shows once its Kafka transaction has committed (never one that was aborted), whichever
 * instance parked it, and a gap — the table restored from a backup, emptied, or the service down
 * while another instance parked — is filled the same way. The table is its own bookmark: on every
 * assignment each partition is read from one past its last indexed offset (from the start when it
 * has none), so a start-up reads only what is new, and a new table is rebuilt from the whole
 * topic. The insert is idempotent by (partition, offset): reading a letter twice is harmless.
 *
 * Letters do not stay in the index forever: those parked longer ago than `dead_letters.retention`
 * are deleted every `dead_letters.retention_check` (`layerRetention`), and never indexed again.
 */
import { Clock, Duration, Effect, Layer, Option, Runtime, Schedule } from "effect"
import type { EachBatchPayload } from "kafkajs"
import { DeadLettersConfig } from "../config/AppConfig.ts"
import { isDataError } from "../db/SqlErrors.ts"
import { KafkaClient } from "../kafka/KafkaClient.ts"
import { kafkaError } from "../kafka/KafkaError.ts"
import { describeFailure } from "../orders/Rejection.ts"
import { DeadLetterIndex, letterFromMessage, type IndexedLetter } from "./DeadLetterIndex.ts"

/** The indexer's consumer group, beside the service's own. */
export const indexerGroupId = (groupId: string) => `${groupId}.dead-letter-index`

/**
 * Deletes the letters parked more than `dead_letters.retention` ago from the index, at start and
 * then every `dead_letters.retention_check`, logging how many when there were any. Every instance
 * prunes: a prune is idempotent and concurrent ones take disjoint rows (`DeadLetterIndex.prune`),
 * so an advisory lock would only add a lock key to keep unique, for an hourly statement that is
 * a range scan. A failure (PostgreSQL down) is logged and the next check tries again.
 */
export const layerRetention = Layer.scopedDiscard(
  Effect.gen(function* () {
    const index = yield* DeadLetterIndex
    const { retention, retentionCheck } = yield* DeadLettersConfig
    const pruneOnce = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const removed = yield* index.prune(new Date(now - Duration.toMillis(retention)))
      if (removed > 0)
        yield* Effect.logInfo("Dead letters past their retention removed from the index").pipe(
          Effect.annotateLogs({ removed, retention: Duration.format(retention) })
        )
    }).pipe(
      Effect.catchAllCause((cause) =>
        Effect.logWarning("Pruning the dead-letter index failed; trying again at the next check", cause)
      )
    )
    yield* pruneOnce.pipe(Effect.repeat(Schedule.spaced(retentionCheck)), Effect.forkScoped)
  })
)

const layerIndexer = Layer.scopedDiscard(
  Effect.gen(function* () {
    const client = yield* KafkaClient
    const index = yield* DeadLetterIndex
    const { retention } = yield* DeadLettersConfig
    const topic = client.topics.deadLetters
    // kafkajs calls us back from its own promises: run our effects there with this layer's runtime.
    const runtime = yield* Effect.runtime<never>()

    const consumer = client.kafka.consumer({
      groupId: indexerGroupId(client.groupId),
      // The default, said out loud: letters of an aborted transaction are never indexed.
      readUncommitted: false,
      maxBytesPerPartition: 4 * 1024 * 1024,
      maxWaitTimeInMs: 1_000,
      retry: { initialRetryTime: 300, retries: 8 }
    })

    /** One letter PostgreSQL refuses as data is left out (and logged) rather than stalling the rest. */
    const upsertEach = (letters: ReadonlyArray<IndexedLetter>) =>
      Effect.forEach(letters, (letter) =>
        index
          .upsert([letter])
          .pipe(
            Effect.catchIf(isDataError, (e) =>
              Effect.logError("A dead letter could not be indexed; it stays on the topic").pipe(
                Effect.annotateLogs({ partition: letter.partition, offset: letter.offset, error: e.message })
              )
            )
          )
      )

    const indexBatch = ({ batch, heartbeat, isRunning }: EachBatchPayload) => {
      // A letter past its retention is not indexed: once a partition's rows are all pruned it is
      // read again from the topic's start, and what the topic still keeps must not come back.
      const expired = Date.now() - Duration.toMillis(retention)
      const letters = batch.messages
        .map((m) => letterFromMessage(batch.partition, m))
        .filter((l) => l.failedAt.getTime() >= expired)
      return index.upsert(letters).pipe(
        Effect.catchIf(isDataError, () => upsertEach(letters)),
        Effect.catchAllDefect((defect) => Effect.fail({ message: describeFailure(defect) })),
        // PostgreSQL down: wait it out on this batch, telling the group we are alive.
        Effect.tapError((e) =>
          Effect.zipRight(
            Effect.promise(() => heartbeat().catch(() => undefined)),
            Effect.logWarning("Indexing dead letters failed; retrying").pipe(
              Effect.annotateLogs({ partition: batch.partition, error: e.message })
            )
          )
        ),
        Effect.retry({
          schedule: Schedule.exponential("200 millis").pipe(Schedule.union(Schedule.spaced("5 seconds"))),
          while: () => isRunning()
        }),
        Effect.withSpan("DeadLetterIndexer.batch", { attributes: { letters: letters.length } })
      )
    }

    /** Each partition handed to us is read from where the index ends. */
    const resumeFromIndex = (partitions: ReadonlyArray<number>) =>
      Effect.gen(function* () {
        const earliest = yield* Effect.tryPromise({
          try: () => client.admin.fetchTopicOffsets(topic),
          catch: kafkaError("Could not read the dead-letter topic's offsets")
        })
        for (const partition of partitions) {
          const next = yield* index.nextOffset(partition)
          const low = earliest.find((p) => p.partition === partition)?.low ?? "0"
          const offset = Option.getOrElse(next, () => low)
          // Letters the topic has deleted (its retention) stay in the index until the index's own
          // retention; reading starts where it can.
          const from = BigInt(offset) < BigInt(low) ? low : offset
          yield* Effect.sync(() => consumer.seek({ topic, partition, offset: from }))
        }
      }).pipe(
        Effect.retry({ schedule: Schedule.exponential("200 millis"), times: 10 }),
        Effect.catchAllCause((cause) =>
          Effect.logError("Could not resume the dead-letter index; reading from the group's position", cause)
        )
      )

    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      Runtime.runFork(runtime)(resumeFromIndex(payload.memberAssignment[topic] ?? []))
    })
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (!payload.restart)
        Runtime.runFork(runtime)(
          Effect.logError("The dead-letter indexer stopped: the listing no longer follows the topic").pipe(
            Effect.annotateLogs({ error: describeFailure(payload.error) })
          )
        )
    })

    yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          await consumer.connect()
          await consumer.subscribe({ topics: [topic], fromBeginning: true })
          await consumer.run({
            // The table is the bookmark (see above): no offsets to commit.
            autoCommit: false,
            eachBatch: (payload) => Runtime.runPromise(runtime)(Effect.asVoid(indexBatch(payload)))
          })
        },
        catch: kafkaError("Could not start the dead-letter indexer")
      }),
      () =>
        Effect.promise(() => consumer.disconnect().catch(() => undefined)).pipe(
          Effect.interruptible,
          Effect.timeout(Duration.seconds(10)),
          Effect.ignore
        )
    )
    yield* Effect.logInfo("Indexing dead letters").pipe(Effect.annotateLogs({ topic }))
  })
)

/** The index kept up with the topic, and pruned of letters past their retention. */
export const layer = Layer.merge(layerIndexer, layerRetention)
