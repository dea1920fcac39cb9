# syntax=docker/dockerfile:1
# The order service: Node 24 (LTS), TypeScript bundled by esbuild, run as a non-root user.

FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only; PostgreSQL and Kafka come from the compose stack. Node 24's npm (11)
# runs install scripts as package.json's allowScripts says: esbuild's, which the build needs, runs.
RUN npm ci --omit=dev --no-audit --no-fund

FROM deps AS build
COPY scripts/build.mjs ./scripts/
COPY src ./src
RUN npm run build

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production \
    CONFIG_FILE=config/config.docker.yaml
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY --from=build /app/dist ./dist
COPY static ./static
COPY config ./config
USER node
EXPOSE 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8081/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# One process, so SIGTERM from `docker stop` reaches the service and it shuts down gracefully.
CMD ["node", "dist/main.js"]
