/** The service's serving side on a test database, listening on a free port. */
import type { SqlClient } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import { FetchHttpClient, HttpApiClient } from "@effect/platform"
import { ConfigProvider, Effect, Layer } from "effect"
import * as App from "../../src/App.ts"
import { OrderServiceApi } from "../../src/http/Api.ts"
import { HttpAddress } from "../../src/http/HttpServer.ts"
import { IngestStatus } from "../../src/ingest/IngestStatus.ts"
import { KafkaClient } from "../../src/kafka/KafkaClient.ts"
import { testConfig, type TestTopics } from "./kafka.ts"

/** The ingest side of the service on its own topics and database. */
export const ingestStack = <E>(topics: TestTopics, database: Layer.Layer<SqlClient.SqlClient, E>) =>
  App.layerIngest(KafkaClient.Default).pipe(
    Layer.provideMerge(App.layerCore),
    Layer.provideMerge(database),
    Layer.provide(testConfig(topics))
  )

/** HTTP, Orders, the cache and the repository; ingestion is reported as running. */
export const httpStack = <E>(
  database: Layer.Layer<SqlClient.SqlClient | PgClient.PgClient, E>,
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
