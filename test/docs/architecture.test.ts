/**
 * ARCHITECTURE.md is read to change the service: what it names must be there. Every layer,
 * service and module it names in code (`OrderCache.Default`, `Database.layer(options)`,
 * `Auth.check`, `TimedPool`, `Http.ts`) is looked up in `src/`, every path (`src/http/Api.ts`) on
 * disk, and every layer `src/App.ts` composes must be in its layer graph.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs"
import path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { projectRoot } from "../../src/projectRoot.ts"

const architecture = readFileSync(path.join(projectRoot, "ARCHITECTURE.md"), "utf8")

const fenced = /```[^\n]*\n([\s\S]*?)```/g
const codeBlocks = [...architecture.matchAll(fenced)].map((m) => m[1]!)
const codeSpans = [...architecture.replace(fenced, "").matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!)
/** What the document writes as code: where it names layers, services and modules. */
const code = [...codeBlocks, ...codeSpans].join("\n")

/** The modules of `src/`, by file name without `.ts`: `OrderCache` → src/cache/OrderCache.ts. */
const modules = new Map<string, Array<string>>()
for (const entry of readdirSync(path.join(projectRoot, "src"), { recursive: true, encoding: "utf8" })) {
  if (!entry.endsWith(".ts")) continue
  const name = path.basename(entry, ".ts")
  modules.set(name, [...(modules.get(name) ?? []), path.join(projectRoot, "src", entry)])
}
const sources = new Map([...modules.values()].flat().map((file) => [file, readFileSync(file, "utf8")]))

/** The modules that export `name` (`HttpAddress` → src/http/HttpServer.ts), its own module first. */
const exportersOf = (name: string): Array<string> => [
  ...(modules.get(name) ?? []),
  ...[...sources]
    .filter(([, text]) =>
      new RegExp(
        `export\\s+(?:declare\\s+)?(?:abstract\\s+)?(?:class|const|let|interface|type|function|enum)\\s+${name}\\b|export\\s*\\{[^}]*\\b${name}\\b`
      ).test(text)
    )
    .map(([file]) => file)
]

/** The Effect packages the document may name beside ours (`Layer.scoped`, `HttpApiDecodeError`). */
const libraries: ReadonlyArray<Record<string, unknown>> = await Promise.all([
  import("effect"),
  import("@effect/platform"),
  import("@effect/platform-node"),
  import("@effect/sql"),
  import("@effect/sql-pg")
])
const libraryExport = (name: string): unknown => libraries.find((lib) => name in lib)?.[name]
/** Their modules and what those export: `HttpApiDecodeError` is `HttpApiError.HttpApiDecodeError`. */
const libraryNames = new Set(
  libraries.flatMap((lib) =>
    Object.entries(lib).flatMap(([name, module]) => [name, ...Object.keys(Object(module))])
  )
)

const has = (value: unknown, key: string) =>
  (typeof value === "object" || typeof value === "function") && value !== null && key in value

const isLayerName = (member: string) => /^(Default|DefaultWithoutDependencies|layer\w*)$/.test(member)

/**
 * How a service's module defines a method the service returns (`Auth.check`): as a function of its
 * own, a method, or a function with a span named after it. Read from the source: the service's
 * shape is only known once it is built, or to the type checker (about 40 s).
 */
const definesMethod = (text: string, name: string, member: string) =>
  new RegExp(
    `(?:const|let|function\\*?)\\s+${member}\\b|^\\s*(?:async\\s+)?${member}\\s*\\(|Effect\\.fn(?:Untraced)?\\("${name}\\.${member}"`,
    "m"
  ).test(text)

/**
 * Whether `name.member` (and `.then`, as in `Database.PgPool.Default`) exists: an export of the
 * module `name` (`Database.layerConfig`), or a static of the class `name` wherever it is exported
 * (`OrderCache.Default`, `KafkaClient.layer`, `HttpAddress.Default`), or a method its service
 * defines (`Auth.check`; never a layer: those must be there to import).
 */
const exists = async (name: string, member: string, then: string | undefined): Promise<boolean> => {
  for (const file of exportersOf(name)) {
    const module = (await import(file)) as Record<string, unknown>
    const own = path.basename(file, ".ts") === name
    const value =
      own && has(module, member)
        ? module[member]
        : has(module[name], member)
          ? (module[name] as Record<string, unknown>)[member]
          : undefined
    if (value !== undefined) return then === undefined || has(value, then)
    if (then === undefined && !isLayerName(member) && definesMethod(sources.get(file)!, name, member))
      return true
  }
  return false
}

/** Files named alone (`Http.ts`, `order-id.js`): somewhere in the project's own folders. */
const projectFiles = new Set(
  ["src", "static", "config", "scripts", "bench", "docs", "test"].flatMap((dir) =>
    readdirSync(path.join(projectRoot, dir), { recursive: true, encoding: "utf8" }).map((entry) =>
      path.basename(entry)
    )
  )
)
const isFileName = (member: string) => /^(ts|js|mjs|json|yaml|yml|md|html|css)$/.test(member)

describe("ARCHITECTURE.md against the code", () => {
  it("every layer, service and module it names is in src/ (or an Effect package)", async () => {
    const missing: Array<string> = []
    const dotted = new Set(
      [
        ...code.matchAll(/(?<![\w$./-])([A-Z][A-Za-z0-9]*)\.([A-Za-z_$][\w$]*)(?:\.([A-Za-z_$][\w$]*))?/g)
      ].map((m) => [m[1]!, m[2]!, m[3]].join(".").replace(/\.$/, ""))
    )
    for (const named of dotted) {
      const [name, member, then] = named.split(".") as [string, string, string | undefined]
      if (then === undefined && isFileName(member)) {
        if (!projectFiles.has(named)) missing.push(`${named}: no such file`)
      } else if (exportersOf(name).length > 0) {
        if (!(await exists(name, member, then))) missing.push(`${named}: not in src/ (${name} is)`)
      } else if (libraryExport(name) !== undefined) {
        if (!has(libraryExport(name), member))
          missing.push(`${named}: no such member of the Effect packages' ${name}`)
      } else missing.push(`${named}: ${name} is neither in src/ nor an Effect package's`)
    }
    // Names alone, as a code span of their own: `ClientReads`, `OrderRejected`, `SqlError` (not
    // SQL's words: `EXPLAIN`).
    const alone = new Set(
      codeSpans.map((span) => span.trim()).filter((span) => /^[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*$/.test(span))
    )
    for (const name of alone) {
      // `Default` is the generated layer of every service, named on its own where the conventions are.
      if (name === "Default" || exportersOf(name).length > 0 || libraryNames.has(name)) continue
      missing.push(`${name}: exported by no module of src/, nor by an Effect package`)
    }
    // The document names dozens; finding none would mean this test reads nothing.
    expect(dotted.size).toBeGreaterThan(40)
    expect(missing).toEqual([])
  })

  it("every file and folder it names exists", () => {
    const paths = new Set(
      [
        ...architecture.matchAll(
          /(?<![\w./-])((?:src|test|static|config|docs|bench|scripts)\/[\w./-]*[\w/])/g
        )
      ].map((m) => m[1]!)
    )
    expect(paths.size).toBeGreaterThan(20)
    expect([...paths].filter((p) => !existsSync(path.join(projectRoot, p)))).toEqual([])
  })

  it("its layer graph has every layer src/App.ts composes", async () => {
    const graph = codeBlocks.find((block) => block.startsWith("App.layer\n"))
    expect(graph, "the layer graph: a code block that begins with App.layer").toBeDefined()
    const app = path.join(projectRoot, "src", "App.ts")
    const composed = new Set([
      // The layers of other modules it uses: `Orders.Default`, `HttpServer.layer`, `Local.layerKafka`.
      ...[...sources.get(app)!.matchAll(/\b([A-Z]\w*)\.(Default|layer\w*)\b/g)].map((m) => `${m[1]}.${m[2]}`),
      // And its own: `App.layerCore`, `App.layerHttp`…
      ...Object.keys(await import(app))
        .filter((name) => /^layer/.test(name))
        .map((name) => `App.${name}`)
    ])
    expect(composed.size).toBeGreaterThan(15)
    expect(
      [...composed].filter((layer) => !new RegExp(`(?<![\\w.])${layer.replace(".", "\\.")}\\b`).test(graph!))
    ).toEqual([])
  })
})
