# krib container image: build on Debian 12, run on Debian 12 slim as a non-root
# user. Validated in CI only as text (no container engine there); build with
#   docker build -t krib .
FROM debian:12-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config \
      dpkg-dev ca-certificates libsasl2-dev libzstd-dev liblz4-dev zlib1g-dev \
      libhiredis-dev libavro-dev libconfig-dev libmicrohttpd-dev \
      libjansson-dev libssl-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The librdkafka CI tests with (ci/librdkafka.pin), built the same way from
# Debian's source package: Debian 12's 2.0.2 fails SCRAM against Kafka 4.
COPY ci/librdkafka ci/librdkafka.pin ci/
RUN ci/librdkafka /usr/local
COPY CMakeLists.txt ./
COPY cmake cmake
COPY connector connector
COPY bench bench
COPY config config
COPY schemas schemas
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKRIB_TESTS=OFF \
 && cmake --build /build -j"$(nproc)" \
 && cmake --install /build --prefix /opt/krib

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libhiredis0.14 libavro23 \
      libconfig9 libmicrohttpd12 libjansson4 libssl3 libcurl4 curl ca-certificates \
      libsasl2-2 libzstd1 liblz4-1 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin krib
COPY --from=build /usr/local/lib/librdkafka.so.1 /usr/local/lib/
RUN ldconfig
COPY --from=build /opt/krib /opt/krib
# Paths of the installed layout; endpoints reachable from outside the container.
ENV KRIB_DECODE_SCHEMA_FILE=/opt/krib/share/krib/schemas/invalidation.avsc \
    KRIB_DECODE_SCHEMA_DIR=/opt/krib/share/krib/schemas \
    KRIB_METRICS_ADDRESS=0.0.0.0
USER 10001
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD curl -fsS http://127.0.0.1:9464/healthz || exit 1
ENTRYPOINT ["/opt/krib/bin/krib"]
CMD ["-c", "/opt/krib/etc/krib/krib.conf"]
