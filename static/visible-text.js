// Text from producers, shown as text and nothing else. Characters that are invisible or that
// reorder what follows them (bidirectional controls, zero-width characters, control characters)
// are shown as their code point, so what a person reads is what the bytes say.

import { h } from "./dom.js"

const HIDDEN =
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g

/** Text nodes and, for each hidden character, a marked `U+XXXX`. */
export function visibleText(text) {
  const parts = []
  let last = 0
  for (const match of String(text).matchAll(HIDDEN)) {
    if (match.index > last) parts.push(text.slice(last, match.index))
    const code = `U+${match[0].codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}`
    parts.push(
      h(
        "span",
        { class: "hidden-char", title: `${code}, an invisible character`, "data-testid": "hidden-char" },
        code
      )
    )
    last = match.index + match[0].length
  }
  if (last < text.length) parts.push(text.slice(last))
  return parts
}

/** Bytes as the API gives them: UTF-8 text as text, anything else as its base64. */
export function bytesText(bytes) {
  if (bytes === null || bytes === undefined) return h("span", { class: "muted" }, "none")
  if (bytes.encoding === "utf8") return h("span", { class: "bytes-text" }, visibleText(bytes.data))
  return h("span", { class: "bytes-base64", title: "Not UTF-8: shown as base64" }, "base64: ", bytes.data)
}
