// Order lookup page. Orders come from Kafka producers we do not control, so every value is rendered
// as text through createElement/textContent: no HTML string ever reaches the DOM.

import { h, isRecord } from "./dom.js"

// The same rules the server applies before answering 400, so the agent learns about a bad paste at once.
const MAX_UID_LENGTH = 128
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/
const RECENT_PAGE_SIZE = 20
const REQUEST_TIMEOUT_MS = 15_000

const byId = (id) => document.getElementById(id)

const ui = {
  form: byId("search-form"),
  input: byId("uid-input"),
  uidError: byId("uid-error"),
  uidErrorMessage: byId("uid-error-message"),
  results: byId("results"),
  empty: document.querySelector("[data-testid=state-empty]"),
  loading: document.querySelector("[data-testid=state-loading]"),
  loadingUid: byId("loading-uid"),
  notFound: document.querySelector("[data-testid=state-not-found]"),
  notFoundUid: byId("not-found-uid"),
  error: document.querySelector("[data-testid=state-error]"),
  errorTitle: byId("error-title"),
  errorMessage: byId("error-message"),
  retry: byId("retry-button"),
  order: byId("order-view"),
  recentList: byId("recent-list"),
  recentStatus: byId("recent-status"),
  recentMore: byId("recent-more"),
  recentRefresh: byId("recent-refresh"),
  announcer: byId("announcer")
}

// ---------------------------------------------------------------------------------------------------
// Formatting

const record = (value) => (isRecord(value) ? value : {})
const list = (value) => (Array.isArray(value) ? value : [])

/** Any JSON value as display text; blanks become a dash so an empty field is visibly empty. */
function display(value) {
  if (value === undefined || value === null || value === "") return "—"
  if (typeof value === "object") return JSON.stringify(value)
  return String(value)
}

const moneyFormats = new Map()
function moneyFormat(currency) {
  if (!moneyFormats.has(currency)) {
    let format = null
    try {
      format = new Intl.NumberFormat(undefined, { style: "currency", currency })
    } catch {
      // RangeError for a malformed currency code: fall back to the plain number and code.
    }
    moneyFormats.set(currency, format)
  }
  return moneyFormats.get(currency)
}

/** Money values are integers in the currency's major unit. */
function money(amount, currency) {
  if (typeof amount !== "number" || !Number.isFinite(amount)) return display(amount)
  const format = typeof currency === "string" && currency !== "" ? moneyFormat(currency) : null
  if (format) return format.format(amount)
  return currency ? `${amount} ${display(currency)}` : String(amount)
}

const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" })
const shortDateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" })

/** A <time> showing local time, with the UTC instant in the title for cross-checking with logs. */
function timeElement(date, raw, testid) {
  if (!(date instanceof Date) || Number.isNaN(date.getTime()))
    return h("span", { "data-testid": testid }, display(raw))
  const iso = date.toISOString()
  return h(
    "time",
    { datetime: iso, title: `${iso} (UTC)`, "data-testid": testid },
    dateTimeFormat.format(date)
  )
}

const isoTime = (value, testid) =>
  timeElement(typeof value === "string" && value !== "" ? new Date(value) : null, value, testid)
const unixTime = (seconds, testid) =>
  timeElement(typeof seconds === "number" ? new Date(seconds * 1000) : null, seconds, testid)

let languageNames = null
try {
  languageNames = new Intl.DisplayNames(undefined, { type: "language" })
} catch {
  // Older engines: the locale code alone is still readable.
}
function localeText(locale) {
  if (typeof locale !== "string" || locale === "") return display(locale)
  try {
    const name = languageNames?.of(locale)
    return name && name !== locale ? `${locale} (${name})` : locale
  } catch {
    return locale
  }
}

// Re-setting identical text would not be re-announced, so clear first and write on the next frame.
function announce(message) {
  ui.announcer.textContent = ""
  requestAnimationFrame(() => {
    ui.announcer.textContent = message
  })
}

// ---------------------------------------------------------------------------------------------------
// Order id rules

function checkUid(raw) {
  const uid = String(raw ?? "").trim()
  if (uid === "") return { ok: false, uid, message: "Type or paste an order id first." }
  if (uid.length > MAX_UID_LENGTH)
    return {
      ok: false,
      uid,
      message: `Order ids are at most ${MAX_UID_LENGTH} characters; this one has ${uid.length}. Was more than the id pasted?`
    }
  if (CONTROL_CHARACTER.test(uid))
    return {
      ok: false,
      uid,
      message:
        "It contains a control character (a tab, line break or similar). Copy just the id and try again."
    }
  return { ok: true, uid }
}

const countText = (count) => `${count} ${count === 1 ? "item" : "items"}`

const orderUrl = (uid) => `/order/${encodeURIComponent(uid)}`
const pageUrl = (uid) => `/?uid=${encodeURIComponent(uid)}`
const uidInLocation = () => new URLSearchParams(window.location.search).get("uid") || null

// ---------------------------------------------------------------------------------------------------
// Fetching

class RequestFailed extends Error {
  constructor(kind, message) {
    super(message)
    this.kind = kind // "not-found" | "bad-id" | "server" | "network"
  }
}

async function getJson(url, signal) {
  const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS)
  const combined = signal ? AbortSignal.any([signal, timeout]) : timeout
  let response
  try {
    response = await fetch(url, { headers: { accept: "application/json" }, signal: combined })
  } catch (cause) {
    if (signal?.aborted) throw cause
    if (timeout.aborted)
      throw new RequestFailed(
        "network",
        `The server did not answer within ${REQUEST_TIMEOUT_MS / 1000} seconds.`
      )
    throw new RequestFailed("network", "The page could not connect to the server. Check the connection.")
  }
  const body = await response.json().catch(() => undefined)
  if (response.ok) {
    if (body === undefined) throw new RequestFailed("server", "The server sent a response that is not JSON.")
    return body
  }
  const detail = isRecord(body) && typeof body.message === "string" ? body.message : ""
  if (response.status === 404) throw new RequestFailed("not-found", detail)
  if (response.status === 400) throw new RequestFailed("bad-id", detail)
  throw new RequestFailed(
    "server",
    `The server answered HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}.`
  )
}

// ---------------------------------------------------------------------------------------------------
// Order view state: exactly one of empty, loading, not-found, bad-id, error, order is visible.

let current = { kind: "empty" }
let inFlight = null

function show(state) {
  current = state
  ui.empty.hidden = state.kind !== "empty"
  ui.loading.hidden = state.kind !== "loading"
  ui.notFound.hidden = state.kind !== "not-found"
  ui.error.hidden = state.kind !== "error"
  ui.order.hidden = state.kind !== "order"
  ui.uidError.hidden = state.kind !== "bad-id"
  ui.results.setAttribute("aria-busy", String(state.kind === "loading"))

  const invalid = state.kind === "bad-id"
  if (invalid) ui.input.setAttribute("aria-invalid", "true")
  else ui.input.removeAttribute("aria-invalid")

  switch (state.kind) {
    case "empty":
      document.title = "Order lookup"
      break
    case "loading":
      ui.loadingUid.textContent = state.uid
      announce(`Loading order ${state.uid}`)
      break
    case "bad-id":
      ui.uidErrorMessage.textContent = state.message
      document.title = "Invalid order id · Order lookup"
      announce(`That can't be an order id. ${state.message}`)
      break
    case "not-found":
      ui.notFoundUid.textContent = state.uid
      document.title = "Order not found · Order lookup"
      announce(`No order with id ${state.uid}`)
      break
    case "error":
      ui.errorTitle.textContent = state.network ? "Can't reach the server" : "The server had a problem"
      ui.errorMessage.textContent = state.message
      document.title = "Error · Order lookup"
      announce(`${ui.errorTitle.textContent}. ${state.message}`)
      break
    case "order":
      ui.order.replaceChildren(...renderOrder(state.order, state.uid))
      document.title = `Order ${state.uid} · Order lookup`
      announce(`Order ${state.uid} loaded, ${countText(list(state.order.items).length)}`)
      break
  }
  markCurrentRecent()
}

async function loadOrder(uid) {
  inFlight?.abort()
  const controller = new AbortController()
  inFlight = controller
  show({ kind: "loading", uid })
  try {
    const order = await getJson(orderUrl(uid), controller.signal)
    if (!isRecord(order)) throw new RequestFailed("server", "The server sent something that is not an order.")
    show({ kind: "order", uid, order })
  } catch (error) {
    if (controller.signal.aborted) return // a newer lookup replaced this one
    if (!(error instanceof RequestFailed)) {
      console.error(error)
      show({ kind: "error", uid, message: "The order could not be displayed." })
    } else if (error.kind === "not-found") show({ kind: "not-found", uid })
    else if (error.kind === "bad-id")
      show({ kind: "bad-id", uid, message: error.message || "The server does not accept this id." })
    else show({ kind: "error", uid, message: error.message, network: error.kind === "network" })
  } finally {
    if (inFlight === controller) inFlight = null
  }
}

/** Entry point for every way an id arrives: the form, a recent order, a deep link, history. */
function open(rawUid, { push }) {
  const check = checkUid(rawUid)
  ui.input.value = check.uid
  if (!check.ok) {
    inFlight?.abort()
    show({ kind: "bad-id", uid: check.uid, message: check.message })
    return
  }
  if (push && uidInLocation() !== check.uid) history.pushState({ uid: check.uid }, "", pageUrl(check.uid))
  loadOrder(check.uid)
}

// ---------------------------------------------------------------------------------------------------
// Rendering one order

function fields(entries) {
  return h(
    "dl",
    { class: "fields" },
    entries.map(([label, value, testid, extraClass]) =>
      h(
        "div",
        { class: extraClass ? `field ${extraClass}` : "field" },
        h("dt", {}, label),
        h("dd", { "data-testid": testid }, value instanceof Node ? value : display(value))
      )
    )
  )
}

function card(title, testid, ...content) {
  const headingId = `${testid}-title`
  return h(
    "section",
    { class: "card", "aria-labelledby": headingId, "data-testid": testid },
    h("h3", { id: headingId }, title),
    ...content
  )
}

const mono = (value) => h("span", { class: "mono" }, display(value))

function renderOrder(order, requestedUid) {
  const delivery = record(order.delivery)
  const payment = record(order.payment)
  const items = list(order.items).map(record)
  const currency = payment.currency

  const header = h(
    "header",
    { class: "order-head" },
    h(
      "div",
      { class: "order-title-row" },
      h(
        "h2",
        { id: "order-title" },
        h("span", { class: "eyebrow" }, "Order"),
        h(
          "span",
          { class: "mono order-uid", "data-testid": "order-uid" },
          display(order.order_uid ?? requestedUid)
        )
      ),
      h(
        "a",
        { class: "permalink", href: pageUrl(requestedUid), "data-testid": "permalink" },
        "Link to this order"
      )
    ),
    fields([
      ["Track number", mono(order.track_number), "track-number"],
      ["Created", isoTime(order.date_created, "date-created")],
      ["Customer", mono(order.customer_id), "customer-id"],
      ["Entry", order.entry, "entry"],
      ["Delivery service", order.delivery_service, "delivery-service"],
      ["Locale", localeText(order.locale), "locale"]
    ])
  )

  const deliveryCard = card(
    "Delivery",
    "delivery",
    fields([
      ["Name", delivery.name, "delivery-name"],
      ["Phone", phoneLink(delivery.phone), "delivery-phone"],
      ["Email", emailLink(delivery.email), "delivery-email"],
      ["Address", delivery.address, "delivery-address", "wide"],
      ["City", delivery.city, "delivery-city"],
      ["Region", delivery.region, "delivery-region"],
      ["Zip", mono(delivery.zip), "delivery-zip"]
    ])
  )

  const paymentCard = card(
    "Payment",
    "payment",
    h(
      "dl",
      { class: "amounts" },
      amountRow("Goods total", money(payment.goods_total, currency), "goods-total"),
      amountRow("Delivery cost", money(payment.delivery_cost, currency), "delivery-cost"),
      amountRow("Custom fee", money(payment.custom_fee, currency), "custom-fee"),
      amountRow("Amount paid", money(payment.amount, currency), "amount", "total")
    ),
    fields([
      ["Paid at", unixTime(payment.payment_dt, "payment-dt"), undefined, "wide"],
      ["Transaction", mono(payment.transaction), "transaction", "wide"],
      ["Provider", payment.provider, "provider"],
      ["Bank", payment.bank, "bank"],
      ["Currency", currency, "currency"],
      ["Request id", mono(payment.request_id), "request-id"]
    ])
  )

  return [
    header,
    h("div", { class: "cards" }, deliveryCard, paymentCard),
    renderItems(items, payment, currency),
    renderRawJson(order)
  ]
}

function amountRow(label, value, testid, extraClass) {
  return h(
    "div",
    { class: extraClass ? `amount-row ${extraClass}` : "amount-row" },
    h("dt", {}, label),
    h("dd", { "data-testid": testid }, value)
  )
}

// Only well-formed values become links; anything else stays plain text.
function phoneLink(phone) {
  if (typeof phone !== "string" || !/^\+?[0-9 ()-]{3,32}$/.test(phone)) return display(phone)
  return h("a", { href: `tel:${phone.replace(/[^+0-9]/g, "")}` }, phone)
}
function emailLink(email) {
  if (typeof email !== "string" || !/^[^\s@<>"]+@[^\s@<>"]+$/.test(email)) return display(email)
  return h("a", { href: `mailto:${email}` }, email)
}

const saleText = (sale) => (typeof sale !== "number" ? display(sale) : sale > 0 ? `−${sale}%` : `${sale}%`)

// One list drives the header, the cells and the labels used when rows stack on phones.
const ITEM_COLUMNS = [
  { label: "Name", class: "name", testid: "item-name", cell: (item) => display(item.name) },
  { label: "Brand", cell: (item) => display(item.brand) },
  { label: "Size", cell: (item) => display(item.size) },
  { label: "Price", class: "num", cell: (item, currency) => money(item.price, currency) },
  { label: "Sale", class: "num", cell: (item) => saleText(item.sale) },
  {
    label: "Total price",
    class: "num strong",
    testid: "item-total-price",
    cell: (item, currency) => money(item.total_price, currency)
  },
  { label: "Status", class: "num", cell: (item) => display(item.status) },
  { label: "chrt_id", class: "num mono", cell: (item) => display(item.chrt_id) },
  { label: "nm_id", class: "num mono", cell: (item) => display(item.nm_id) },
  { label: "rid", class: "mono", cell: (item) => display(item.rid) }
]

function sum(items, key) {
  let total = 0
  for (const item of items) {
    if (typeof item[key] !== "number") return null
    total += item[key]
  }
  return total
}

function renderItems(items, payment, currency) {
  const rows = items.map((item) =>
    h(
      "tr",
      { "data-testid": "item-row" },
      ITEM_COLUMNS.map((column) =>
        h(
          "td",
          { class: column.class, "data-label": column.label, "data-testid": column.testid },
          column.cell(item, currency)
        )
      )
    )
  )

  const priceSum = sum(items, "price")
  const totalSum = sum(items, "total_price")
  const footer = h(
    "tr",
    { class: "totals" },
    h("th", { scope: "row", colspan: 3 }, `Total · ${countText(items.length)}`),
    h("td", { class: "num", "data-label": "Price" }, priceSum === null ? "—" : money(priceSum, currency)),
    h("td", {}),
    h(
      "td",
      { class: "num strong", "data-label": "Total price", "data-testid": "items-total" },
      totalSum === null ? "—" : money(totalSum, currency)
    ),
    h("td", { colspan: 4 })
  )

  const table = h(
    "table",
    { class: "items", "data-testid": "items-table" },
    h("caption", { class: "visually-hidden" }, `Items in this order, ${countText(items.length)}`),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ITEM_COLUMNS.map((column) => h("th", { scope: "col", class: column.class }, column.label))
      )
    ),
    h("tbody", {}, rows),
    h("tfoot", {}, footer)
  )

  // A mismatch is worth pointing out to whoever is answering the customer about their bill.
  const mismatch =
    totalSum !== null && typeof payment.goods_total === "number" && totalSum !== payment.goods_total
      ? h(
          "p",
          { class: "warning", "data-testid": "total-mismatch" },
          `Items add up to ${money(totalSum, currency)}, but the payment's goods total is ${money(payment.goods_total, currency)}.`
        )
      : null

  return h(
    "section",
    { class: "card items-card", "aria-labelledby": "items-title" },
    h("h3", { id: "items-title" }, "Items ", h("span", { class: "count" }, String(items.length))),
    // Focusable so keyboard users can scroll the table sideways on narrow screens.
    h("div", { class: "table-scroll", tabindex: 0, role: "region", "aria-labelledby": "items-title" }, table),
    mismatch
  )
}

function renderRawJson(order) {
  const json = JSON.stringify(order, null, 2)
  const copyButton = h(
    "button",
    { type: "button", class: "button small", "data-testid": "copy-json" },
    "Copy JSON"
  )
  const pre = h("pre", { class: "json", tabindex: 0, "data-testid": "raw-json-text" }, json)
  copyButton.addEventListener("click", () => copyText(json, copyButton, pre))
  return h(
    "details",
    { class: "card raw", "data-testid": "raw-json" },
    h("summary", {}, "Raw JSON"),
    h("div", { class: "raw-actions" }, copyButton),
    pre
  )
}

async function copyText(text, button, source) {
  let copied = false
  try {
    await navigator.clipboard.writeText(text)
    copied = true
  } catch {
    copied = copyWithSelection(text)
  }
  if (!copied) {
    // Leave the text selected so Ctrl+C works by hand.
    window.getSelection()?.selectAllChildren(source)
    flash(button, "Press Ctrl+C", "Clipboard unavailable: the JSON is selected, press Ctrl+C to copy")
    return
  }
  flash(button, "Copied ✓", "JSON copied to the clipboard")
}

// Clipboard API is missing on plain-HTTP origins other than localhost.
function copyWithSelection(text) {
  const area = h("textarea", { class: "offscreen", readonly: true, "aria-hidden": "true" })
  area.value = text
  document.body.append(area)
  area.select()
  let ok = false
  try {
    ok = document.execCommand("copy")
  } catch {
    ok = false
  }
  area.remove()
  return ok
}

function flash(button, label, message) {
  const original = button.dataset.label ?? button.textContent
  button.dataset.label = original
  button.textContent = label
  button.classList.add("done")
  announce(message)
  clearTimeout(button.flashTimer)
  button.flashTimer = setTimeout(() => {
    button.textContent = original
    button.classList.remove("done")
  }, 2000)
}

// ---------------------------------------------------------------------------------------------------
// Recent orders

const recent = { cursor: null, loading: false, generation: 0 }

async function loadRecent({ reset }) {
  if (recent.loading && !reset) return
  const generation = ++recent.generation
  // Read before disabling: a disabled button may lose focus.
  const moreHadFocus = document.activeElement === ui.recentMore
  recent.loading = true
  ui.recentMore.disabled = true
  setRecentStatus(reset ? "Loading recent orders…" : "Loading more…")
  const params = new URLSearchParams({ limit: String(RECENT_PAGE_SIZE) })
  if (!reset && recent.cursor) params.set("cursor", recent.cursor)
  try {
    const page = record(await getJson(`/orders?${params}`))
    if (generation !== recent.generation) return
    if (reset) ui.recentList.replaceChildren()
    const entries = list(page.items).filter(isRecord).map(recentEntry)
    ui.recentList.append(...entries)
    recent.cursor = typeof page.next_cursor === "string" && page.next_cursor !== "" ? page.next_cursor : null
    setRecentStatus(ui.recentList.childElementCount === 0 ? "No orders yet." : "")
    markCurrentRecent()
    // Keep keyboard users in place when "Show more" disappears or moves down.
    if (!reset && moreHadFocus && entries.length > 0) entries[0].querySelector("a")?.focus()
  } catch (error) {
    if (generation !== recent.generation) return
    const why =
      error instanceof RequestFailed && (error.kind === "network" || error.kind === "server")
        ? error.message
        : "Use Refresh to try again."
    setRecentStatus(`Couldn't load recent orders. ${why}`, true)
  } finally {
    if (generation === recent.generation) {
      recent.loading = false
      ui.recentMore.hidden = recent.cursor === null
      ui.recentMore.disabled = false
    }
  }
}

function setRecentStatus(text, isError = false) {
  ui.recentStatus.textContent = text
  ui.recentStatus.hidden = text === ""
  ui.recentStatus.classList.toggle("error-text", isError)
}

function recentEntry(summary) {
  const uid = typeof summary.order_uid === "string" ? summary.order_uid : display(summary.order_uid)
  const count = typeof summary.item_count === "number" ? summary.item_count : null
  const date = typeof summary.date_created === "string" ? new Date(summary.date_created) : null
  const link = h(
    "a",
    { class: "recent-item", href: pageUrl(uid), "data-uid": uid, "data-testid": "recent-order" },
    h("span", { class: "recent-uid mono" }, uid),
    h("span", { class: "recent-amount" }, money(summary.amount, summary.currency)),
    h(
      "span",
      { class: "recent-date" },
      date && !Number.isNaN(date.getTime()) ? shortDateTimeFormat.format(date) : display(summary.date_created)
    ),
    h(
      "span",
      { class: "recent-who" },
      count === null ? display(summary.customer_id) : `${display(summary.customer_id)} · ${countText(count)}`
    )
  )
  return h("li", {}, link)
}

function markCurrentRecent() {
  const shown = current.kind === "empty" ? null : current.uid
  for (const link of ui.recentList.querySelectorAll("a[data-uid]")) {
    if (link.dataset.uid === shown) link.setAttribute("aria-current", "page")
    else link.removeAttribute("aria-current")
  }
}

// ---------------------------------------------------------------------------------------------------
// Wiring

const wideLayout = window.matchMedia("(min-width: 900px)")

ui.form.addEventListener("submit", (event) => {
  event.preventDefault()
  open(ui.input.value, { push: true })
})

ui.input.addEventListener("input", () => {
  // The error described the previous text; stale advice is worse than none.
  if (current.kind === "bad-id") show({ kind: "empty" })
})

ui.retry.addEventListener("click", () => {
  if (current.kind === "error") loadOrder(current.uid)
})

ui.recentList.addEventListener("click", (event) => {
  const link = event.target instanceof Element ? event.target.closest("a[data-uid]") : null
  // Let modified clicks open a new tab as links normally do.
  if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return
  event.preventDefault()
  open(link.dataset.uid, { push: true })
  // On one-column layouts the order is above the list, out of sight: take the reader there.
  if (!wideLayout.matches) ui.results.focus()
})

ui.recentMore.addEventListener("click", () => loadRecent({ reset: false }))
ui.recentRefresh.addEventListener("click", () => loadRecent({ reset: true }))

window.addEventListener("popstate", () => {
  const uid = uidInLocation()
  if (uid === null) {
    inFlight?.abort()
    ui.input.value = ""
    show({ kind: "empty" })
  } else open(uid, { push: false })
})

document.addEventListener("keydown", (event) => {
  if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return
  const target = event.target
  if (
    target instanceof HTMLElement &&
    (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))
  )
    return
  event.preventDefault()
  ui.input.focus()
  ui.input.select()
})

// The search box has the focus from the start: `autofocus` alone is applied at the browser's next
// rendering step, which can come after keys typed right away went nowhere.
if (document.activeElement === null || document.activeElement === document.body) ui.input.focus()

const initialUid = uidInLocation()
if (initialUid !== null) open(initialUid, { push: false })
loadRecent({ reset: true })
