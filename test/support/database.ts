/** A fresh database per test file on the run's PostgreSQL server, dropped afterwards. */
import { randomBytes } from "node:crypto"
import { Effect, Layer, Redacted } from "effect"
import pg from "pg"
import { inject } from "vitest"
import * as Database from "../../src/db/Database.ts"

const withClient = async <A>(url: string, f: (client: pg.Client) => Promise<A>): Promise<A> => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await f(client)
  } finally {
    await client.end()
  }
}

const withAdmin = <A>(f: (client: pg.Client) => Promise<A>): Promise<A> =>
  withClient(inject("adminDatabaseUrl"), f)

const urlOf = (serverUrl: string, name: string): string => {
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  return url.toString()
}

export const databaseUrlFor = (name: string): string => urlOf(inject("adminDatabaseUrl"), name)

/** Creates database `name` (a plain identifier) on the server of `adminUrl`; returns its URL. */
export const createDatabaseOn = async (adminUrl: string, name: string): Promise<string> => {
  await withClient(adminUrl, (c) => c.query(`CREATE DATABASE ${name}`))
  return urlOf(adminUrl, name)
}

/** Create an empty database; returns its URL. */
export const createTestDatabase = Effect.acquireRelease(
  Effect.promise(async () => {
    const name = `test_${randomBytes(6).toString("hex")}`
    await withAdmin((c) => c.query(`CREATE DATABASE ${name}`))
    return name
  }),
  (name) => Effect.promise(() => withAdmin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)))
).pipe(Effect.map(databaseUrlFor))

/** `Database` on a fresh, migrated database of its own. */
export const TestDatabase = Layer.unwrapScoped(
  Effect.map(createTestDatabase, (url) => Database.layer({ url: Redacted.make(url), maxConnections: 4 }))
)
