/**
 * `/metrics` in the Prometheus text format, written by `prom-client`. The service records its
 * metrics with Effect's `Metric`; at scrape time each one is handed to prom-client as a collector
 * of the matching type (tags become labels), so prom-client does the formatting and escaping.
 * HTTP latency is recorded straight into a prom-client histogram: it sits on the hottest path.
 */
import { Effect, Metric, MetricState, Option } from "effect"
import type { MetricPair } from "effect/MetricPair"
import type pg from "pg"
import client from "prom-client"

const registry = new client.Registry()
client.collectDefaultMetrics({ register: registry })

const httpDuration = new client.Histogram({
  name: "http_request_duration_seconds",
  help: "Time from receiving a request to sending the last byte of its response",
  labelNames: ["method", "route", "status"] as const,
  buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry]
})

// One child per label set, looked up by a string key: cheaper than hashing a labels object per request.
const httpChildren = new Map<string, client.Histogram.Internal<"method" | "route" | "status">>()

export const observeHttpRequest = (method: string, route: string, status: number, seconds: number): void => {
  const key = `${method} ${route} ${status}`
  let child = httpChildren.get(key)
  if (child === undefined) {
    child = httpDuration.labels(method, route, String(status))
    httpChildren.set(key, child)
  }
  child.observe(seconds)
}

const shed = new client.Counter({
  name: "http_shed_requests_total",
  help: "Requests (and connections) turned away because a bound was reached, by which one",
  labelNames: ["reason"] as const,
  registers: [registry]
})

/**
 * One request shed past a bound (`connections`, `body_too_large`, `live_clients`, `read_queue`…):
 * answered 503, 413 or dropped rather than held. Callable from callbacks: no Effect needed.
 */
export const countShed = (reason: string): void => shed.inc({ reason })

/**
 * A gauge on this registry for a value measured outside Effect's metrics whose series come and go
 * (a partition's lag): Effect's metrics keep a series once it exists, prom-client's can be removed.
 */
export const gauge = <L extends string>(config: {
  readonly name: string
  readonly help: string
  readonly labelNames: ReadonlyArray<L>
  /**
   * How the workers' series combine in one scrape (src/cluster/): `max`, the default, for a
   * figure every worker measures alike (the group's lag); `sum` for a share each worker holds.
   */
  readonly aggregator?: "max" | "sum"
}): client.Gauge<L> => new client.Gauge<L>({ aggregator: "max", ...config, registers: [registry] })

/** The `pg` pools of this process whose connections `/metrics` shows (one, in the service). */
const pools = new Set<pg.Pool>()

/** Show `pool`'s connections in `/metrics` until it is ended. */
export const observePool = (pool: pg.Pool): void => {
  pools.add(pool)
}

/** The pools still open; one being ended is forgotten. */
const openPools = (): ReadonlyArray<pg.Pool> => {
  for (const pool of pools) if (pool.ending) pools.delete(pool)
  return [...pools]
}

// Read from the pools at scrape time, named as OpenTelemetry's database client metrics are.
new client.Gauge({
  name: "db_client_connection_count",
  help: "Connections of the PostgreSQL pool, by state: used (handed out) or idle",
  labelNames: ["state"] as const,
  registers: [registry],
  collect() {
    let used = 0
    let idle = 0
    for (const pool of openPools()) {
      idle += pool.idleCount
      used += pool.totalCount - pool.idleCount
    }
    this.set({ state: "used" }, used)
    this.set({ state: "idle" }, idle)
  }
})

new client.Gauge({
  name: "db_client_connection_max",
  help: "Connections the PostgreSQL pool may open at most (database.pool_max)",
  registers: [registry],
  collect() {
    this.set(openPools().reduce((sum, pool) => sum + (pool.options.max ?? 10), 0))
  }
})

new client.Gauge({
  name: "db_client_connection_pending_requests",
  help: "Requests waiting for a connection of the PostgreSQL pool",
  registers: [registry],
  collect() {
    this.set(openPools().reduce((sum, pool) => sum + pool.waitingCount, 0))
  }
})

const sanitize = (name: string): string => {
  const clean = name.replace(/[^a-zA-Z0-9_:]/g, "_")
  return /^[a-zA-Z_:]/.test(clean) ? clean : `_${clean}`
}

type PromType = "counter" | "gauge" | "histogram" | "summary"
interface Sample {
  readonly value: number
  readonly labels: Record<string, string | number>
  readonly metricName?: string
}

const labelsOf = (pair: MetricPair.Untyped): Record<string, string> =>
  Object.fromEntries(pair.metricKey.tags.map((t) => [sanitize(t.key), t.value]))

/** The Prometheus type and samples of one Effect metric. */
const samplesOf = (
  name: string,
  pair: MetricPair.Untyped
): { type: PromType; samples: Array<Sample> } | undefined => {
  const state = pair.metricState
  const labels = labelsOf(pair)
  if (MetricState.isCounterState(state))
    return { type: "counter", samples: [{ value: Number(state.count), labels }] }
  if (MetricState.isGaugeState(state))
    return { type: "gauge", samples: [{ value: Number(state.value), labels }] }
  if (MetricState.isHistogramState(state)) {
    const samples: Array<Sample> = state.buckets.map(([le, count]) => ({
      metricName: `${name}_bucket`,
      labels: { ...labels, le },
      value: count
    }))
    samples.push({ metricName: `${name}_bucket`, labels: { ...labels, le: "+Inf" }, value: state.count })
    samples.push({ metricName: `${name}_sum`, labels, value: state.sum })
    samples.push({ metricName: `${name}_count`, labels, value: state.count })
    return { type: "histogram", samples }
  }
  if (MetricState.isSummaryState(state)) {
    const samples: Array<Sample> = state.quantiles.map(([q, v]) => ({
      labels: { ...labels, quantile: q },
      value: Option.getOrElse(v, () => Number.NaN)
    }))
    samples.push({ metricName: `${name}_sum`, labels, value: state.sum })
    samples.push({ metricName: `${name}_count`, labels, value: state.count })
    return { type: "summary", samples }
  }
  if (MetricState.isFrequencyState(state)) {
    // A frequency counts occurrences per value: one counter series per value.
    return {
      type: "counter",
      samples: [...state.occurrences].map(([key, value]) => ({ labels: { ...labels, key }, value }))
    }
  }
  return undefined
}

/** A prom-client collector for every Effect metric name (one per name; its tag sets are its series). */
const collectors = new Map<string, { type: PromType; help: string }>()

const syncCollectors = (): void => {
  for (const pair of Metric.unsafeSnapshot()) {
    const name = sanitize(pair.metricKey.name)
    if (collectors.has(name) || registry.getSingleMetric(name) !== undefined) continue
    const described = samplesOf(name, pair)
    if (described === undefined) continue
    const help = Option.getOrElse(pair.metricKey.description, () => name)
    collectors.set(name, { type: described.type, help })
    registry.registerMetric({
      name,
      help,
      type: described.type,
      aggregator: "sum",
      get: () => ({
        name,
        help,
        type: described.type,
        aggregator: "sum",
        values: Metric.unsafeSnapshot()
          .filter((p) => sanitize(p.metricKey.name) === name)
          .flatMap((p) => samplesOf(name, p)?.samples ?? [])
      })
    } as unknown as client.Metric)
  }
}

export const contentType = registry.contentType

/** This process's metrics as prom-client's JSON: what a worker hands over for a scrape of all (src/cluster/). */
export const metricsAsJson = (): ReturnType<client.Registry["getMetricsAsJSON"]> => {
  syncCollectors()
  return registry.getMetricsAsJSON()
}

/**
 * Several processes' metrics (`metricsAsJson` of each) as one exposition, the way prom-client's
 * cluster mode combines them: each metric by its aggregator — counters, histograms and most gauges
 * summed, the Node runtime's own by theirs (event-loop lag averaged, versions taken once…).
 */
export const combined = (perProcess: ReadonlyArray<ReadonlyArray<unknown>>): Promise<string> =>
  client.AggregatorRegistry.aggregate(perProcess as Array<object>).metrics()

/** This process's exposition text. */
const own = (): Promise<string> => {
  syncCollectors()
  return registry.metrics()
}

/** Where `scrape` reads from: this process, unless a worker of several replaced it with all workers. */
let exposition: () => Promise<string> = own

/**
 * Serve every worker's metrics combined (`source`) from now on, instead of this process's alone;
 * undone by calling the result.
 */
export const exposeWith = (source: () => Promise<string>): (() => void) => {
  exposition = source
  return () => {
    exposition = own
  }
}

/** The exposition text of every metric of this process (of every worker, under several). */
export const scrape: Effect.Effect<string> = Effect.promise(() => exposition())

export class Prometheus extends Effect.Service<Prometheus>()("Prometheus", {
  succeed: { scrape, contentType } as const
}) {}
