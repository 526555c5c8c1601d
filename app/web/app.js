// The page uses the public API only: /v1/models, /v1/index, the group routes, /img_url and
// /v1/explain/{model}. No build step, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const GROUPS = { bird: "birds", insect: "insects", plant: "plants", lookup: "species lookup" };
const ENDPOINTS = { bird: "/bird_url", insect: "/insect_url", plant: "/plant_url", lookup: "/img_url" };
const FRIENDLY = {
  too_large: "That photo is too large.",
  not_an_image: "That file is not a photo the service can read.",
  undecodable_image: "That photo is damaged or cut short.",
  invalid_url: "That address cannot be used.",
  url_not_allowed: "That address was refused.",
  upstream_error: "The website holding the photo did not hand it over.",
  upstream_timeout: "The website holding the photo was too slow.",
  rate_limited: "Too many requests for now.",
  overloaded: "The service is busy right now.",
  unauthorized: "This server needs an API key.",
  model_unavailable: "That kind of model is not available on this server.",
  index_unavailable: "The species lookup is not available on this server.",
};

let available = { groups: {}, lookup: true };
let chosenFile = null;
let answer = null; // { group, body }
let discovered = Promise.resolve();

class ServiceError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers() {
  const key = $("key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

async function discover() {
  try {
    const response = await fetch("/v1/models");
    const models = response.ok ? (await response.json()).models : [];
    for (const m of models) {
      if (m.task === "classifier" && m.group && m.state === "ready") available.groups[m.group] = m.name;
    }
    const index = await fetch("/v1/index", { headers: headers() });
    available.lookup = index.ok || index.status === 401 || index.status === 429;
  } catch (_) {
    return; // the requests themselves will say what is wrong
  }
  for (const input of document.querySelectorAll('input[name="group"]')) {
    if (input.value === "auto") continue;
    const ok = input.value === "lookup" ? available.lookup : Boolean(available.groups[input.value]);
    input.disabled = !ok;
    input.parentElement.title = ok ? "" : "not available on this server";
  }
}

function choose(file) {
  if (!file) return;
  chosenFile = file;
  $("url").value = "";
  $("chosen").textContent = `${file.name || "pasted photo"} (${Math.round(file.size / 1024)} kB)`;
}

async function ask(endpoint, url) {
  let response;
  if (chosenFile) {
    const form = new FormData();
    form.append("image", chosenFile, chosenFile.name || "photo");
    response = await fetch(endpoint, { method: "POST", body: form, headers: headers() });
  } else {
    const sep = endpoint.includes("?") ? "&" : "?";
    response = await fetch(`${endpoint}${sep}img_url=${encodeURIComponent(url)}`, { method: "POST", headers: headers() });
  }
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    const error = body && body.error ? body.error : {};
    const retry = response.headers.get("Retry-After");
    const message = (error.message || `the server answered ${response.status}`) + (retry ? ` (retry in ${retry} s)` : "");
    throw new ServiceError(response.status, error.code, message);
  }
  return response;
}

function best(answers) {
  // Confident answers first, then the highest top score.
  const rank = (a) => [a.body.no_match ? 0 : 1, a.body.results.length ? a.body.results[0].score : 0];
  return answers.slice().sort((x, y) => {
    const [a, b] = [rank(x), rank(y)];
    return b[0] - a[0] || b[1] - a[1];
  })[0];
}

function percent(score) {
  return score >= 0.995 ? "100%" : score < 0.01 ? "<1%" : `${Math.round(score * 100)}%`;
}

function gbifLink(key, text) {
  const a = document.createElement("a");
  a.href = `https://www.gbif.org/species/${encodeURIComponent(key)}`;
  a.textContent = text;
  a.rel = "noopener";
  a.target = "_blank";
  return a;
}

function nameNodes(result) {
  const span = document.createElement("span");
  span.className = "names";
  const main = document.createElement("strong");
  main.textContent = result.common_name || result.scientific_name;
  span.append(main);
  if (result.common_name) {
    const sci = document.createElement("em");
    sci.textContent = result.scientific_name;
    span.append(sci);
  }
  if (result.taxonomy && result.taxonomy.usageKey) span.append(gbifLink(result.taxonomy.usageKey, "GBIF"));
  return span;
}

function spoken(result) {
  // "Black-capped Chickadee (Poecile atricapillus)", the scientific name in italics.
  const sci = document.createElement("em");
  sci.textContent = result.scientific_name;
  return result.common_name ? [`${result.common_name} (`, sci, ")"] : [sci];
}

function render(chosen, others, photoSrc) {
  answer = chosen;
  const body = chosen.body;
  const top = body.results[0];
  $("photo").src = photoSrc;
  $("photo").hidden = false;
  $("overlay").hidden = true;
  $("overlay").removeAttribute("src");
  const verdict = $("verdict");
  verdict.textContent = "";
  if (!top) {
    verdict.textContent = "No species found";
  } else if (body.no_match) {
    const why = body.no_match_reason === "background"
      ? `The ${GROUPS[chosen.group] || "model"} model sees none of its species here.`
      : "Not confident.";
    verdict.append(`${why} Best guess: `, ...spoken(top), ` (${percent(top.score)})`);
  } else {
    verdict.append(...spoken(top), ` ${percent(top.score)}`);
  }
  const rollup = $("rollup");
  rollup.textContent = "";
  rollup.hidden = !body.rollup;
  if (body.rollup) {
    rollup.append(`Not sure of the species, but it is at least ${body.rollup.rank.toLowerCase()} `);
    const name = document.createElement("em");
    name.textContent = body.rollup.name;
    rollup.append(name, ` (${percent(body.rollup.score)})`);
    if (body.rollup.usageKey) rollup.append(" ", gbifLink(body.rollup.usageKey, "GBIF"));
  }
  const model = body.model || (body.index ? `index of ${body.index.n_species} species` : "");
  $("source").textContent = `Answered by ${model} (${GROUPS[chosen.group]}).`;
  const list = $("results");
  list.textContent = "";
  for (const result of body.results) {
    const li = document.createElement("li");
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("role", "img");
    bar.setAttribute("aria-label", `score ${percent(result.score)}`);
    const fill = document.createElement("span");
    fill.style.width = `${Math.max(1, Math.round(result.score * 100))}%`;
    bar.append(fill);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = ` ${percent(result.score)}`;
    const names = nameNodes(result);
    names.append(score);
    li.append(names, bar);
    list.append(li);
  }
  $("explain").hidden = chosen.group === "lookup";
  $("explain").textContent = "Show where the model looked";
  $("others").textContent = others.length
    ? "Also asked: " + others.map((o) => o.body.results.length
        ? `${GROUPS[o.group]}: ${o.body.results[0].common_name || o.body.results[0].scientific_name} (${percent(o.body.results[0].score)})`
        : `${GROUPS[o.group]}: nothing`).join("; ")
    : "";
  $("answer").hidden = false;
}

function showError(error) {
  const box = $("error");
  const friendly = error.code && FRIENDLY[error.code];
  box.textContent = friendly ? `${friendly} ${error.message}` : error.message;
  box.hidden = false;
  if (error.code === "unauthorized") {
    $("key-row").hidden = false;
    $("key").focus();
  }
}

async function identify(event) {
  event.preventDefault();
  const url = $("url").value.trim();
  $("error").hidden = true;
  if (!chosenFile && !url) {
    showError(new ServiceError(0, null, "Choose a photo or paste its address first."));
    return;
  }
  await discovered;
  const group = document.querySelector('input[name="group"]:checked').value;
  const groups = group === "auto"
    ? [...Object.keys(available.groups).filter((g) => g in ENDPOINTS), ...(available.lookup ? ["lookup"] : [])]
    : [group];
  $("go").disabled = true;
  $("status").textContent = group === "auto" ? `Asking ${groups.map((g) => GROUPS[g]).join(", ")}…` : "Identifying…";
  try {
    const settled = await Promise.allSettled(groups.map(async (g) => {
      const response = await ask(ENDPOINTS[g], url);
      return { group: g, body: await response.json() };
    }));
    const answers = settled.filter((s) => s.status === "fulfilled").map((s) => s.value);
    if (!answers.length) throw settled.find((s) => s.status === "rejected").reason;
    const chosen = best(answers);
    render(chosen, answers.filter((a) => a !== chosen), chosenFile ? URL.createObjectURL(chosenFile) : url);
    $("status").textContent = "";
  } catch (error) {
    $("status").textContent = "";
    $("answer").hidden = true;
    showError(error instanceof ServiceError ? error : new ServiceError(0, null, `The service could not be reached: ${error.message}`));
  } finally {
    $("go").disabled = false;
  }
}

async function explain() {
  const overlay = $("overlay");
  if (!overlay.hidden) {
    overlay.hidden = true;
    $("photo").hidden = false;
    $("explain").textContent = "Show where the model looked";
    return;
  }
  if (!overlay.getAttribute("src")) {
    $("explain").disabled = true;
    $("status").textContent = "Looking at what the model looked at (a few seconds)…";
    try {
      const response = await ask(`/v1/explain/${encodeURIComponent(answer.body.model)}`, $("url").value.trim());
      overlay.src = URL.createObjectURL(await response.blob());
    } catch (error) {
      showError(error);
      return;
    } finally {
      $("status").textContent = "";
      $("explain").disabled = false;
    }
  }
  overlay.hidden = false;
  $("photo").hidden = true;
  $("explain").textContent = "Show the photo";
}

function wire() {
  const drop = $("drop");
  $("file").addEventListener("change", () => choose($("file").files[0]));
  $("url").addEventListener("input", () => {
    if ($("url").value) {
      chosenFile = null;
      $("file").value = "";
      $("chosen").textContent = "";
    }
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => { e.preventDefault(); choose(e.dataTransfer.files[0]); });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData ? e.clipboardData.files : [])].find((f) => f.type.startsWith("image/"));
    if (item) choose(item);
  });
  $("ask").addEventListener("submit", identify);
  $("explain").addEventListener("click", explain);
  discovered = discover();
}

wire();
