// DOM builders: the items on the photo, product cards, the category list. No requests, no state.

// One colour per item, the same on its box and its button (and readable with white text on it).
const ITEM_COLOURS = ["#1d4ed8", "#b45309", "#047857", "#be123c", "#6d28d9", "#0e7490", "#4d7c0f", "#a21caf"];

function element(tag, properties = {}, ...children) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

/** "trousers" from "mens-trousers": enough for a label on a phone. */
function shortName(category) {
  return category.replace(/^(womens|mens|baby|kids)-/, "").replaceAll("-", " ");
}

export function itemName(item, index) {
  if (item.source === "whole_image") return "The whole photo";
  return `${index + 1}. ${item.category ? shortName(item.category) : "item"}`;
}

/** "the trousers", "the whole photo": the item in a sentence. */
export function itemNoun(item) {
  if (item.source === "whole_image") return "the whole photo";
  return `the ${item.category ? shortName(item.category) : "item"}`;
}

export function itemColour(index) {
  return ITEM_COLOURS[index % ITEM_COLOURS.length];
}

/**
 * A box and a label over the photo for every detected item (in percent of the photo the server
 * decoded, so they follow the picture at any size), and one radio button per item below it.
 */
export function drawItems({ items, width, height }, boxes, buttons) {
  boxes.replaceChildren(
    ...items.flatMap((item, index) => {
      if (item.source !== "detected") return [];
      const [x0, y0, x1, y1] = item.box;
      const box = element("div", { className: "box" }, element("span", { textContent: itemName(item, index) }));
      box.dataset.index = index;
      box.style.setProperty("--colour", itemColour(index));
      Object.assign(box.style, {
        left: `${(100 * x0) / width}%`,
        top: `${(100 * y0) / height}%`,
        width: `${(100 * (x1 - x0)) / width}%`,
        height: `${(100 * (y1 - y0)) / height}%`,
      });
      return [box];
    }),
  );
  buttons.replaceChildren(
    ...items.map((item, index) => {
      const score = item.score != null ? ` · ${Math.round(item.score * 100)}%` : "";
      const swatch = element("span", { className: "swatch" });
      swatch.setAttribute("aria-hidden", "true");
      const button = element(
        "button",
        { type: "button", className: "item", title: item.category || "the whole photo" },
        swatch,
        `${itemName(item, index)}${score}`,
      );
      button.setAttribute("role", "radio");
      button.setAttribute("aria-checked", "false");
      button.tabIndex = -1;
      button.dataset.index = index;
      button.style.setProperty("--colour", itemColour(index));
      return button;
    }),
  );
}

/** The selected item: its box and radio button marked; the radio group's one tab stop moves to it. */
export function markSelected(boxes, buttons, index) {
  for (const box of boxes.children) box.classList.toggle("selected", Number(box.dataset.index) === index);
  for (const button of buttons.children) {
    const selected = Number(button.dataset.index) === index;
    button.setAttribute("aria-checked", String(selected));
    button.tabIndex = selected ? 0 : -1;
  }
}

export function formatPrice(price, currency) {
  if (price == null) return "price not given";
  if (currency) {
    try {
      const fractions = Number.isInteger(price) ? 0 : 2;
      return new Intl.NumberFormat(undefined, {
        style: "currency",
        currency,
        minimumFractionDigits: fractions,
        maximumFractionDigits: 2,
      }).format(price);
    } catch {
      // not an ISO 4217 code: the number and the code as the catalogue gives them
    }
  }
  return `${new Intl.NumberFormat().format(price)}${currency ? ` ${currency}` : ""}`;
}

function scores(product) {
  const list = element("dl", { className: "scores" });
  for (const [name, value, hint] of [
    ["score", product.score, "the ranking score: the weighted mean of the facets' similarities"],
    ["shape", product.shape_score, "similarity of the cut"],
    ["colour", product.color_score, "similarity of the colour and pattern"],
    ...(product.detail_score == null ? [] : [["item", product.detail_score, "similarity of the details: the same item"]]),
  ]) {
    list.append(element("div", { title: hint }, element("dt", { textContent: name }), element("dd", { textContent: value.toFixed(2) })));
  }
  return list;
}

/** A product of the catalogue; `onSimilar` (if given) adds "Similar to this product". */
export function productCard(product, { onSimilar = null, showScores = true } = {}) {
  const title = product.title || product.offer_id;
  const image = element("img", { src: product.image_url, alt: "", loading: "lazy", decoding: "async", width: 300, height: 400 });
  image.addEventListener("error", () => image.parentElement.classList.add("broken"), { once: true });
  const heading = element("h3", { className: "title" });
  heading.append(product.url ? element("a", { href: product.url, target: "_blank", rel: "noopener", textContent: title }) : title);
  const price = element("p", { className: "price", textContent: formatPrice(product.price, product.currency) });
  if (product.price != null) price.dataset.price = product.price;
  const meta = element("p", { className: "meta" }, element("span", { className: "shop", textContent: product.shop }));
  if (product.category) meta.append(" · ", element("span", { className: "category", textContent: shortName(product.category) }));
  const card = element(
    "li",
    { className: "card" },
    element("div", { className: "thumb" }, image),
    element("div", { className: "body" }, heading, meta, price, showScores ? scores(product) : null),
  );
  card.dataset.shop = product.shop;
  card.dataset.offerId = product.offer_id;
  const actions = element("div", { className: "actions" });
  if (product.url) actions.append(element("a", { href: product.url, target: "_blank", rel: "noopener", className: "shop-link", textContent: "In the shop ↗" }));
  if (onSimilar) {
    const button = element("button", { type: "button", className: "similar", textContent: "Similar to this product" });
    button.setAttribute("aria-label", `Products similar to ${title}`);
    button.addEventListener("click", () => onSimilar(product));
    actions.append(button);
  }
  if (actions.childElementCount) card.querySelector(".body").append(actions);
  return card;
}

const CYRILLIC = /[\u0400-\u04FF]/;

/**
 * The rubricator as a flat list in tree order: value (the name filters accept), label (English
 * title and the first Russian alias), depth, its root, and the text a search matches against.
 */
export function flattenCategories(roots) {
  const rows = [];
  const walk = (node, depth, root) => {
    const russian = node.aliases.find((alias) => CYRILLIC.test(alias));
    rows.push({
      value: node.name,
      label: `${node.title}${russian ? ` · ${russian}` : ""}`,
      depth,
      root: root.title,
      search: [node.title, node.name, ...node.aliases].join(" ").toLowerCase(),
    });
    for (const child of node.children) walk(child, depth + 1, root);
  };
  for (const root of roots) walk(root, 0, root);
  return rows;
}

/** Fill `select` with the categories matching `text` (all for ""), grouped by top-level category. */
export function fillCategories(select, rows, text, anyLabel) {
  const wanted = text.trim().toLowerCase();
  const chosen = select.value;
  const groups = new Map();
  for (const row of rows) {
    if (wanted && !row.search.includes(wanted) && row.value !== chosen) continue;
    if (!groups.has(row.root)) groups.set(row.root, element("optgroup", { label: row.root }));
    const indent = "\u00a0\u00a0".repeat(row.depth);
    groups.get(row.root).append(element("option", { value: row.value, textContent: `${indent}${row.label}` }));
  }
  select.replaceChildren(element("option", { value: "", textContent: anyLabel }), ...groups.values());
  select.value = chosen;
  return [...groups.values()].reduce((count, group) => count + group.childElementCount, 0);
}
