/**
 * A worker's side of running several (src/cluster/Primary.ts). A worker is the whole service —
 * HTTP, its own consumers in the group, its own cache and pool — and besides: it tells the primary
 * when it is ready, stops when the primary says so, and answers `/metrics` with every worker's
 * metrics combined, which it asks the primary to collect. Its log lines carry its number
 * (`Logging.layer({ worker })`).
 */
import { Duration, Effect, Layer, Runtime } from "effect"
import { OrderCache } from "../cache/OrderCache.ts"
import { HttpConfig } from "../config/AppConfig.ts"
import * as Prometheus from "../observability/Prometheus.ts"
import {
  type FromPrimary,
  type FromWorker,
  isFromPrimary,
  type MetricsJson,
  workerNumber
} from "./Protocol.ts"

export { workerNumber }

/**
 * How long a scrape waits for the primary's collection; the primary itself gives each worker
 * `COLLECT_TIMEOUT` (Primary.ts), so this only ends a wait on a primary that has gone.
 */
const SCRAPE_TIMEOUT = Duration.seconds(5)

const send = (message: FromWorker): void => {
  process.send?.(message)
}

/**
 * Calls `stop` when the primary asks this worker to close down. Listened for from the start, so
 * that a worker still starting up stops too.
 */
export const onStopRequest = (stop: () => void): void => {
  process.on("message", (message: unknown) => {
    if (isFromPrimary(message) && message.type === "order-service:stop") stop()
  })
}

/** The gauges and counter a combined scrape adds, about the workers themselves. */
const workersMetrics = (scraped: number, workers: number, restarts?: number): MetricsJson => [
  {
    name: "workers_scraped",
    help: "Workers whose metrics this scrape adds up",
    type: "gauge",
    aggregator: "sum",
    values: [{ value: scraped, labels: {} }]
  },
  {
    name: "workers_missing",
    help: "Workers (of http.workers) missing from this scrape: starting, restarting, or no answer within 2 s",
    type: "gauge",
    aggregator: "sum",
    values: [{ value: Math.max(0, workers - scraped), labels: {} }]
  },
  ...(restarts === undefined
    ? []
    : [
        {
          name: "workers_restarts_total",
          help: "Workers started again after one ended unexpectedly",
          type: "counter",
          aggregator: "sum",
          values: [{ value: restarts, labels: {} }]
        }
      ])
]

/**
 * Built after the service's own layers: says "ready" to the primary, gives it this worker's
 * metrics when it collects them, and makes `/metrics` every worker's.
 */
export const layer = Layer.scopedDiscard(
  Effect.gen(function* () {
    const cache = yield* OrderCache
    const { workers } = yield* HttpConfig
    const runPromise = Runtime.runPromise(yield* Effect.runtime<never>())
    const scrapes = new Map<
      number,
      (reply: Extract<FromPrimary, { type: "order-service:scraped" }>) => void
    >()
    let lastScrape = 0

    const onMessage = (message: unknown) => {
      if (!isFromPrimary(message)) return
      if (message.type === "order-service:collect") {
        // The cache's fast-path counts are folded into its metrics first, as `/metrics` does.
        runPromise(cache.flushMetrics)
          .then(() => Prometheus.metricsAsJson())
          .then(
            (metrics) => send({ type: "order-service:metrics", id: message.id, metrics }),
            // Left out of that scrape (counted as missing) rather than answered with half.
            () => undefined
          )
      } else if (message.type === "order-service:scraped") {
        scrapes.get(message.id)?.(message)
      }
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => process.on("message", onMessage)),
      () => Effect.sync(() => process.off("message", onMessage))
    )

    /** Every worker's metrics, as the primary collected them; this worker's alone if it does not answer. */
    const everyWorker = () =>
      new Promise<string>((resolve) => {
        const id = ++lastScrape
        const timer = setTimeout(() => {
          scrapes.delete(id)
          Prometheus.metricsAsJson().then(
            (own) => resolve(Prometheus.combined([own, workersMetrics(1, workers)])),
            () => resolve("")
          )
        }, Duration.toMillis(SCRAPE_TIMEOUT))
        scrapes.set(id, (reply) => {
          clearTimeout(timer)
          scrapes.delete(id)
          resolve(
            Prometheus.combined([
              ...reply.metrics,
              workersMetrics(reply.metrics.length, reply.workers, reply.restarts)
            ])
          )
        })
        send({ type: "order-service:scrape", id })
      })
    yield* Effect.acquireRelease(
      Effect.sync(() => Prometheus.exposeWith(everyWorker)),
      (restore) => Effect.sync(restore)
    )
    send({ type: "order-service:ready" })
  })
)
