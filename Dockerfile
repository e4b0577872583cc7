# edigw image. Two stages: the wheel is built from the source in the first, installed into a
# venv (/opt/edigw) in the second; the source tree does not go into the image.
#
#   docker build -t edigw .                                 # on python:3.11-slim
#   docker build --build-arg BASE=local/python:bookworm .   # any Debian-like image with python3 >= 3.11,
#                                                           # python3-venv and python3-pip
#   docker run -d -p 8080:8080 -v edigw-var:/var/lib/edigw edigw
#
# Everything the gateway writes (SQLite store, archive, inbox, processed, outbound, secrets,
# certificates, partner profiles) is under /var/lib/edigw, a volume owned by the user edigw.
# See docs/deploy.md.
ARG BASE=python:3.11-slim
# PEM text of extra CA certificates pip must trust (a build behind a TLS-intercepting proxy);
# they are used while building and do not stay in the image.
ARG EXTRA_CA_CERTS=""

# -- 1: the wheel ---------------------------------------------------------------------------
FROM ${BASE} AS wheel
ARG EXTRA_CA_CERTS
RUN python3 -m venv /opt/build \
 && if [ -n "$EXTRA_CA_CERTS" ]; then \
      cat "$(/opt/build/bin/python -c 'import pip._vendor.certifi as c; print(c.where())')" > /opt/build/ca.pem \
      && printf '%s\n' "$EXTRA_CA_CERTS" >> /opt/build/ca.pem; fi
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY gateway ./gateway
COPY mappings ./mappings
COPY schemas ./schemas
RUN if [ -f /opt/build/ca.pem ]; then export PIP_CERT=/opt/build/ca.pem; fi; \
    /opt/build/bin/pip wheel --no-cache-dir --no-deps -q -w /dist .

# -- 2: the runtime -------------------------------------------------------------------------
FROM ${BASE}
ARG EXTRA_CA_CERTS
# The dependencies first, from pyproject.toml alone: this layer is kept while only the
# gateway's code changes.
COPY pyproject.toml /tmp/pyproject.toml
RUN python3 -m venv /opt/edigw \
 && if [ -n "$EXTRA_CA_CERTS" ]; then \
      cat "$(/opt/edigw/bin/python -c 'import pip._vendor.certifi as c; print(c.where())')" > /tmp/ca.pem \
      && printf '%s\n' "$EXTRA_CA_CERTS" >> /tmp/ca.pem && export PIP_CERT=/tmp/ca.pem; fi \
 && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && /opt/edigw/bin/pip install --no-cache-dir -q -r /tmp/requirements.txt \
 && rm -f /tmp/pyproject.toml /tmp/requirements.txt /tmp/ca.pem
COPY --from=wheel /dist /tmp/dist
# Its dependencies are those above (the same pyproject.toml): nothing more is fetched.
RUN /opt/edigw/bin/pip install --no-cache-dir --no-deps -q /tmp/dist/*.whl \
 && /opt/edigw/bin/pip check && rm -rf /tmp/dist

RUN groupadd --system --gid 10001 edigw \
 && useradd --system --uid 10001 --gid edigw --home-dir /var/lib/edigw --no-create-home \
            --shell /usr/sbin/nologin edigw \
 && mkdir -p /var/lib/edigw/partners /etc/edigw
# The shipped settings (read-only, root's); the sample partner profile seeds the volume's
# partners folder the first time a named volume is mounted (the console edits it there).
COPY config/gateway.toml /etc/edigw/gateway.toml
COPY config/partners/ /var/lib/edigw/partners/
RUN chown -R edigw:edigw /var/lib/edigw && chmod 0750 /var/lib/edigw

ENV PATH=/opt/edigw/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    EDIGW_CONFIG=/etc/edigw/gateway.toml \
    EDIGW_VAR=/var/lib/edigw \
    EDIGW_PARTNERS=/var/lib/edigw/partners \
    EDIGW_HTTP_HOST=0.0.0.0 \
    EDIGW_HTTP_PORT=8080

USER edigw
WORKDIR /var/lib/edigw
VOLUME ["/var/lib/edigw"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/edigw/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('EDIGW_HTTP_PORT', '8080'), timeout=4)"]
CMD ["edigw", "serve"]
