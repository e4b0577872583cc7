"""The gateway's HTTP server: health, the console and the endpoints channels contribute
(ASGI, Starlette on uvicorn)."""
