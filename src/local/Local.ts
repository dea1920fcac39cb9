/**
 * Servers on this machine in place of configured ones: the service's `Database` on the embedded
 * PostgreSQL, its `KafkaClient` on a local Kafka broker. Each server runs for the life of its
 * layer and stops after the clients on it have closed. The composition (src/App.ts) uses them for
 * what the configuration leaves out.
 */
import { mkdir, rm, writeFile } from "node:fs/promises"
import { Effect, Layer, Option, Redacted } from "effect"
import { DatabaseConfig, KafkaConfig } from "../config/AppConfig.ts"
import * as Database from "../db/Database.ts"
import { KafkaClient } from "../kafka/KafkaClient.ts"
import { bootstrapFileOf } from "./bootstrapFile.ts"
import * as EmbeddedPostgres from "./EmbeddedPostgres.ts"
import * as LocalKafka from "./LocalKafka.ts"

/**
 * The embedded PostgreSQL server (`database.embedded_data_dir`, `database.embedded_port`), running
 * for the life of the scope: what `layerDatabase` connects to, and what the primary of several
 * workers starts once for all of them (src/cluster/Primary.ts).
 */
export const databaseServer = Effect.gen(function* () {
  const config = yield* DatabaseConfig
  // Added first, so it runs after the server has stopped.
  yield* Effect.addFinalizer(() => Effect.logInfo("Stopped the embedded PostgreSQL server"))
  const server = yield* EmbeddedPostgres.make({
    ...Option.match(config.embeddedDataDir, { onNone: () => ({}), onSome: (dataDir) => ({ dataDir }) }),
    ...Option.match(config.embeddedPort, { onNone: () => ({}), onSome: (port) => ({ port }) })
  })
  yield* Effect.logInfo("Started the embedded PostgreSQL server").pipe(
    Effect.annotateLogs({ port: server.port, data_dir: server.dataDir })
  )
  return server
})

/** `Database` on the embedded PostgreSQL server (`databaseServer`). */
export const layerDatabase = Layer.unwrapScoped(
  Effect.gen(function* () {
    const config = yield* DatabaseConfig
    const server = yield* databaseServer
    return Database.layer(Database.optionsFromConfig(Redacted.make(server.url()), config))
  })
)

/**
 * A local Kafka broker (`kafka.local_data_dir`), running for the life of the scope: what
 * `layerKafka` connects to, and what the primary of several workers starts once for all of them.
 */
export const kafkaServer = Effect.gen(function* () {
  const dataDir = Option.getOrUndefined((yield* KafkaConfig).localDataDir)
  yield* Effect.logInfo("Starting a local Kafka broker (KAFKA_BROKERS is not set)")
  // Added first, so it runs after the broker has stopped.
  yield* Effect.addFinalizer(() => Effect.logInfo("Stopped the local Kafka broker"))
  const local = yield* LocalKafka.make(dataDir === undefined ? {} : { dataDir }).pipe(
    Effect.mapError(
      (e) =>
        new LocalKafka.LocalKafkaError({
          reason: e.reason,
          message: `Could not start a local Kafka broker: ${e.message}`,
          cause: e
        })
    )
  )
  yield* Effect.logInfo("Local Kafka broker started").pipe(
    Effect.annotateLogs({ brokers: local.bootstrapServers, data_dir: local.dataDir })
  )
  if (dataDir !== undefined) {
    // Present exactly while the broker runs, so `npm run produce` finds it or says it is not there.
    yield* Effect.acquireRelease(
      Effect.promise(async () => {
        await mkdir(dataDir, { recursive: true })
        await writeFile(bootstrapFileOf(dataDir), `${local.bootstrapServers}\n`)
      }),
      () => Effect.promise(() => rm(bootstrapFileOf(dataDir), { force: true }))
    )
  }
  return local
})

/** `KafkaClient` on a local Kafka broker (`kafkaServer`). */
export const layerKafka = Layer.unwrapScoped(
  Effect.map(kafkaServer, (local) => KafkaClient.layer(local.brokers))
)
