/**
 * The web page's files, read once at start-up and served from memory with strong ETags.
 */
import { readdirSync, readFileSync } from "node:fs"
import path from "node:path"
import { projectRoot } from "../projectRoot.ts"
import { Effect } from "effect"
import { strongEtag } from "./Etag.ts"

export interface StaticFile {
  readonly body: Uint8Array
  readonly contentType: string
  readonly etag: string
}

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  // The page's scripts are ES modules: browsers refuse them under any other type.
  ".js": "text/javascript; charset=utf-8",
  ".svg": "image/svg+xml",
  ".json": "application/json",
  ".png": "image/png",
  ".ico": "image/x-icon"
}

export const staticDirectory = path.join(projectRoot, "static")

export const loadStaticFiles = (directory: string): ReadonlyMap<string, StaticFile> => {
  const routes = new Map<string, StaticFile>()
  for (const name of readdirSync(directory)) {
    const contentType = CONTENT_TYPES[path.extname(name)]
    if (contentType === undefined) continue
    const body = readFileSync(path.join(directory, name))
    const file: StaticFile = {
      body,
      contentType,
      etag: strongEtag(body)
    }
    routes.set(`/${name}`, file)
    if (name === "index.html") routes.set("/", file)
    if (name === "docs.html") routes.set("/docs", file)
  }
  return routes
}

export class StaticFiles extends Effect.Service<StaticFiles>()("StaticFiles", {
  sync: () => ({ routes: loadStaticFiles(staticDirectory) })
}) {}
