import { configDefaults, defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The fault suite runs on its own (`npm run test:faults`): minutes of crashes and outages.
    exclude: [...configDefaults.exclude, "test/faults/**"],
    globalSetup: ["test/support/globalSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    // Integration tests start real servers (PostgreSQL, Kafka); two cores cannot run many at once.
    maxWorkers: 2,
    minWorkers: 1,
    // Off unless asked for (`npm run coverage`, i.e. `vitest run --coverage`): V8's own counters, no
    // instrumented build. Only code run in the test workers counts, not the services tests start
    // as processes of their own.
    coverage: {
      provider: "v8",
      include: ["src/**/*.ts"],
      reporter: ["json-summary", "html"],
      reportsDirectory: "coverage",
      // Lines and branches read from the syntax tree (vitest 4's default): a file no test loads
      // counts all of its branches as missed, and comments and blank lines are not lines.
      experimentalAstAwareRemapping: true,
      // A failed test still leaves the figures: `node scripts/coverage-summary.mjs` prints them.
      reportOnFailure: true
    }
  }
})
