"""The gateway's HTTP server: health, AS2 and SMS webhooks (ASGI, Starlette on uvicorn)."""
