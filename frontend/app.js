"use strict";

// Online Boutique's page: every action is one POST /api/<service>/<Contract>.

const NANOS = 1000000000n;
const state = {
  currency: localStorage.getItem("boutique.currency") || "USD",
  products: new Map(), // id -> product
  prices: new Map(), // "<currency>:<id>" -> converted price
  cart: [], // [{product_id, quantity}]
};

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function userId() {
  let id = localStorage.getItem("boutique.user_id");
  if (!id) {
    id = crypto.randomUUID
      ? crypto.randomUUID()
      : `user-${Date.now()}-${Math.random().toString(16).slice(2)}`;
    localStorage.setItem("boutique.user_id", id);
  }
  return id;
}

// -- calling the services

class ApiError extends Error {}

async function api(service, contract, body = {}) {
  let response;
  try {
    response = await fetch(`/api/${service}/${contract}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(`${service}.${contract}: the server cannot be reached (${err.message})`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data && data.error;
    if (error) {
      const where = `${error.service || service}.${error.contract || contract}`;
      throw new ApiError(`${error.message || error.kind} (${error.kind} from ${where})`);
    }
    throw new ApiError(`${service}.${contract} failed: HTTP ${response.status}`);
  }
  return data;
}

function showError(err) {
  const box = $("#error");
  box.textContent = err instanceof Error ? err.message : String(err);
  box.hidden = false;
  console.error(err);
}

function clearError() {
  $("#error").hidden = true;
  $("#error").textContent = "";
}

// run an action, reporting its failure in #error
async function guarded(action) {
  try {
    await action();
  } catch (err) {
    showError(err);
  }
}

// -- money

const nanosOf = (m) => BigInt(m.units || 0) * NANOS + BigInt(m.nanos || 0);

function fromNanos(currency_code, n) {
  return { currency_code, units: Number(n / NANOS), nanos: Number(n % NANOS) };
}

function format(m) {
  const value = Number(m.units || 0) + Number(m.nanos || 0) / 1e9;
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: m.currency_code }).format(
      value
    );
  } catch {
    return `${value.toFixed(2)} ${m.currency_code}`;
  }
}

async function priceOf(product) {
  if (state.currency === product.price_usd.currency_code) return product.price_usd;
  const key = `${state.currency}:${product.id}`;
  if (!state.prices.has(key)) {
    const price = await api("currency", "Convert", {
      from_: product.price_usd,
      to_code: state.currency,
    });
    state.prices.set(key, price);
  }
  return state.prices.get(key);
}

// -- the page

async function loadCurrencies() {
  const codes = await api("currency", "GetSupportedCurrencies");
  if (!codes.includes(state.currency)) state.currency = "USD";
  const select = $("#currency");
  select.replaceChildren(...codes.map((code) => el("option", { value: code, text: code })));
  select.value = state.currency;
}

async function renderProducts() {
  const products = [...state.products.values()];
  const prices = await Promise.all(products.map(priceOf));
  const cards = products.map((p, i) =>
    el(
      "article",
      { class: "product", id: `product-${p.id}` },
      el("img", { src: p.picture, alt: p.name, width: "160", height: "160" }),
      el("h3", { text: p.name }),
      el("p", { class: "price", "data-price": p.id, text: format(prices[i]) }),
      el("p", { class: "description", text: p.description }),
      el("button", { type: "button", "data-add": p.id, text: "Add to cart" })
    )
  );
  const grid = $("#product-grid");
  grid.replaceChildren(...cards);
  grid.setAttribute("aria-busy", "false");
  highlightLinkedProduct();
}

// an ad links to /product/<id>: the page shows that product
function highlightLinkedProduct() {
  const match = location.pathname.match(/^\/product\/([^/]+)$/);
  const card = match && document.getElementById(`product-${match[1]}`);
  if (card) {
    card.classList.add("linked");
    card.scrollIntoView({ block: "center" });
  }
}

async function renderCart() {
  const cart = await api("cart", "GetCart", { user_id: userId() });
  state.cart = cart.items;
  const count = state.cart.reduce((sum, item) => sum + item.quantity, 0);
  $("#cart-count").textContent = String(count);
  $("#cart-empty").hidden = count > 0;
  $("#cart-filled").hidden = count === 0;
  if (count === 0) return;

  let sum = 0n;
  const rows = [];
  for (const item of state.cart) {
    const product = state.products.get(item.product_id);
    if (!product) {
      const cells = [el("td", { text: item.product_id }), el("td", { text: String(item.quantity) })];
      rows.push(el("tr", {}, ...cells, el("td")));
      continue;
    }
    const line = nanosOf(await priceOf(product)) * BigInt(item.quantity);
    sum += line;
    rows.push(
      el(
        "tr",
        {},
        el("td", { text: product.name }),
        el("td", { text: String(item.quantity) }),
        el("td", { class: "num", text: format(fromNanos(state.currency, line)) })
      )
    );
  }
  $("#cart-items").replaceChildren(...rows);

  // the quote depends on the address being typed in the form: a bad one shows no total
  let shipping = null;
  try {
    const quote = await api("shipping", "GetQuote", { address: address(), items: state.cart });
    shipping = await api("currency", "Convert", { from_: quote, to_code: state.currency });
  } catch (err) {
    console.warn("no shipping quote:", err.message);
  }
  $("#cart-shipping").textContent = shipping ? format(shipping) : "–";
  $("#cart-total").textContent = shipping
    ? format(fromNanos(state.currency, sum + nanosOf(shipping)))
    : "–";
}

async function renderRecommendations() {
  const ids = await api("recommendation", "ListRecommendations", {
    user_id: userId(),
    product_ids: state.cart.map((item) => item.product_id),
  });
  const items = ids
    .map((id) => state.products.get(id))
    .filter(Boolean)
    .map((p) =>
      el(
        "li",
        {},
        el(
          "a",
          { href: `#product-${p.id}` },
          el("img", { src: p.picture, alt: "", width: "64", height: "64" }),
          el("span", { text: p.name })
        )
      )
    );
  $("#recommendation-list").replaceChildren(...items);
  $("#recommendations").hidden = items.length === 0;
}

async function renderAd() {
  const categories = new Set();
  for (const item of state.cart) {
    for (const c of state.products.get(item.product_id)?.categories || []) categories.add(c);
  }
  const ads = await api("ad", "GetAds", { context_keys: [...categories] });
  if (!ads.length) {
    $("#ad").hidden = true;
    return;
  }
  const ad = ads[Math.floor(Math.random() * ads.length)];
  const link = $("#ad-link");
  link.href = ad.redirect_url;
  link.textContent = ad.text;
  $("#ad").hidden = false;
}

// everything that depends on the cart
async function refresh() {
  await renderCart();
  await Promise.all([renderRecommendations(), renderAd()]);
}

// -- the order form

function field(name) {
  return $("#order-form").elements.namedItem(name).value;
}

function address() {
  return {
    street_address: field("street_address"),
    city: field("city"),
    state: field("state"),
    country: field("country"),
    zip_code: parseInt(field("zip_code"), 10) || 0,
  };
}

function fillExpiry() {
  const year = new Date().getFullYear();
  const months = Array.from({ length: 12 }, (_, i) =>
    el("option", { value: String(i + 1), text: String(i + 1).padStart(2, "0") })
  );
  const years = Array.from({ length: 6 }, (_, i) =>
    el("option", { value: String(year + i), text: String(year + i) })
  );
  $("#expiry-month").replaceChildren(...months);
  $("#expiry-year").replaceChildren(...years);
  $("#expiry-month").value = "1";
  $("#expiry-year").value = String(year + 1);
}

async function placeOrder() {
  const order = await api("checkout", "PlaceOrder", {
    user_id: userId(),
    user_currency: state.currency,
    address: address(),
    email: field("email"),
    credit_card: {
      credit_card_number: field("credit_card_number"),
      credit_card_cvv: parseInt(field("credit_card_cvv"), 10) || 0,
      credit_card_expiration_year: parseInt(field("credit_card_expiration_year"), 10),
      credit_card_expiration_month: parseInt(field("credit_card_expiration_month"), 10),
    },
  });
  let paid = nanosOf(order.shipping_cost);
  for (const item of order.items) paid += nanosOf(item.cost) * BigInt(item.quantity);
  $("#order-id").textContent = order.order_id;
  $("#tracking-id").textContent = order.shipping_tracking_id;
  $("#order-total").textContent = format(fromNanos(order.shipping_cost.currency_code, paid));
  $("#order-email").textContent = field("email");
  $("#confirmation").hidden = false;
  $("#confirmation").scrollIntoView({ block: "center" });
  await refresh();
}

// -- wiring

function wire() {
  $("#product-grid").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-add]");
    if (!button) return;
    guarded(async () => {
      button.disabled = true;
      try {
        await api("cart", "AddItem", {
          user_id: userId(),
          item: { product_id: button.dataset.add, quantity: 1 },
        });
        clearError();
        $("#confirmation").hidden = true;
        await refresh();
      } finally {
        button.disabled = false;
      }
    });
  });

  $("#empty-cart").addEventListener("click", () =>
    guarded(async () => {
      await api("cart", "EmptyCart", { user_id: userId() });
      clearError();
      await refresh();
    })
  );

  $("#currency").addEventListener("change", (event) =>
    guarded(async () => {
      state.currency = event.target.value;
      localStorage.setItem("boutique.currency", state.currency);
      await renderProducts();
      await renderCart();
    })
  );

  $("#order-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const button = $("#place-order");
    guarded(async () => {
      button.disabled = true;
      try {
        clearError();
        $("#confirmation").hidden = true;
        await placeOrder();
      } finally {
        button.disabled = false;
      }
    });
  });
}

async function start() {
  fillExpiry();
  wire();
  await guarded(async () => {
    const [products] = await Promise.all([api("catalog", "ListProducts"), loadCurrencies()]);
    for (const p of products) state.products.set(p.id, p);
    await renderProducts();
    await refresh();
  });
  document.body.dataset.ready = "true";
}

start();
