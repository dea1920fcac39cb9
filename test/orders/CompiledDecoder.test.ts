import { describe, expect, it } from "@effect/vitest"
import { Either, Option, Schema } from "effect"
import * as fc from "fast-check"
import { compileDecoder } from "../../src/orders/CompiledDecoder.ts"
import { Order, type OrderJson } from "../../src/orders/Order.ts"
import { arbitraryOrder, ruleBreakers } from "../support/arbitraries.ts"
import { invalidFixtureNames, readFixtureJson, validFixtureNames } from "../support/fixtures.ts"

const slow = Schema.decodeUnknownEither(Order, { onExcessProperty: "ignore" })
const fast = compileDecoder(Order)!

/** Same verdict, and for an accepted order the same value: classes, fields and field order. */
const expectSameAsSchema = (input: unknown) => {
  const expected = slow(input)
  const actual = fast(input)
  if (Either.isLeft(expected)) {
    expect(Option.isNone(actual)).toBe(true)
    return
  }
  expect(Option.isSome(actual)).toBe(true)
  const value = Option.getOrThrow(actual)
  expect(value).toBeInstanceOf(Order)
  expect(value).toStrictEqual(expected.right)
  expect(JSON.stringify(value)).toBe(JSON.stringify(expected.right))
}

/** Any JSON-ish value at `path` of the order, or the field removed. */
const arbitraryDamage = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  fc.string(),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant([]),
  fc.constant({}),
  fc.constantFrom("", "\u0000", "x".repeat(600), "2021-13-45T99:99:99Z", "USD", "a@b")
)

const paths = (value: unknown, prefix: Array<string | number> = []): Array<Array<string | number>> => {
  if (typeof value !== "object" || value === null) return [prefix]
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : Object.entries(value)
  return [prefix, ...entries.flatMap(([k, v]) => paths(v, [...prefix, k]))]
}

const damage = (order: OrderJson, path: ReadonlyArray<string | number>, value: unknown): unknown => {
  const copy: any = structuredClone(order)
  if (path.length === 0) return value
  let target = copy
  for (const key of path.slice(0, -1)) target = target[key]
  const last = path[path.length - 1]!
  if (value === undefined) delete target[last]
  else target[last] = value
  return copy
}

describe("the compiled order decoder", () => {
  it("compiles the order schema", () => {
    expect(compileDecoder(Order)).toBeTypeOf("function")
  })

  it("gives the schema's value for every valid and invalid fixture", () => {
    for (const name of [...validFixtureNames(), ...invalidFixtureNames()]) {
      let value: unknown
      try {
        value = readFixtureJson(name)
      } catch {
        continue // not JSON at all: never reaches a decoder
      }
      expectSameAsSchema(value)
    }
  })

  it("gives the schema's value for generated orders, with unknown fields dropped", () => {
    fc.assert(
      // Unknown names only: a generated "name" spread into `delivery` would replace a known field.
      fc.property(
        arbitraryOrder,
        fc.dictionary(
          fc.string().map((k) => `x-${k}`),
          fc.jsonValue()
        ),
        (order, extra) => {
          const withExtra = { ...extra, ...order, delivery: { ...order.delivery, ...extra } }
          expectSameAsSchema(withExtra)
          expect(Option.isSome(fast(withExtra))).toBe(true)
        }
      ),
      { numRuns: 200 }
    )
  })

  it("rejects what the schema rejects: any field damaged anywhere, or a business rule broken", () => {
    fc.assert(
      fc.property(arbitraryOrder, fc.nat(), arbitraryDamage, (order, pick, value) => {
        const all = paths(order)
        expectSameAsSchema(damage(order, all[pick % all.length]!, value))
      }),
      { numRuns: 1000 }
    )
    fc.assert(
      fc.property(
        arbitraryOrder,
        fc.constantFrom(...Object.keys(ruleBreakers)),
        fc.nat(),
        (order, rule, n) => {
          const broken = ruleBreakers[rule]!(order, n)
          expect(Either.isLeft(slow(broken))).toBe(true)
          expectSameAsSchema(broken)
        }
      ),
      { numRuns: 200 }
    )
  })

  it("declines schemas it does not compile, so callers keep the full decoder", () => {
    expect(compileDecoder(Schema.Struct({ a: Schema.optional(Schema.String) }))).toBeUndefined()
    expect(compileDecoder(Schema.NumberFromString)).toBeUndefined()
    expect(compileDecoder(Schema.Union(Schema.String, Schema.Number))).toBeUndefined()
  })
})
