/**
 * Real servers for the whole run: a PostgreSQL server (unless DATABASE_URL is set) and a Kafka
 * broker (unless KAFKA_BROKERS is set). Each test file makes its own database and its own topics
 * on them, so files never share state.
 */
import { Effect } from "effect"
import type { TestProject } from "vitest/node"
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

const configured = (name: string) => {
  const value = process.env[name]
  return value === undefined || value === "" ? undefined : value
}

const servers = Effect.gen(function* () {
  const databaseUrl = configured("DATABASE_URL")
  const kafkaBrokers = configured("KAFKA_BROKERS")
  const [adminDatabaseUrl, brokers] = yield* Effect.all(
    [
      databaseUrl === undefined
        ? Effect.map(EmbeddedPostgres.make(), (pg) => pg.url())
        : Effect.succeed(databaseUrl),
      kafkaBrokers === undefined
        ? Effect.map(LocalKafka.make({ brokers: 1 }), (kafka) => kafka.bootstrapServers)
        : Effect.succeed(kafkaBrokers)
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
