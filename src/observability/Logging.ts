/**
 * Log output: one JSON object per line (time, level, message, then the annotations as top-level
 * fields such as order_uid, partition, offset), or Effect's pretty logger for people at a
 * terminal.
 */
import { Cause, HashMap, Layer, List, Logger, type LogLevel } from "effect"

export type LogFormat = "json" | "pretty" | "auto"

const jsonLine = Logger.make(({ annotations, cause, date, logLevel, message, spans }) => {
  const line: Record<string, unknown> = {
    time: date.toISOString(),
    level: logLevel.label.toLowerCase(),
    message: Array.isArray(message) ? message.map(String).join(" ") : String(message)
  }
  for (const [key, value] of HashMap.toEntries(annotations)) line[key] = value
  if (!Cause.isEmpty(cause)) line["error"] = Cause.pretty(cause, { renderErrorCause: true })
  const span = List.head(spans)
  if (span._tag === "Some") line["span"] = span.value.label
  process.stdout.write(`${JSON.stringify(line)}\n`)
})

export const layer = (options: { readonly format: LogFormat; readonly level: LogLevel.LogLevel }) => {
  const pretty = options.format === "pretty" || (options.format === "auto" && process.stdout.isTTY === true)
  return Layer.merge(
    Logger.replace(Logger.defaultLogger, pretty ? Logger.prettyLoggerDefault : jsonLine),
    Logger.minimumLogLevel(options.level)
  )
}
