"""The operator console: authentication, the HTTP API (OpenAPI) and statistics."""
