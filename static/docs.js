// Renders /openapi.json as a readable page without a third-party viewer (the CSP allows only 'self').

import { h, isRecord } from "./dom.js"

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]
const MAX_DEPTH = 6

const byId = (id) => document.getElementById(id)
const status = byId("docs-status")

let components = {}

const refName = (ref) => decodeURIComponent(String(ref).split("/").pop() ?? "")
const schemaAnchor = (name) => `schema-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`

function resolve(schema) {
  if (!isRecord(schema) || typeof schema.$ref !== "string") return schema
  return components[refName(schema.$ref)]
}

const isStructured = (schema) =>
  isRecord(schema) &&
  (schema.type === "object" ||
    schema.type === "array" ||
    "properties" in schema ||
    "anyOf" in schema ||
    "oneOf" in schema ||
    "allOf" in schema)

/** A short type label; named object schemas become links to their definition further down. */
function typeLabel(schema, depth = 0) {
  if (!isRecord(schema) || depth > MAX_DEPTH) return "any"
  if (typeof schema.$ref === "string") {
    const name = refName(schema.$ref)
    const target = components[name]
    // Named scalars (e.g. Int) read better as their type than as a link.
    if (target && !isStructured(target)) return typeLabel(target, depth + 1)
    return h("a", { class: "type", href: `#${schemaAnchor(name)}` }, name)
  }
  const union = schema.anyOf ?? schema.oneOf
  if (Array.isArray(union))
    return joinLabels(
      union.map((member) => typeLabel(member, depth + 1)),
      " | "
    )
  if (Array.isArray(schema.allOf))
    return joinLabels(
      schema.allOf.map((member) => typeLabel(member, depth + 1)),
      " & "
    )
  if (Array.isArray(schema.enum)) return schema.enum.map((value) => JSON.stringify(value)).join(" | ")
  if ("const" in schema) return JSON.stringify(schema.const)
  if (schema.type === "array") return joinLabels(["array<", typeLabel(schema.items, depth + 1), ">"], "")
  if (Array.isArray(schema.type)) return schema.type.join(" | ")
  if (typeof schema.type === "string")
    return schema.format ? `${schema.type} (${schema.format})` : schema.type
  if (isRecord(schema.properties)) return "object"
  return "any"
}

const typeNode = (schema) => h("span", { class: "type" }, typeLabel(schema))

function joinLabels(labels, separator) {
  const parts = []
  labels.forEach((label, index) => {
    if (index > 0 && separator) parts.push(separator)
    parts.push(label)
  })
  return h("span", { class: "type" }, parts)
}

const CONSTRAINTS = [
  ["minLength", "min length"],
  ["maxLength", "max length"],
  ["minimum", "≥"],
  ["maximum", "≤"],
  ["exclusiveMinimum", ">"],
  ["exclusiveMaximum", "<"],
  ["minItems", "min items"],
  ["maxItems", "max items"],
  ["pattern", "pattern"],
  ["default", "default"]
]

/** Constraints from the schema itself and, for a named scalar, from its definition. */
function constraintsOf(schema) {
  const sources = [schema]
  const target = resolve(schema)
  if (target && target !== schema && !isStructured(target)) sources.push(target)
  const seen = new Set()
  const out = []
  for (const source of sources) {
    if (!isRecord(source)) continue
    for (const [key, label] of CONSTRAINTS) {
      if (!(key in source) || seen.has(key)) continue
      seen.add(key)
      out.push(`${label} ${typeof source[key] === "string" ? source[key] : JSON.stringify(source[key])}`)
    }
  }
  return out
}

/** Descriptions generated from refinements ("an integer") repeat the type; keep only the informative ones. */
function descriptionOf(schema) {
  if (!isRecord(schema) || typeof schema.description !== "string") return ""
  if (/^(an? |a string to be decoded)/i.test(schema.description) && schema.title) return ""
  return schema.description
}

/** The properties of an object schema as a nested list; named objects inside stay as links. */
function propertyList(schema, depth = 0, seen = new Set()) {
  const target = isRecord(schema) && schema.type === "array" ? schema.items : schema
  if (!isRecord(target) || !isRecord(target.properties) || depth > MAX_DEPTH || seen.has(target)) return null
  const nextSeen = new Set(seen).add(target)
  const required = new Set(Array.isArray(target.required) ? target.required : [])
  return h(
    "ul",
    {},
    Object.entries(target.properties).map(([name, property]) => {
      const description = descriptionOf(property)
      const constraints = constraintsOf(property)
      return h(
        "li",
        {},
        h("span", { class: "prop" }, name),
        ": ",
        typeNode(property),
        required.has(name) ? h("span", { class: "required" }, " required") : null,
        constraints.length ? h("span", { class: "constraint" }, ` (${constraints.join(", ")})`) : null,
        description ? h("span", { class: "muted" }, ` — ${description}`) : null,
        propertyList(property, depth + 1, nextSeen)
      )
    })
  )
}

/** A request or response body: its type, then the fields of the top-level object spelled out. */
function schemaBlock(schema) {
  const target = resolve(schema)
  const union = isRecord(target) ? (target.anyOf ?? target.oneOf) : undefined
  if (Array.isArray(union))
    return h(
      "div",
      { class: "schema" },
      h("div", {}, "One of:"),
      union.map((member) =>
        h("div", { class: "alternative" }, typeNode(member), propertyList(resolve(member)))
      )
    )
  const fieldsSource = isRecord(target) && target.type === "array" ? resolve(target.items) : target
  return h("div", { class: "schema" }, h("div", {}, typeNode(schema)), propertyList(fieldsSource))
}

function contentBlocks(content) {
  if (!isRecord(content)) return []
  return Object.entries(content).map(([mediaType, media]) =>
    h(
      "div",
      {},
      h("span", { class: "media-type" }, mediaType),
      isRecord(media) && media.schema ? schemaBlock(media.schema) : null
    )
  )
}

function parametersTable(parameters) {
  return h(
    "div",
    { class: "table-scroll" },
    h(
      "table",
      { class: "params" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["Name", "In", "Type", "Required", "Description"].map((label) => h("th", { scope: "col" }, label))
        )
      ),
      h(
        "tbody",
        {},
        parameters.map((parameter) => {
          const constraints = constraintsOf(parameter.schema)
          return h(
            "tr",
            {},
            h("td", {}, h("code", {}, String(parameter.name ?? ""))),
            h("td", {}, String(parameter.in ?? "")),
            h("td", {}, typeNode(parameter.schema)),
            h("td", {}, parameter.required ? "yes" : "no"),
            h(
              "td",
              {},
              [parameter.description ?? descriptionOf(parameter.schema), constraints.join(", ")]
                .filter(Boolean)
                .join(" · ")
            )
          )
        })
      )
    )
  )
}

function statusClass(code) {
  if (/^2/.test(code)) return "status ok"
  if (/^4/.test(code)) return "status client"
  if (/^5/.test(code)) return "status server"
  return "status"
}

function endpointSection(path, method, operation, index) {
  const parameters = Array.isArray(operation.parameters)
    ? operation.parameters.map((p) => resolve(p) ?? p)
    : []
  const responses = isRecord(operation.responses) ? Object.entries(operation.responses) : []
  const requestBody = resolve(operation.requestBody)
  return h(
    "section",
    {
      class: "card endpoint",
      id: `op-${index}`,
      "aria-labelledby": `op-${index}-title`,
      "data-testid": "docs-endpoint"
    },
    h(
      "h2",
      { id: `op-${index}-title` },
      h("span", { class: "method" }, method),
      h("code", {}, path),
      Array.isArray(operation.tags) ? h("span", { class: "tag" }, operation.tags.join(", ")) : null
    ),
    operation.summary ? h("p", {}, String(operation.summary)) : null,
    operation.description ? h("p", { class: "muted" }, String(operation.description)) : null,
    parameters.length ? [h("h3", {}, "Parameters"), parametersTable(parameters)] : null,
    isRecord(requestBody) ? [h("h3", {}, "Request body"), contentBlocks(requestBody.content)] : null,
    h("h3", {}, "Responses"),
    responses.map(([code, response]) => {
      const resolved = resolve(response) ?? response
      return h(
        "div",
        { class: "response" },
        h("span", { class: statusClass(code) }, code),
        h("span", {}, isRecord(resolved) ? String(resolved.description ?? "") : ""),
        isRecord(resolved) ? contentBlocks(resolved.content) : null
      )
    })
  )
}

function render(document_) {
  const info = isRecord(document_.info) ? document_.info : {}
  const title = String(info.title ?? "API")
  byId("api-title").textContent = title
  document.title = `${title} · API docs`
  byId("api-meta").textContent = [
    info.version ? `Version ${info.version}` : "",
    document_.openapi ? `OpenAPI ${document_.openapi}` : ""
  ]
    .filter(Boolean)
    .join(" · ")
  byId("api-description").textContent = String(info.description ?? "")

  components =
    isRecord(document_.components) && isRecord(document_.components.schemas)
      ? document_.components.schemas
      : {}

  const operations = []
  for (const [path, item] of Object.entries(isRecord(document_.paths) ? document_.paths : {})) {
    if (!isRecord(item)) continue
    for (const method of METHODS) if (isRecord(item[method])) operations.push([path, method, item[method]])
  }

  byId("docs-toc").replaceChildren(
    ...operations.map(([path, method], index) =>
      h(
        "li",
        {},
        h("a", { href: `#op-${index}` }, h("span", { class: "method" }, method), h("code", {}, path))
      )
    )
  )
  byId("docs-nav").hidden = operations.length === 0
  byId("endpoints").replaceChildren(
    ...operations.map(([path, method, operation], index) => endpointSection(path, method, operation, index))
  )

  const named = Object.entries(components).filter(([, schema]) => isStructured(schema))
  byId("schema-list").replaceChildren(
    ...named.map(([name, schema]) =>
      h(
        "div",
        { class: "response", id: schemaAnchor(name) },
        h("h3", {}, h("code", {}, name)),
        descriptionOf(schema) ? h("p", { class: "muted" }, descriptionOf(schema)) : null,
        h("div", { class: "schema" }, h("div", {}, typeNode(schema)), propertyList(schema))
      )
    )
  )
  byId("schemas").hidden = named.length === 0

  status.hidden = true
}

try {
  const response = await fetch("/openapi.json", { headers: { accept: "application/json" } })
  if (!response.ok) throw new Error(`HTTP ${response.status}`)
  const document_ = await response.json()
  if (!isRecord(document_)) throw new Error("not an OpenAPI document")
  render(document_)
  // Anchors in the URL point at content that did not exist when the page first scrolled.
  if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView()
} catch (error) {
  status.classList.add("error-text")
  status.textContent = `Could not load /openapi.json (${error instanceof Error ? error.message : String(error)}).`
}
