# The flow service image: one static binary on an empty base, so it needs no image
# from a registry. Built by scripts/build-images.sh, whose staging directory is the
# build context (the binary, etc/ and the empty data/ and tmp/ directories).
FROM scratch

COPY etc/nsswitch.conf /etc/nsswitch.conf
COPY etc/passwd etc/group /etc/
# There is no shell to mkdir/chown with, so the directories come from the context:
# /data (the embedded store, usually a volume) owned by the service's user, so a fresh
# named volume is initialised with that owner; /tmp for SQLite's temporary files.
COPY --chown=65532:65532 data/ /data/
COPY tmp/ /tmp/
COPY flow-service /flow-service

USER 65532:65532
WORKDIR /data

ENV FLOW_SERVICE_LISTEN=0.0.0.0:50051 \
    FLOW_SERVICE_DATABASE_URL=sqlite:///data/flow-service.db \
    NO_COLOR=1

EXPOSE 50051

# Exec form: there is no shell in this image. grpc.health.v1 Check("") on 127.0.0.1.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/flow-service", "healthcheck"]

ENTRYPOINT ["/flow-service"]
