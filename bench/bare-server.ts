/**
 * Floors for HTTP: bare `node:http` doing the least a server can do for `GET /order/{uid}`, so that
 * the service's figures can be read against what Node itself reaches on this machine.
 *
 *   bare-server.ts <port> map <bodies.json>      bodies from a Map, two headers (the floor for hits)
 *   bare-server.ts <port> headers <bodies.json>  the same, with the service's response headers
 *   bare-server.ts <port> pg <database url>      one read per request: the statement a cache miss
 *                                                runs, named, on a `pg` pool of 10 (the floor for misses)
 */
import { readFileSync } from "node:fs"
import { createServer, type ServerResponse } from "node:http"
import pg from "pg"
import { SECURITY_HEADERS } from "../src/http/SecurityHeaders.ts"

const [port, mode, source] = process.argv.slice(2)

const SECURITY = Object.entries(SECURITY_HEADERS).flat()

const readBodies = () =>
  new Map<string, Buffer>(
    Object.entries(JSON.parse(readFileSync(source!, "utf8")) as Record<string, string>).map(([k, v]) => [
      k,
      Buffer.from(v)
    ])
  )

const notFound = (res: ServerResponse) => void res.writeHead(404).end()

type Answer = (uid: string, res: ServerResponse) => void

const answers: Record<string, () => Answer> = {
  map: () => {
    const bodies = readBodies()
    return (uid, res) => {
      const body = bodies.get(uid)
      if (body === undefined) return notFound(res)
      res.writeHead(200, { "content-type": "application/json", "content-length": body.length })
      res.end(body)
    }
  },
  headers: () => {
    const bodies = readBodies()
    // What the service sends with a hit; the ETag is as long as the service's (a base64url SHA-256).
    const etag = `"${"x".repeat(43)}"`
    return (uid, res) => {
      const body = bodies.get(uid)
      if (body === undefined) return notFound(res)
      res.writeHead(200, [
        ...SECURITY,
        "content-type",
        "application/json",
        "content-length",
        String(body.length),
        "etag",
        etag,
        "cache-control",
        "private, max-age=60"
      ])
      res.end(body)
    }
  },
  pg: () => {
    const pool = new pg.Pool({ connectionString: source, max: 10 })
    const text = `SELECT o.document, translate(encode(o.content_hash, 'base64'), '+/=', '-_') AS digest
      FROM orders o WHERE o.order_uid = $1`
    return (uid, res) =>
      pool.query<{ document: string }>({ name: "order-by-uid", text, values: [uid] }, (error, result) => {
        const row = error ? undefined : result.rows[0]
        if (row === undefined) return notFound(res)
        res.writeHead(200, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(row.document)
        })
        res.end(row.document)
      })
  }
}

const answer = answers[mode!]?.()
if (answer === undefined) throw new Error(`mode: one of ${Object.keys(answers).join(", ")}`)

createServer((req, res) => {
  const url = req.url ?? "/"
  if (url === "/healthz") return void res.end("ok")
  if (!url.startsWith("/order/")) return notFound(res)
  answer(decodeURIComponent(url.slice(7)), res)
}).listen(Number(port), "127.0.0.1")

// An orderly exit on SIGINT, so that a --cpu-prof profile is written.
process.on("SIGINT", () => process.exit(0))
