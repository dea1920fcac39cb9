/**
 * Real servers for the whole run: the PostgreSQL of DATABASE_URL and the Kafka of KAFKA_BROKERS,
 * or, for what is not set, servers started here as the service starts them (src/local/). Each test
 * file makes its own database and its own topics on them, so files never share state.
 */
import { Config, Effect, Option, Redacted } from "effect"
import type { TestProject } from "vitest/node"
import {
  DatabaseUrl,
  formatConfigError,
  KafkaBrokers,
  makeConfigProvider
} from "../../src/config/AppConfig.ts"
import * as EmbeddedPostgres from "../../src/local/EmbeddedPostgres.ts"
import * as LocalKafka from "../../src/local/LocalKafka.ts"
import { acquire } from "./scoped.ts"

declare module "vitest" {
  export interface ProvidedContext {
    /** URL of a database on the test server with rights to create databases. */
    adminDatabaseUrl: string
    /** Bootstrap list of the run's Kafka broker. */
    kafkaBrokers: string
  }
}

const servers = Effect.gen(function* () {
  // The service's own keys, read from the environment as the service reads them.
  const [databaseUrl, kafkaBrokers] = yield* Effect.withConfigProvider(
    Config.all([Config.option(DatabaseUrl), Config.option(KafkaBrokers)]),
    makeConfigProvider({}, process.env)
  ).pipe(Effect.mapError((e) => new Error(formatConfigError(e))))
  const [adminDatabaseUrl, brokers] = yield* Effect.all(
    [
      Option.match(databaseUrl, {
        onSome: (url) => Effect.succeed(Redacted.value(url)),
        onNone: () => Effect.map(EmbeddedPostgres.make(), (pg) => pg.url())
      }),
      Option.match(kafkaBrokers, {
        onSome: (list) => Effect.succeed(list.join(",")),
        onNone: () => Effect.map(LocalKafka.make({ brokers: 1 }), (kafka) => kafka.bootstrapServers)
      })
    ],
    { concurrency: "unbounded" }
  )
  return { adminDatabaseUrl, kafkaBrokers: brokers }
})

export default async function setup(project: TestProject) {
  const started = await acquire(servers).catch((error: unknown) => {
    // One line saying what could not start and why: vitest prints an error's stack as it is.
    const failure = new Error(
      `Could not start the test run's servers: ${error instanceof Error ? error.message : String(error)}`
    )
    failure.stack = failure.message
    throw failure
  })
  project.provide("adminDatabaseUrl", started.value.adminDatabaseUrl)
  project.provide("kafkaBrokers", started.value.kafkaBrokers)
  return started.release
}
