/**
 * Real servers for the whole run: a PostgreSQL server (unless DATABASE_URL is set) and a Kafka
 * broker (unless KAFKA_BROKERS is set). Each test file makes its own database and its own topics
 * on them, so files never share state.
 */
import type { TestProject } from "vitest/node"
import { EmbeddedPostgres } from "../../src/local/EmbeddedPostgres.ts"
import { LocalKafka } from "../../src/local/LocalKafka.ts"

declare module "vitest" {
  export interface ProvidedContext {
    /** URL of a database on the test server with rights to create databases. */
    adminDatabaseUrl: string
    /** Bootstrap list of the run's Kafka broker. */
    kafkaBrokers: string
  }
}

export default async function setup(project: TestProject) {
  const stops: Array<() => Promise<void>> = []
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop()
  }
  try {
    await startServers(project, stops)
  } catch (error) {
    await stopAll()
    throw error
  }
  return stopAll
}

async function startServers(project: TestProject, stops: Array<() => Promise<void>>) {
  const url = process.env["DATABASE_URL"]
  if (url !== undefined && url !== "") {
    project.provide("adminDatabaseUrl", url)
  } else {
    const pg = await EmbeddedPostgres.start()
    stops.push(() => pg.stop())
    project.provide("adminDatabaseUrl", pg.url())
  }
  const brokers = process.env["KAFKA_BROKERS"]
  if (brokers !== undefined && brokers !== "") {
    project.provide("kafkaBrokers", brokers)
  } else {
    const kafka = await LocalKafka.start({ brokers: 1 })
    stops.push(() => kafka.stop())
    project.provide("kafkaBrokers", kafka.bootstrapServers)
  }
}
