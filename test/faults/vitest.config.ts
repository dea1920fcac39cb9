import { defineConfig } from "vitest/config"

/** `npm run test:faults`: the fault suite alone (three brokers, crashes, outages); it takes minutes. */
export default defineConfig({
  test: {
    root: new URL("../..", import.meta.url).pathname,
    include: ["test/faults/**/*.test.ts"],
    globalSetup: ["test/support/globalSetup.ts"],
    testTimeout: 420_000,
    hookTimeout: 300_000,
    maxWorkers: 1,
    minWorkers: 1
  }
})
