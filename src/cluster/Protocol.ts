/**
 * What the primary and its workers say to each other over `node:cluster`'s IPC channel, and how a
 * worker knows its number. Messages carry a `type` prefixed with the service's name, so that
 * anything else on the channel (Node's own cluster messages have their own property) is ignored.
 */
import cluster from "node:cluster"

/** The variable that gives a worker its number, 1 to `http.workers`; a restarted worker keeps its number. */
export const WORKER_ENV = "ORDER_SERVICE_WORKER"

/** This process's worker number, or `undefined` when it is not a worker (a single process, or the primary). */
export const workerNumber: number | undefined = (() => {
  const n = Number(process.env[WORKER_ENV])
  return cluster.isWorker && Number.isInteger(n) && n >= 1 ? n : undefined
})()

/** prom-client's JSON of one process's registry (`Registry.getMetricsAsJSON`). */
export type MetricsJson = ReadonlyArray<unknown>

/** From a worker to the primary. */
export type FromWorker =
  /** Its layers are built: it serves, consumes and has migrated the database. */
  | { readonly type: "order-service:ready" }
  /** It was asked for `/metrics`: the primary is to collect every worker's metrics for it. */
  | { readonly type: "order-service:scrape"; readonly id: number }
  /** Its own metrics, for the collection `id`. */
  | { readonly type: "order-service:metrics"; readonly id: number; readonly metrics: MetricsJson }

/** From the primary to a worker. */
export type FromPrimary =
  /** Close down gracefully, as on a first SIGINT/SIGTERM. */
  | { readonly type: "order-service:stop" }
  /** Send your metrics for the collection `id`. */
  | { readonly type: "order-service:collect"; readonly id: number }
  /** Every worker's metrics that came in time, for the worker's scrape `id`. */
  | {
      readonly type: "order-service:scraped"
      readonly id: number
      readonly metrics: ReadonlyArray<MetricsJson>
      /** Workers configured (`http.workers`). */
      readonly workers: number
      /** Workers started again after one ended unexpectedly, since the primary started. */
      readonly restarts: number
    }

const isTyped = (message: unknown): message is { readonly type: string } =>
  typeof message === "object" &&
  message !== null &&
  typeof (message as { type?: unknown }).type === "string" &&
  (message as { type: string }).type.startsWith("order-service:")

export const isFromWorker = (message: unknown): message is FromWorker => isTyped(message)
export const isFromPrimary = (message: unknown): message is FromPrimary => isTyped(message)
