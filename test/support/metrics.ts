/**
 * Reading `/metrics` the way Prometheus does: series by name and labels. The registry is the
 * process's own and earlier tests have already moved it, so tests compare a scrape before and
 * after what they do.
 */
import { Effect } from "effect"
import { get } from "./app.ts"

export interface Series {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

const unescape = (value: string) => value.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c))

/** Every sample of a Prometheus text exposition. */
export const parseMetrics = (text: string): ReadonlyArray<Series> =>
  text
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const match = SAMPLE.exec(line)
      if (match === null) throw new Error(`not a Prometheus sample: ${line}`)
      const labels: Record<string, string> = {}
      for (const [, key, value] of (match[2] ?? "").matchAll(LABEL)) labels[key!] = unescape(value!)
      return { name: match[1]!, labels, value: Number(match[3]) }
    })

/**
 * The value of the one series named `name` whose labels include `labels`; 0 when there is none
 * yet (a counter that was never incremented). More than one match is an error in the test.
 */
export const metricValue = (
  samples: ReadonlyArray<Series>,
  name: string,
  labels: Readonly<Record<string, string>> = {}
): number => {
  const matching = samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  )
  if (matching.length > 1) {
    throw new Error(`${name} ${JSON.stringify(labels)} matches ${matching.length} series`)
  }
  return matching[0]?.value ?? 0
}

/** `GET /metrics` of the server under test, parsed; the raw text too, for `# TYPE` lines. */
export const scrapeMetrics = Effect.gen(function* () {
  const response = yield* get("/metrics")
  if (response.status !== 200) return yield* Effect.die(new Error(`/metrics answered ${response.status}`))
  const text = yield* Effect.promise(() => response.text())
  return { text, samples: parseMetrics(text) }
})

/** How much each series moved between two scrapes. */
export const deltaOf =
  (before: ReadonlyArray<Series>, after: ReadonlyArray<Series>) =>
  (name: string, labels: Readonly<Record<string, string>> = {}): number =>
    metricValue(after, name, labels) - metricValue(before, name, labels)
