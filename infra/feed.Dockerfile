# The always-on candle feed (feed_service): one small process, no inbound traffic but
# the health probe. Build from the repository root:
#   docker build -f infra/feed.Dockerfile -t cmon-feed .
#   docker run -e FEED_STREAMS=BTCUSDT@1m -e EVENT_BUS_NAME=cmon-dev -e AWS_REGION=... cmon-feed

FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A C compiler for the feed's closed-kline decoder (feed_service/_kline.c; the image's
# Python ships its headers). Without it the wheel is built without the decoder and the
# feed runs on the Python path (~5 us a closed frame instead of ~3), deciding the same.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY requirements/feed.txt ./requirements/feed.txt
COPY functions ./functions
COPY feed_service ./feed_service
# setup.py ships the migrations inside the package (functions.supabase).
COPY supabase ./supabase
# Wheels for the project and every dependency, at the versions of the lock
# (requirements/lock.sh), so the runtime stage needs no compiler and no network access.
RUN pip wheel --wheel-dir /wheels --constraint requirements/feed.txt ".[feed]" \
    && python -c "import sys, zipfile, glob; w, = glob.glob('/wheels/cmon-*.whl'); \
sys.exit(not any(n.startswith('feed_service/_kline') and n.endswith('.so') for n in zipfile.ZipFile(w).namelist()))"

FROM python:3.12-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FEED_HEALTH_PORT=8080
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels "cmon[feed]" \
    && useradd --system --uid 10001 --no-create-home feed
USER feed
EXPOSE 8080
# 200 while every subscribed stream closed a candle recently, 503 when one went stale
# (urlopen raises on 503, which exits non-zero).
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('FEED_HEALTH_PORT', '8080'), timeout=4)"]
# SIGTERM (docker stop, ECS) flushes the publisher and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "feed_service"]
