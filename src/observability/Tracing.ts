/**
 * Traces with OpenTelemetry: the spans the code declares (`Effect.fn`, `withSpan`) and the ones made
 * per message, sent over OTLP/HTTP (JSON) by the OpenTelemetry SDK's batch span processor, with W3C
 * trace context (`traceparent`, `tracestate`) carried in Kafka headers from the producer through
 * ingestion, the dead-letter topic and replay.
 *
 * Configured the standard way, from the environment: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
 * `OTEL_EXPORTER_OTLP_ENDPOINT` turns it on; `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`; the SDK
 * itself reads the sampler (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), the processor's
 * bounds (`OTEL_BSP_*`) and the exporter's headers and timeout (`OTEL_EXPORTER_OTLP_*`).
 *
 * Off — no endpoint, or `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none` — there is no
 * tracer layer at all: spans stay Effect's own, in memory, as they always were; no OpenTelemetry
 * module is even loaded (they are imported when the layer is built: ~130 ms of start-up), and
 * nothing per message is done (`TracePropagation` is `undefined`).
 */
import type { TextMapGetter } from "@opentelemetry/api"
import { Context, Duration, Effect, Exit, Layer, Option, Runtime, type Tracer } from "effect"
import type { IHeaders } from "kafkajs"

/** The W3C trace-context headers, on Kafka messages as on HTTP requests. */
export const TraceHeaders = { parent: "traceparent", state: "tracestate" } as const

/** Reads one header by name (first value, as text), or `undefined`. */
export type HeaderReader = (name: string) => string | undefined

/** How trace context crosses process boundaries: W3C `traceparent` and `tracestate`. */
export interface Propagation {
  /** The context the headers carry; `undefined` without a valid `traceparent`. */
  readonly extract: (read: HeaderReader) => Tracer.ExternalSpan | undefined
  /** The headers that carry `span`'s context to the next process. */
  readonly inject: (span: Tracer.AnySpan) => Record<string, string>
}

/**
 * Set while traces are exported; `undefined` (the default) when they are not, and then nothing per
 * message is done: no header read or written, no span per message.
 */
export class TracePropagation extends Context.Reference<TracePropagation>()("TracePropagation", {
  defaultValue: (): Propagation | undefined => undefined
}) {}

/** A header of a kafkajs message (a Buffer, a string or several of them) as text. */
export const kafkaHeader =
  (headers: IHeaders | undefined): HeaderReader =>
  (name) => {
    const value = headers?.[name]
    const first = Array.isArray(value) ? value[0] : value
    return first === undefined ? undefined : typeof first === "string" ? first : first.toString("utf8")
  }

/** A link to `span` (a message's context from a batch, a batch from a message). */
export const linkTo = (span: Tracer.AnySpan): Tracer.SpanLink => ({ _tag: "SpanLink", span, attributes: {} })

/**
 * Records a span that has already happened, from `start` to `end` (the clock's nanoseconds), as a
 * child of `parent` rather than of the fiber's current span: one message's part in a step taken
 * for a whole batch. `failure` marks it failed, with that message.
 */
export const recordSpan = (
  tracer: Tracer.Tracer,
  name: string,
  options: {
    readonly parent: Tracer.AnySpan
    readonly start: bigint
    readonly end: bigint
    readonly kind?: Tracer.SpanKind
    readonly links?: ReadonlyArray<Tracer.SpanLink>
    readonly attributes?: Record<string, unknown>
    readonly failure?: string
  }
): Tracer.Span => {
  const span = startSpan(tracer, name, options)
  span.end(options.end, options.failure === undefined ? Exit.void : Exit.fail(options.failure))
  return span
}

/**
 * Begins a span at `start` under `parent` (a root span without one), outside the fiber's span
 * stack: one per message of a send. End it with `span.end`.
 */
export const startSpan = (
  tracer: Tracer.Tracer,
  name: string,
  options: {
    readonly parent?: Tracer.AnySpan | undefined
    readonly start: bigint
    readonly kind?: Tracer.SpanKind
    readonly links?: ReadonlyArray<Tracer.SpanLink>
    readonly attributes?: Record<string, unknown>
  }
): Tracer.Span => {
  const span = tracer.span(
    name,
    Option.fromNullable(options.parent),
    Context.empty(),
    options.links ?? [],
    options.start,
    options.kind ?? "internal"
  )
  if (options.attributes !== undefined)
    for (const [key, value] of Object.entries(options.attributes)) span.attribute(key, value)
  return span
}

export interface TracingOptions {
  /** The OTLP/HTTP traces endpoint (`…/v1/traces`). */
  readonly url: string
  readonly serviceName: string
  readonly resourceAttributes?: Readonly<Record<string, string>>
  /**
   * Links a span keeps at most (the SDK's default is 128): a batch span links each message's
   * context, and a batch may hold thousands.
   */
  readonly linkCountLimit?: number
  /** Overrides of the batch span processor's settings (else `OTEL_BSP_*`, else the SDK's defaults). */
  readonly processor?: {
    readonly maxQueueSize?: number
    readonly scheduledDelayMillis?: number
  }
  /** How long closing waits for the last spans to be sent (default 5 seconds). */
  readonly shutdownTimeout?: Duration.DurationInput
}

/** Warnings from the OpenTelemetry SDK (spans dropped, exports failed) are logged at most this often. */
const WARNING_INTERVAL = Duration.seconds(10)

/** Links a span keeps by default: a full batch of small orders (4 MiB fetched per partition). */
export const DEFAULT_LINK_COUNT_LIMIT = 4096

/**
 * Spans exported to `options.url` for as long as the layer lives; closing flushes what is queued,
 * for at most `shutdownTimeout`. The span processor's queue is bounded (`OTEL_BSP_MAX_QUEUE_SIZE`,
 * 2048 spans by default): past it spans are dropped, and memory stays flat when the collector is
 * slow or gone. Dropped spans and failed exports are logged as warnings.
 */
export const layer = (options: TracingOptions) =>
  Layer.unwrapEffect(
    Effect.promise(() =>
      Promise.all([
        import("@opentelemetry/api"),
        import("@opentelemetry/core"),
        import("@opentelemetry/sdk-trace-base"),
        import("@opentelemetry/exporter-trace-otlp-http"),
        import("@effect/opentelemetry/NodeSdk"),
        import("@effect/opentelemetry/Resource"),
        import("@effect/opentelemetry/Tracer")
      ])
    ).pipe(
      Effect.map(([otel, core, sdk, otlp, NodeSdk, Resource, OtelTracer]) => {
        const processor = new sdk.BatchSpanProcessor(
          new otlp.OTLPTraceExporter({ url: options.url }),
          options.processor
        )
        const propagator = new core.W3CTraceContextPropagator()
        const getter: TextMapGetter<HeaderReader> = {
          keys: () => [TraceHeaders.parent, TraceHeaders.state],
          get: (read, key) => read(key)
        }
        /** The trace state `span` carries on: its nearest remote ancestor's (the SDK copies it down). */
        const traceStateOf = (span: Tracer.AnySpan) => {
          let current: Tracer.AnySpan | undefined = span
          while (current !== undefined) {
            if (current._tag === "ExternalSpan")
              return Context.getOption(current.context, OtelTracer.OtelTraceState).pipe(Option.getOrUndefined)
            current = Option.getOrUndefined(current.parent)
          }
          return undefined
        }
        const propagation: Propagation = {
          extract: (read) => {
            const context = otel.trace.getSpanContext(propagator.extract(otel.ROOT_CONTEXT, read, getter))
            return context === undefined ? undefined : OtelTracer.makeExternalSpan(context)
          },
          inject: (span) => {
            const traceState = traceStateOf(span)
            const context = otel.trace.setSpanContext(otel.ROOT_CONTEXT, {
              traceId: span.traceId,
              spanId: span.spanId,
              traceFlags: span.sampled ? otel.TraceFlags.SAMPLED : otel.TraceFlags.NONE,
              ...(traceState === undefined ? {} : { traceState })
            })
            const headers: Record<string, string> = {}
            propagator.inject(context, headers, otel.defaultTextMapSetter)
            return headers
          }
        }
        // The SDK reports dropped spans and failed exports through its diagnostic logger: into
        // ours, at most one line per WARNING_INTERVAL (a collector that is down fails every export).
        const diagnostics = Layer.scopedDiscard(
          Effect.gen(function* () {
            const runFork = Runtime.runFork(yield* Effect.runtime<never>())
            let lastAt = -Infinity
            let suppressed = 0
            const warn = (message: unknown) => {
              const now = Date.now()
              if (now - lastAt < Duration.toMillis(WARNING_INTERVAL)) return void suppressed++
              lastAt = now
              const annotations = { traces_url: options.url, similar_before: suppressed }
              suppressed = 0
              runFork(
                Effect.logWarning(`OpenTelemetry: ${String(message)}`).pipe(Effect.annotateLogs(annotations))
              )
            }
            const ignore = () => undefined
            yield* Effect.acquireRelease(
              Effect.sync(() =>
                otel.diag.setLogger(
                  { error: warn, warn, info: ignore, debug: ignore, verbose: ignore },
                  otel.DiagLogLevel.WARN
                )
              ),
              () => Effect.sync(() => otel.diag.disable())
            )
          })
        )
        return Layer.mergeAll(
          OtelTracer.layer.pipe(
            Layer.provide(
              NodeSdk.layerTracerProvider(processor, {
                spanLimits: { linkCountLimit: options.linkCountLimit ?? DEFAULT_LINK_COUNT_LIMIT },
                shutdownTimeout: options.shutdownTimeout ?? Duration.seconds(5)
              })
            ),
            Layer.provide(
              Resource.layer({
                serviceName: options.serviceName,
                attributes: { ...options.resourceAttributes }
              })
            )
          ),
          Layer.succeed(TracePropagation, propagation),
          diagnostics
        )
      })
    )
  )

type Env = Readonly<Record<string, string | undefined>>

const nonEmpty = (env: Env, name: string): string | undefined => {
  const value = env[name]?.trim()
  return value === undefined || value === "" ? undefined : value
}

/** `OTEL_RESOURCE_ATTRIBUTES`: `key=value,…`, values percent-encoded. Malformed pairs are skipped. */
export const parseResourceAttributes = (text: string | undefined): Record<string, string> => {
  const attributes: Record<string, string> = {}
  for (const pair of (text ?? "").split(",")) {
    const at = pair.indexOf("=")
    if (at < 1) continue
    const key = pair.slice(0, at).trim()
    const raw = pair.slice(at + 1).trim()
    try {
      if (key !== "") attributes[key] = decodeURIComponent(raw)
    } catch {
      // Not valid percent-encoding: skipped, as the SDK would.
    }
  }
  return attributes
}

/**
 * What the environment asks for, the way the OpenTelemetry SDKs read it; `undefined` when traces
 * are off. `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as it is; `OTEL_EXPORTER_OTLP_ENDPOINT` is
 * a base to which `v1/traces` is added. The service's name is `OTEL_SERVICE_NAME`, else
 * `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else `defaultServiceName`.
 */
export const optionsFromEnv = (
  defaultServiceName: string,
  env: Env = process.env
): TracingOptions | undefined => {
  if (nonEmpty(env, "OTEL_SDK_DISABLED")?.toLowerCase() === "true") return undefined
  const exporters = nonEmpty(env, "OTEL_TRACES_EXPORTER")
  if (exporters !== undefined && !exporters.split(",").some((e) => e.trim() === "otlp")) return undefined
  const signal = nonEmpty(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
  const base = nonEmpty(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
  const url = signal ?? (base === undefined ? undefined : `${base.replace(/\/+$/, "")}/v1/traces`)
  if (url === undefined) return undefined
  const resourceAttributes = parseResourceAttributes(env["OTEL_RESOURCE_ATTRIBUTES"])
  const serviceName =
    nonEmpty(env, "OTEL_SERVICE_NAME") ?? resourceAttributes["service.name"] ?? defaultServiceName
  const links = Number(nonEmpty(env, "OTEL_SPAN_LINK_COUNT_LIMIT"))
  return {
    url,
    serviceName,
    resourceAttributes,
    ...(Number.isSafeInteger(links) && links >= 0 ? { linkCountLimit: links } : {})
  }
}

/** `layer` as the environment configures it, or no layer at all when traces are off. */
export const layerFromEnv = (defaultServiceName: string, env: Env = process.env) => {
  const options = optionsFromEnv(defaultServiceName, env)
  return options === undefined ? Layer.empty : layer(options)
}

/** For the start-up log line: where traces go, or `off`. */
export const describeForLog = (options: TracingOptions | undefined) =>
  options === undefined ? "off" : { url: options.url, service_name: options.serviceName }
