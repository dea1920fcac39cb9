/**
 * A fast path for decoding with a Schema: the schema's AST compiled once into plain functions that
 * either return the decoded value or say "no". It gives the same value Effect's decoder gives
 * (`onExcessProperty: "ignore"`), but no reasons — on "no" the caller runs the real decoder for
 * the error message. The schema stays the one source of truth: every filter is the schema's own.
 *
 * Only the node kinds an order schema uses are compiled (keywords, literals, refinements, structs
 * with required fields, arrays, and `Schema.Class` transformations); for any other schema
 * `compileDecoder` returns `undefined` and callers keep using the real decoder alone.
 */
import { Either, Option, SchemaAST, type Schema } from "effect"

/** Returned by a compiled decoder when the input does not decode. */
const NO = Symbol("no")
type Decode = (input: unknown) => unknown

class Unsupported extends Error {}

const options: SchemaAST.ParseOptions = { errors: "first", onExcessProperty: "ignore" }

const compile = (ast: SchemaAST.AST): Decode => {
  switch (ast._tag) {
    case "StringKeyword":
      return (u) => (typeof u === "string" ? u : NO)
    case "NumberKeyword":
      return (u) => (typeof u === "number" ? u : NO)
    case "BooleanKeyword":
      return (u) => (typeof u === "boolean" ? u : NO)
    case "Literal": {
      const literal = ast.literal
      return (u) => (u === literal ? u : NO)
    }
    case "Refinement": {
      const from = compile(ast.from)
      const filter = ast.filter
      return (u) => {
        const value = from(u)
        if (value === NO) return NO
        return Option.isNone(filter(value, options, ast)) ? value : NO
      }
    }
    case "TypeLiteral": {
      if (ast.indexSignatures.length > 0) throw new Unsupported("index signatures")
      const fields = ast.propertySignatures.map((p) => {
        if (p.isOptional) throw new Unsupported("optional fields")
        return { name: p.name, decode: compile(p.type) }
      })
      return (u) => {
        if (typeof u !== "object" || u === null || Array.isArray(u)) return NO
        const input = u as Record<PropertyKey, unknown>
        const out: Record<PropertyKey, unknown> = {}
        for (const { name, decode } of fields) {
          if (!Object.prototype.hasOwnProperty.call(input, name)) return NO
          const value = decode(input[name])
          if (value === NO) return NO
          out[name] = value
        }
        return out
      }
    }
    case "TupleType": {
      if (ast.elements.length > 0 || ast.rest.length !== 1) throw new Unsupported("tuples")
      const element = compile(ast.rest[0]!.type)
      return (u) => {
        if (!Array.isArray(u)) return NO
        const out: Array<unknown> = new Array(u.length)
        for (let i = 0; i < u.length; i++) {
          const value = element(u[i])
          if (value === NO) return NO
          out[i] = value
        }
        return out
      }
    }
    case "Transformation": {
      // `Schema.Class`: the fields decode, then the class is constructed from them; the target is
      // a declaration that only checks for an instance, which the construction gives.
      if (ast.transformation._tag !== "FinalTransformation" || ast.to._tag !== "Declaration") {
        throw new Unsupported("transformations other than classes")
      }
      const from = compile(ast.from)
      const transform = ast.transformation.decode
      return (u) => {
        const value = from(u)
        if (value === NO) return NO
        // A class's decode is synchronous: an Either at run time.
        const result = transform(value, options, ast, u) as unknown
        if (!Either.isEither(result)) throw new Unsupported("asynchronous transformations")
        return Either.isRight(result) ? result.right : NO
      }
    }
    default:
      throw new Unsupported(ast._tag)
  }
}

/**
 * The schema's fast decoder, or `undefined` if the schema uses something not compiled here.
 * `Option.none()` means "does not decode": ask the real decoder why.
 */
export const compileDecoder = <A, I>(
  schema: Schema.Schema<A, I, never>
): ((input: unknown) => Option.Option<A>) | undefined => {
  let decode: Decode
  try {
    decode = compile(schema.ast)
  } catch (e) {
    if (e instanceof Unsupported) return undefined
    throw e
  }
  return (input) => {
    try {
      const value = decode(input)
      return value === NO ? Option.none() : Option.some(value as A)
    } catch {
      return Option.none()
    }
  }
}
