/**
 * Where a process's event-loop stalls come from, preloaded into it:
 *
 *   BENCH_NODE_FLAGS="--import ./bench/loop-stalls.mjs" npm run bench -- mixed
 *
 * Every 2 ms a timer notes how late it fired and how much CPU the process used meanwhile. A stall
 * (late by more than 10 ms) with about as much CPU as wall time is the thread busy with work of
 * its own (or garbage collection); one with little CPU is the process waiting for a core that
 * other processes hold. On exit the stalls are written to bench/results/loop-stalls-<pid>.json,
 * which the benchmark summarises.
 */
import { mkdirSync, writeFileSync } from "node:fs"
import path from "node:path"

const INTERVAL_MS = 2
const STALL_MS = INTERVAL_MS + 10
const stalls = []
let last = performance.now()
let lastCpu = process.cpuUsage()
setInterval(() => {
  const now = performance.now()
  const cpu = process.cpuUsage()
  const wallMs = now - last
  if (wallMs > STALL_MS) {
    const cpuMs = (cpu.user - lastCpu.user + cpu.system - lastCpu.system) / 1000
    stalls.push({ at: Date.now(), wallMs: Math.round(wallMs), cpuMs: Math.round(cpuMs) })
  }
  last = now
  lastCpu = cpu
}, INTERVAL_MS).unref()

process.on("exit", () => {
  const dir = path.resolve("bench/results")
  mkdirSync(dir, { recursive: true })
  writeFileSync(path.join(dir, `loop-stalls-${process.pid}.json`), JSON.stringify(stalls))
})
