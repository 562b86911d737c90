// Renders the service's own OpenAPI document with the vendored Swagger UI.
// No validator badge (it would call another host) and no "try it out" by
// default: requests need a token, which the reader pastes under Authorize.
window.ui = window.SwaggerUIBundle({
  url: '/api/v1/openapi.json',
  dom_id: '#reference',
  deepLinking: true,
  validatorUrl: null,
  tryItOutEnabled: false,
  defaultModelsExpandDepth: 0,
  docExpansion: 'list',
});
