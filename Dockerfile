# Floodgate's commands in one small image: floodgate (the HTTP sidecar and
# operator tools), loadgen (size Redis before a raid) and chatbot-demo (bot
# replicas sharing limits through Redis).
# docker-compose.yml builds it; by hand:
#   docker build -t floodgate .
#   docker run --rm -e REDIS_URL=redis://host:6379 floodgate loadgen
#   docker run --rm -p 127.0.0.1:8080:8080 -e REDIS_URL=redis://host:6379 \
#     -e FLOODGATE_HTTP_ADDR=0.0.0.0:8080 -e FLOODGATE_HTTP_TOKEN=... floodgate floodgate serve
FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so code changes do not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries: the final image has no libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/...

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER nonroot:nonroot
# chatbot-demo serves Prometheus /metrics here when DEMO_METRICS_ADDR=:9100;
# floodgate serve listens on 8080 with FLOODGATE_HTTP_ADDR=0.0.0.0:8080.
EXPOSE 9100 8080
# Configured by the environment only: FLOODGATE_REDIS_URL or REDIS_URL,
# FLOODGATE_* for the limits, DEMO_* for the demo.
CMD ["chatbot-demo", "--replica"]
