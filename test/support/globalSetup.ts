/**
 * Real servers for the whole run: a PostgreSQL server (unless DATABASE_URL is set). Each test
 * file makes its own database on it, so files never share state.
 */
import type { TestProject } from "vitest/node"
import { EmbeddedPostgres } from "../../src/local/EmbeddedPostgres.ts"

declare module "vitest" {
  export interface ProvidedContext {
    /** URL of a database on the test server with rights to create databases. */
    adminDatabaseUrl: string
  }
}

export default async function setup(project: TestProject) {
  const stops: Array<() => Promise<void>> = []
  const url = process.env["DATABASE_URL"]
  if (url !== undefined && url !== "") {
    project.provide("adminDatabaseUrl", url)
  } else {
    const pg = await EmbeddedPostgres.start()
    stops.push(() => pg.stop())
    project.provide("adminDatabaseUrl", pg.url())
  }
  return async () => {
    for (const stop of stops.reverse()) await stop()
  }
}
