/**
 * A real OTLP/HTTP trace receiver for tests: `POST /v1/traces` with an `ExportTraceServiceRequest`
 * in JSON (what `@opentelemetry/exporter-trace-otlp-http` sends; gzip when asked), answered as a
 * collector answers. Protobuf, which that exporter never sends, is refused with 415 so that a
 * change of exporter shows at once. The spans are kept in arrival order, flattened.
 */
import { createServer, type IncomingMessage } from "node:http"
import { gunzipSync } from "node:zlib"
import { Effect } from "effect"
import { eventually } from "./kafka.ts"

export type SpanKindName = "unspecified" | "internal" | "server" | "client" | "producer" | "consumer"
const KINDS: ReadonlyArray<SpanKindName> = [
  "unspecified",
  "internal",
  "server",
  "client",
  "producer",
  "consumer"
]

export interface ReceivedSpan {
  /** The `service.name` of the resource that sent it. */
  readonly service: string
  readonly traceId: string
  readonly spanId: string
  /** `undefined` for a root span. */
  readonly parentSpanId: string | undefined
  readonly name: string
  readonly kind: SpanKindName
  readonly startNanos: bigint
  readonly endNanos: bigint
  readonly links: ReadonlyArray<{ readonly traceId: string; readonly spanId: string }>
  readonly attributes: Readonly<Record<string, unknown>>
  readonly status: { readonly code: "unset" | "ok" | "error"; readonly message: string | undefined }
}

export interface OtlpReceiver {
  /** The base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it. */
  readonly endpoint: string
  /** Where traces are sent, as `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` takes it. */
  readonly tracesUrl: string
  /** Every span received so far. */
  readonly spans: () => ReadonlyArray<ReceivedSpan>
  /** The content types of the export requests received so far. */
  readonly contentTypes: () => ReadonlyArray<string>
  /** Waits (polling, with a deadline) until a span matches `predicate`; returns the first that does. */
  readonly span: (
    what: string,
    predicate: (span: ReceivedSpan) => boolean,
    timeoutMs?: number
  ) => Effect.Effect<ReceivedSpan>
}

interface AnyValue {
  readonly stringValue?: string
  readonly boolValue?: boolean
  readonly intValue?: string | number
  readonly doubleValue?: number
  readonly arrayValue?: { readonly values?: ReadonlyArray<AnyValue> }
  readonly kvlistValue?: { readonly values?: ReadonlyArray<KeyValue> }
  readonly bytesValue?: string
}
interface KeyValue {
  readonly key: string
  readonly value?: AnyValue
}
interface JsonSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly kind?: number
  readonly startTimeUnixNano: string | number
  readonly endTimeUnixNano: string | number
  readonly attributes?: ReadonlyArray<KeyValue>
  readonly links?: ReadonlyArray<{ readonly traceId: string; readonly spanId: string }>
  readonly status?: { readonly code?: number; readonly message?: string }
}
interface ExportTraceServiceRequest {
  readonly resourceSpans?: ReadonlyArray<{
    readonly resource?: { readonly attributes?: ReadonlyArray<KeyValue> }
    readonly scopeSpans?: ReadonlyArray<{ readonly spans?: ReadonlyArray<JsonSpan> }>
  }>
}

const valueOf = (v: AnyValue | undefined): unknown => {
  if (v === undefined) return undefined
  if (v.stringValue !== undefined) return v.stringValue
  if (v.boolValue !== undefined) return v.boolValue
  if (v.intValue !== undefined) return Number(v.intValue)
  if (v.doubleValue !== undefined) return v.doubleValue
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(valueOf)
  if (v.kvlistValue !== undefined) return attributesOf(v.kvlistValue.values)
  return v.bytesValue
}

const attributesOf = (list: ReadonlyArray<KeyValue> | undefined): Record<string, unknown> =>
  Object.fromEntries((list ?? []).map((kv) => [kv.key, valueOf(kv.value)]))

/** OTLP/JSON sends ids as hex; an empty parent id means a root span. */
const flatten = (request: ExportTraceServiceRequest): Array<ReceivedSpan> =>
  (request.resourceSpans ?? []).flatMap((rs) => {
    const service = String(attributesOf(rs.resource?.attributes)["service.name"] ?? "")
    return (rs.scopeSpans ?? []).flatMap((ss) =>
      (ss.spans ?? []).map((s): ReceivedSpan => ({
        service,
        traceId: s.traceId,
        spanId: s.spanId,
        parentSpanId: s.parentSpanId === undefined || s.parentSpanId === "" ? undefined : s.parentSpanId,
        name: s.name,
        kind: KINDS[s.kind ?? 0] ?? "unspecified",
        startNanos: BigInt(s.startTimeUnixNano),
        endNanos: BigInt(s.endTimeUnixNano),
        links: (s.links ?? []).map((l) => ({ traceId: l.traceId, spanId: l.spanId })),
        attributes: attributesOf(s.attributes),
        status: {
          code: s.status?.code === 1 ? "ok" : s.status?.code === 2 ? "error" : "unset",
          message: s.status?.message
        }
      }))
    )
  })

const bodyOf = (req: IncomingMessage) =>
  new Promise<Buffer>((resolve, reject) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => resolve(Buffer.concat(chunks)))
    req.on("error", reject)
  })

/** A receiver on a free loopback port for the life of the scope. */
export const otlpReceiver = Effect.acquireRelease(
  Effect.async<{ readonly receiver: OtlpReceiver; readonly close: () => Promise<void> }>((resume) => {
    const spans: Array<ReceivedSpan> = []
    const contentTypes: Array<string> = []
    const server = createServer((req, res) => {
      const answer = (status: number, body: object) => {
        res.writeHead(status, { "content-type": "application/json" })
        res.end(JSON.stringify(body))
      }
      if (req.method !== "POST" || req.url !== "/v1/traces") return answer(404, { message: "not found" })
      const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim()
      contentTypes.push(type)
      bodyOf(req).then(
        (raw) => {
          if (type !== "application/json")
            return answer(415, { message: `only OTLP/JSON is understood here, not ${type}` })
          try {
            const body = req.headers["content-encoding"] === "gzip" ? gunzipSync(raw) : raw
            spans.push(...flatten(JSON.parse(body.toString("utf8")) as ExportTraceServiceRequest))
            answer(200, {})
          } catch (e) {
            answer(400, { message: String(e) })
          }
        },
        () => answer(400, { message: "the request could not be read" })
      )
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number }
      const endpoint = `http://127.0.0.1:${port}`
      const receiver: OtlpReceiver = {
        endpoint,
        tracesUrl: `${endpoint}/v1/traces`,
        spans: () => spans,
        contentTypes: () => contentTypes,
        span: (what, predicate, timeoutMs = 30_000) =>
          Effect.zipRight(
            eventually(
              `a span arrives: ${what}`,
              Effect.sync(() => spans.some(predicate)),
              timeoutMs
            ),
            Effect.sync(() => spans.find(predicate)!)
          )
      }
      resume(
        Effect.succeed({
          receiver,
          close: () =>
            new Promise<void>((done) => {
              server.closeAllConnections()
              server.close(() => done())
            })
        })
      )
    })
  }),
  ({ close }) => Effect.promise(close)
).pipe(Effect.map(({ receiver }) => receiver))
