// One dead letter: why it was parked, where it came from, its bytes and its headers, and for an
// operator the means to replay it (dead-letter-replay.js). Everything from the message is shown as
// text (visible-text.js), never parsed as HTML.

import { announce, h, isRecord } from "./dom.js"
import { getJson, RequestFailed } from "./api.js"
import { forbiddenText, sessionEnded } from "./auth.js"
import { display, isoTime, list, record } from "./format.js"
import { pageUrl as orderPageUrl } from "./order-id.js"
import { letterUrl, markSelected } from "./dead-letter-list.js"
import { replayControl } from "./dead-letter-replay.js"
import { bytesText, visibleText } from "./visible-text.js"

/** More than this is cut for display: the page stays responsive with a megabyte-sized message. */
const MAX_SHOWN_CHARS = 200_000

const ui = {
  view: document.getElementById("letter-view"),
  status: document.getElementById("letter-status")
}

let inFlight = null

function setStatus(text, isError = false) {
  ui.status.textContent = text
  ui.status.hidden = text === ""
  ui.status.classList.toggle("error-text", isError)
  if (text !== "") ui.view.hidden = true
}

/** Shows letter `id` ("partition/offset"), or nothing for null. */
export async function showLetter(id, filter) {
  inFlight?.abort()
  markSelected(id)
  if (id === null) {
    setStatus("Pick a letter to see its bytes and headers.")
    return
  }
  const [partition, offset] = id.split("/")
  const controller = new AbortController()
  inFlight = controller
  setStatus(`Loading letter ${id}…`)
  try {
    const letter = await getJson(
      `/dead-letters/${encodeURIComponent(partition ?? "")}/${encodeURIComponent(offset ?? "")}`,
      controller.signal
    )
    if (!isRecord(letter))
      throw new RequestFailed("server", "The server sent something that is not a letter.")
    ui.view.replaceChildren(...render(letter, filter).filter((part) => part !== null))
    setStatus("")
    ui.view.hidden = false
    announce(`Dead letter ${id}, ${display(letter.kind)}`)
  } catch (error) {
    if (controller.signal.aborted) return
    if (error instanceof RequestFailed && error.kind === "not-found") setStatus(`No letter at ${id}.`, true)
    else if (error instanceof RequestFailed && error.kind === "forbidden")
      setStatus(`Couldn't load letter ${id}. ${forbiddenText(error)}`, true)
    else if (error instanceof RequestFailed && error.kind === "signed-out") {
      setStatus(`Couldn't load letter ${id}: you are signed out. Sign in again to see it.`, true)
      sessionEnded()
    } else if (error instanceof RequestFailed) setStatus(`Couldn't load letter ${id}. ${error.message}`, true)
    else {
      console.error(error)
      setStatus(`Letter ${id} could not be displayed.`, true)
    }
  } finally {
    if (inFlight === controller) inFlight = null
  }
}

/** In place of a letter the page will not ask for: nobody is signed in, or not an operator. */
export function letterUnavailable(kind) {
  inFlight?.abort()
  setStatus(
    kind === "forbidden"
      ? "Letters are shown to operators."
      : "Sign in as an operator to see a letter's bytes and headers."
  )
}

const position = (p) => `${display(p.topic)}/${display(p.partition)}/${display(p.offset)}`

function field(label, value, testid) {
  return h("div", { class: "dl-field" }, h("dt", {}, label), h("dd", { "data-testid": testid }, value))
}

function render(letter, filter) {
  const id = `${letter.partition}/${letter.offset}`
  const links = []
  if (letter.kind === "conflict" && typeof letter.order_uid === "string")
    links.push(
      h(
        "p",
        {},
        "Conflicts with the stored order ",
        h(
          "a",
          { href: orderPageUrl(letter.order_uid), "data-testid": "conflict-order" },
          visibleText(letter.order_uid)
        )
      )
    )
  if (isRecord(letter.replay_of)) {
    const previous = `${letter.replay_of.partition}/${letter.replay_of.offset}`
    links.push(
      h(
        "p",
        {},
        "Parked again after a replay of ",
        h(
          "a",
          { href: letterUrl(previous, filter), "data-letter": previous, "data-testid": "previous-letter" },
          position(letter.replay_of)
        )
      )
    )
  }
  return [
    h(
      "header",
      { class: "dl-letter-head" },
      h(
        "span",
        { class: `kind kind-${display(letter.kind)}`, "data-testid": "letter-kind" },
        display(letter.kind)
      ),
      h("h2", { "data-testid": "letter-id" }, `Letter ${id}`)
    ),
    h("p", { class: "dl-why", "data-testid": "letter-why" }, visibleText(display(letter.detail))),
    ...links,
    // Only for operators (or anyone, in open mode); null for the others.
    replayControl(letter.partition, letter.offset),
    h(
      "dl",
      { class: "dl-fields" },
      field("Parked", isoTime(letter.failed_at, "letter-failed-at")),
      field("From", letter.source ? position(record(letter.source)) : "—", "letter-source"),
      field("Key", bytesText(letter.key), "letter-key"),
      field("Size", typeof letter.size === "number" ? `${letter.size} bytes` : "—")
    ),
    payload(letter.value),
    headers(list(letter.headers))
  ]
}

function payload(value) {
  const bytes = isRecord(value) ? value : null
  const title =
    bytes === null
      ? "Message: no value"
      : bytes.encoding === "utf8"
        ? "Message, as text (UTF-8)"
        : "Message, as base64 (not UTF-8)"
  const data = bytes === null ? "" : String(bytes.data)
  const cut = data.length > MAX_SHOWN_CHARS
  return h(
    "section",
    { class: "dl-section", "aria-label": title },
    h("h3", {}, title),
    cut
      ? h(
          "p",
          { class: "muted" },
          `The first ${MAX_SHOWN_CHARS.toLocaleString()} of ${data.length.toLocaleString()} characters.`
        )
      : null,
    h(
      "pre",
      { class: "dl-payload", dir: "ltr", tabindex: 0, "data-testid": "letter-payload" },
      visibleText(cut ? data.slice(0, MAX_SHOWN_CHARS) : data)
    )
  )
}

function headers(all) {
  const rows = all
    .filter(isRecord)
    .map((header) =>
      h(
        "tr",
        { "data-testid": "letter-header" },
        h("th", { scope: "row", class: "mono" }, visibleText(display(header.name))),
        h("td", { class: "mono" }, bytesText(header.value))
      )
    )
  return h(
    "section",
    { class: "dl-section", "aria-label": "Headers" },
    h("h3", {}, `Headers (${rows.length})`),
    h(
      "div",
      { class: "dl-table-scroll", tabindex: 0 },
      h("table", { class: "dl-headers" }, h("tbody", {}, rows))
    )
  )
}
