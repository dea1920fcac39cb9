/**
 * Log output: one JSON object per line (time, level, message, then the annotations as top-level
 * fields such as order_uid, partition, offset), or Effect's pretty logger for people at a
 * terminal. While traces are exported, a line written inside a span names it (`trace_id`,
 * `span_id`), so that a trace leads to its log lines and back.
 */
import {
  Cause,
  Context,
  FiberRef,
  FiberRefs,
  HashMap,
  Layer,
  List,
  Logger,
  type LogLevel,
  Tracer
} from "effect"
import { TracePropagation } from "./Tracing.ts"

export type LogFormat = "json" | "pretty" | "auto"

const jsonLine = Logger.make(({ annotations, cause, context, date, logLevel, message, spans }) => {
  const line: Record<string, unknown> = {
    time: date.toISOString(),
    level: logLevel.label.toLowerCase(),
    message: Array.isArray(message) ? message.map(String).join(" ") : String(message)
  }
  for (const [key, value] of HashMap.toEntries(annotations)) line[key] = value
  const services = FiberRefs.getOrDefault(context, FiberRef.currentContext)
  if (Context.get(services, TracePropagation) !== undefined) {
    const current = Context.getOption(services, Tracer.ParentSpan)
    if (current._tag === "Some") {
      line["trace_id"] = current.value.traceId
      line["span_id"] = current.value.spanId
    }
  }
  if (!Cause.isEmpty(cause)) line["error"] = Cause.pretty(cause, { renderErrorCause: true })
  const span = List.head(spans)
  if (span._tag === "Some") line["span"] = span.value.label
  process.stdout.write(`${JSON.stringify(line)}\n`)
})

export const layer = (options: {
  readonly format: LogFormat
  readonly level: LogLevel.LogLevel
  /** This process's worker number (src/cluster/): every line says it, as `worker`, in one stream with the others'. */
  readonly worker?: number | undefined
}) => {
  const pretty = options.format === "pretty" || (options.format === "auto" && process.stdout.isTTY === true)
  const logger = pretty ? Logger.prettyLoggerDefault : jsonLine
  const worker = options.worker
  return Layer.merge(
    Logger.replace(
      Logger.defaultLogger,
      worker === undefined
        ? logger
        : Logger.mapInputOptions(logger, (line) => ({
            ...line,
            annotations: HashMap.set(line.annotations, "worker", worker as unknown)
          }))
    ),
    Logger.minimumLogLevel(options.level)
  )
}
