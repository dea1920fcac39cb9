/**
 * Where a CPU profile's time went: its share per part of the process (idle, garbage collection,
 * Node's own code, each library, the service's code) and the functions with the most self time.
 * Code bundled into `dist/` is traced back to its source through the bundle's source maps.
 *
 *   BENCH_NODE_FLAGS="--cpu-prof --cpu-prof-dir=bench/results/profiles" npm run bench -- http
 *   node --import tsx bench/profile-summary.ts bench/results/profiles/<file>.cpuprofile [top]
 */
import { existsSync, readFileSync } from "node:fs"
import { SourceMap } from "node:module"
import { fileURLToPath } from "node:url"

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
  readonly columnNumber: number
}
interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
}
interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const [file, topArg] = process.argv.slice(2)
if (file === undefined) throw new Error("usage: profile-summary.ts <file.cpuprofile> [top]")
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile

const maps = new Map<string, SourceMap | undefined>()
const sourceMapOf = (url: string): SourceMap | undefined => {
  if (!maps.has(url)) {
    let map: SourceMap | undefined
    try {
      const mapFile = `${fileURLToPath(url)}.map`
      if (existsSync(mapFile)) map = new SourceMap(JSON.parse(readFileSync(mapFile, "utf8")))
    } catch {
      map = undefined
    }
    maps.set(url, map)
  }
  return maps.get(url)
}

/** The source file and line a frame's code came from. */
const origin = (frame: CallFrame): string => {
  if (frame.url === "") return ""
  const map = frame.url.startsWith("file:") ? sourceMapOf(frame.url) : undefined
  const entry = map?.findEntry(frame.lineNumber, frame.columnNumber)
  if (entry !== undefined && "originalSource" in entry && entry.originalSource !== undefined) {
    return `${entry.originalSource}:${entry.originalLine + 1}`
  }
  return `${frame.url}:${frame.lineNumber + 1}`
}

const part = (frame: CallFrame, source: string): string => {
  if (frame.url === "") {
    if (frame.functionName === "(idle)") return "idle"
    if (frame.functionName === "(garbage collector)") return "garbage collection"
    if (frame.functionName === "(program)") return "(program): V8 and native code outside JavaScript"
    return "native"
  }
  if (source.startsWith("node:")) return "Node's own code (http, net, streams…)"
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(source)?.[1]
  if (pkg !== undefined) return pkg
  if (/\/src\//.test(source)) return "the service (src/)"
  return "other"
}

const byNode = new Map(profile.nodes.map((n) => [n.id, n]))
const selfByFunction = new Map<string, number>()
const selfByPart = new Map<string, number>()
let total = 0
const described = new Map<number, { readonly fn: string; readonly part: string }>()
profile.samples.forEach((id, i) => {
  const us = profile.timeDeltas[i] ?? 0
  total += us
  let d = described.get(id)
  if (d === undefined) {
    const frame = byNode.get(id)!.callFrame
    const source = origin(frame)
    d = {
      fn: `${frame.functionName || "(anonymous)"} ${source.replace(/^.*node_modules\//, "")}`,
      part: part(frame, source)
    }
    described.set(id, d)
  }
  selfByFunction.set(d.fn, (selfByFunction.get(d.fn) ?? 0) + us)
  selfByPart.set(d.part, (selfByPart.get(d.part) ?? 0) + us)
})

const pct = (us: number) => `${((100 * us) / total).toFixed(1).padStart(5)} %`
console.log(`${file}: ${(total / 1e6).toFixed(1)} s sampled\n`)
console.log("self time by part of the process")
for (const [name, us] of [...selfByPart].sort((a, b) => b[1] - a[1])) console.log(`  ${pct(us)}  ${name}`)
console.log(`\nfunctions with the most self time`)
for (const [name, us] of [...selfByFunction].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg ?? 30))) {
  console.log(`  ${pct(us)}  ${name}`)
}
