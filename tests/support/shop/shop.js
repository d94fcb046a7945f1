// The test shop's catalogue and cart. The cart lives in localStorage so it survives page loads
// the way a real shop's server-side cart would; nothing is ever sent to a server.
"use strict";

const PRODUCTS = [
  { id: "blue-kettle", name: "Blue kettle", category: "kettles", price: 39.0, colour: "#3b6fd6",
    description: "A 1.7 litre kettle that boils quietly." },
  { id: "steel-kettle", name: "Steel kettle", category: "kettles", price: 54.5, colour: "#9aa3ad",
    description: "Brushed steel, with a temperature dial for green tea." },
  { id: "french-press", name: "French press", category: "coffee", price: 24.0, colour: "#6b4226",
    description: "Eight cups, double-walled glass." },
  { id: "pour-over", name: "Pour-over set", category: "coffee", price: 31.0, colour: "#c08a4a",
    description: "Ceramic dripper, glass server and 100 filters." },
  { id: "tea-tin", name: "Tea tin", category: "tea", price: 12.0, colour: "#2f7d4f",
    description: "Airtight tin for 250 g of loose tea." },
  { id: "teapot", name: "Cast iron teapot", category: "tea", price: 45.0, colour: "#333333",
    description: "Holds 0.8 litres and keeps it hot." },
];

function findProduct(id) {
  return PRODUCTS.find((p) => p.id === id) || null;
}

function money(value) {
  return "$" + value.toFixed(2);
}

function readCart() {
  try {
    return JSON.parse(localStorage.getItem("shop-cart") || "[]");
  } catch (_) {
    return []; // a damaged cart is an empty cart, as in any shop
  }
}

function writeCart(items) {
  localStorage.setItem("shop-cart", JSON.stringify(items));
  updateCartCount();
}

function addToCart(id, quantity) {
  const items = readCart();
  const line = items.find((item) => item.id === id);
  if (line) line.quantity += quantity;
  else items.push({ id, quantity });
  writeCart(items);
}

function cartCount() {
  return readCart().reduce((n, item) => n + item.quantity, 0);
}

function updateCartCount() {
  const badge = document.querySelector("[data-testid=cart-count]");
  if (badge) badge.textContent = String(cartCount());
}

function productCard(p) {
  // Cards carry a test id; the "Details" link inside has only its text, as in many real shops.
  const card = document.createElement("article");
  card.className = "card";
  card.dataset.testid = "product-card-" + p.id;
  card.innerHTML =
    '<div class="swatch" style="background:' + p.colour + '"></div>' +
    '<h3><a href="/product.html?id=' + p.id + '">' + p.name + "</a></h3>" +
    '<div class="price">' + money(p.price) + "</div>" +
    '<a class="btn" href="/product.html?id=' + p.id + '">Details</a>';
  return card;
}

document.addEventListener("DOMContentLoaded", updateCartCount);
