/**
 * Who may call what: one table, read by the one authorization step every request passes (in
 * `src/http/HttpServer.ts`, before a request is answered either way). A route is named by the
 * same low-cardinality label the metrics and the access log use (`routeOf`).
 *
 * A route missing from the table is refused to everyone but an operator: a route added later
 * without a rule fails closed, and the route test (test/auth/routes.test.ts), which walks every
 * path of the OpenAPI document, fails until it has one.
 */
import type { Role } from "../config/AppConfig.ts"

/** Who a request is from, once authenticated. */
export interface Principal {
  /** The provider's `sub`, the API key's name, or `local` in open mode: what the access log shows. */
  readonly subject: string
  readonly name: string | undefined
  readonly roles: ReadonlySet<Role>
  readonly via: "session" | "token" | "api_key" | "open"
}

/** What a route needs: nobody in particular, or one of some roles. */
export type Rule =
  { readonly _tag: "Public" } | { readonly _tag: "Role"; readonly anyOf: ReadonlyArray<Role> }

export const PUBLIC: Rule = { _tag: "Public" }
const role = (...anyOf: ReadonlyArray<Role>): Rule => ({ _tag: "Role", anyOf })
export const AGENT = role("agent", "operator")
export const OPERATOR = role("operator")
const SCRAPER = role("metrics", "operator")

/** Whether `principal` holds one of the roles `rule` asks for. `operator` includes `agent`. */
export const allows = (rule: Rule, principal: Principal | undefined): boolean =>
  rule._tag === "Public" || (principal !== undefined && rule.anyOf.some((r) => principal.roles.has(r)))

export const ORDER_PREFIX = "/order/"

/** A low-cardinality name for a request's route: the key of the rules, of metrics and of logs. */
export const routeOf = (pathname: string): string => {
  if (pathname.startsWith(ORDER_PREFIX)) return "/order/{order_uid}"
  if (pathname.startsWith("/dead-letters/"))
    return pathname === "/dead-letters/replay" ? pathname : "/dead-letters/{partition}/{offset}"
  switch (pathname) {
    case "/orders":
    case "/orders/search":
    case "/orders/live":
    case "/dead-letters":
    case "/healthz":
    case "/readyz":
    case "/metrics":
    case "/openapi.json":
    case "/docs":
    case "/auth/me":
    case "/auth/login":
    case "/auth/callback":
    case "/auth/logout":
    case "/":
      return pathname
    default:
      return /^\/[\w.-]+\.(js|css|html|svg|ico|png)$/.test(pathname) ? "static" : "other"
  }
}

/**
 * The table, by `METHOD route`. `GET /dead-letters` is two rows: a browser navigating there
 * (`Accept: text/html`) gets the page, which holds no data and says what its requests need; the
 * listing itself is an operator's.
 */
export const rules = (options: { readonly publicOrderLookup: boolean }): ReadonlyMap<string, Rule> =>
  new Map<string, Rule>([
    ["GET /order/{order_uid}", options.publicOrderLookup ? PUBLIC : AGENT],
    ["GET /orders", AGENT],
    ["GET /orders/search", AGENT],
    ["GET /orders/live", AGENT],
    ["GET /dead-letters", OPERATOR],
    ["GET /dead-letters (page)", PUBLIC],
    ["GET /dead-letters/{partition}/{offset}", OPERATOR],
    ["POST /dead-letters/replay", OPERATOR],
    ["GET /metrics", SCRAPER],
    ["GET /healthz", PUBLIC],
    ["GET /readyz", PUBLIC],
    ["GET /openapi.json", PUBLIC],
    ["GET /docs", PUBLIC],
    ["GET /", PUBLIC],
    ["GET static", PUBLIC],
    ["GET /auth/me", PUBLIC],
    ["GET /auth/login", PUBLIC],
    ["GET /auth/callback", PUBLIC],
    ["POST /auth/logout", PUBLIC],
    // Not a route: answered 404 (or 405) by the router, to anyone.
    ["GET other", PUBLIC]
  ])

/** Methods answered like GET (HEAD) share its rule. */
const methodOf = (method: string | undefined) => (method === "HEAD" || method === undefined ? "GET" : method)

/** The key of a request's rule in the table. */
export const ruleKeyOf = (method: string | undefined, route: string, accept: string | undefined): string =>
  route === "/dead-letters" && accept !== undefined && accept.includes("text/html")
    ? "GET /dead-letters (page)"
    : `${methodOf(method)} ${route}`

/** The rule for a key; none in the table: an operator's (fail closed). */
export const ruleFor = (table: ReadonlyMap<string, Rule>, key: string): Rule => table.get(key) ?? OPERATOR

/** The role a refusal names: the least of those that would do. */
export const neededRole = (rule: Rule): Role | undefined => (rule._tag === "Role" ? rule.anyOf[0] : undefined)
