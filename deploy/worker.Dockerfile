# A worker image: the SDK and CLI plus your handler module. Build from the repository root:
#   docker build -f deploy/worker.Dockerfile --build-arg MODULE=jetsched.devkit.demo -t jetsched-worker .
FROM python:3.11-slim
ARG MODULE=jetsched.devkit.demo
WORKDIR /src
COPY libs libs
COPY services services
RUN pip install --no-cache-dir ./libs/core ./libs/bus ./libs/sdk ./services/intake ./services/timer \
        ./services/dispatcher ./services/reaper ./libs/devkit ./libs/cli && rm -rf /src
USER nobody
ENV JETSCHED_NATS_URL=nats://nats:4222 MODULE=${MODULE}
ENTRYPOINT ["sh", "-c", "exec jetsched worker \"$MODULE\" --concurrency 8"]
