# jetsched-server: one image for the four services, one console script each; the command picks the service.
# Build from the repository root, run any of them:
#   docker build -f deploy/server.Dockerfile -t jetsched-server .
#   docker run jetsched-server jetsched-intake      # or jetsched-timer, jetsched-dispatcher, jetsched-reaper
FROM python:3.11-slim AS wheels
WORKDIR /src
COPY pyproject.toml README.md ./
COPY libs libs
COPY services services
RUN pip wheel --no-cache-dir --no-deps -w /wheels . ./services

FROM python:3.11-slim
COPY --from=wheels /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER nobody
WORKDIR /tmp
ENV JETSCHED_NATS_URL=nats://nats:4222 JETSCHED_REPLICAS=1
CMD ["jetsched-intake"]
