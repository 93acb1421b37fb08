// The theme before the first paint: the one chosen with the page's toggle, else the system's (CSS follows
// prefers-color-scheme when no data-theme is set).
"use strict";
(() => {
  const chosen = localStorage.getItem("vinr-theme");
  if (chosen === "dark" || chosen === "light") document.documentElement.dataset.theme = chosen;
})();
