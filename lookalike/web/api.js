// The public JSON API (docs/api.md), as any shop's page or app calls it. Nothing here knows the DOM.

// The API lives one level above the page (/ui/app.js -> /), also behind a path prefix.
const ROOT = new URL("../", import.meta.url);

/** An answer that is not 2xx, or no answer: `detail` is the API's words for people. */
export class ApiError extends Error {
  constructor(status, body, fallback, retryAfter = null) {
    const detail = body?.detail || fallback;
    super(detail);
    this.status = status; // 0: no answer at all
    this.code = body?.error ?? null;
    this.detail = detail;
    this.field = body?.field ?? null;
    this.requestId = body?.request_id ?? null;
    this.retryAfter = retryAfter;
  }
}

async function call(path, init = {}) {
  let response;
  try {
    response = await fetch(new URL(path, ROOT), { ...init, headers: { Accept: "application/json", ...init.headers } });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, null, "the server did not answer; check the connection and try again");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, body, response.statusText || "the server failed", response.headers.get("Retry-After"));
  }
  return body;
}

/** `{shape, color[, detail]}` as forms and query strings take it: "shape:0.75,color:0.25". */
export function weightsText({ shape, color, detail }) {
  return `shape:${shape},color:${color}` + (detail ? `,detail:${detail}` : "");
}

/** Options (top_k, weights, filters) as text fields: multipart forms and query strings. Empty ones are left out. */
function textFields(options) {
  const fields = [];
  for (const [key, value] of Object.entries(options)) {
    if (value === null || value === undefined || value === "") continue;
    fields.push([key, key === "weights" ? weightsText(value) : String(value)]);
  }
  return fields;
}

/** Drop the options that are not set, so a JSON body carries only what was chosen. */
function given(options) {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== null && value !== undefined && value !== ""));
}

export const api = {
  /** The page's limits (upload size, top_k, default weights), from the page's own app. */
  config: () => call("ui/config.json"),

  /** GET /categories: the rubricator tree. */
  categories: () => call("categories"),

  /** POST /search (multipart): the items in the photo, each with products and its `query` token. */
  search(file, options, signal) {
    const body = new FormData();
    body.append("image", file, file.name || "photo.jpg");
    for (const [key, value] of textFields(options)) body.append(key, value);
    return call("search", { method: "POST", body, signal });
  },

  /** POST /search/item: an item of the last search again, by its token, with other options (no photo). */
  searchItem(query, options, signal) {
    return call("search/item", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ query, ...given(options) }),
      signal,
    });
  },

  /** GET /products/{shop}/{offer_id}/similar; an offer id's "/" travels as %2F (the route takes it either way). */
  similar(product, options, signal) {
    const path = `products/${encodeURIComponent(product.shop)}/${encodeURIComponent(product.offer_id)}/similar`;
    return call(`${path}?${new URLSearchParams(textFields(options))}`, { signal });
  },
};
