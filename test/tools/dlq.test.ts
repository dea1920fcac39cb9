/** `npm run dlq`'s options and report, without a service: see test/deadletters/replay.test.ts for a run. */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { formatReport, parseOptions } from "../../src/tools/dlq.ts"

const now = new Date("2026-11-30T10:00:00Z")
const parse = (argv: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}) =>
  Effect.runSync(Effect.either(parseOptions(argv, env, now)))
const usageError = (argv: ReadonlyArray<string>) => {
  const result = parse(argv)
  if (Either.isRight(result)) throw new Error(`${argv.join(" ")} was accepted`)
  return result.left.message
}

describe("npm run dlq -- replay", () => {
  it("--kind with --since 2h selects that kind parked in the last two hours, up to the moment it starts", () => {
    const options = Either.getOrThrow(parse(["replay", "--kind", "schema", "--since", "2h"]))
    expect(options.selection).toEqual({
      kind: "schema",
      since: "2026-11-30T08:00:00.000Z",
      until: "2026-11-30T10:00:00.000Z"
    })
    expect(options.dryRun).toBe(false)
    expect(options.includeReplayed).toBe(false)
    expect(options.url).toBe("http://localhost:8081")
  })

  it("--include-replayed takes letters sent back before as well; without it the report says how many were left out", () => {
    expect(Either.getOrThrow(parse(["replay", "--include-replayed"])).includeReplayed).toBe(true)
    const result = { selected: 0, alreadyReplayed: 4, letters: [] }
    expect(formatReport(result, false).text).toContain(
      "left out 4 replayed before (--include-replayed takes them)"
    )
    expect(formatReport(result, false, true).text).not.toContain("left out")
  })

  it("--partition with --offset names one letter; ISO times are taken as given; the service's URL from ORDER_SERVICE_URL", () => {
    expect(Either.getOrThrow(parse(["replay", "--partition", "1", "--offset", "42"])).selection).toEqual({
      partition: 1,
      offset: "42"
    })
    const options = Either.getOrThrow(
      parse(["replay", "--since", "2026-11-29T00:00:00+03:00", "--dry-run"], {
        ORDER_SERVICE_URL: "http://svc:9000/"
      })
    )
    expect(options.selection["since"]).toBe("2026-11-28T21:00:00.000Z")
    expect(options.dryRun).toBe(true)
    expect(options.url).toBe("http://svc:9000")
  })

  it("says what is wrong with a command it cannot run", () => {
    expect(usageError([])).toMatch(/replay/)
    expect(usageError(["replay", "--kind", "typo"])).toMatch(/--kind must be one of/)
    expect(usageError(["replay", "--partition", "1"])).toMatch(/go together/)
    expect(usageError(["replay", "--partition", "1", "--offset", "2", "--kind", "schema"])).toMatch(
      /takes no/
    )
    expect(usageError(["replay", "--since", "yesterday"])).toMatch(/--since must be/)
    expect(usageError(["replay", "--batch-size", "0"])).toMatch(/--batch-size/)
  })

  it("reports what it sent by kind, and what the broker refused", () => {
    const letter = (offset: string, kind: string, outcome: "sent" | "failed") => ({
      partition: 0,
      offset,
      kind,
      key: { encoding: "utf8", data: `k${offset}` },
      outcome
    })
    const report = formatReport(
      {
        selected: 3,
        letters: [
          letter("1", "schema", "sent"),
          letter("2", "schema", "sent"),
          letter("3", "too_large", "failed")
        ]
      },
      false
    )
    expect(report.text).toContain('sent  0/1  schema  "k1"')
    expect(report.text).toContain("refused  0/3  too_large")
    expect(report.text).toContain("sent 2 of 3 selected letters to the orders topic (schema 2)")
    expect(report.refused).toBe(1)
  })
})
