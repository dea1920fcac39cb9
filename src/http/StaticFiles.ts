/**
 * The web page's files, read once at start-up and served from memory with strong ETags.
 */
import { readdirSync, readFileSync } from "node:fs"
import path from "node:path"
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { projectRoot } from "../projectRoot.ts"
import { Effect } from "effect"
import { strongEtag } from "./Etag.ts"

export interface StaticFile {
  readonly body: Uint8Array
  readonly contentType: string
  readonly etag: string
  /** Sent with the file and with its 304s, which update the headers a browser keeps for it. */
  readonly headers: Readonly<Record<string, string>>
}

export const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  // The page's scripts are ES modules: browsers refuse them under any other type.
  ".js": "text/javascript; charset=utf-8",
  ".svg": "image/svg+xml",
  ".json": "application/json",
  ".png": "image/png",
  ".ico": "image/x-icon"
}

export const staticFile = (
  body: Uint8Array,
  contentType: string,
  headers: Readonly<Record<string, string>> = {}
): StaticFile => ({
  body,
  contentType,
  etag: strongEtag(body),
  headers
})

/** Answers with the file, or 304 when the client already holds this version. */
export const serveStaticFile = (file: StaticFile) =>
  Effect.map(HttpServerRequest.HttpServerRequest, (request) =>
    request.headers["if-none-match"] === file.etag
      ? HttpServerResponse.empty({ status: 304, headers: { ...file.headers, etag: file.etag } })
      : HttpServerResponse.uint8Array(file.body, {
          contentType: file.contentType,
          headers: { ...file.headers, etag: file.etag, "cache-control": "no-cache" }
        })
  )

export const staticDirectory = path.join(projectRoot, "static")

export const loadStaticFiles = (directory: string): ReadonlyMap<string, StaticFile> => {
  const routes = new Map<string, StaticFile>()
  for (const name of readdirSync(directory)) {
    const contentType = CONTENT_TYPES[path.extname(name)]
    if (contentType === undefined) continue
    const file = staticFile(readFileSync(path.join(directory, name)), contentType)
    routes.set(`/${name}`, file)
    if (name === "index.html") routes.set("/", file)
  }
  return routes
}

export class StaticFiles extends Effect.Service<StaticFiles>()("StaticFiles", {
  sync: () => ({ routes: loadStaticFiles(staticDirectory) })
}) {}
