/**
 * Cheap limits on the shape of JSON text, checked before it is parsed: how deep it nests, how long
 * its arrays and strings are, how many keys an object has. An order is three levels deep with a
 * thousand items at most and short strings; a message far beyond that is refused before any work
 * that grows with it (parsing, decoding, describing the error) is done. One pass over the text, no
 * recursion, memory bounded by `maxDepth`.
 */
import { MAX_ITEMS } from "./Order.ts"

export interface JsonBounds {
  /** Nesting of arrays and objects; the top-level value is depth 1. */
  readonly maxDepth: number
  readonly maxArrayLength: number
  /** In UTF-16 code units after unescaping (`\u00e9` counts as one). */
  readonly maxStringLength: number
  readonly maxKeys: number
}

/**
 * What an order message may have, with room for fields the model does not know (they are ignored,
 * not refused): an order nests 3 deep, has at most `MAX_ITEMS` items, 14 top-level keys, and no
 * field longer than 512 characters.
 */
export const ORDER_JSON_BOUNDS: JsonBounds = {
  maxDepth: 10,
  maxArrayLength: MAX_ITEMS,
  maxStringLength: 16_384,
  maxKeys: 256
}

const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d
const OPEN_OBJECT = 0x7b
const CLOSE_OBJECT = 0x7d
const LOWER_U = 0x75

/**
 * The first limit `text` goes beyond, in words, or `undefined` if it stays within all of them.
 * Text that is not JSON is not judged here (the parser says what is wrong with it), except that
 * its brackets count towards the depth.
 */
export const exceedsJsonBounds = (
  text: string,
  bounds: JsonBounds = ORDER_JSON_BOUNDS
): string | undefined => {
  // Per open container: the commas seen in it (elements − 1), and whether it is an array.
  const counts = new Uint32Array(bounds.maxDepth + 1)
  const isArray = new Uint8Array(bounds.maxDepth + 1)
  let depth = 0
  const length = text.length
  let i = 0
  while (i < length) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) {
      // A string: count its unescaped length and skip to its end.
      let stringLength = 0
      i++
      while (i < length) {
        const s = text.charCodeAt(i)
        if (s === QUOTE) break
        if (s === BACKSLASH) i += text.charCodeAt(i + 1) === LOWER_U ? 6 : 2
        else i++
        stringLength++
      }
      if (stringLength > bounds.maxStringLength) {
        return `a string is longer than ${bounds.maxStringLength} characters (at character ${i})`
      }
      i++
      continue
    }
    if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      depth++
      if (depth > bounds.maxDepth) {
        return `the JSON nests deeper than ${bounds.maxDepth} levels (at character ${i})`
      }
      counts[depth] = 0
      isArray[depth] = c === OPEN_ARRAY ? 1 : 0
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      if (depth > 0) depth--
    } else if (c === COMMA) {
      if (depth > 0) {
        const n = ++counts[depth]!
        if (isArray[depth] === 1 && n >= bounds.maxArrayLength) {
          return `an array has more than ${bounds.maxArrayLength} elements (at character ${i})`
        }
        if (isArray[depth] === 0 && n >= bounds.maxKeys) {
          return `an object has more than ${bounds.maxKeys} keys (at character ${i})`
        }
      }
    }
    i++
  }
  return undefined
}
