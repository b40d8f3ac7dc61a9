// Progressive enhancement only: every page works without this file.

// Forms marked data-confirm ask before submitting (e.g. deleting a user).
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.dataset ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// A link in the error summary jumps to its field; following a fragment only
// scrolls, so also put the keyboard there, with the field's label in view.
document.addEventListener("click", (event) => {
  const link = event.target.closest(".error-summary a[href^='#']");
  const field = link && document.getElementById(link.hash.slice(1));
  if (!field) {
    return;
  }
  event.preventDefault();
  const label = document.querySelector(`label[for="${field.id}"]`);
  (label || field).scrollIntoView({ block: "start" });
  field.focus({ preventScroll: true });
});

// A rejected form: start the keyboard (and screen reader) at the summary of
// what to fix, as the page would be read top to bottom anyway.
document.addEventListener("DOMContentLoaded", () => {
  const summary = document.querySelector(".error-summary");
  if (summary) {
    summary.focus();
  }
});
