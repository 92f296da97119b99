# mssgw in a container: embedded store under /var/lib/mssgw, configuration in /etc/mssgw.
FROM python:3.11-slim-bookworm
RUN useradd --system --home /var/lib/mssgw --create-home mssgw
WORKDIR /opt/mssgw
COPY pyproject.toml README.md ./
COPY mssgw ./mssgw
RUN pip install --no-cache-dir . && mkdir -p /etc/mssgw && chown mssgw /var/lib/mssgw
COPY config/mssgw.example.toml /etc/mssgw/mssgw.toml
USER mssgw
ENV MSSGW_CONFIG=/etc/mssgw/mssgw.toml MSSGW_GATEWAY__STATE_DIR=/var/lib/mssgw
VOLUME ["/var/lib/mssgw"]
EXPOSE 25 465 587 143 993 8080
# Privileged ports: run with --cap-add NET_BIND_SERVICE, or map high ports.
CMD ["sh", "-c", "mssgw db upgrade && exec mssgw serve"]
