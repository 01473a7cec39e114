// The page: a photo in (file, camera, drop or paste) -> POST /search -> the items boxed on it;
// pick an item -> its products; any control -> POST /search/item with the item's `query` token
// (the photo is not sent again); "Similar to this product" -> GET /products/{shop}/{offer_id}/similar.

import { api, ApiError } from "./api.js";
import { drawItems, fillCategories, flattenCategories, itemNoun, markSelected, productCard } from "./render.js";

const $ = (id) => document.getElementById(id);
const view = {
  drop: $("drop"),
  inputs: [$("photo-input"), $("camera-input")],
  maxSize: $("max-size"),
  photo: $("photo"),
  preview: $("preview"),
  caption: $("photo-caption"),
  boxes: $("boxes"),
  items: $("items"),
  form: $("search"),
  facet: $("facet"),
  facetValue: $("facet-value"),
  sameItem: $("same-item"),
  filters: $("filters"),
  filterCount: $("filter-count"),
  categoryFind: $("category-find"),
  category: $("category"),
  minPrice: $("min-price"),
  maxPrice: $("max-price"),
  currency: $("currency"),
  currencies: $("currencies"),
  shop: $("shop"),
  shops: $("shops"),
  topK: $("top-k"),
  results: $("results"),
  status: $("status"),
  heading: $("results-heading"),
  back: $("back"),
  anchor: $("anchor"),
  products: $("products"),
};
// Which control a field named by an API error is.
const FIELD_CONTROLS = {
  category: view.category,
  shop: view.shop,
  currency: view.currency,
  min_price: view.minPrice,
  max_price: view.maxPrice,
  top_k: view.topK,
};
const DEBOUNCE_MS = { slider: 250, typing: 450, choice: 0 };

const state = {
  maxUploadBytes: 15 * 1024 * 1024,
  photo: null, // {items, width, height} of the last /search
  selected: -1, // index of the item shown
  similarTo: null, // the product whose similar products are shown, or null: the item's
  similarKey: null, // the options they were searched with
  cache: new Map(), // item index -> {key, products, took_ms}: what the item's products were searched with
  seen: { shops: new Set(), currencies: new Set() },
  categories: [],
  request: null, // AbortController of the search in flight
  timer: 0,
  previewUrl: null,
  detailShare: 0, // the share "This very item first" gives the detail vector (the server's default)
};

// --- the controls -------------------------------------------------------------------------------

/** The slider's t in 0..1 splits cut and colour (shape = 1 - t, colour = t) of what "This very item
 * first" leaves: that box gives `detail` the server's default share (state.detailShare). */
function weights() {
  const t = Number(view.facet.value) / 100;
  const detail = view.sameItem.checked ? state.detailShare : 0;
  const chosen = { shape: round((1 - detail) * (1 - t)), color: round((1 - detail) * t) };
  return detail > 0 ? { ...chosen, detail: round(detail) } : chosen;
}

function round(value) {
  return Math.round(value * 100) / 100;
}

function describeFacet() {
  const { shape, color, detail = 0 } = weights();
  const item = detail > 0 ? `this item ${Math.round(detail * 100)}% · ` : "";
  const text = `${item}cut ${Math.round(shape * 100)}% · colour and pattern ${Math.round(color * 100)}%`;
  view.facetValue.value = text;
  view.facet.setAttribute("aria-valuetext", text);
}

function number(input) {
  return input.value === "" || !input.validity.valid ? null : Number(input.value);
}

/** The options every search sends: top_k, weights and the filters that are set. */
function options() {
  return {
    top_k: Number(view.topK.value),
    weights: weights(),
    category: view.category.value || null,
    shop: view.shop.value.trim() || null,
    currency: view.currency.value.trim().toUpperCase() || null,
    min_price: number(view.minPrice),
    max_price: number(view.maxPrice),
  };
}

function filtersSet(chosen) {
  return ["category", "shop", "currency", "min_price", "max_price"].filter((key) => chosen[key] !== null).length;
}

/** A problem with the controls themselves, in words; null when they can be sent. */
function controlsProblem(chosen) {
  for (const input of [view.minPrice, view.maxPrice]) {
    if (!input.validity.valid) return `${input === view.minPrice ? "The lowest" : "The highest"} price must be a number, 0 or more.`;
  }
  if (chosen.min_price !== null && chosen.max_price !== null && chosen.min_price > chosen.max_price) {
    return "The lowest price is above the highest: no product can match.";
  }
  return null;
}

function clearInvalid() {
  for (const control of Object.values(FIELD_CONTROLS)) control.removeAttribute("aria-invalid");
}

/** A control changed: search again after `delay` ms (the last change wins), without the photo. */
function controlsChanged(delay) {
  describeFacet();
  const count = filtersSet(options());
  view.filterCount.hidden = count === 0;
  view.filterCount.textContent = count ? `${count} set` : "";
  clearTimeout(state.timer);
  state.timer = setTimeout(refresh, delay);
}

function refresh() {
  if (!state.photo || state.selected < 0) return; // the next photo's search takes the controls as they are
  if (state.similarTo) showSimilar(state.similarTo);
  else showItem(state.selected);
}

// --- searching ------------------------------------------------------------------------------------

/** Start a request, cancelling the one in flight; `run(signal)` -> its answer, or null if overtaken. */
async function latest(run) {
  state.request?.abort();
  const request = new AbortController();
  state.request = request;
  view.results.setAttribute("aria-busy", "true");
  try {
    return await run(request.signal);
  } catch (error) {
    if (error.name === "AbortError") return null;
    throw error;
  } finally {
    if (state.request === request) {
      state.request = null;
      view.results.removeAttribute("aria-busy");
    }
  }
}

function setStatus(text, kind = "info") {
  view.status.textContent = text;
  view.status.dataset.kind = kind; // info, loading, empty, error
}

function showError(error, what) {
  if (!(error instanceof ApiError)) {
    setStatus(`${what} failed in this page: ${error.message}`, "error");
    return;
  }
  clearInvalid();
  FIELD_CONTROLS[error.field]?.setAttribute("aria-invalid", "true");
  let text;
  if (error.status === 0) text = `${what}: ${error.detail}.`;
  else if (error.status === 413) text = `${what}: the photo is too large — ${error.detail}.`;
  else if (error.status === 503) text = `${what}: the service is busy or starting — ${error.detail}. Try again${error.retryAfter ? ` in ${error.retryAfter} s` : " shortly"}.`;
  else if (error.status >= 500) text = `${what}: the server failed (${error.status}) — ${error.detail}.`;
  else text = `${what}: ${error.detail}.`;
  if (error.requestId) text += ` (request ${error.requestId})`;
  setStatus(text, "error");
}

function remember(products) {
  for (const product of products) {
    if (product.shop) state.seen.shops.add(product.shop);
    if (product.currency) state.seen.currencies.add(product.currency);
  }
  const fill = (list, values) => list.replaceChildren(...[...values].sort().map((value) => new Option(value)));
  fill(view.shops, state.seen.shops);
  fill(view.currencies, state.seen.currencies);
}

function optionsKey(chosen) {
  return JSON.stringify(chosen);
}

async function choosePhoto(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    setStatus(`“${file.name}” is not a photo (${file.type}): choose a JPEG, PNG, WebP, GIF, BMP or TIFF.`, "error");
    return;
  }
  if (file.size > state.maxUploadBytes) {
    setStatus(
      `This photo is too large: ${megabytes(file.size)}, and the server takes up to ${megabytes(state.maxUploadBytes)}. ` +
        "Choose a smaller photo (or a lower resolution on the camera).",
      "error",
    );
    return;
  }
  const chosen = options();
  const problem = controlsProblem(chosen);
  showPhoto(file);
  if (problem) {
    setStatus(problem, "error");
    return;
  }
  setStatus("Looking for the items in your photo…", "loading");
  try {
    const answer = await latest((signal) => api.search(file, chosen, signal));
    if (answer === null) return;
    photoSearched(answer, chosen);
  } catch (error) {
    showError(error, "The photo could not be searched");
  }
}

function megabytes(bytes) {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MB` : `${Math.ceil(bytes / 1024)} KB`;
}

function showPhoto(file) {
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(file);
  view.preview.src = state.previewUrl;
  view.photo.hidden = false;
  view.drop.classList.add("compact");
  view.caption.textContent = "";
  state.photo = null;
  state.selected = -1;
  state.similarTo = null;
  state.cache.clear();
  view.boxes.replaceChildren();
  view.items.replaceChildren();
  showProducts("", [], { anchor: null });
}

function photoSearched(answer, chosen) {
  state.photo = answer;
  answer.items.forEach((item, index) => {
    state.cache.set(index, { key: optionsKey(chosen), products: item.products, took_ms: answer.took_ms });
    remember(item.products);
  });
  drawItems(answer, view.boxes, view.items);
  const detected = answer.items.filter((item) => item.source === "detected").length;
  view.caption.textContent = detected
    ? `${detected} item${detected > 1 ? "s" : ""} found: pick one to see its products.`
    : "Nothing found in this photo.";
  if (!answer.items.length) {
    setStatus("Nothing found in this photo. Try another photo, with the item large and in good light.", "empty");
    return;
  }
  selectItem(0);
  if (!detected) {
    setStatus("Nothing found in this photo — these products look like the whole picture. A closer photo of the item works better.", "empty");
  }
}

function selectItem(index, { focus = false } = {}) {
  if (!state.photo || index < 0 || index >= state.photo.items.length) return;
  state.selected = index;
  state.similarTo = null;
  markSelected(view.boxes, view.items, index);
  if (focus) view.items.children[index].focus();
  showItem(index);
}

/** The selected item's products: from the cache if searched with these options, else POST /search/item. */
async function showItem(index) {
  const item = state.photo.items[index];
  const name = itemNoun(item);
  const chosen = options();
  const problem = controlsProblem(chosen);
  if (problem) {
    setStatus(problem, "error");
    return;
  }
  clearInvalid();
  const cached = state.cache.get(index);
  if (cached?.key === optionsKey(chosen)) {
    state.request?.abort(); // an older search, overtaken
    showProducts(`Like ${name}`, cached.products, { anchor: null });
    productsStatus(cached.products, chosen, cached.took_ms);
    return;
  }
  setStatus(`Searching again for ${name}…`, "loading");
  try {
    const answer = await latest((signal) => api.searchItem(item.query, chosen, signal));
    if (answer === null || state.selected !== index || state.similarTo) return;
    state.cache.set(index, { key: optionsKey(chosen), products: answer.products, took_ms: answer.took_ms });
    remember(answer.products);
    showProducts(`Like ${name}`, answer.products, { anchor: null });
    productsStatus(answer.products, chosen, answer.took_ms);
  } catch (error) {
    showProducts("", [], { anchor: null });
    showError(error, "The search failed");
  }
}

async function showSimilar(product) {
  const chosen = options();
  const key = optionsKey(chosen);
  if (state.similarTo === product && state.similarKey === key) return; // shown (or on its way) already
  state.similarTo = product;
  state.similarKey = key;
  const problem = controlsProblem(chosen);
  if (problem) {
    state.similarKey = null;
    setStatus(problem, "error");
    return;
  }
  clearInvalid();
  setStatus(`Looking for products like “${product.title}”…`, "loading");
  try {
    const answer = await latest((signal) => api.similar(product, chosen, signal));
    if (answer === null || state.similarTo !== product) return;
    remember(answer.products);
    showProducts(`Similar to “${answer.product.title}”`, answer.products, { anchor: answer.product });
    productsStatus(answer.products, chosen, answer.took_ms);
  } catch (error) {
    state.similarKey = null; // the same options may be tried again
    showProducts("", [], { anchor: null });
    showError(error, "The similar products could not be found");
  }
}

function openSimilar(product) {
  showSimilar(product);
  reveal(view.results);
  view.results.focus({ preventScroll: true });
}

/** Scroll `target` to the top of the screen (gently, unless the reader asked for less motion). */
function reveal(target) {
  const still = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  target.scrollIntoView({ block: "start", behavior: still ? "auto" : "smooth" });
}

/** An item picked by pointer on a one-column screen: its products are below the controls, so go there. */
function pickItem(index) {
  selectItem(index);
  if (window.matchMedia("(max-width: 59.99rem)").matches) reveal(view.results);
}

function productsStatus(products, chosen, tookMs) {
  if (products.length) {
    setStatus(`${products.length} product${products.length > 1 ? "s" : ""}, best first (${Math.round(tookMs)} ms).`);
  } else if (filtersSet(chosen)) {
    setStatus("No products match these filters. Widen the price range, or clear the category, shop or currency.", "empty");
  } else {
    setStatus("No products found: the catalogue has nothing like this yet.", "empty");
  }
}

function showProducts(heading, products, { anchor }) {
  view.heading.textContent = heading;
  view.anchor.hidden = anchor === null;
  view.anchor.replaceChildren(...(anchor ? [productCard(anchor, { showScores: false })] : []));
  const back = state.similarTo && state.selected >= 0;
  view.back.hidden = !back;
  if (back) view.back.textContent = `← Back to ${itemNoun(state.photo.items[state.selected])}`;
  view.products.replaceChildren(...products.map((product) => productCard(product, { onSimilar: openSimilar })));
}

// --- wiring ---------------------------------------------------------------------------------------

function itemKeys(event) {
  if (!state.photo) return;
  const count = state.photo.items.length;
  const moves = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };
  let index;
  if (event.key in moves) index = (state.selected + moves[event.key] + count) % count;
  else if (event.key === "Home") index = 0;
  else if (event.key === "End") index = count - 1;
  else return;
  event.preventDefault();
  selectItem(index, { focus: true });
}

function imageOf(transfer) {
  return [...(transfer?.files ?? [])].find((file) => file.type.startsWith("image/")) ?? transfer?.files?.[0];
}

function wire() {
  for (const input of view.inputs) {
    input.addEventListener("change", () => {
      choosePhoto(input.files[0]);
      input.value = ""; // choosing the same file again searches again
    });
  }
  // Drop anywhere on the page; the drop zone lights up while a file is over the page.
  document.addEventListener("dragover", (event) => {
    if (![...event.dataTransfer.types].includes("Files")) return;
    event.preventDefault();
    view.drop.classList.add("over");
  });
  document.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) view.drop.classList.remove("over");
  });
  document.addEventListener("drop", (event) => {
    if (!event.dataTransfer.files.length) return;
    event.preventDefault();
    view.drop.classList.remove("over");
    choosePhoto(imageOf(event.dataTransfer));
  });
  // Paste a copied image anywhere but into a text box.
  document.addEventListener("paste", (event) => {
    const file = imageOf(event.clipboardData);
    if (!file || !file.type.startsWith("image/")) return;
    event.preventDefault();
    choosePhoto(file);
  });

  view.items.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-index]");
    if (button) pickItem(Number(button.dataset.index));
  });
  view.items.addEventListener("keydown", itemKeys);
  view.boxes.addEventListener("click", (event) => {
    const box = event.target.closest(".box");
    if (box) pickItem(Number(box.dataset.index));
  });
  view.back.addEventListener("click", () => {
    selectItem(state.selected);
    view.items.children[state.selected]?.focus();
  });

  view.form.addEventListener("submit", (event) => {
    event.preventDefault();
    controlsChanged(DEBOUNCE_MS.choice);
  });
  view.form.addEventListener("reset", () => {
    setTimeout(() => {
      fillCategories(view.category, state.categories, (view.categoryFind.value = ""), "Any category");
      controlsChanged(DEBOUNCE_MS.choice);
    });
  });
  view.facet.addEventListener("input", () => controlsChanged(DEBOUNCE_MS.slider));
  view.sameItem.addEventListener("change", () => {
    describeFacet();
    controlsChanged(DEBOUNCE_MS.choice);
  });
  for (const input of [view.minPrice, view.maxPrice, view.currency, view.shop]) {
    input.addEventListener("input", () => controlsChanged(DEBOUNCE_MS.typing));
    input.addEventListener("change", () => controlsChanged(DEBOUNCE_MS.choice));
  }
  for (const select of [view.category, view.topK]) select.addEventListener("change", () => controlsChanged(DEBOUNCE_MS.choice));
  view.categoryFind.addEventListener("input", () => {
    const count = fillCategories(view.category, state.categories, view.categoryFind.value, "Any category");
    view.categoryFind.setCustomValidity(count ? "" : "no category matches");
  });
  // Filters open from the start where there is room for them.
  if (window.matchMedia("(min-width: 60rem)").matches) view.filters.open = true;
}

async function start() {
  wire();
  describeFacet();
  const [config, categories] = await Promise.allSettled([api.config(), api.categories()]);
  if (config.status === "fulfilled") {
    const { max_upload_bytes: maxBytes, max_top_k: maxTopK, default_weights: defaults } = config.value;
    state.maxUploadBytes = maxBytes;
    view.maxSize.textContent = megabytes(maxBytes);
    for (const option of [...view.topK.options]) option.disabled = Number(option.value) > maxTopK;
    const total = (defaults?.shape ?? 0) + (defaults?.color ?? 0);
    if (total > 0) {
      view.facet.defaultValue = String(Math.round((20 * defaults.color) / total) * 5); // on the slider's 5% steps
    }
    const detail = defaults?.detail ?? 0;
    if (detail > 0) {
      // The server's embedder makes a detail vector: offer the box, on, with the default's share.
      state.detailShare = detail / (total + detail);
      view.sameItem.defaultChecked = view.sameItem.checked = true;
      view.sameItem.closest("label").hidden = false;
    }
    describeFacet();
  }
  if (categories.status === "fulfilled") {
    state.categories = flattenCategories(categories.value.categories);
    fillCategories(view.category, state.categories, "", "Any category");
  } else {
    view.categoryFind.disabled = view.category.disabled = true;
    view.categoryFind.placeholder = "categories unavailable";
  }
  document.documentElement.dataset.ready = "true";
}

start();
