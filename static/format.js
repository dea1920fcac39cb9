// Order values as display text. Producers send what they send: every function takes any value,
// and a missing or malformed one is shown as it is (or as a dash when blank), never dropped.

import { h, isRecord } from "./dom.js"

export const record = (value) => (isRecord(value) ? value : {})
export const list = (value) => (Array.isArray(value) ? value : [])

/** Any JSON value as display text; blanks become a dash so an empty field is visibly empty. */
export function display(value) {
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
export function money(amount, currency) {
  if (typeof amount !== "number" || !Number.isFinite(amount)) return display(amount)
  const format = typeof currency === "string" && currency !== "" ? moneyFormat(currency) : null
  if (format) return format.format(amount)
  return currency ? `${amount} ${display(currency)}` : String(amount)
}

const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" })
export const shortDateTimeFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "short"
})

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

export const isoTime = (value, testid) =>
  timeElement(typeof value === "string" && value !== "" ? new Date(value) : null, value, testid)
export const unixTime = (seconds, testid) =>
  timeElement(typeof seconds === "number" ? new Date(seconds * 1000) : null, seconds, testid)

let languageNames = null
try {
  languageNames = new Intl.DisplayNames(undefined, { type: "language" })
} catch {
  // Older engines: the locale code alone is still readable.
}
export function localeText(locale) {
  if (typeof locale !== "string" || locale === "") return display(locale)
  try {
    const name = languageNames?.of(locale)
    return name && name !== locale ? `${locale} (${name})` : locale
  } catch {
    return locale
  }
}

export const countText = (count) => `${count} ${count === 1 ? "item" : "items"}`
