// The demo help page (index.html): its questions go to the widget. A file of its own, not an inline script or
// on* attribute, so the page's Content-Security-Policy needs no 'unsafe-inline'.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest(".ask");
  if (button && window.BankChat) window.BankChat.ask(button.dataset.question);
});

document.addEventListener("submit", (event) => {
  const form = event.target.closest("form.search");
  if (!form) return;
  event.preventDefault();
  if (window.BankChat) window.BankChat.ask(form.q.value);
  form.q.value = "";
});
