# A worker image: jetsched and your handler module, nothing else (no pytest, no nats-server, no services).
# Build it from your project's directory, naming the module that holds your tasks:
#   docker build -f worker.Dockerfile --build-arg MODULE=tasks -t my-worker .
# This repository's demo worker (compose, Kubernetes) is built from its root with the README's tasks module:
#   docker build -f deploy/worker.Dockerfile --build-arg JETSCHED=".[otel,uvloop]" \
#       --build-arg MODULE=examples.tasks -t jetsched-worker .
FROM python:3.11-slim
WORKDIR /app
# Your code: the module and whatever it imports (a .dockerignore keeps virtualenvs and secrets out).
COPY . .
# What to install: jetsched from the package index by default; a path or a wheel works as well.
ARG JETSCHED="jetsched[otel,uvloop]"
RUN pip install --no-cache-dir "$JETSCHED"
ARG MODULE=tasks
USER nobody
# PYTHONPATH: the module imports from any working directory (Kubernetes starts in a writable volume).
ENV PYTHONPATH=/app JETSCHED_NATS_URL=nats://nats:4222 MODULE=${MODULE}
ENTRYPOINT ["sh", "-c", "exec jetsched worker \"$MODULE\" --concurrency 8 \"$@\"", "--"]
