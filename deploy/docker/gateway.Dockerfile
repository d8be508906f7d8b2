# The gateway image: one static binary on an empty base, so it needs no image from a
# registry and carries nothing but the gateway. Built by scripts/build-images.sh,
# whose staging directory is the build context (the binary, etc/ and the empty
# secrets/ directory).
FROM scratch

COPY etc/nsswitch.conf /etc/nsswitch.conf
COPY etc/passwd etc/group /etc/
# Where `flowgate-gateway gen-token /secrets/hop-token` writes the hop token in
# docker-compose.yml. Owned by the gateway's user, so a fresh named volume mounted here
# is created with that owner (there is no shell to chown with).
COPY --chown=65532:65532 secrets/ /secrets/
COPY flowgate-gateway /flowgate-gateway

# Numeric, so it needs no lookup: the conventional "nonroot" ids, owning only /secrets.
USER 65532:65532

# The admin listener binds every interface inside the container so that Docker's and
# Kubernetes' probes reach it; nothing publishes it outside by default.
ENV FLOWGATE_LISTEN=0.0.0.0:8443 \
    FLOWGATE_ADMIN_LISTEN=0.0.0.0:9464 \
    NO_COLOR=1

EXPOSE 8443 9464

# Exec form: there is no shell in this image. Ready means the flow service answers
# SERVING through this gateway.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/flowgate-gateway", "healthcheck"]

ENTRYPOINT ["/flowgate-gateway"]
