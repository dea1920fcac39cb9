/**
 * A batch in the traces. A batch holds messages of many traces, so its span is a trace of its own
 * that links each message's context, with a child per step (decode, store, park, cache). Each
 * message whose producer sent a `traceparent` gets one span in its own trace, a child of the
 * producer's, named after the step that settled it — `IngestPipeline.store` (stored, or found
 * stored already) or `IngestPipeline.park` (on the dead-letter topic, marked failed with the
 * reason) — timed as that step and linked to the batch's span, where the step's own spans are.
 *
 * One span per message rather than one per message per step: a span costs the service 15–25 µs to
 * make and export (measured on this machine with the OTLP/HTTP exporter), a link about 4 µs, where
 * ingesting an order costs the service about 80 µs. Four spans per message would double the
 * service's work for timings that are the batch's anyway (decoding one message takes
 * microseconds; caching is one step for the batch).
 *
 * Nothing here runs unless traces are exported (`TracePropagation`); a message without a valid
 * `traceparent` has no span of its own (the batch's span covers it).
 */
import { Clock, Effect, Option, type Tracer } from "effect"
import type { KafkaMessage } from "kafkajs"
import type { ConsumedBatch } from "../kafka/KafkaConsumer.ts"
import { kafkaHeader, linkTo, recordSpan, TracePropagation } from "../observability/Tracing.ts"
import type { MessageOutcome, ParkedMessage } from "./BatchOutcome.ts"

export interface BatchTrace {
  /** For the batch's span: a link to each traced message's context. */
  readonly links: ReadonlyArray<Tracer.SpanLink>
  /**
   * After a store step that began at `start`: a span for each traced message of `messages` (whose
   * outcomes are `outcomes`, in order) that the step stored or found stored.
   */
  readonly stored: (
    messages: ReadonlyArray<KafkaMessage>,
    outcomes: ReadonlyArray<MessageOutcome>,
    start: bigint
  ) => Effect.Effect<void>
  /** After the settle step that began at `start` has committed: a span for each traced parked message. */
  readonly parked: (parked: ReadonlyArray<ParkedMessage>, start: bigint) => Effect.Effect<void>
}

/** Attributes of a message's span (OpenTelemetry's messaging conventions, and ours). */
const messageAttributes = (batch: ConsumedBatch, message: KafkaMessage) => ({
  "messaging.system": "kafka",
  "messaging.destination.name": batch.topic,
  "messaging.destination.partition.id": String(batch.partition),
  "messaging.kafka.offset": Number(message.offset),
  ...(message.key === null ? {} : { "messaging.kafka.message.key": message.key.toString("utf8") })
})

/** The batch's trace, or `undefined` when traces are not exported or no message carries a context. */
export const make = (batch: ConsumedBatch): Effect.Effect<BatchTrace | undefined> =>
  Effect.flatMap(TracePropagation, (propagation) => {
    if (propagation === undefined) return Effect.succeed(undefined)
    const parents = new Map<KafkaMessage, Tracer.ExternalSpan>()
    for (const message of batch.messages) {
      const parent = propagation.extract(kafkaHeader(message.headers))
      if (parent !== undefined) parents.set(message, parent)
    }
    if (parents.size === 0) return Effect.succeed(undefined)

    /** One span per traced message of `items`, from `start` to now, linked to the current span. */
    const record = <A>(
      items: ReadonlyArray<A>,
      start: bigint,
      span: (item: A) => {
        readonly message: KafkaMessage
        readonly name: string
        readonly attributes: Record<string, unknown>
        readonly failure?: string
      }
    ) =>
      Effect.gen(function* () {
        const end = yield* Clock.currentTimeNanos
        const tracer = yield* Effect.tracer
        const step = yield* Effect.option(Effect.currentSpan)
        const links = Option.match(step, { onNone: () => [], onSome: (s) => [linkTo(s)] })
        for (const item of items) {
          const { message, name, attributes, failure } = span(item)
          const parent = parents.get(message)
          if (parent === undefined) continue
          recordSpan(tracer, name, {
            parent,
            start,
            end,
            kind: "consumer",
            links,
            attributes: { ...messageAttributes(batch, message), ...attributes },
            ...(failure === undefined ? {} : { failure })
          })
        }
      })

    return Effect.succeed<BatchTrace>({
      links: Array.from(parents.values(), linkTo),
      stored: (messages, outcomes, start) =>
        record(
          messages.flatMap((message, i) => {
            const outcome = outcomes[i]
            return outcome === undefined ? [] : [{ message, outcome }]
          }),
          start,
          ({ message, outcome }) => ({
            message,
            name: "IngestPipeline.store",
            attributes:
              outcome._tag === "Parked"
                ? { outcome: outcome.kind }
                : {
                    outcome: outcome._tag === "Stored" ? "stored" : "duplicate",
                    order_uid: outcome.order.order_uid
                  }
          })
        ),
      parked: (parked, start) =>
        record(parked, start, (p) => ({
          message: p.message,
          name: "IngestPipeline.park",
          attributes: { kind: p.kind, detail: p.detail },
          failure: `${p.kind}: ${p.detail}`
        }))
    })
  })
