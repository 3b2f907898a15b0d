// The page's shell: theme, login, and switching between the sections.

import { api, attempt, clearError, setToken, token, tokenFromFragment } from "./api.js";
import * as chat from "./chat.js";
import * as deployments from "./deployments.js";
import * as hub from "./hub.js";
import * as machine from "./machine.js";
import * as models from "./models.js";

const VIEWS = { chat, models, deployments, hub, machine };
const THEME_KEY = "famous.theme";
let current = null;

function applyTheme(theme) {
  const dark = theme
    ? theme === "dark"
    : window.matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.dataset.theme = dark ? "dark" : "light";
  const button = document.getElementById("theme-toggle");
  button.setAttribute("aria-pressed", String(dark));
  button.textContent = dark ? "Light theme" : "Dark theme";
}

function toggleTheme() {
  const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  localStorage.setItem(THEME_KEY, next);
  applyTheme(next);
}

function showView(name) {
  if (current && VIEWS[current] && VIEWS[current].leave) VIEWS[current].leave();
  for (const section of document.querySelectorAll(".view")) {
    section.hidden = section.id !== `view-${name}`;
  }
  for (const tab of document.querySelectorAll(".tab")) {
    if (tab.dataset.view === name) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  current = name;
  clearError();
  if (VIEWS[name]) attempt(() => VIEWS[name].enter());
}

function loggedIn(yes) {
  document.getElementById("nav").hidden = !yes;
  document.getElementById("logout").hidden = !yes;
  showView(yes ? "chat" : "login");
  if (!yes) document.getElementById("login-token").focus();
}

async function checkSession() {
  if (!token()) return false;
  try {
    await api("/famous/api/session");
    return true;
  } catch (error) {
    if (error.status === 401 || error.status === 403) {
      setToken(null);
      return error;
    }
    throw error;
  }
}

async function login(event) {
  event.preventDefault();
  const input = document.getElementById("login-token");
  const problem = document.getElementById("login-error");
  problem.hidden = true;
  setToken(input.value.trim());
  const ok = await attempt(checkSession);
  if (ok === true) {
    input.value = "";
    loggedIn(true);
  } else if (ok instanceof Error) {
    problem.textContent = ok.message;
    problem.hidden = false;
    input.focus();
  } else {
    problem.textContent = "enter the admin token or an API key";
    problem.hidden = false;
  }
}

function start() {
  applyTheme(localStorage.getItem(THEME_KEY));
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    applyTheme(localStorage.getItem(THEME_KEY));
  });
  document.getElementById("theme-toggle").addEventListener("click", toggleTheme);
  document.getElementById("login-form").addEventListener("submit", login);
  document.getElementById("logout").addEventListener("click", () => {
    setToken(null);
    loggedIn(false);
  });
  document.querySelector(".alert-close").addEventListener("click", clearError);
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => showView(tab.dataset.view));
  }
  for (const view of Object.values(VIEWS)) view.init();
  tokenFromFragment();
  window.addEventListener("famous:credential-refused", () => {
    setToken(null); // the gateway was restarted with another token, or the key changed
    loggedIn(false);
  });
  window.addEventListener("hashchange", () => {
    if (tokenFromFragment()) attempt(resume);
  });
  attempt(resume);
}

/** Log in with the stored credential, if it still works; else show the login form. */
async function resume() {
  const ok = await checkSession();
  loggedIn(ok === true);
  if (ok instanceof Error) {
    const problem = document.getElementById("login-error");
    problem.textContent = ok.message;
    problem.hidden = false;
  }
}

start();
