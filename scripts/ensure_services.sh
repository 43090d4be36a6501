#!/usr/bin/env bash
# Make sure the local services the tests need are present and running:
# PostgreSQL on 127.0.0.1:5432 (Debian cluster; installed if missing), RabbitMQ on 127.0.0.1:5672 (the Celery
# broker; installed if missing, guest/guest on loopback) and headless Chromium + ChromeDriver.
set -euo pipefail

apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "ensure_services: need $* but cannot apt-get install as non-root; install them and retry" >&2
    return 1
  fi
  if [ -z "${_APT_UPDATED:-}" ]; then apt-get update -qq >/dev/null; _APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  command -v pg_ctlcluster >/dev/null || apt_install postgresql postgresql-client
  version="$(ls /etc/postgresql | sort -V | tail -1)"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  pg_isready -h 127.0.0.1 -p 5432
fi
# Tests connect as postgres over TCP; a fresh Debian install asks for a password, so trust loopback.
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc "select 1" >/dev/null 2>&1; then
  hba="$(ls /etc/postgresql/*/main/pg_hba.conf | sort -V | tail -1)"
  sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  version="$(ls /etc/postgresql | sort -V | tail -1)"
  pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  sleep 1
  psql -h 127.0.0.1 -U postgres -d postgres -Atc "select 1" >/dev/null
fi

# RabbitMQ answers AMQP on 5672 (bash's /dev/tcp: no client needed); started detached, waited for (bounded, against hangs).
rabbitmq_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if ! rabbitmq_up; then
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  rabbitmq-server -detached
  for _ in $(seq 1 120); do rabbitmq_up && break; sleep 1; done
  rabbitmq_up || { echo "ensure_services: RabbitMQ did not answer on 127.0.0.1:5672 within 120 s" >&2; exit 1; }
fi

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt_install chromium chromium-driver
fi
