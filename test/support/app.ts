/** The service's serving side on a test database, listening on a free port. */
import type { SqlClient } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import { FetchHttpClient, HttpApiClient } from "@effect/platform"
import { ConfigProvider, Effect, Layer } from "effect"
import * as App from "../../src/App.ts"
import { OrderServiceApi } from "../../src/http/Api.ts"
import { HttpAddress } from "../../src/http/HttpServer.ts"
import { IngestStatus } from "../../src/ingest/IngestStatus.ts"
import type { PgPool } from "../../src/db/Database.ts"
import { KafkaClient } from "../../src/kafka/KafkaClient.ts"
import { createTopics, testConfig, type TestTopics } from "./kafka.ts"

/** The ingest side of the service on its own topics and database. */
export const ingestStack = <E>(topics: TestTopics, database: Layer.Layer<SqlClient.SqlClient | PgPool, E>) =>
  App.layerIngest(KafkaClient.Default).pipe(
    Layer.provideMerge(App.layerCore),
    Layer.provideMerge(database),
    Layer.provide(testConfig(topics))
  )

/** The dead-letter side of the service (the index and replay) on its own topics and database. */
export const deadLetterStack = <E>(
  topics: TestTopics,
  database: Layer.Layer<SqlClient.SqlClient | PgPool, E>
) =>
  App.layerDeadLetters(KafkaClient.Default).pipe(
    Layer.provideMerge(App.layerCore),
    Layer.provideMerge(database),
    Layer.provide(testConfig(topics))
  )

/**
 * The whole service as `App` composes it — HTTP, ingestion, the dead-letter index and replay — on
 * its own topics (created first) and database, listening on a free port.
 */
export const serviceStack = <E>(
  topics: TestTopics,
  database: Layer.Layer<SqlClient.SqlClient | PgPool, E>,
  config: Record<string, unknown> = {}
) =>
  Layer.unwrapEffect(Effect.as(createTopics(topics), App.layerServices(KafkaClient.Default))).pipe(
    Layer.provideMerge(database),
    Layer.provide(
      testConfig(topics, {
        http: { host: "127.0.0.1", port: 0, access_log: false, shutdown_timeout: "2 seconds" },
        ...config
      })
    )
  )

/**
 * HTTP, Orders, the cache and the repository, and the dead-letter index; ingestion is reported as
 * running. Nothing runs on Kafka: a replay answers that it cannot send yet.
 */
export const httpStack = <E>(
  database: Layer.Layer<SqlClient.SqlClient | PgClient.PgClient | PgPool, E>,
  config: Record<string, unknown> = {}
) =>
  App.layerHttp.pipe(
    Layer.provideMerge(Layer.effectDiscard(Effect.flatMap(IngestStatus, (s) => s.set(true)))),
    Layer.provideMerge(App.layerCore),
    Layer.provideMerge(database),
    Layer.provide(
      Layer.setConfigProvider(
        ConfigProvider.fromJson({
          http: { host: "127.0.0.1", port: 0, access_log: false, shutdown_timeout: "5 seconds" },
          cache: { max_entries: 1000, warm_count: 100 },
          // Open, as under `npm start`: tests of who may see what (test/auth/) set their own.
          auth: { mode: "none" },
          ...config
        })
      )
    )
  )

export const baseUrl = Effect.map(HttpAddress, (a) => a.url)

export const get = (path: string, headers: Record<string, string> = {}) =>
  Effect.flatMap(baseUrl, (url) => Effect.promise(() => fetch(`${url}${path}`, { headers })))

/** The typed client derived from the API, on the server under test: answers decoded as declared. */
export const apiClient = Effect.flatMap(baseUrl, (url) =>
  HttpApiClient.make(OrderServiceApi, { baseUrl: url })
).pipe(Effect.provide(FetchHttpClient.layer))
