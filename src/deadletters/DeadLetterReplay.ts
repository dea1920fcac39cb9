/**
 * Replay: dead letters sent back through ingestion once their cause is fixed. A replay is a copy:
 * each selected letter's original key, bytes and headers go to the orders topic with `replay.of`
 * (the letter's place on the dead-letter topic) and `replay.at`; nothing is removed from the
 * dead-letter topic or its index. Repeating one is safe: the pipeline stores an order once (the
 * idempotent insert), and parks again what is still wrong — the new letter keeps `replay.of`, so
 * it names its previous one.
 *
 * It writes to the orders topic, so only an operator may ask for it (`src/auth/Access.ts`); the
 * log line names who did. Kafka is the ingest side's: its producer attaches itself here
 * (`layerPublisher`) once connected, and until then a replay answers that it cannot run yet.
 */
import { Data, Deferred, Effect, Layer, Metric, Option } from "effect"
import { CompressionTypes, Partitioners, type Message } from "kafkajs"
import { DeadLetterHeaders, ReplayHeaders } from "../kafka/DeadLetters.ts"
import { KafkaClient } from "../kafka/KafkaClient.ts"
import { kafkaError, type KafkaError } from "../kafka/KafkaError.ts"
import { DeadLetterIndex, formatPosition, type Selection, type StoredLetter } from "./DeadLetterIndex.ts"

export const ReplayMetrics = {
  replayed: Metric.counter("dead_letters_replayed_total", {
    description: "Dead letters sent back to the orders topic, by kind and outcome (sent, failed)"
  })
}

/** Kafka is not connected yet: nothing can be sent. */
export class ReplayUnavailable extends Data.TaggedError("ReplayUnavailable")<{ readonly message: string }> {}

const PARKING_HEADERS: ReadonlySet<string> = new Set([
  ...Object.values(DeadLetterHeaders),
  ...Object.values(ReplayHeaders)
])

/** The letter as it was sent to the service, with where it was replayed from and when. */
export const replayMessage = (letter: StoredLetter, deadLetterTopic: string, at: Date): Message => {
  const headers: Record<string, Array<Buffer | string>> = {}
  for (const h of letter.headers) if (!PARKING_HEADERS.has(h.name)) (headers[h.name] ??= []).push(h.value)
  headers[ReplayHeaders.of] = [
    formatPosition({ topic: deadLetterTopic, partition: letter.partition, offset: letter.offset })
  ]
  headers[ReplayHeaders.at] = [at.toISOString()]
  return {
    key: letter.key,
    value: letter.value,
    headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, v.length === 1 ? v[0]! : v]))
  }
}

/** Sends messages to the orders topic; attached by the ingest side once Kafka is connected. */
export interface ReplayTarget {
  readonly deadLetterTopic: string
  /** Sends each message, saying for each whether the broker took it. */
  readonly send: (messages: ReadonlyArray<Message>) => Effect.Effect<ReadonlyArray<boolean>>
}

export type ReplayOutcome = "sent" | "failed" | "dry_run"

export interface ReplayResult {
  readonly dryRun: boolean
  /** Letters the selection takes in, over all its pages: counted for the first page only. */
  readonly selected: Option.Option<number>
  readonly letters: ReadonlyArray<{ readonly letter: StoredLetter; readonly outcome: ReplayOutcome }>
  readonly nextCursor: Option.Option<string>
}

export interface ReplayOptions {
  readonly dryRun: boolean
  readonly limit: number
  readonly cursor: Option.Option<string>
  /** Who asked (the principal's subject), for the log line. */
  readonly requestedBy: string
}

export class DeadLetterReplay extends Effect.Service<DeadLetterReplay>()("DeadLetterReplay", {
  effect: Effect.gen(function* () {
    const index = yield* DeadLetterIndex
    const target = yield* Deferred.make<ReplayTarget>()

    /**
     * Replay a page of `selection` (oldest first); the cursor leads to the next page. With
     * `dryRun`, says what would be sent and sends nothing. One log line per call.
     */
    const replay = Effect.fn("DeadLetterReplay.replay")(function* (
      selection: Selection,
      options: ReplayOptions
    ) {
      // Counting a large selection is a scan: once per run, on its first page.
      const selected = Option.isNone(options.cursor)
        ? Option.some(yield* index.count(selection))
        : Option.none<number>()
      const page = yield* index.select(selection, options.limit, options.cursor)
      let outcomes: ReadonlyArray<ReplayOutcome> = page.items.map(() => "dry_run" as const)
      if (!options.dryRun && page.items.length > 0) {
        if (!(yield* Deferred.isDone(target)))
          return yield* new ReplayUnavailable({ message: "Kafka is not connected yet; try again shortly" })
        const { deadLetterTopic, send } = yield* Deferred.await(target)
        const at = new Date()
        const sent = yield* send(page.items.map((l) => replayMessage(l, deadLetterTopic, at)))
        outcomes = sent.map((ok) => (ok ? "sent" : "failed"))
        for (const [i, letter] of page.items.entries()) {
          yield* Metric.increment(
            Metric.tagged(Metric.tagged(ReplayMetrics.replayed, "kind", letter.kind), "outcome", outcomes[i]!)
          )
        }
      }
      const count = (o: ReplayOutcome) => outcomes.filter((x) => x === o).length
      yield* Effect.logInfo(options.dryRun ? "Dead letters replay (dry run)" : "Dead letters replayed").pipe(
        Effect.annotateLogs({
          requested_by: options.requestedBy,
          selection: describeSelection(selection),
          selected: Option.getOrNull(selected),
          page: page.items.length,
          sent: count("sent"),
          failed: count("failed"),
          more: Option.isSome(page.nextCursor)
        })
      )
      return {
        dryRun: options.dryRun,
        selected,
        letters: page.items.map((letter, i) => ({ letter, outcome: outcomes[i]! })),
        nextCursor: page.nextCursor
      } satisfies ReplayResult
    })

    return {
      replay,
      /** Called by the ingest side once its producer is connected. */
      attach: (t: ReplayTarget) => Deferred.succeed(target, t)
    } as const
  })
}) {}

const describeSelection = (s: Selection) =>
  s._tag === "One"
    ? { partition: s.partition, offset: s.offset }
    : { kind: s.kind ?? "any", since: s.since?.toISOString() ?? null, until: s.until?.toISOString() ?? null }

/** Requests to the broker stay well under its 1 MiB default; a larger message goes alone. */
const MAX_SEND_BYTES = 512 * 1024

const sizeOf = (m: Message) =>
  (m.value ? Buffer.byteLength(m.value) : 0) + (m.key ? Buffer.byteLength(m.key) : 0) + 512

/**
 * The producer replays send with (idempotent, `acks: -1`), attached to `DeadLetterReplay` on the
 * ingest side's Kafka client. Messages are keyed as they were, so they land where their producer's
 * did. A send the broker refuses is tried again message by message, so one message it will not
 * take (larger than the orders topic allows) fails alone.
 */
export const layerPublisher = Layer.scopedDiscard(
  Effect.gen(function* () {
    const client = yield* KafkaClient
    const replay = yield* DeadLetterReplay
    const producer = client.kafka.producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      idempotent: true,
      maxInFlightRequests: 1
    })
    yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => producer.connect(),
        catch: kafkaError("Could not connect the replay producer")
      }),
      () => Effect.promise(() => producer.disconnect().catch(() => undefined))
    )
    const sendAll = (messages: ReadonlyArray<Message>): Effect.Effect<void, KafkaError> =>
      Effect.tryPromise({
        try: () =>
          producer.send({
            topic: client.topics.orders,
            acks: -1,
            compression: CompressionTypes.None,
            messages: [...messages]
          }),
        catch: kafkaError("Could not send replayed messages")
      })
    const sendChunk = (chunk: ReadonlyArray<Message>) =>
      sendAll(chunk).pipe(
        Effect.as(chunk.map(() => true)),
        Effect.orElse(() =>
          Effect.forEach(chunk, (m) =>
            sendAll([m]).pipe(
              Effect.as(true),
              Effect.catchAll((e) =>
                Effect.logWarning("A replayed message was refused").pipe(
                  Effect.annotateLogs({ error: e.message }),
                  Effect.as(false)
                )
              )
            )
          )
        )
      )
    const send = (messages: ReadonlyArray<Message>) =>
      Effect.forEach(chunks(messages), sendChunk).pipe(Effect.map((results) => results.flat()))
    yield* replay.attach({ deadLetterTopic: client.topics.deadLetters, send })
  })
)

const chunks = (messages: ReadonlyArray<Message>): Array<Array<Message>> => {
  const out: Array<Array<Message>> = []
  let current: Array<Message> = []
  let bytes = 0
  for (const m of messages) {
    if (current.length > 0 && bytes + sizeOf(m) > MAX_SEND_BYTES) {
      out.push(current)
      current = []
      bytes = 0
    }
    current.push(m)
    bytes += sizeOf(m)
  }
  if (current.length > 0) out.push(current)
  return out
}
