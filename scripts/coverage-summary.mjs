/**
 * `node scripts/coverage-summary.mjs`: line and branch coverage per folder of `src/`, and in all,
 * from the last coverage run (`npm run coverage` writes `coverage/coverage-summary.json`, one entry
 * per file, and runs this). Files directly in `src/` count as `src/`; deeper folders count with
 * their top one (`src/local/kafka/` is `src/local/`).
 */
import { readFileSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
const summaryFile = path.join(root, "coverage", "coverage-summary.json")

let summary
try {
  summary = JSON.parse(readFileSync(summaryFile, "utf8"))
} catch (error) {
  process.stderr.write(
    `coverage-summary: cannot read ${summaryFile} (run npm run coverage first): ${error.message}\n`
  )
  process.exit(1)
}

const folderOf = (file) => {
  const parts = path.relative(root, file).split(path.sep)
  return parts.length > 2 ? `${parts[0]}/${parts[1]}` : parts[0]
}

const empty = () => ({ files: 0, lines: { covered: 0, total: 0 }, branches: { covered: 0, total: 0 } })
const add = (into, entry) => {
  into.files++
  for (const key of ["lines", "branches"]) {
    into[key].covered += entry[key].covered
    into[key].total += entry[key].total
  }
}

const folders = new Map()
const total = empty()
for (const [file, entry] of Object.entries(summary)) {
  if (file === "total") continue
  const folder = folderOf(file)
  if (!folders.has(folder)) folders.set(folder, empty())
  add(folders.get(folder), entry)
  add(total, entry)
}

const percent = ({ covered, total }) => (total === 0 ? "—" : `${((100 * covered) / total).toFixed(1)} %`)
const rows = [...folders.entries()]
  .sort(([a], [b]) => a.localeCompare(b))
  .map(([folder, s]) => [`\`${folder}/\``, String(s.files), percent(s.lines), percent(s.branches)])
rows.push(["**total**", String(total.files), `**${percent(total.lines)}**`, `**${percent(total.branches)}**`])

// A Markdown table, aligned as prettier would: readable here and ready to paste.
const header = ["folder", "files", "lines", "branches"]
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
const line = (cells) =>
  `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ")} |`
const rule = `| ${widths.map((w, i) => (i === 0 ? "-".repeat(w) : "-".repeat(w - 1) + ":")).join(" | ")} |`
process.stdout.write([line(header), rule, ...rows.map(line)].join("\n") + "\n")
process.stdout.write(
  `Lines ${total.lines.covered} of ${total.lines.total}, branches ${total.branches.covered} of ${total.branches.total}; per file: coverage/index.html\n`
)
