// The page uses the public API only: /v1/models, /v1/index, /v1/identify ("Not sure": every
// model in one request), the group routes, /img_url and /v1/explain/{model}. No build step, no
// dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const GROUPS = { bird: "birds", insect: "insects", plant: "plants", lookup: "species lookup" };
const ENDPOINTS = { bird: "/bird_url", insect: "/insect_url", plant: "/plant_url", lookup: "/img_url" };
const MAX_PHOTOS = 5; // /v1/identify's limit: photos of one organism
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
const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
  "September", "October", "November", "December"];

let available = { groups: {}, lookup: true };
let photos = []; // [{ file, url }]: url is the file's object URL, for the thumbnail
let answer = null; // { model, files, url }: what "Show where the model looked" explains
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

function groupName(group, model) {
  return group ? GROUPS[group] || group : model;
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

// --- The photos: up to 5 for "Not sure", the first for the other choices ---------------------

function currentGroup() {
  return document.querySelector('input[name="group"]:checked').value;
}

function addPhotos(files) {
  const list = [...(files || [])];
  if (!list.length) return;
  let left = 0;
  for (const file of list) {
    if (photos.length >= MAX_PHOTOS) {
      left += 1;
      continue;
    }
    photos.push({ file, url: URL.createObjectURL(file) });
  }
  $("url").value = "";
  showPhotos(left ? `Up to ${MAX_PHOTOS} photos: ${left} left out.` : "");
}

function removePhoto(number) {
  const [gone] = photos.splice(number, 1);
  if (gone) URL.revokeObjectURL(gone.url);
  showPhotos("");
  const buttons = $("thumbs").querySelectorAll("button");
  (buttons[Math.min(number, buttons.length - 1)] || $("file")).focus();
}

function clearPhotos() {
  for (const p of photos) URL.revokeObjectURL(p.url);
  photos = [];
  $("file").value = "";
  showPhotos("");
}

function showPhotos(left) {
  const kB = (file) => `${Math.round(file.size / 1024)} kB`;
  const label = (p, i) => `${p.file.name || `pasted photo ${i + 1}`} (${kB(p.file)})`;
  $("chosen").textContent = photos.length === 1
    ? label(photos[0], 0)
    : photos.length ? `${photos.length} photos: ${photos.map(label).join(", ")}` : "";
  const thumbs = $("thumbs");
  thumbs.textContent = "";
  photos.forEach((p, i) => {
    const li = document.createElement("li");
    const img = document.createElement("img");
    img.src = p.url;
    img.alt = `Photo ${i + 1}: ${p.file.name || "pasted photo"}`;
    img.addEventListener("error", () => img.classList.add("unreadable"));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove photo ${i + 1} (${p.file.name || "pasted photo"})`);
    remove.title = "Remove this photo";
    remove.addEventListener("click", () => removePhoto(i));
    li.append(img, remove);
    thumbs.append(li);
  });
  thumbs.hidden = !photos.length;
  $("drop-text").textContent = photos.length >= MAX_PHOTOS
    ? `${MAX_PHOTOS} photos: the most one answer uses`
    : photos.length ? `Drop or paste more photos of the same one (up to ${MAX_PHOTOS})` : "Drop a photo here";
  const notes = [left];
  if (photos.length > 1 && currentGroup() !== "auto") {
    notes.push('Only the first photo is sent to a single kind of model; "Not sure" uses them all.');
  }
  $("photos-note").textContent = notes.filter(Boolean).join(" ");
  $("photos-note").hidden = !$("photos-note").textContent;
}

// --- Where and when ----------------------------------------------------------------------------

function readWhere() {
  const [lat, lon] = [$("lat"), $("lon")];
  if (lat.validity.badInput || lon.validity.badInput) {
    throw new ServiceError(0, null, "Latitude and longitude are numbers in degrees, e.g. 53.8 and -1.55.");
  }
  const where = { lat: lat.value.trim(), lon: lon.value.trim(), date: $("date").value };
  if (Boolean(where.lat) !== Boolean(where.lon)) {
    throw new ServiceError(0, null, "Give both latitude and longitude, or neither.");
  }
  return where;
}

function locate() {
  const button = $("locate");
  button.disabled = true;
  $("status").textContent = "Finding where you are…";
  navigator.geolocation.getCurrentPosition(
    (position) => {
      $("lat").value = position.coords.latitude.toFixed(4);
      $("lon").value = position.coords.longitude.toFixed(4);
      const accuracy = position.coords.accuracy;
      $("status").textContent = `Location set${accuracy ? ` (to within ${Math.round(accuracy)} m)` : ""}.`;
      button.disabled = false;
    },
    (error) => {
      $("status").textContent = "";
      button.disabled = false;
      const why = error.code === 1 ? "the browser was not allowed to tell it" : error.message || "unknown";
      showError(new ServiceError(0, null, `Your location is not available: ${why}. Type it in instead.`));
    },
    { enableHighAccuracy: false, timeout: 15000, maximumAge: 600000 },
  );
}

// --- Requests ----------------------------------------------------------------------------------

async function send(endpoint, { files = [], url = "", params = {} }) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value) query.append(name, value);
  const init = { method: "POST", headers: headers() };
  if (files.length) {
    const form = new FormData();
    for (const file of files) form.append("image", file, file.name || "photo");
    init.body = form;
  } else {
    query.append("img_url", url);
  }
  const search = query.toString();
  const response = await fetch(search ? `${endpoint}?${search}` : endpoint, init);
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    const error = body && body.error ? body.error : {};
    const retry = response.headers.get("Retry-After");
    const message = (error.message || `the server answered ${response.status}`) + (retry ? ` (retry in ${retry} s)` : "");
    throw new ServiceError(response.status, error.code, message);
  }
  return response;
}

// --- Showing an answer -------------------------------------------------------------------------

function percent(score) {
  return score >= 0.995 ? "100%" : score < 0.01 ? "<1%" : `${Math.round(score * 100)}%`;
}

// A taxon's page in the taxonomy its key is of: GBIF's (link-gbif; files without a source are
// GBIF's) or NCBI's (the shipped offline taxonomy), whose taxids are no GBIF keys.
function taxonLink(key, source) {
  const a = document.createElement("a");
  const ncbi = source === "ncbi";
  a.href = ncbi
    ? `https://www.ncbi.nlm.nih.gov/Taxonomy/Browser/wwwtax.cgi?id=${encodeURIComponent(key)}`
    : `https://www.gbif.org/species/${encodeURIComponent(key)}`;
  a.textContent = ncbi ? "NCBI" : "GBIF";
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
  const taxon = result.taxonomy;
  if (taxon && taxon.usageKey) span.append(taxonLink(taxon.usageKey, taxon.source));
  return span;
}

function spoken(result) {
  // "Black-capped Chickadee (Poecile atricapillus)", the scientific name in italics.
  const sci = document.createElement("em");
  sci.textContent = result.scientific_name;
  return result.common_name ? [`${result.common_name} (`, sci, ")"] : [sci];
}

function showPhotosSent(files, url) {
  const sources = files.length ? files.map((f) => URL.createObjectURL(f)) : [url];
  $("photo").src = sources[0];
  $("photo").hidden = false;
  $("overlay").hidden = true;
  $("overlay").removeAttribute("src");
  const strip = $("strip");
  strip.textContent = "";
  sources.slice(1).forEach((src, i) => {
    const img = document.createElement("img");
    img.src = src;
    img.alt = `Photo ${i + 2} you sent`;
    strip.append(img);
  });
  strip.hidden = sources.length < 2;
}

function showRollup(rollup) {
  const box = $("rollup");
  box.textContent = "";
  box.hidden = !rollup;
  if (!rollup) return;
  box.append(`Not sure of the species, but it is at least ${rollup.rank.toLowerCase()} `);
  const name = document.createElement("em");
  name.textContent = rollup.name;
  box.append(name, ` (${percent(rollup.score)})`);
  if (rollup.usageKey) box.append(" ", taxonLink(rollup.usageKey, rollup.source));
}

function showResults(results, photoCount, nearby = false) {
  const list = $("results");
  list.textContent = "";
  for (const result of results) {
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
    const notes = [];
    if (photoCount > 1 && result.per_photo) notes.push(`per photo: ${result.per_photo.map(percent).join(" · ")}`);
    if (nearby && result.geo_records != null) {
      notes.push(`${result.geo_records} GBIF record${result.geo_records === 1 ? "" : "s"} near there`);
    }
    if (notes.length) {
      const extra = document.createElement("span");
      extra.className = "hint per-photo";
      extra.textContent = notes.join("; ");
      li.append(extra);
    }
    list.append(li);
  }
}

// What the listed scores are: under the list, as each route gives them.
const SCORES = {
  identify: "Scores are calibrated probabilities (temperature-scaled, comparable across models).",
  classifier: "Scores are the model's own probabilities (not calibrated).",
  lookup: "Scores are each species' share of the vote of the most similar indexed photos.",
};

function showScores(kind, results) {
  $("scores").textContent = SCORES[kind];
  $("scores").hidden = !results.length;
}

// Not worth listing: a probability of 0, or under 1/1000 of the best one (noise, not a candidate).
function worthListing(results) {
  const best = Math.max(0, ...results.map((r) => r.score));
  return results.filter((r) => r.score > 0 && r.score >= best / 1000);
}

function clearObservation() {
  for (const id of ["why", "geo", "models"]) {
    $(id).textContent = "";
    $(id).hidden = true;
  }
}

function showExplain(model, files, url) {
  const label = files.length > 1 ? "Show where the model looked (photo 1)" : "Show where the model looked";
  answer = model ? { model, files: files.slice(0, 1), url, label } : null;
  $("explain").hidden = !model;
  $("explain").textContent = label;
}

// One model's answer (bird, insect, plant or the lookup), as the single routes give it.
function renderSingle(group, body, files, url) {
  const top = body.results[0];
  showPhotosSent(files, url);
  clearObservation();
  const verdict = $("verdict");
  verdict.textContent = "";
  if (!top) {
    verdict.textContent = "No species found";
  } else if (body.no_match) {
    const why = body.no_match_reason === "background"
      ? `The ${GROUPS[group] || "model"} model sees none of its species here.`
      : "Not confident.";
    verdict.append(`${why} Best guess: `, ...spoken(top), ` (${percent(top.score)})`);
  } else {
    verdict.append(...spoken(top), ` ${percent(top.score)}`);
  }
  showRollup(body.rollup);
  const model = body.model || (body.index ? `index of ${body.index.n_species} species` : "");
  $("source").textContent = `Answered by ${model} (${GROUPS[group]}).`;
  showResults(body.results, 1);
  showScores(group === "lookup" ? "lookup" : "classifier", body.results);
  showExplain(group === "lookup" ? null : body.model, files, url);
  $("answer").hidden = false;
}

function fitNumber(x, other) {
  // Two decimals, three where two would make a pass look like a tie.
  return x.toFixed(x.toFixed(2) === other.toFixed(2) ? 3 : 2);
}

function modelLine(m, chosen) {
  const sign = m.accepted ? "≥" : "<";
  const verdict = m.accepted ? "accepted" : "not accepted";
  const line = `${m.model}: fits ${fitNumber(m.scope, m.threshold)} ${sign} ${fitNumber(m.threshold, m.scope)} — ${verdict}`;
  return m.model === chosen ? `${line} (chosen)` : line;
}

function geoLine(geo, where) {
  const place = `${where.lat}, ${where.lon}`;
  if (geo.status === "applied") {
    const cell = geo.cell;
    // The range table counts the month and its neighbours (geo.months); GBIF's search, the month.
    const months = geo.months && geo.months.length ? geo.months : cell && cell.month ? [cell.month] : [];
    const month = months.length ? ` in ${months.map((m) => MONTHS[m - 1]).join(", ")}` : "";
    const from = geo.source === "table" ? "the range table (GBIF records)" : "GBIF";
    const records = geo.cell_records ? `${geo.cell_records} records there` : "no records there: no change";
    return `Where and when: species re-ranked by what ${from} has recorded near ${place}${month} (${records}).`;
  }
  const reasons = {
    not_requested: "not used",
    unavailable: "not used: the records could not be read",
    not_linked: "not used: this model's species are not linked to GBIF",
  };
  const reason = geo.reason ? ` (${geo.reason})` : "";
  return `Where and when (${place}): ${reasons[geo.status] || geo.status}${reason}.`;
}

// "Not sure": the one /v1/identify answer, every model's assessment in it.
function renderObservation(body, files, url, where) {
  const count = files.length || 1;
  const top = body.results[0];
  showPhotosSent(files, url);
  clearObservation();
  const verdict = $("verdict");
  verdict.textContent = "";
  const these = count > 1 ? "these photos show" : "this photo shows";
  if (body.no_match_reason === "not_an_organism") {
    verdict.textContent = count > 1 ? "These do not look like a living thing." : "This does not look like a living thing.";
  } else if (body.no_match_reason === "out_of_scope") {
    const covered = [...new Set(body.models.map((m) => groupName(m.group, m.model)))];
    verdict.textContent = `None of the models here covers what ${these} (${covered.join(", ")}).`;
  } else if (body.no_match_reason === "low_confidence" || (body.no_match && top)) {
    verdict.textContent = "Not confident: best guesses below.";
  } else if (!top) {
    verdict.textContent = "No species found";
  } else {
    verdict.append(...spoken(top), ` ${percent(top.score)}`);
  }
  showRollup(body.rollup);
  const from = count > 1 ? ` from ${count} photos` : "";
  $("source").textContent = body.model
    ? `Answered by ${body.model} (${groupName(body.group, body.model)})${from}.`
    : `No model was chosen: none of them fits ${count > 1 ? "these photos" : "this photo"}.`;
  $("why").textContent = `Why: ${body.why}`;
  $("why").hidden = !body.why;
  if (where.lat && where.lon && body.geo) {
    $("geo").textContent = geoLine(body.geo, where);
    $("geo").hidden = false;
  }
  const listed = worthListing(body.results);
  showResults(listed, count, Boolean(body.geo && body.geo.cell_records));
  showScores("identify", listed);
  const models = $("models");
  for (const m of body.models) {
    const li = document.createElement("li");
    li.textContent = modelLine(m, body.model);
    if (m.model === body.model) li.className = "chosen";
    models.append(li);
  }
  models.hidden = !body.models.length;
  showExplain(body.model, files, url);
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
  if (!photos.length && !url) {
    showError(new ServiceError(0, null, "Choose a photo or paste its address first."));
    return;
  }
  await discovered;
  const group = currentGroup();
  const files = photos.map((p) => p.file);
  $("go").disabled = true;
  try {
    if (group === "auto") {
      const where = readWhere();
      const kinds = Object.keys(available.groups).map((g) => GROUPS[g] || g);
      const count = files.length > 1 ? ` about ${files.length} photos` : "";
      $("status").textContent = `Asking every model${kinds.length ? ` (${kinds.join(", ")})` : ""}${count}…`;
      const response = await send("/v1/identify", { files, url, params: where });
      renderObservation(await response.json(), files, url, where);
    } else {
      $("status").textContent = "Identifying…";
      const first = files.slice(0, 1);
      const response = await send(ENDPOINTS[group], { files: first, url });
      renderSingle(group, await response.json(), first, url);
    }
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
    $("explain").textContent = answer.label;
    return;
  }
  if (!overlay.getAttribute("src")) {
    $("explain").disabled = true;
    $("status").textContent = "Looking at what the model looked at (a few seconds)…";
    try {
      const response = await send(`/v1/explain/${encodeURIComponent(answer.model)}`, answer);
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

function groupChanged() {
  $("where").hidden = currentGroup() !== "auto";
  showPhotos("");
}

function wire() {
  const drop = $("drop");
  $("file").addEventListener("change", () => {
    addPhotos($("file").files);
    $("file").value = ""; // choosing the same file again adds it again
  });
  $("url").addEventListener("input", () => {
    if ($("url").value && photos.length) clearPhotos();
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => { e.preventDefault(); addPhotos(e.dataTransfer.files); });
  document.addEventListener("paste", (e) => {
    const images = [...(e.clipboardData ? e.clipboardData.files : [])].filter((f) => f.type.startsWith("image/"));
    if (images.length) addPhotos(images);
  });
  for (const input of document.querySelectorAll('input[name="group"]')) input.addEventListener("change", groupChanged);
  if (navigator.geolocation) {
    $("locate").hidden = false;
    $("locate").addEventListener("click", locate);
  }
  $("ask").addEventListener("submit", identify);
  $("explain").addEventListener("click", explain);
  groupChanged();
  discovered = discover();
}

wire();
