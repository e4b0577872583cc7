FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install --no-cache-dir .
COPY config ./config
COPY mappings ./mappings
COPY schemas ./schemas
USER nobody
CMD ["edigw", "serve"]
