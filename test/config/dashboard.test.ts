/**
 * The Grafana dashboard shows what the service exports: every metric its queries name, and every
 * label they select or group by, is in the service's `/metrics` once an order has been stored and
 * read and a bad one parked, scraped the way Prometheus scrapes it (an API key of the role
 * metrics). And the pieces between agree: Prometheus scrapes the compose service at its port and
 * path with the key compose gives it, under the job the queries name; Grafana's data sources and
 * dashboard folder are the compose services and mounts.
 */
import { createHash, randomBytes } from "node:crypto"
import { readdirSync, readFileSync } from "node:fs"
import path from "node:path"
import { describe, expect, it, layer } from "@effect/vitest"
import { Effect } from "effect"
import { parse } from "yaml"
import type { OrderJson } from "../../src/orders/Order.ts"
import { get, serviceStack } from "../support/app.ts"
import { TestDatabase } from "../support/database.ts"
import { readFixture, readFixtureJson } from "../support/fixtures.ts"
import { eventually, freshTopics, produce } from "../support/kafka.ts"
import { parseMetrics, type Series } from "../support/metrics.ts"

interface Target {
  readonly expr: string
  readonly datasource?: { readonly uid?: string }
}
interface Panel {
  readonly type: string
  readonly title: string
  readonly datasource?: { readonly type?: string; readonly uid?: string }
  readonly targets?: ReadonlyArray<Target>
  readonly panels?: ReadonlyArray<Panel>
}

const DASHBOARDS = "config/grafana/dashboards"
const dashboards = readdirSync(DASHBOARDS)
  .filter((f) => f.endsWith(".json"))
  .map((file) => ({
    file,
    json: JSON.parse(readFileSync(path.join(DASHBOARDS, file), "utf8")) as { panels: Array<Panel> }
  }))
const panelsOf = (panels: ReadonlyArray<Panel>): Array<Panel> =>
  panels.flatMap((p) => [p, ...panelsOf(p.panels ?? [])])
const queries = dashboards.flatMap(({ file, json }) =>
  panelsOf(json.panels).flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({ where: `${file}: ${panel.title}`, panel, target }))
  )
)

/** Words of PromQL that are not metric names. */
const KEYWORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "bool",
  "and",
  "or",
  "unless",
  "offset",
  "inf",
  "nan"
])

/** A selector's name and its equality matchers (`name{a="x"}`). */
interface Selector {
  readonly name: string
  readonly labels: ReadonlyArray<readonly [string, string]>
}

/**
 * The series selectors of a PromQL expression — names not followed by `(` (functions are), with
 * their `=` matchers — and the label names it groups or matches by. Strings, ranges, Grafana
 * variables and numbers are taken out first.
 */
const readPromQL = (expr: string): { selectors: Array<Selector>; grouping: Array<string> } => {
  const grouping: Array<string> = []
  const selectors: Array<Selector> = []
  let e = expr
    .replace(/\$\{[^}]*\}|\$\w+/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\boffset\s+\S+/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_, _kw, labels: string) => {
      grouping.push(
        ...labels
          .split(",")
          .map((l) => l.trim())
          .filter((l) => l !== "")
      )
      return " "
    })
  // Matchers hold strings that may look like names: read them with their selector, then drop them.
  const matchers = new Map<number, string>()
  e = e.replace(/\{([^}]*)\}/g, (_, inner: string, at: number) => {
    matchers.set(at, inner)
    return " ".repeat(inner.length + 2)
  })
  for (const m of e.matchAll(/(?<![\w:.$])[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const end = m.index + m[0].length
    if (/^\s*\(/.test(e.slice(end)) || KEYWORDS.has(m[0].toLowerCase())) continue
    const inner = matchers.get(end) ?? ""
    const labels = [...inner.matchAll(/([a-zA-Z_]\w*)\s*=\s*"((?:[^"\\]|\\.)*)"/g)].map(
      ([, label, value]) => [label!, value!] as const
    )
    selectors.push({ name: m[0], labels })
  }
  return { selectors, grouping }
}

/** Every series name `/metrics` declares: its samples, and the families its `# TYPE` lines name. */
const exportedNames = (text: string, samples: ReadonlyArray<Series>): Set<string> => {
  const names = new Set(samples.map((s) => s.name))
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name!)
    if (type === "histogram")
      for (const suffix of ["_bucket", "_sum", "_count"]) names.add(`${name}${suffix}`)
    if (type === "summary") for (const suffix of ["_sum", "_count"]) names.add(`${name}${suffix}`)
  }
  return names
}

/** Series Prometheus makes itself for each target, which no exporter sends. */
const FROM_PROMETHEUS = new Set(["up", "scrape_duration_seconds", "scrape_samples_scraped"])
/** Labels Prometheus adds to each scraped series (the target's). */
const TARGET_LABELS = new Set(["job", "instance"])

/** What the dashboard's queries need that the scrape lacks, one line each. */
const missingFrom = (text: string) => {
  const samples = parseMetrics(text)
  const names = exportedNames(text, samples)
  const missing: Array<string> = []
  for (const { where, target } of queries) {
    const { selectors, grouping } = readPromQL(target.expr)
    for (const { name, labels } of selectors) {
      if (FROM_PROMETHEUS.has(name)) continue
      if (!names.has(name)) {
        missing.push(`${where}: metric ${name}`)
        continue
      }
      for (const [label, value] of labels) {
        if (TARGET_LABELS.has(label)) continue
        if (!samples.some((s) => s.name === name && s.labels[label] === value))
          missing.push(`${where}: ${name}{${label}="${value}"}`)
      }
    }
    // Labels show only on samples: a family declared without any yet (nothing shed so far) is
    // checked by name alone.
    const series = samples.filter((s) => selectors.some((sel) => sel.name === s.name))
    const labelsHere = new Set(series.flatMap((s) => Object.keys(s.labels)))
    for (const label of grouping)
      if (series.length > 0 && !TARGET_LABELS.has(label) && !labelsHere.has(label))
        missing.push(`${where}: label ${label}`)
  }
  return missing
}

describe("the PromQL reader the dashboard is checked with", () => {
  it("finds the metrics, matchers and grouping labels of a query, and no function, keyword, range or number", () => {
    const read = readPromQL(
      'histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket{job="order-service", route!="x"}[$__rate_interval]))) / on (instance) group_left max(up offset 5m) * 1e-3 + cache_hits_total'
    )
    expect(read.selectors).toEqual([
      { name: "http_request_duration_seconds_bucket", labels: [["job", "order-service"]] },
      { name: "up", labels: [] },
      { name: "cache_hits_total", labels: [] }
    ])
    expect(read.grouping).toEqual(["le", "route", "instance"])
  })
})

const compose = parse(readFileSync("docker-compose.yml", "utf8"), { merge: true }) as {
  services: Record<
    string,
    {
      build?: unknown
      command?: unknown
      ports?: Array<string>
      environment?: Record<string, unknown>
      volumes?: Array<string>
    }
  >
}
const prometheusConfig = parse(readFileSync("config/prometheus/prometheus.yml", "utf8")) as {
  scrape_configs: Array<{
    job_name: string
    metrics_path?: string
    scheme?: string
    authorization?: { type?: string; credentials_file?: string }
    static_configs: Array<{ targets: Array<string> }>
  }>
}
const datasources = parse(
  readFileSync("config/grafana/provisioning/datasources/datasources.yml", "utf8")
) as { datasources: Array<{ uid: string; type: string; url: string }> }
const dashboardProviders = parse(
  readFileSync("config/grafana/provisioning/dashboards/dashboards.yml", "utf8")
) as { providers: Array<{ options: { path: string } }> }

describe("Prometheus and Grafana in the compose stack", () => {
  it("Prometheus scrapes the compose service's /metrics on its HTTP port, with the key compose writes for it, as the job the dashboard's queries name", () => {
    expect(prometheusConfig.scrape_configs).toHaveLength(1)
    const job = prometheusConfig.scrape_configs[0]!
    expect(job.metrics_path ?? "/metrics").toBe("/metrics")
    expect(job.scheme ?? "http").toBe("http")
    const targets = job.static_configs.flatMap((c) => c.targets)
    expect(targets).toHaveLength(1)
    const [host, port] = targets[0]!.split(":")
    const service = compose.services[host!]
    expect(service?.build, `${host} is the service built here`).toBeDefined()
    expect(String(service!.environment?.["HTTP_PORT"])).toBe(port)
    // The bearer key: the file the prometheus service writes the key of .env to before it starts.
    expect(job.authorization?.type).toBe("Bearer")
    const script = [compose.services["prometheus"]!.command].flat().join("\n")
    const written = /printf %s "\$\$PROMETHEUS_SCRAPE_KEY" > (\S+)/.exec(script)
    expect(written?.[1]).toBe(job.authorization?.credentials_file)
    // Every query of the dashboard selects that job.
    expect(queries.length).toBeGreaterThan(0)
    for (const { where, target } of queries) expect(target.expr, where).toContain(`job="${job.job_name}"`)
  })

  it("Grafana's data sources are the compose services, every panel uses one, and the dashboards are where its provider reads them", () => {
    for (const ds of datasources.datasources) {
      const url = new URL(ds.url)
      const service = compose.services[url.hostname]
      expect(service, ds.url).toBeDefined()
      expect(
        (service!.ports ?? []).some((p) => p.endsWith(`:${url.port}`)),
        ds.url
      ).toBe(true)
    }
    const uids = new Set(datasources.datasources.map((d) => d.uid))
    for (const { where, panel, target } of queries) {
      expect(uids.has(panel.datasource?.uid ?? ""), where).toBe(true)
      expect(uids.has(target.datasource?.uid ?? panel.datasource?.uid ?? ""), where).toBe(true)
    }
    const mounted = (compose.services["grafana"]!.volumes ?? []).map((v) => v.split(":"))
    const dashboardsMount = mounted.find(([source]) => source === `./${DASHBOARDS}`)
    expect(dashboardProviders.providers.map((p) => p.options.path)).toEqual([dashboardsMount?.[1]])
  })
})

const topics = freshTopics()
/** The key Prometheus would hold; the service lists its SHA-256 with the role metrics. */
const scrapeKey = randomBytes(24).toString("hex")
const model = readFixtureJson("valid/model.json") as OrderJson

layer(
  serviceStack(topics, TestDatabase, {
    kafka: { lag_interval: "1 seconds" },
    auth: {
      mode: "required",
      api_keys: `prometheus:metrics:${createHash("sha256").update(scrapeKey).digest("hex")}`
    }
  }),
  { excludeTestServices: true, timeout: "180 seconds" }
)("the dashboard against the service's /metrics", (it) => {
  it.effect(
    "every metric and label the dashboard's queries name is exported once an order is stored and read and a bad one parked",
    () =>
      Effect.gen(function* () {
        const uid = `dashboard-${randomBytes(4).toString("hex")}`
        yield* produce(topics.brokers, topics.topic, [
          { key: uid, value: JSON.stringify({ ...model, order_uid: uid }) },
          { key: `${uid}-bad`, value: readFixture("invalid/not-json.txt") }
        ])
        yield* eventually(
          "the order is stored and served",
          Effect.map(get(`/order/${uid}`), (r) => r.status === 200)
        )
        // Read again (a hit), and an id nobody sent (a miss).
        expect((yield* get(`/order/${uid}`)).status).toBe(200)
        expect((yield* get(`/order/${uid}-never-sent`)).status).toBe(404)

        // /metrics as Prometheus scrapes it: refused without the key, served with it.
        expect((yield* get("/metrics")).status).toBe(401)
        const scrape = Effect.flatMap(get("/metrics", { authorization: `Bearer ${scrapeKey}` }), (r) => {
          expect(r.status).toBe(200)
          return Effect.promise(() => r.text())
        })
        // Lag and dead letters are counted a moment after the order is served: wait for them, then
        // the assertion names whatever is still missing.
        let missing: Array<string> = []
        yield* eventually(
          "the scrape has everything the dashboard asks for",
          Effect.map(scrape, (text) => (missing = missingFrom(text)).length === 0),
          20_000
        ).pipe(Effect.catchAllDefect(() => Effect.void))
        expect(missing).toEqual([])

        // Ingest, lag, dead letters, HTTP, cache, the pool and the event loop: each is on the dashboard.
        const named = new Set(
          queries.flatMap(({ target }) => readPromQL(target.expr).selectors.map((s) => s.name))
        )
        for (const name of [
          "ingest_messages_consumed_total",
          "ingest_batch_duration_seconds_bucket",
          "kafka_consumergroup_lag",
          "kafka_consumergroup_lag_seconds",
          "ingest_messages_dead_lettered_total",
          "http_request_duration_seconds_count",
          "http_request_duration_seconds_bucket",
          "cache_hits_total",
          "cache_misses_total",
          "db_client_connection_count",
          "db_client_connection_max",
          "nodejs_eventloop_lag_p99_seconds"
        ])
          expect(named, name).toContain(name)
      })
  )
})
