/**
 * The service's layers, composed. Each comes from its own module; tests build the same graph with
 * a layer swapped where they need to.
 */
import { Config, Context, Effect, Layer, Option } from "effect"
import { Auth } from "./auth/Auth.ts"
import { OrderCache } from "./cache/OrderCache.ts"
import { DatabaseConfig, KafkaConfig } from "./config/AppConfig.ts"
import { ClientReads } from "./db/ClientReads.ts"
import * as Database from "./db/Database.ts"
import { DeadLetterIndex } from "./deadletters/DeadLetterIndex.ts"
import * as DeadLetterIndexer from "./deadletters/DeadLetterIndexer.ts"
import * as DeadLetterReplay from "./deadletters/DeadLetterReplay.ts"
import * as Http from "./http/Http.ts"
import { HttpDrain } from "./http/HttpDrain.ts"
import * as HttpServer from "./http/HttpServer.ts"
import { OrderRoute } from "./http/OrderRoute.ts"
import { SearchRoute } from "./http/SearchRoute.ts"
import { StaticFiles } from "./http/StaticFiles.ts"
import * as IngestPipeline from "./ingest/IngestPipeline.ts"
import { IngestStatus } from "./ingest/IngestStatus.ts"
import { KafkaClient } from "./kafka/KafkaClient.ts"
import { LiveFeed } from "./live/LiveFeed.ts"
import * as Local from "./local/Local.ts"
import * as ConsumerLag from "./observability/ConsumerLag.ts"
import { Prometheus } from "./observability/Prometheus.ts"
import { OrderRepository } from "./orders/OrderRepository.ts"
import { Orders } from "./orders/Orders.ts"

/**
 * Orders (the repository behind the cache), ingestion's status, the dead-letter index and replay:
 * what HTTP and the Kafka side share.
 */
export const layerCore = Layer.mergeAll(
  Orders.Default,
  IngestStatus.Default,
  DeadLetterReplay.DeadLetterReplay.Default
).pipe(
  Layer.provideMerge(
    Layer.mergeAll(OrderRepository.Default, OrderCache.Default, DeadLetterIndex.Default, ClientReads.Default)
  )
)

/** Loads the most recent orders into the cache in the background; `/readyz` waits for it. */
const cacheWarmup = Layer.scopedDiscard(
  Effect.flatMap(Orders, (orders) =>
    orders.warm.pipe(
      Effect.tapErrorCause((cause) => Effect.logError("Cache warm-up failed", cause)),
      Effect.forkScoped
    )
  )
)

/**
 * Serves the API, the live feed, the page and the metrics, says where it listens once it does, and
 * warms the cache.
 */
export const layerHttp = Layer.effectDiscard(
  Effect.flatMap(HttpServer.HttpAddress, ({ url }) =>
    Effect.logInfo("Order service ready to serve").pipe(
      Effect.annotateLogs({
        web_page: `${url}/`,
        api_docs: `${url}/docs`,
        openapi: `${url}/openapi.json`,
        metrics: `${url}/metrics`,
        send_orders: "npm run produce -- --count 1000"
      })
    )
  )
).pipe(
  Layer.provideMerge(HttpServer.layer),
  Layer.provide(Http.layer),
  Layer.provide([StaticFiles.Default, Prometheus.Default, OrderRoute.Default, SearchRoute.Default]),
  // Who may call what, for every request either way in (src/auth/).
  Layer.provideMerge(Auth.Default),
  Layer.provideMerge(LiveFeed.Default),
  // One drain signal: the server raises it, the live feed ends its streams on it.
  Layer.provide(HttpDrain.Default),
  Layer.merge(cacheWarmup)
)

/** Ingestion (Kafka → PostgreSQL) and its lag in /metrics, through the Kafka client `kafka`. */
export const layerIngest = <E, R>(kafka: Layer.Layer<KafkaClient, E, R>) =>
  Layer.merge(IngestPipeline.layer, ConsumerLag.layer).pipe(Layer.provide(kafka))

/**
 * The dead-letter index's reader of the dead-letter topic, and the producer replays send with
 * (attached to `DeadLetterReplay` once connected), through the Kafka client `kafka`.
 */
export const layerDeadLetters = <E, R>(kafka: Layer.Layer<KafkaClient, E, R>) =>
  Layer.merge(DeadLetterIndexer.layer, DeadLetterReplay.layerPublisher).pipe(Layer.provide(kafka))

/**
 * HTTP, ingestion and dead letters through `kafka` (one client: layers are shared by reference),
 * and the cache's warm-up; the database comes from outside. Kafka is given to ingestion and dead
 * letters alone, which are built beside the HTTP server: the API answers while Kafka is still
 * coming up (a replay meanwhile answers 503).
 */
export const layerServices = <E, R>(kafka: Layer.Layer<KafkaClient, E, R>) =>
  Layer.mergeAll(layerHttp, layerIngest(kafka), layerDeadLetters(kafka)).pipe(Layer.provideMerge(layerCore))

/**
 * The whole service, with `extra` layers that use its Kafka client (the demo's producer). PostgreSQL
 * and Kafka are the configured ones (`database.url`, `kafka.brokers`); for what the configuration
 * leaves out, as under `npm start`, servers are started on this machine (src/local/) for the life
 * of the layer. Chosen here and nowhere else: the layers of src/db and src/kafka only connect.
 */
export const layer = <E = never>(extra: Layer.Layer<never, E, KafkaClient> = Layer.empty) =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      const [database, kafka] = yield* Config.all([DatabaseConfig, KafkaConfig])
      const kafkaLayer = Option.isSome(kafka.brokers) ? KafkaClient.Default : Local.layerKafka
      const databaseLayer = Option.isSome(database.url) ? Database.layerConfig : Local.layerDatabase
      return Layer.merge(layerServices(kafkaLayer), extra.pipe(Layer.provide(kafkaLayer))).pipe(
        Layer.provide(databaseLayer)
      )
    })
  )

/**
 * Runs the service until interrupted (SIGINT/SIGTERM: succeeds) or until ingestion stops by itself
 * (fails with `IngestStopped`, so the process exits non-zero and its supervisor restarts it). Either
 * way the layers close in reverse order: HTTP drains, clients and pools close. `onShutdown` runs as
 * closing begins, whatever the reason.
 */
export const launch = <E, R>(
  app: Layer.Layer<IngestStatus, E, R>,
  onShutdown: Effect.Effect<void> = Effect.void
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const context = yield* Layer.build(app)
      // The last finalizer added is the first to run.
      yield* Effect.addFinalizer(() => onShutdown)
      return yield* Context.get(context, IngestStatus).stoppedByItself
    })
  )
