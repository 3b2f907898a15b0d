// The credential (sessionStorage), every call to the gateway, and the alert region that
// shows what a failed call said.

const TOKEN_KEY = "famous.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Take a credential handed over once in the address (`#token=...`), then remove it. */
export function tokenFromFragment() {
  const match = /^#token=([^&]+)/.exec(window.location.hash);
  if (!match) return false;
  setToken(decodeURIComponent(match[1]));
  history.replaceState(null, "", window.location.pathname + window.location.search);
  return true;
}

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function headers(extra = {}) {
  const result = { ...extra };
  const credential = token();
  if (credential) result.Authorization = `Bearer ${credential}`;
  return result;
}

/** The API's own message for a failed answer (`error.message`), else its status line. */
export async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  let code = null;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) {
      message = body.error.message;
      code = body.error.code || null;
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, message, code);
}

export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, headers: headers(), signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401 && path !== "/famous/api/session") {
      window.dispatchEvent(new CustomEvent("famous:credential-refused", { detail: error }));
    }
    throw error;
  }
  return response.status === 204 ? null : response.json();
}

export function modelPath(name) {
  return encodeURIComponent(name);
}

// -- the alert region ------------------------------------------------------------------

let hideTimer = null;

export function showError(error) {
  const region = document.getElementById("alert");
  const text = region.querySelector(".alert-text");
  text.textContent = error instanceof Error ? error.message : String(error);
  region.hidden = false;
  clearTimeout(hideTimer);
}

export function clearError() {
  const region = document.getElementById("alert");
  region.hidden = true;
  region.querySelector(".alert-text").textContent = "";
}

/** Run an action; a failure shows its message in the alert region instead of throwing. */
export async function attempt(action) {
  try {
    return await action();
  } catch (error) {
    if (error && error.name === "AbortError") return undefined;
    showError(error);
    return undefined;
  }
}
