// Replaying one dead letter from its view: a Replay button for operators (and for anyone in open
// mode), a step in the page that asks to confirm, POST /dead-letters/replay, and what came of it.
// A replay sends a copy of the letter back to the orders topic; the letter itself stays.

import { announce, h, isRecord } from "./dom.js"
import { postJson, RequestFailed } from "./api.js"
import { forbiddenText, knownToHold, sentence, sessionEnded } from "./auth.js"
import { list } from "./format.js"

const SENT =
  "Sent back to the orders topic. If it is still invalid it will be parked again, linked to this letter."

/**
 * The replay control of the letter at `partition`/`offset`: null for someone not known to be an
 * operator (the service would refuse them), or for a letter without a place on the topic.
 */
export function replayControl(partition, offset) {
  if (!knownToHold("operator")) return null
  if (!Number.isInteger(partition) || typeof offset !== "string" || !/^\d+$/.test(offset)) return null
  const id = `${partition}/${offset}`

  const replay = h(
    "button",
    {
      type: "button",
      class: "button small",
      "aria-expanded": "false",
      "aria-controls": "replay-step",
      "data-testid": "replay-button"
    },
    "Replay"
  )
  const send = h(
    "button",
    { type: "button", class: "button small primary", "data-testid": "replay-confirm" },
    "Send it back to the orders topic"
  )
  const cancel = h(
    "button",
    { type: "button", class: "button small", "data-testid": "replay-cancel" },
    "Cancel"
  )
  const step = h(
    "div",
    {
      id: "replay-step",
      class: "dl-replay-step",
      role: "group",
      "aria-labelledby": "replay-question",
      hidden: true
    },
    h(
      "p",
      { id: "replay-question" },
      h("strong", {}, `Replay letter ${id}?`),
      " A copy of its key, bytes and headers goes back to the orders topic; the letter stays here."
    ),
    h("div", { class: "dl-replay-actions" }, send, cancel)
  )
  const status = h("p", { class: "dl-replay-status", "data-testid": "replay-status", hidden: true })
  const section = h(
    "section",
    { class: "dl-section dl-replay", "aria-label": "Replay" },
    h("div", { class: "dl-replay-actions" }, replay),
    step,
    status
  )

  const setStatus = (text, tone = "") => {
    status.textContent = text
    status.hidden = text === ""
    status.dataset.tone = tone
    if (text !== "" && tone !== "pending" && section.isConnected) announce(text)
  }

  const open = (asking) => {
    step.hidden = !asking
    replay.hidden = asking
    replay.setAttribute("aria-expanded", String(asking))
  }

  const busy = (yes) => {
    for (const button of [replay, send, cancel]) button.disabled = yes
    step.setAttribute("aria-busy", String(yes))
  }

  replay.addEventListener("click", () => {
    setStatus("")
    open(true)
    cancel.focus()
  })

  const close = () => {
    open(false)
    if (section.isConnected) replay.focus()
  }
  cancel.addEventListener("click", close)
  step.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !send.disabled) close()
  })

  send.addEventListener("click", async () => {
    busy(true)
    setStatus(`Sending letter ${id} back to the orders topic…`, "pending")
    try {
      const answer = await postJson("/dead-letters/replay", { partition, offset })
      setStatus(...outcome(answer, partition, offset))
    } catch (error) {
      setStatus(...refusal(error, id))
    } finally {
      busy(false)
      close()
    }
  })

  return section
}

/** What the service says it did with the letter: [text, tone]. */
function outcome(answer, partition, offset) {
  const letters = isRecord(answer) ? list(answer.letters).filter(isRecord) : []
  const mine = letters.find((l) => l.partition === partition && l.offset === offset)
  if (mine?.outcome === "sent") return [SENT, "ok"]
  if (mine?.outcome === "failed")
    return [
      "The broker refused it: nothing was sent back to the orders topic. The letter is unchanged; try again shortly.",
      "error"
    ]
  if (letters.length === 0)
    return [`Nothing was sent: the service has no letter ${partition}/${offset} to replay.`, "error"]
  return ["The service's answer does not say whether the letter was sent.", "error"]
}

/** Why the replay was not made (or may not have been): [text, tone]. */
function refusal(error, id) {
  if (!(error instanceof RequestFailed)) {
    console.error(error)
    return [`Letter ${id} could not be replayed.`, "error"]
  }
  switch (error.kind) {
    case "signed-out":
      sessionEnded()
      return [`Couldn't replay letter ${id}: you are signed out. Sign in again to replay it.`, "error"]
    case "forbidden":
      return [`Couldn't replay letter ${id}. ${forbiddenText(error, "operator")}`, "error"]
    case "network":
      return [
        `Couldn't tell whether letter ${id} was sent. ${error.message} Replaying it again is safe.`,
        "error"
      ]
    default:
      return [
        `Couldn't replay letter ${id}. ${sentence(error.message) || "The server refused the request."}`,
        "error"
      ]
  }
}
