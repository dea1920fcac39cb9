/**
 * The kafkajs consumer as a `Stream` of batches with real backpressure: kafkajs' `eachBatch`
 * hands a batch over through a bounded queue and then waits until the pipeline has settled it, so
 * Kafka never runs ahead of us. Offsets move only when the pipeline says so: `eachBatchAutoResolve`
 * and `autoCommit` are off.
 */
import { Deferred, Effect, FiberId, Queue, Ref, Runtime, Stream } from "effect"
import type { Consumer, EachBatchPayload, KafkaMessage } from "kafkajs"
import { IngestConfig } from "../config/AppConfig.ts"
import { newInstanceId, partitionAssigners } from "./InstanceSpreadAssigner.ts"
import { KafkaClient } from "./KafkaClient.ts"
import { errorType, kafkaError, type KafkaError } from "./KafkaError.ts"

/** How a batch ended for the pipeline. */
type Settlement =
  /** Stored or dead-lettered, offsets committed: move the fetch position past it. */
  | "done"
  /** Not processed (shutting down, partition taken away): fetch it again. */
  | "abandoned"

export interface ConsumedBatch {
  readonly topic: string
  readonly partition: number
  readonly messages: ReadonlyArray<KafkaMessage>
  /** Which of this process's consumers fetched it (0-based): batches of one consumer settle in turn. */
  readonly member: number
  /** The offset to commit once every message of the batch is stored or dead-lettered. */
  readonly nextOffset: string
  /**
   * Tell the group coordinator we are alive (at most every heartbeat interval). If it answers that
   * this consumer is no longer a member of the group, the batch becomes stale.
   */
  readonly heartbeat: Effect.Effect<void>
  /**
   * True once the batch is not ours to commit: the consumer stops, the partition was sought, the
   * group has dropped this consumer (it was silent longer than the session timeout — paused, or cut
   * off — and its partitions went to others), or it has joined the group again since the batch was
   * fetched.
   */
  readonly isStale: Effect.Effect<boolean>
  /**
   * Commit the batch's offset with the group coordinator, outside any transaction: for a batch
   * with nothing to park, where there is nothing to make atomic with it.
   */
  readonly commit: Effect.Effect<void, KafkaError>
  /**
   * Succeeds only if the group coordinator still counts this consumer as a member of the
   * generation the batch was fetched in: a plain offset commit of the batch's first offset, which
   * the coordinator checks against the group's generation and which moves nothing (the group's
   * offset for the partition is there already: a batch is fetched from it). For what the
   * coordinator does not check itself — kafkajs' transactional offset commit carries no
   * generation — a positive answer, where a heartbeat's silence proves nothing (it is sent at most
   * every heartbeat interval, and may fail for other reasons, e.g. the coordinator moved). If the
   * answer is that the consumer is no longer a member, the batch becomes stale.
   */
  readonly confirmMember: Effect.Effect<void, KafkaError>
  /** The batch is committed: let kafkajs fetch past it. */
  readonly done: Effect.Effect<void>
  /** The batch was not committed: kafkajs fetches it again. */
  readonly abandon: Effect.Effect<void>
}

/**
 * The coordinator's answers after which this consumer can settle nothing until it joins the group
 * again: it is not (or no longer) a member of this generation — the group moved on without it —
 * or the broker it knows as coordinator is not the coordinator any more (`NOT_COORDINATOR_FOR_GROUP`:
 * kafkajs finds the new one only by joining again). kafkajs rejoins once its batches in flight
 * return, so such a batch is given back rather than retried.
 */
const MUST_REJOIN = new Set([
  "UNKNOWN_MEMBER_ID",
  "ILLEGAL_GENERATION",
  "FENCED_INSTANCE_ID",
  "NOT_COORDINATOR_FOR_GROUP"
])

/** Whether `error`, from a heartbeat or an offset commit, says the consumer must join the group again. */
export const mustRejoin = (error: unknown): boolean => MUST_REJOIN.has(errorType(error) ?? "")

interface Pending {
  readonly member: number
  /** The member's generation when the batch was fetched (see `generation`). */
  readonly generation: number
  readonly payload: EachBatchPayload
  readonly settled: Deferred.Deferred<Settlement>
}

export interface KafkaConsumerOptions {
  /** Batches of different partitions handled at the same time (one per partition at most). */
  readonly concurrency: number
  /**
   * kafkajs consumers this process runs in the group (default 1). kafkajs fetches a member's
   * partitions from a broker together and fetches again only when all those batches are settled;
   * with several members, one fetches while the others' batches are being stored.
   */
  readonly members?: number
  /** Upper bound of message bytes fetched per partition, i.e. the largest batch. */
  readonly maxBytesPerPartition?: number
  /**
   * Which process these members belong to, for the partition assigner (default: a new id). Each
   * process gets its share of the partitions, whatever the number of members it runs.
   */
  readonly instanceId?: string
}

export const makeKafkaConsumer = (options: KafkaConsumerOptions) =>
  Effect.gen(function* () {
    const client = yield* KafkaClient
    // Room for one batch per concurrently consumed partition; eachBatch waits on it when full.
    const queue = yield* Queue.bounded<Pending>(options.concurrency)
    const running = yield* Ref.make(false)
    // kafkajs calls us back from its own promises: run our effects there with this layer's
    // runtime, so they keep the service's logger and configuration.
    const runtime = yield* Effect.runtime<never>()
    const runPromiseExit = Runtime.runPromiseExit(runtime)

    const instanceId = options.instanceId ?? newInstanceId()
    const members = options.members ?? 1
    /** Per consumer: dropped by the group and not joined again since. */
    const dropped: Array<boolean> = Array.from({ length: members }, () => false)
    /**
     * Per consumer: how many times it has joined the group. A batch fetched before the latest join
     * belongs to a generation whose partitions were all revoked (kafkajs rebalances eagerly), even
     * when the same partition came back: the group may have handed it to another member meanwhile,
     * so the batch is stale for good.
     */
    const generation: Array<number> = Array.from({ length: members }, () => 0)
    const consumers: ReadonlyArray<Consumer> = Array.from({ length: members }, () =>
      client.kafka.consumer({
        groupId: client.groupId,
        partitionAssigners: partitionAssigners(instanceId),
        // Bigger batches mean fewer transactions; a batch is stored as one set-based insert.
        maxBytesPerPartition: options.maxBytesPerPartition ?? 4 * 1024 * 1024,
        sessionTimeout: 30_000,
        heartbeatInterval: 3_000,
        // Consumer restarts after failures are ours to decide (see the pipeline's retries).
        retry: { initialRetryTime: 300, retries: 8 }
      })
    )

    // Listening before `run`: kafkajs joins the group inside `run` and reports a failed join as a
    // crash before `run` returns.
    const crashed = yield* Deferred.make<never, KafkaError>()
    consumers.forEach((consumer, member) => {
      // A new generation: whatever this consumer is handed from now on is its own again.
      consumer.on(consumer.events.GROUP_JOIN, () => {
        generation[member]!++
        dropped[member] = false
      })
      consumer.on(consumer.events.CRASH, (event) => {
        // kafkajs restarts itself on retriable errors; only a crash it gives up on ends the stream.
        if (!event.payload.restart) {
          Runtime.runFork(runtime)(
            Deferred.fail(crashed, kafkaError("The Kafka consumer crashed")(event.payload.error))
          )
        }
      })
    })

    const eachBatch = (member: number) => async (payload: EachBatchPayload) => {
      if (payload.batch.isEmpty()) return
      const settled = Deferred.unsafeMake<Settlement>(FiberId.none)
      const offered = await runPromiseExit(
        Queue.offer(queue, { member, generation: generation[member]!, payload, settled })
      )
      if (offered._tag === "Failure") return // shutting down: nothing resolved, fetched again later
      const outcome = await runPromiseExit(Deferred.await(settled))
      if (outcome._tag === "Success" && outcome.value === "done") {
        payload.resolveOffset(payload.batch.lastOffset())
      }
    }

    const toBatch = ({ member, generation: fetchedIn, payload, settled }: Pending): ConsumedBatch => {
      const nextOffset = (BigInt(payload.batch.lastOffset()) + 1n).toString()
      // The payload's own commit, which the coordinator checks against the consumer's generation
      // (the consumer's `commitOffsets` silently skips it while stopping).
      const commitAt = (offset: string, what: string) =>
        Effect.tryPromise({
          try: () =>
            payload.commitOffsetsIfNecessary({
              topics: [
                { topic: payload.batch.topic, partitions: [{ partition: payload.batch.partition, offset }] }
              ]
            }),
          catch: (error) => {
            if (mustRejoin(error)) dropped[member] = true
            return kafkaError(what)(error)
          }
        })
      return {
        topic: payload.batch.topic,
        partition: payload.batch.partition,
        messages: payload.batch.messages,
        member,
        nextOffset,
        heartbeat: Effect.promise(() =>
          payload.heartbeat().catch((error: unknown) => {
            if (mustRejoin(error)) dropped[member] = true
          })
        ),
        commit: commitAt(nextOffset, "Could not commit offsets"),
        confirmMember: commitAt(
          payload.batch.messages[0]!.offset,
          "Could not confirm that the partition is still ours"
        ),
        isStale: Effect.sync(
          () =>
            dropped[member]! || fetchedIn !== generation[member] || payload.isStale() || !payload.isRunning()
        ),
        done: Deferred.succeed(settled, "done").pipe(Effect.asVoid),
        abandon: Deferred.succeed(settled, "abandoned").pipe(Effect.asVoid)
      }
    }

    yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          Promise.all(
            consumers.map(async (consumer, member) => {
              await consumer.connect()
              // A new group starts from the earliest offset, so a backlog is not skipped.
              await consumer.subscribe({ topics: [client.topics.orders], fromBeginning: true })
              await consumer.run({
                autoCommit: false,
                eachBatchAutoResolve: false,
                partitionsConsumedConcurrently: options.concurrency,
                eachBatch: eachBatch(member)
              })
            })
          ),
        catch: kafkaError("Could not start the Kafka consumer")
      }).pipe(Effect.zipRight(Ref.set(running, true))),
      () =>
        Effect.gen(function* () {
          yield* Ref.set(running, false)
          // Batches still queued were never started: give them back before kafkajs waits on them.
          const queued = yield* Queue.takeAll(queue)
          for (const pending of queued) yield* Deferred.succeed(pending.settled, "abandoned")
          yield* Queue.shutdown(queue)
          // kafkajs may not return from a disconnect during a rebalance; a release runs
          // uninterruptibly, so the wait is made interruptible for the timeout to end it.
          yield* Effect.promise(() =>
            Promise.all(consumers.map((consumer) => consumer.disconnect().catch(() => undefined)))
          ).pipe(Effect.interruptible, Effect.timeout("10 seconds"), Effect.ignore)
        })
    )

    return {
      /** Batches in the order kafkajs hands them over. */
      batches: Stream.fromQueue(queue).pipe(Stream.map(toBatch)) as Stream.Stream<ConsumedBatch>,
      /**
       * Fails once kafkajs gives up on a consumer. Whoever handles the batches stops on it, batches
       * in flight included: they may be waiting out an outage that will never end for them.
       */
      crashed: Deferred.await(crashed),
      /** Stop fetching; waits for the batches in flight to be settled. */
      stop: Effect.promise(() =>
        Promise.all(consumers.map((consumer) => consumer.stop().catch(() => undefined)))
      ),
      isRunning: Ref.get(running),
      concurrency: options.concurrency,
      groupId: client.groupId,
      instanceId
    }
  })

export class KafkaConsumer extends Effect.Service<KafkaConsumer>()("KafkaConsumer", {
  scoped: Effect.flatMap(IngestConfig, ({ consumers }) =>
    makeKafkaConsumer({ concurrency: Math.max(3, consumers), members: consumers })
  )
}) {}
