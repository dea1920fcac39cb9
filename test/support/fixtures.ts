/** The shared order fixtures, read in place (they live beside the repository, not in it). */
import { readdirSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import path from "node:path"

export const fixturesDir = fileURLToPath(new URL("../../../shared/data/orders/", import.meta.url))

export const readFixture = (name: string): Buffer => readFileSync(path.join(fixturesDir, name))

export const readFixtureJson = (name: string): unknown => JSON.parse(readFixture(name).toString("utf8"))

export const validFixtureNames = (): ReadonlyArray<string> =>
  readdirSync(path.join(fixturesDir, "valid")).map((f) => `valid/${f}`)

export const invalidFixtureNames = (): ReadonlyArray<string> =>
  readdirSync(path.join(fixturesDir, "invalid")).map((f) => `invalid/${f}`)

/** What each invalid fixture is rejected as; a new fixture without an entry fails the tests. */
export const expectedRejectionKind: Readonly<Record<string, string>> = {
  "invalid/amount-as-string.json": "schema",
  "invalid/amount-mismatch.json": "business_rule",
  "invalid/array-not-object.json": "schema",
  "invalid/bad-date.json": "schema",
  "invalid/empty-order-uid.json": "schema",
  "invalid/missing-payment.json": "schema",
  "invalid/no-items.json": "business_rule",
  "invalid/not-json.txt": "invalid_json",
  "invalid/sale-over-100.json": "business_rule"
}
