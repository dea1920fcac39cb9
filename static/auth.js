// Who is signed in (GET /auth/me), what the app bar says about it, and what the page shows when a
// request needs a sign-in or a role the person does not have. Both pages use it.
//
// Sign-in links (`a[data-sign-in]`) get their `return_to` when they are used, not when they are
// drawn: "here" is the page's current path and query, "typed" is what the page says the person
// had typed (its `returnTo`), so that signing in brings them back to it.

import { h, isRecord } from "./dom.js"
import { getJson } from "./api.js"

/** The last answer of GET /auth/me; null while unknown, or when it could not be read. */
let known = null
/** Whether this page has seen the person signed in: a refusal then means the session ended. */
let wasSignedIn = false
let checking = null

const here = () => `${window.location.pathname}${window.location.search}`
let hooks = { returnTo: here, beforeLeave: () => {} }

/** Where a sign-in starts, coming back to `returnTo` (a path and query on this site). */
export const signInUrl = (returnTo = here()) =>
  `/auth/login?${new URLSearchParams({ return_to: returnTo.startsWith("/") ? returnTo : "/" })}`

/**
 * The page's part in signing in: `returnTo()` gives the path and query that bring back what the
 * person typed; `beforeLeave()` keeps what it must before the page is left for the sign-in.
 */
export function configureSignIn({ returnTo, beforeLeave }) {
  hooks = { returnTo: returnTo ?? here, beforeLeave: beforeLeave ?? (() => {}) }
}

function normalize(body) {
  if (!isRecord(body) || (body.mode !== "none" && body.mode !== "required")) return null
  const text = (value) => (typeof value === "string" && value !== "" ? value : null)
  return {
    mode: body.mode,
    signedIn: body.signed_in === true,
    subject: text(body.subject),
    name: text(body.name),
    roles: Array.isArray(body.roles) ? body.roles.filter((r) => typeof r === "string") : [],
    signIn: body.sign_in === true
  }
}

/**
 * Asks the server who is signed in (one request at a time), redraws the app bar, and resolves to
 * the answer: { mode, signedIn, subject, name, roles, signIn }, or null when it could not be read
 * (then the page behaves as it would without sign-in and lets each request speak for itself).
 */
export function whoAmI() {
  checking ??= getJson("/auth/me", undefined, { cache: "no-store" })
    .then(normalize)
    .catch(() => null)
    .then((who) => {
      checking = null
      known = who
      if (who?.signedIn) wasSignedIn = true
      renderStatus()
      return who
    })
  return checking
}

/** The last answer of whoAmI, without asking again: null while unknown. */
export const lastKnown = () => known

/** Whether this page has seen the person signed in (so a refusal now means the session ended). */
export const hadSession = () => wasSignedIn

const holds = (who, role) => who.roles.includes(role) || (role === "agent" && who.roles.includes("operator"))

/**
 * Whether the person is known to hold `role` (or nobody needs one: open mode). Unlike access(), an
 * unknown answer is "no": for a control that changes something, shown only to whom it is for.
 */
export const knownToHold = (role) =>
  known !== null && (known.mode === "none" || (known.signedIn && holds(known, role)))

/**
 * Whether `who` (an answer of whoAmI) may do what needs `role`: "allowed", "signed-out" or
 * "forbidden". Unknown (null) is "allowed": the request is made and its answer tells.
 */
export function access(who, role) {
  if (who === null || who.mode === "none") return "allowed"
  if (!who.signedIn) return "signed-out"
  return holds(who, role) ? "allowed" : "forbidden"
}

/** Whether a person could sign in here (an OpenID provider is configured); unknown counts as yes. */
export const canSignIn = () => known === null || known.signIn

/** `text` as a sentence: trimmed, capitalised, ending with a full stop unless it has its own. */
export const sentence = (text) => {
  const trimmed = text.trim()
  if (trimmed === "") return ""
  const capital = trimmed[0].toUpperCase() + trimmed.slice(1)
  return /[.!?]$/.test(capital) ? capital : `${capital}.`
}

/**
 * Why a request was refused (403), in words: the server's message, or the role it (or the page)
 * says is needed, and the roles the person holds, e.g. "This needs the operator role. You are
 * signed in as agent."
 */
export function forbiddenText(error, role) {
  const needed = error?.requiredRole ?? role
  const why =
    sentence(error?.message ?? "") ||
    (needed ? `This needs the ${needed} role.` : "Your roles do not allow this.")
  if (!known?.signedIn) return why
  const as = known.roles.length > 0 ? `as ${known.roles.join(", ")}` : "without a role"
  return `${why} You are signed in ${as}.`
}

/** A sign-in link; `to`: "typed" (back to what the person typed) or "here" (the current page). */
export const signInLink = (text, testid, { to = "typed", className } = {}) =>
  h(
    "a",
    {
      class: className,
      href: signInUrl(to === "here" ? here() : hooks.returnTo()),
      "data-sign-in": to,
      "data-testid": testid
    },
    text
  )

function refreshLink(link) {
  link.href = signInUrl(link.dataset.signIn === "here" ? here() : hooks.returnTo())
}

// A sign-in link points at the page as it is when used (the URL and the fields change meanwhile).
for (const type of ["pointerover", "pointerdown", "focusin", "click"]) {
  document.addEventListener(
    type,
    (event) => {
      const link = event.target instanceof Element ? event.target.closest("a[data-sign-in]") : null
      if (link === null) return
      refreshLink(link)
      if (type === "click") hooks.beforeLeave()
    },
    true
  )
}

// Signing out: nothing typed is kept for later.
document.addEventListener("submit", (event) => {
  if (event.target instanceof HTMLFormElement && event.target.dataset.signOut !== undefined)
    hooks.beforeLeave({ signingOut: true })
})

const OPEN_TITLE =
  "Local mode: sign-in is off (auth.mode none), so anyone who can reach this service can see and do " +
  "everything. Meant for a service that listens on this machine only."

/** The app bar's part: who is signed in, with Sign in or Sign out; or that nobody needs to be. */
function renderStatus() {
  const status = document.getElementById("auth-status")
  if (status === null) return
  const who = known
  if (who === null) {
    status.replaceChildren()
    return
  }
  if (who.mode === "none") {
    status.replaceChildren(
      h(
        "span",
        { class: "auth-badge", title: OPEN_TITLE, "data-testid": "auth-open-badge" },
        "Open — no sign-in (this machine only)"
      )
    )
    return
  }
  if (who.signedIn) {
    const roles = who.roles.length > 0 ? who.roles.join(", ") : "no role"
    status.replaceChildren(
      h(
        "span",
        { class: "auth-who" },
        h("span", { class: "auth-name", "data-testid": "auth-name" }, who.name ?? who.subject ?? "Signed in"),
        h("span", { class: "auth-roles", "data-testid": "auth-roles" }, roles)
      ),
      // A real form: signing out works without the page's scripts (the service checks its Origin).
      h(
        "form",
        { class: "auth-signout", method: "post", action: "/auth/logout", "data-sign-out": true },
        h("button", { type: "submit", class: "button small", "data-testid": "auth-signout" }, "Sign out")
      )
    )
    return
  }
  status.replaceChildren(
    who.signIn
      ? signInLink("Sign in", "auth-signin", { to: "here", className: "button small primary" })
      : h("span", { class: "auth-none muted" }, "Not signed in")
  )
}

/**
 * A request was refused for want of a session (401): says so once for the whole page, with a link
 * that signs in and comes back to what the person typed; nothing they typed is cleared.
 */
export function sessionEnded() {
  let notice = document.querySelector("[data-testid=session-ended]")
  if (notice === null) {
    notice = h("div", { class: "auth-notice-bar", role: "alert", "data-testid": "session-ended" })
    const bar = document.querySelector(".app-bar")
    if (bar) bar.after(notice)
    else document.body.prepend(notice)
  }
  const draw = () => {
    // Redrawn only when what it says changes: an alert redrawn is announced again.
    const drawn = `${wasSignedIn} ${canSignIn()}`
    if (notice.dataset.drawn === drawn) return
    notice.dataset.drawn = drawn
    notice.replaceChildren(
      h(
        "p",
        {},
        h(
          "strong",
          {},
          wasSignedIn ? "Your session has ended — sign in again" : "You are not signed in — sign in to go on"
        ),
        " ",
        h(
          "span",
          { class: "muted" },
          canSignIn()
            ? "What you typed stays here, and signing in brings you back to it."
            : "This service has no sign-in page; ask whoever runs it for access."
        )
      ),
      canSignIn()
        ? signInLink("Sign in", "session-ended-signin", { className: "button small primary" })
        : null
    )
  }
  draw()
  notice.hidden = false
  // The app bar may still show the person as signed in: ask again, and redraw with what is known.
  whoAmI().then(draw)
}
