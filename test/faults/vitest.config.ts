import { defineConfig } from "vitest/config"

/**
 * `npm run test:faults`: the fault suite alone. It starts its own three-broker cluster and
 * PostgreSQL (no global setup: the single broker of `npm test` would only take memory and CPU).
 * Cases run one after another; each lasts minutes on a small machine.
 */
export default defineConfig({
  test: {
    root: new URL("../..", import.meta.url).pathname,
    include: ["test/faults/**/*.test.ts"],
    testTimeout: 900_000,
    hookTimeout: 300_000,
    fileParallelism: false,
    maxWorkers: 1,
    minWorkers: 1,
    reporters: ["verbose"]
  }
})
