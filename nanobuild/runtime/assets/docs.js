// The API docs at /docs: Swagger UI on this process's own /openapi.json, with nothing
// fetched from anywhere else (no validator badge: it would call out to the validator).
"use strict";
window.addEventListener("load", () => {
  window.ui = window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
    onComplete: () => {
      document.body.dataset.ready = "true";
    },
  });
});
