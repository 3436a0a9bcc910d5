# tracewarden container image: docker build -t tracewarden .
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tracewarden

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/tracewarden /usr/local/bin/tracewarden
COPY config/tracewarden.toml /etc/tracewarden/tracewarden.toml
USER nobody
EXPOSE 9464
ENTRYPOINT ["tracewarden"]
CMD ["run", "--config", "/etc/tracewarden/tracewarden.toml"]
