/**
 * Replay: dead letters sent back through ingestion once their cause is fixed. A replay is a copy:
 * each selected letter's original key, bytes and headers go to the orders topic with `replay.of`
 * (the letter's place on the dead-letter topic) and `replay.at`; nothing is removed from the
 * dead-letter topic or its index. Repeating one is safe: the pipeline stores an order once (the
 * idempotent insert), and parks again what is still wrong — the new letter keeps `replay.of`, so
 * it names its previous one.
 *
 * Each letter is replayed once unless asked again: the index records when the broker took it
 * (`replayed_at`) and a replay takes only letters never replayed by default; a replay holds the
 * letters it sends (`claim`), so two at once never send the same one; a run's pages keep the
 * `until` of its first, so that it ends and never takes its own replays parked again. A page is
 * bounded by letters and by bytes (`dead_letters.replay_page_bytes`).
 *
 * A letter keeps its message's trace context (`traceparent`): while traces are exported, its
 * replay is a span of that trace (`DeadLetterReplay.send`, linked to the replay call's span), and
 * the replayed message carries the replay span's context, so its next attempt joins the same trace.
 *
 * It writes to the orders topic, so only an operator may ask for it (`src/auth/Access.ts`); the
 * log line names who did. Kafka is the ingest side's: its producer attaches itself here
 * (`layerPublisher`) once connected, and until then a replay answers that it cannot run yet.
 */
import {
  Clock,
  Data,
  Deferred,
  Duration,
  Effect,
  Exit,
  Layer,
  Metric,
  Option,
  Schedule,
  type Tracer
} from "effect"
import { CompressionTypes, Partitioners, type Message } from "kafkajs"
import { DeadLetterHeaders, ReplayHeaders } from "../kafka/DeadLetters.ts"
import { KafkaClient } from "../kafka/KafkaClient.ts"
import { kafkaError, type KafkaError } from "../kafka/KafkaError.ts"
import { DeadLettersConfig } from "../config/AppConfig.ts"
import {
  DeadLetterIndex,
  formatPosition,
  type LetterRef,
  type Selection,
  type StoredLetter
} from "./DeadLetterIndex.ts"
import { linkTo, startSpan, TracePropagation } from "../observability/Tracing.ts"
import * as ReplayRequests from "./ReplayRequests.ts"

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

/**
 * A span for the replay of each of `letters` that carries a trace context, a child of it; the
 * messages, with the span's context in place of the letter's. Nothing when traces are not
 * exported. End the spans once the broker has answered.
 */
const traceReplays = (letters: ReadonlyArray<StoredLetter>, messages: ReadonlyArray<Message>) =>
  Effect.gen(function* () {
    const propagation = yield* TracePropagation
    if (propagation === undefined) return { messages, spans: [] as ReadonlyArray<Tracer.Span | undefined> }
    const tracer = yield* Effect.tracer
    const start = yield* Clock.currentTimeNanos
    const links = Option.match(yield* Effect.option(Effect.currentSpan), {
      onNone: () => [],
      onSome: (span) => [linkTo(span)]
    })
    const spans = letters.map((letter) => {
      const parent = propagation.extract((name) =>
        letter.headers.find((h) => h.name === name)?.value.toString("utf8")
      )
      return parent === undefined
        ? undefined
        : startSpan(tracer, "DeadLetterReplay.send", {
            parent,
            start,
            kind: "producer",
            links,
            attributes: {
              "dead_letter.partition": letter.partition,
              "dead_letter.offset": letter.offset,
              "dead_letter.kind": letter.kind
            }
          })
    })
    return {
      messages: messages.map((m, i) => {
        const span = spans[i]
        return span === undefined ? m : { ...m, headers: { ...m.headers, ...propagation.inject(span) } }
      }),
      spans
    }
  })

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
  /** Letters of the selection replayed before (taken only with `includeReplayed`): first page only. */
  readonly alreadyReplayed: Option.Option<number>
  /** The selection's end, fixed by its first page (none for one letter named by its place). */
  readonly until: Option.Option<Date>
  readonly letters: ReadonlyArray<{ readonly letter: LetterRef; readonly outcome: ReplayOutcome }>
  readonly nextCursor: Option.Option<string>
}

export interface ReplayOptions {
  readonly dryRun: boolean
  readonly limit: number
  readonly cursor: Option.Option<string>
  /**
   * Take letters replayed before as well. A letter named by its partition and offset is always
   * taken: naming it is asking for it.
   */
  readonly includeReplayed: boolean
  /** Who asked (the principal's subject), for the log line. */
  readonly requestedBy: string
}

/**
 * How long a replay holds the letters it is sending (`replay_claimed_until`). A replay settles its
 * hold as soon as the broker has answered, well within this; it matters only when the process
 * dies between claiming and settling: its letters are then taken again by a later replay once
 * this has passed — at least once, never lost.
 */
export const CLAIM_LEASE = Duration.minutes(10)

export class DeadLetterReplay extends Effect.Service<DeadLetterReplay>()("DeadLetterReplay", {
  effect: Effect.gen(function* () {
    const index = yield* DeadLetterIndex
    const { replayPageBytes } = yield* DeadLettersConfig
    const requests = yield* ReplayRequests.make
    const target = yield* Deferred.make<ReplayTarget>()

    /**
     * Sends `letters` and records what came of it. Claimed first, in one statement, so that two
     * replays running at once never both send a letter; then sent; then settled: a letter the
     * broker took is recorded as replayed (`replayed_at`, the time in its `replay.at`), one it
     * refused is let go as it was, to be taken again. Not interrupted once claimed (a caller that
     * goes away leaves it to finish), so what the index says is what was sent.
     *
     * If the process dies between claiming and settling, the letters stay held until
     * `CLAIM_LEASE` runs out, and are then taken again by the next replay: a letter that had
     * been sent is then sent twice (at least once rather than at most once — a second copy of an
     * order is acknowledged as a redelivery, of an invalid one parked again naming the letter).
     */
    const send = (letters: ReadonlyArray<LetterRef>, includeReplayed: boolean) =>
      Effect.gen(function* () {
        const { deadLetterTopic, send } = yield* Deferred.await(target)
        const claimed = yield* index.claim(letters, includeReplayed, CLAIM_LEASE)
        if (claimed.letters.length === 0) return []
        const at = new Date()
        const traced = yield* traceReplays(
          claimed.letters,
          claimed.letters.map((l) => replayMessage(l, deadLetterTopic, at))
        )
        const sent = yield* send(traced.messages)
        const answered = yield* Clock.currentTimeNanos
        traced.spans.forEach((span, i) =>
          span?.end(answered, sent[i] === true ? Exit.void : Exit.fail("the broker did not take the message"))
        )
        const outcomes = claimed.letters.map((l, i) => ({
          partition: l.partition,
          offset: l.offset,
          sent: sent[i] === true
        }))
        // What was sent is the answer even if it cannot be recorded: the letters stay held until
        // their lease runs out, then are taken again (at least once).
        yield* index.settle(claimed.token, outcomes, at).pipe(
          Effect.retry({ times: 3, schedule: Schedule.exponential("200 millis") }),
          Effect.catchAll((e) =>
            Effect.logError(
              "Replayed letters could not be recorded as replayed; they will be taken again once their hold runs out",
              e
            )
          )
        )
        return claimed.letters.map((letter, i) => {
          const outcome: ReplayOutcome = outcomes[i]!.sent ? "sent" : "failed"
          return {
            letter: {
              partition: letter.partition,
              offset: letter.offset,
              kind: letter.kind,
              key: letter.key
            },
            outcome
          }
        })
      }).pipe(Effect.uninterruptible)

    /**
     * Replay a page of `selection` (oldest first): at most `limit` letters and
     * `dead_letters.replay_page_bytes` of them; the cursor leads to the next page. Letters
     * replayed before are left out unless `includeReplayed`. With `dryRun`, says what would be
     * sent and sends nothing. One log line per call.
     */
    const replay = Effect.fn("DeadLetterReplay.replay")(function* (
      selection: Selection,
      options: ReplayOptions
    ) {
      const includeReplayed = options.includeReplayed || selection._tag === "One"
      const page = yield* index.select(
        selection,
        { limit: options.limit, maxBytes: replayPageBytes, includeReplayed, cursor: options.cursor },
        new Date()
      )
      // Counting a large selection is a scan: once per run, on its first page.
      const counted = Option.isNone(options.cursor)
        ? Option.some(
            yield* index.count(
              selection._tag === "One"
                ? selection
                : { ...selection, until: Option.getOrUndefined(page.until) }
            )
          )
        : Option.none()
      let letters: ReplayResult["letters"] = page.letters.map((letter) => ({ letter, outcome: "dry_run" }))
      if (!options.dryRun && page.letters.length > 0) {
        if (!(yield* Deferred.isDone(target)))
          return yield* new ReplayUnavailable({ message: "Kafka is not connected yet; try again shortly" })
        letters = yield* send(page.letters, includeReplayed)
        for (const { letter, outcome } of letters) {
          yield* Metric.increment(
            Metric.tagged(Metric.tagged(ReplayMetrics.replayed, "kind", letter.kind), "outcome", outcome)
          )
        }
      }
      const count = (o: ReplayOutcome) => letters.filter((x) => x.outcome === o).length
      const selected = Option.map(counted, (c) =>
        includeReplayed ? c.notReplayed + c.replayed : c.notReplayed
      )
      yield* Effect.logInfo(options.dryRun ? "Dead letters replay (dry run)" : "Dead letters replayed").pipe(
        Effect.annotateLogs({
          requested_by: options.requestedBy,
          selection: describeSelection(selection, page.until),
          include_replayed: includeReplayed,
          selected: Option.getOrNull(selected),
          page: page.letters.length,
          // Held by another replay running at the same time, which sends them.
          taken_elsewhere: options.dryRun ? 0 : page.letters.length - letters.length,
          sent: count("sent"),
          failed: count("failed"),
          more: Option.isSome(page.nextCursor)
        })
      )
      return {
        dryRun: options.dryRun,
        selected,
        alreadyReplayed: Option.map(counted, (c) => c.replayed),
        until: page.until,
        letters,
        nextCursor: page.nextCursor
      } satisfies ReplayResult
    })

    return {
      replay,
      /** `replay` (or anything) once per `Idempotency-Key`: see ReplayRequests.ts. */
      once: requests.once,
      /** Called by the ingest side once its producer is connected. */
      attach: (t: ReplayTarget) => Deferred.succeed(target, t)
    } as const
  })
}) {}

const describeSelection = (s: Selection, until: Option.Option<Date>) =>
  s._tag === "One"
    ? { partition: s.partition, offset: s.offset }
    : {
        kind: s.kind ?? "any",
        since: s.since?.toISOString() ?? null,
        until: Option.getOrUndefined(until)?.toISOString() ?? null
      }

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
