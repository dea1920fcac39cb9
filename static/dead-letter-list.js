// The parked messages, newest first, a page at a time, and their counts by kind.

import { announce, h, isRecord } from "./dom.js"
import { getJson, RequestFailed } from "./api.js"
import { canSignIn, forbiddenText, sessionEnded, signInLink } from "./auth.js"
import { display, list, record, shortDateTimeFormat } from "./format.js"
import { bytesText, visibleText } from "./visible-text.js"

const PAGE_SIZE = 50

const ui = {
  body: document.getElementById("letters-body"),
  status: document.getElementById("letters-status"),
  more: document.getElementById("letters-more"),
  counts: document.getElementById("counts"),
  table: document.querySelector(".dl-letters .dl-table-scroll"),
  auth: document.getElementById("letters-auth"),
  signIn: document.getElementById("letters-signin"),
  forbidden: document.getElementById("letters-forbidden"),
  forbiddenMessage: document.getElementById("letters-forbidden-message")
}

const state = { filter: {}, cursor: null, loading: false, generation: 0 }
let selected = null

export const letterId = (letter) => `${letter.partition}/${letter.offset}`
export const letterUrl = (id, filter = {}) => pageUrl({ ...filter, letter: id })

/** The page's URL for a filter and, optionally, one letter. */
export function pageUrl({ kind, since, until, letter }) {
  const params = new URLSearchParams()
  if (kind) params.set("kind", kind)
  if (since) params.set("since", since)
  if (until) params.set("until", until)
  if (letter) params.set("letter", letter)
  const query = params.toString()
  return query ? `/dead-letters?${query}` : "/dead-letters"
}

/** Loads the first page for `filter` (reset) or the next page of the current one. */
export async function loadLetters(filter, { reset }) {
  if (state.loading && !reset) return
  const generation = ++state.generation
  if (reset) state.filter = filter
  state.loading = true
  ui.more.disabled = true
  setStatus(reset ? "Loading…" : "Loading more…")
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) })
  for (const name of ["kind", "since", "until"]) if (state.filter[name]) params.set(name, state.filter[name])
  if (!reset && state.cursor) params.set("cursor", state.cursor)
  try {
    const page = record(await getJson(`/dead-letters?${params}`))
    if (generation !== state.generation) return
    showTable()
    if (reset) {
      ui.body.replaceChildren()
      renderCounts(record(page.counts), page.counts_capped === true)
    }
    const rows = list(page.items).filter(isRecord).map(row)
    ui.body.append(...rows)
    state.cursor = typeof page.next_cursor === "string" && page.next_cursor !== "" ? page.next_cursor : null
    const shown = ui.body.childElementCount
    setStatus(shown === 0 ? "No letters match." : "")
    if (reset) announce(shown === 0 ? "No dead letters match" : `${shown} dead letters shown`)
    markSelected(selected)
  } catch (error) {
    if (generation !== state.generation) return
    if (error instanceof RequestFailed && error.kind === "forbidden") {
      lettersUnavailable("forbidden", forbiddenText(error))
      return
    }
    if (error instanceof RequestFailed && error.kind === "signed-out") {
      setStatus("Couldn't load the letters: you are signed out. Sign in again to see them.", true)
      sessionEnded()
      return
    }
    const why = error instanceof RequestFailed ? error.message : "The letters could not be displayed."
    setStatus(`Couldn't load the letters. ${why}`, true)
  } finally {
    if (generation === state.generation) {
      state.loading = false
      ui.more.hidden = state.cursor === null
      ui.more.disabled = false
    }
  }
}

function showTable() {
  ui.auth.hidden = true
  ui.table.hidden = false
  ui.counts.hidden = false
}

/**
 * In place of the letters, which the page did not get (or will not ask for): nobody is signed in
 * ("signed-out"), or the person is not an operator ("forbidden", with the words to say).
 */
export function lettersUnavailable(kind, message = forbiddenText(null, "operator")) {
  ui.body.replaceChildren()
  ui.counts.replaceChildren()
  ui.table.hidden = true
  ui.counts.hidden = true
  ui.more.hidden = true
  state.cursor = null
  setStatus("")
  ui.signIn.hidden = kind !== "signed-out"
  ui.forbidden.hidden = kind !== "forbidden"
  if (kind === "forbidden") {
    ui.forbiddenMessage.textContent = message
    announce(message)
  } else
    ui.signIn.replaceChildren(
      ...(canSignIn()
        ? [signInLink("Sign in", "letters-signin"), " to see the dead letters: they are shown to operators."]
        : ["The dead letters are shown to signed-in operators; this service has no sign-in page."])
    )
  ui.auth.hidden = false
}

function setStatus(text, isError = false) {
  ui.status.textContent = text
  ui.status.hidden = text === ""
  ui.status.classList.toggle("error-text", isError)
}

/**
 * Where the service stops a kind's count over a time range (`COUNTS_CAP` in
 * src/deadletters/DeadLetterIndex.ts): with `counts_capped`, a count that reached it means that
 * many or more.
 */
const COUNTS_CAP = 10_000

const atLeast = (n) => `${n.toLocaleString("en-US")}+`

function renderCounts(counts, capped) {
  const entries = Object.entries(counts).filter(([, n]) => typeof n === "number")
  const total = entries.reduce((sum, [, n]) => sum + n, 0)
  const shown = (count, kind) =>
    !capped ? String(count) : kind === "" || count >= COUNTS_CAP ? atLeast(count) : String(count)
  const item = (kind, count) => {
    const current = (state.filter.kind || "") === kind
    return h(
      "li",
      {},
      h(
        "a",
        {
          class: "count-link",
          href: pageUrl({ ...state.filter, kind }),
          "data-kind": kind,
          "data-testid": kind === "" ? "count-all" : `count-${kind}`,
          "aria-current": current ? "true" : undefined
        },
        h("span", {}, kind === "" ? "All" : kind),
        h("span", { class: "count" }, shown(count, kind))
      )
    )
  }
  entries.sort(([a], [b]) => a.localeCompare(b))
  ui.counts.replaceChildren(item("", total), ...entries.map(([kind, n]) => item(kind, n)))
}

function parkedAt(value) {
  const date = typeof value === "string" ? new Date(value) : null
  if (date === null || Number.isNaN(date.getTime())) return display(value)
  return h(
    "time",
    { datetime: date.toISOString(), title: `${date.toISOString()} (UTC)` },
    shortDateTimeFormat.format(date)
  )
}

function row(letter) {
  const id = letterId(letter)
  const source = record(letter.source)
  return h(
    "tr",
    { "data-testid": "letter-row", "data-letter": id },
    h(
      "td",
      { "data-label": "Parked" },
      h(
        "a",
        { href: letterUrl(id, state.filter), "data-letter": id, "data-testid": "letter-link" },
        parkedAt(letter.failed_at)
      )
    ),
    h(
      "td",
      { "data-label": "Kind" },
      h("span", { class: `kind kind-${display(letter.kind)}` }, display(letter.kind))
    ),
    h(
      "td",
      { class: "why", "data-label": "Why", "data-testid": "letter-detail" },
      visibleText(display(letter.detail))
    ),
    h("td", { class: "mono key", "data-label": "Key" }, bytesText(letter.key)),
    h(
      "td",
      { class: "mono", "data-label": "From" },
      letter.source ? `${display(source.topic)}/${display(source.partition)}/${display(source.offset)}` : "—"
    ),
    h(
      "td",
      { class: "num", "data-label": "Size" },
      typeof letter.size === "number" ? `${letter.size} B` : "—"
    )
  )
}

/** Marks the letter the page shows, if it is in the list. */
export function markSelected(id) {
  selected = id
  for (const tr of ui.body.querySelectorAll("tr[data-letter]")) {
    if (tr.dataset.letter === id) tr.setAttribute("aria-current", "true")
    else tr.removeAttribute("aria-current")
  }
}
