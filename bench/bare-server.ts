/** The floor for HTTP: bare node:http returning order bodies from a Map, nothing else. */
import { createServer } from "node:http"
import { readFileSync } from "node:fs"

const [port, bodiesFile] = process.argv.slice(2)
const bodies = new Map<string, Buffer>(
  Object.entries(JSON.parse(readFileSync(bodiesFile!, "utf8")) as Record<string, string>).map(([k, v]) => [
    k,
    Buffer.from(v)
  ])
)

createServer((req, res) => {
  const url = req.url ?? "/"
  if (url === "/healthz") return void res.end("ok")
  const body = url.startsWith("/order/") ? bodies.get(decodeURIComponent(url.slice(7))) : undefined
  if (body === undefined) {
    res.writeHead(404).end()
    return
  }
  res.writeHead(200, { "content-type": "application/json", "content-length": body.length })
  res.end(body)
}).listen(Number(port), "127.0.0.1")
