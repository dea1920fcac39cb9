/**
 * Headers every response carries. The Content-Security-Policy lets a page load and run only what
 * the service itself serves; a page that must run inline code names exactly that code by its hash.
 */

/** What a page may run or style besides the service's own files: CSP sources such as `'sha256-…'`. */
export interface InlineAllowance {
  readonly scripts?: ReadonlyArray<string>
  readonly styles?: ReadonlyArray<string>
}

export const contentSecurityPolicy = (allow: InlineAllowance = {}): string =>
  [
    "default-src 'self'",
    // data: for small images drawn inline in the stylesheets.
    "img-src 'self' data:",
    ["style-src 'self'", ...(allow.styles ?? [])].join(" "),
    ["script-src 'self'", ...(allow.scripts ?? [])].join(" "),
    "connect-src 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "form-action 'self'"
  ].join("; ")

export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": contentSecurityPolicy(),
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin"
}
