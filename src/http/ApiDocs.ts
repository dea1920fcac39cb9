/**
 * `/docs`: Swagger UI over the API's OpenAPI document, as @effect/platform's `HttpApiSwagger`
 * ships it — its bundle inline in the page, nothing fetched from a CDN.
 *
 * That page runs one inline script and one inline style, which the site's policy forbids. Rather
 * than loosen the policy, the page is rendered once and served from here with one that
 * also allows exactly those two, by their SHA-256; every other route keeps the strict one. Swagger
 * UI needs nothing more (in Chromium: no violation, no request but to the service itself).
 * `HttpApiScalar`, the library's other viewer, would need `'unsafe-inline'` styles (it sets style
 * attributes as it runs) and `'wasm-unsafe-eval'`, and fetches its fonts from fonts.scalar.com.
 */
import { createHash } from "node:crypto"
import { HttpApi, HttpApiBuilder, HttpApiSwagger, HttpServerRequest } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { contentSecurityPolicy } from "./SecurityHeaders.ts"
import { CONTENT_TYPES, serveStaticFile, staticFile } from "./StaticFiles.ts"

const DOCS_PATH = "/docs"

const sha256 = (text: string) => `'sha256-${createHash("sha256").update(text).digest("base64")}'`

/**
 * The hashes of a page's inline scripts and styles: what a browser runs or applies. Script
 * elements that load a file, or hold data (a JSON type), are not run and need none.
 */
const inlineHashes = (html: string) => {
  const scripts: Array<string> = []
  const styles: Array<string> = []
  for (const [, tag, attributes, content] of html.matchAll(
    /<(script|style)\b([^>]*)>([\s\S]*?)<\/\1\s*>/gi
  )) {
    // Browsers hash the text after the parser has turned CR LF and CR into LF.
    const text = content!.replace(/\r\n?/g, "\n")
    if (tag!.toLowerCase() === "style") styles.push(sha256(text))
    else if (!/\bsrc\s*=/i.test(attributes!) && !/\btype\s*=\s*["']?application\/json/i.test(attributes!))
      scripts.push(sha256(text))
  }
  return { scripts, styles }
}

/**
 * The page as `HttpApiSwagger` serves it, asked of a router of its own (`Effect.provide`
 * builds the layers afresh, apart from the server's). Its handler could use the platform's
 * services, as any route's may; the Node ones are at hand.
 */
const renderSwaggerUi = Effect.gen(function* () {
  const router = yield* HttpApiBuilder.Router.router
  const response = yield* router.pipe(
    Effect.provideService(
      HttpServerRequest.HttpServerRequest,
      HttpServerRequest.fromWeb(new Request(`http://localhost${DOCS_PATH}`))
    )
  )
  if (response.status !== 200 || response.body._tag !== "Uint8Array") {
    return yield* Effect.dieMessage(
      `HttpApiSwagger answered ${response.status} with a ${response.body._tag} body`
    )
  }
  return response.body.body
}).pipe(
  Effect.provide(
    Layer.mergeAll(
      HttpApiSwagger.layer({ path: DOCS_PATH }).pipe(Layer.provideMerge(HttpApiBuilder.Router.Live)),
      NodeHttpServer.layerContext
    )
  ),
  // Only a change in the library could make it fail: a defect.
  Effect.orDie
)

/** The page with the site's icon, and the policy that lets its inline code run. */
const docsPage = Effect.gen(function* () {
  // Without an icon the browser asks for /favicon.ico, which does not exist.
  const html = new TextDecoder()
    .decode(yield* renderSwaggerUi)
    .replace("</head>", '<link rel="icon" href="/favicon.svg" type="image/svg+xml" />\n</head>')
  return staticFile(new TextEncoder().encode(html), CONTENT_TYPES[".html"]!, {
    "content-security-policy": contentSecurityPolicy(inlineHashes(html))
  })
})

/**
 * Serves `/docs`; needs the API (`HttpApiBuilder.api`) like `HttpApiSwagger.layer` does. The page
 * is built on its first request: it takes about 100 ms, which start-up need not wait for.
 */
export const layer = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function* () {
    const api = yield* Effect.context<HttpApi.Api>()
    // Uninterruptible: a first request given up halfway must not leave an interruption cached.
    const page = yield* Effect.cached(Effect.uninterruptible(Effect.provide(docsPage, api)))
    yield* router.get(DOCS_PATH, Effect.flatMap(page, serveStaticFile))
  })
)
