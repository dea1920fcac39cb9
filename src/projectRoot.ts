/**
 * The project's directory (where `package.json` is), found from this module's location, so that
 * `static/`, `scripts/` and `.data/` are found whether the code runs from `src/` or from the
 * bundle in `dist/`.
 */
import { existsSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"

const findRoot = (from: string): string => {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, "package.json"))) return dir
    if (path.dirname(dir) === dir) return from
  }
}

export const projectRoot = findRoot(path.dirname(fileURLToPath(import.meta.url)))
