FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DATABASE_PATH=/data/bot.db

# ffmpeg lets the bot shrink a video that is over a server's upload limit.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 bot \
    && mkdir -p /data \
    && chown bot:bot /data

WORKDIR /app
# Exact, hashed versions first (a layer that changes only with the lock), then the bot itself.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapter ./adapter
COPY cogs ./cogs
RUN pip install --no-cache-dir --no-deps .

USER bot
VOLUME ["/data"]
# Unhealthy when the bot has lost Discord, cannot write its database, or has stopped beating.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "bot.healthcheck"]
CMD ["python", "-m", "bot"]
