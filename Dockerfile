# The same image as `make image`, for those who build with Docker. Run `make image` first: it
# writes the two static binaries and the CA bundle into bin/image/.
#
#   make image && docker build -t kdc-etcd-backup:v0.1.0 \
#     --build-arg VERSION=v0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
FROM scratch
ARG VERSION=v0.1.0
ARG REVISION=
ARG SOURCE=https://kube-dc.com/etcd-backup
LABEL org.opencontainers.image.source=$SOURCE \
      org.opencontainers.image.revision=$REVISION \
      org.opencontainers.image.version=$VERSION \
      org.opencontainers.image.title=kdc-etcd-backup
ENV PATH=/ SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
COPY --chmod=0644 bin/image/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --chmod=0755 bin/image/kdc-etcd-backup /kdc-etcd-backup
COPY --chmod=0755 bin/image/kdc-etcd-backup-manager /kdc-etcd-backup-manager
USER 65532:65532
WORKDIR /
ENTRYPOINT ["/kdc-etcd-backup"]
