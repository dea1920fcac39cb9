// One order summary as a list entry (recent orders, search results, live arrivals): a link that
// opens the order. Text only, as everywhere on the page.

import { h } from "./dom.js"
import { countText, display, money, shortDateTimeFormat } from "./format.js"
import { pageUrl } from "./order-id.js"

export function summaryEntry(summary, testid) {
  const uid = typeof summary.order_uid === "string" ? summary.order_uid : display(summary.order_uid)
  const count = typeof summary.item_count === "number" ? summary.item_count : null
  const date = typeof summary.date_created === "string" ? new Date(summary.date_created) : null
  const link = h(
    "a",
    { class: "recent-item", href: pageUrl(uid), "data-uid": uid, "data-testid": testid },
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
