# The reco service image. Build from the repository root: docker build -t reco .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # One BLAS thread per worker: more oversubscribes the cores and costs several times in throughput.
    OPENBLAS_NUM_THREADS=1 \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    RECO_HOME=/var/lib/reco

RUN groupadd --system reco && useradd --system --gid reco --home-dir /var/lib/reco --create-home reco

WORKDIR /app
# The service's dependencies first (cached while only the code changes), pinned by constraints.txt;
# the trainer's own (implicit, DuckDB: the `train` extra) are not installed.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir training service \
    && touch training/__init__.py service/__init__.py \
    && pip install -c constraints.txt . \
    && pip uninstall -y reco
COPY training ./training
COPY service ./service
COPY feature_repo ./feature_repo
# Editable, so that training/ finds feature_repo/ next to it (training.features.store.FEATURE_REPO).
RUN pip install --no-deps -c constraints.txt -e . && rm -rf /root/.cache
# The -O bytecode the workers start from (service/runtime.py, optimize_workers): with
# PYTHONDONTWRITEBYTECODE nothing is written at run time. A file that does not compile only loses that.
RUN python -O -m compileall -q -j 0 /usr/local/lib/python3.11 training service feature_repo >/dev/null || true

USER reco
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2).status != 200)"
CMD ["reco", "serve", "--host", "0.0.0.0", "--port", "8000"]
