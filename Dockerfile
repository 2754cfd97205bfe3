# The online service only: onnxruntime, FastAPI, uvicorn, prometheus-client and the prodkit package.
# No torch, no training or notebook dependencies (serving imports the registry and onnxruntime only).
# Build from the checkout root:   docker build -t prodkit-serve .
# Run with a registry mounted:    docker run -p 8080:8080 -v $PWD/registry:/models/registry:ro prodkit-serve
# (Docker cannot build on the machines this was written on; the same install and command were checked in a
#  fresh virtualenv with only these packages: see README, "Serving".)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 MALLOC_ARENA_MAX=2
WORKDIR /app
# What the service imports: onnxruntime and the web stack; scipy and pandera for the prediction log's drift
# gauges (prodkit.monitoring.drift on the checked tables of prodkit.research.data); fastcore for @patch. No torch, no scikit-learn.
RUN pip install "onnxruntime>=1.20" "fastapi>=0.110" "uvicorn>=0.29" "prometheus-client>=0.20" \
                "numpy>=1.26" "pandas>=2.1" "pyarrow>=15" "omegaconf>=2.3" "fastcore>=1.5" \
                "scipy>=1.11" "pandera>=0.20"
COPY pyproject.toml README.md ./
COPY prodkit ./prodkit
RUN pip install --no-deps . && useradd --uid 1000 --no-create-home prodkit

# Settings: JSON of `serve` keys (prodkit.core.schema.ServeConfig); missing keys take the schema's defaults.
ENV PRODKIT_SERVE_CONFIG='{"registry": "/models/registry", "poll_seconds": 2.0}'
USER 1000
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --start-period=20s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/v2/health/ready', timeout=2).status != 200)"
# SIGTERM (docker stop, Kubernetes): stop accepting, finish requests in flight (up to 10 s), exit.
CMD ["uvicorn", "prodkit.serving.app:app_from_env", "--factory", "--host", "0.0.0.0", "--port", "8080", \
     "--workers", "1", "--timeout-graceful-shutdown", "10", "--no-access-log"]
