// One order, rendered from its JSON. Orders come from Kafka producers we do not control, so every
// value becomes text through createElement/textContent: no HTML string ever reaches the DOM.

import { announce, h } from "./dom.js"
import { countText, display, isoTime, list, localeText, money, record, unixTime } from "./format.js"
import { pageUrl } from "./order-id.js"

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

export function renderOrder(order, requestedUid) {
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
