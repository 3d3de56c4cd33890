// Starts Swagger UI on /openapi.json. A file of its own: the page's policy runs no inline script.
// Authorizations are kept for the tab only (no persistAuthorization): a token typed here is not
// left in the browser's storage.
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    filter: true,
    displayRequestDuration: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
