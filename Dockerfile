# Floodgate's commands in one small image: loadgen (size Redis before a
# raid) and chatbot-demo (bot replicas sharing limits through Redis).
# docker-compose.yml builds it; by hand:
#   docker build -t floodgate .
#   docker run --rm -e REDIS_URL=redis://host:6379 floodgate loadgen
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
# chatbot-demo serves Prometheus /metrics here when DEMO_METRICS_ADDR=:9100.
EXPOSE 9100
# Configured by the environment only: FLOODGATE_REDIS_URL or REDIS_URL,
# FLOODGATE_* for the limits, DEMO_* for the demo.
CMD ["chatbot-demo", "--replica"]
