#!/usr/bin/env bash
# Install oomtrace's systemd units: the node agent and the collector (deploy/systemd/).
#   sudo scripts/install-systemd.sh                    # install; start nothing
#   sudo systemctl enable --now oomtrace-collector oomtrace-agent
# Assumes /usr/local/bin/oomtrace (scripts/setup.sh makes it). Copies the units to
# /etc/systemd/system, writes /etc/default/oomtrace-{agent,collector} (kept if present) and a
# shared key /etc/oomtrace/shared-key (kept if present; copy it to every node whose agent
# forwards to this collector), then `systemctl daemon-reload`. Safe to run again.
# Environment: OOMTRACE_BIN (default /usr/local/bin/oomtrace), SYSTEMD_DIR (default /etc/systemd/system).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
bin="${OOMTRACE_BIN:-/usr/local/bin/oomtrace}"
units="${SYSTEMD_DIR:-/etc/systemd/system}"
[ "$(id -u)" -eq 0 ] || { echo "install-systemd.sh: run as root (sudo)" >&2; exit 1; }
[ -x "$bin" ] || { echo "install-systemd.sh: no $bin: run scripts/setup.sh first" >&2; exit 1; }

for unit in oomtrace-agent.service oomtrace-collector.service; do
    install -m 0644 "$repo/deploy/systemd/$unit" "$units/$unit"
done
mkdir -p /usr/local/share/doc/oomtrace
install -m 0644 "$repo/docs/deploy.md" /usr/local/share/doc/oomtrace/deploy.md

install -d -m 0755 /etc/oomtrace
if [ ! -s /etc/oomtrace/shared-key ]; then
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >/etc/oomtrace/shared-key)
    echo "install-systemd.sh: made /etc/oomtrace/shared-key (copy it to every node that forwards here)"
fi
chmod 0600 /etc/oomtrace/shared-key

if [ ! -e /etc/default/oomtrace-agent ]; then
    cat >/etc/default/oomtrace-agent <<'CONF'
# oomtrace-agent.service (systemctl restart oomtrace-agent after a change)
# The collector: tcp://HOST:PORT or unix:PATH (oomtrace collect, Fluentd, Fluent Bit).
OOMTRACE_COLLECTOR=tcp://127.0.0.1:24224
# The Forward protocol's shared key: the collector's /etc/oomtrace/shared-key.
OOMTRACE_SHARED_KEY_FILE=/etc/oomtrace/shared-key
# The node name in every record (default: the hostname).
#NODE_NAME=
# More `oomtrace run` options, e.g. --tls, --http 127.0.0.1:8080 (see `oomtrace run --help`).
OOMTRACE_AGENT_ARGS=
CONF
fi
if [ ! -e /etc/default/oomtrace-collector ]; then
    cat >/etc/default/oomtrace-collector <<'CONF'
# oomtrace-collector.service (systemctl restart oomtrace-collector after a change)
# Where agents connect: tcp://127.0.0.1:24224 takes this node's agent only; tcp://0.0.0.0:24224
# every node's (they authenticate with /etc/oomtrace/shared-key; add --tls-cert for TLS).
OOMTRACE_LISTEN=tcp://127.0.0.1:24224
# More `oomtrace collect` options, e.g. --retain 90d --bind-node (see `oomtrace collect --help`).
OOMTRACE_COLLECTOR_ARGS=
CONF
fi

# The units run $bin with their hardening: a checkout under /home or /root (setup.sh links
# its venv) is hidden by ProtectHome=yes, and the collector's own user cannot read /root.
target="$(readlink -f "$bin")"
case "$target" in
    /home/*|/root/*|/run/user/*)
        mkdir -p "$units/oomtrace-agent.service.d"
        printf '[Service]\n# %s lives under a home directory\nProtectHome=read-only\n' "$target" \
            >"$units/oomtrace-agent.service.d/home.conf"
        echo "install-systemd.sh: $target is under a home directory: the agent gets ProtectHome=read-only;" \
             "the collector (its own user, ProtectHome=yes) cannot run it: install oomtrace outside /home and /root" >&2 ;;
esac
systemctl daemon-reload
echo "installed: $units/oomtrace-agent.service $units/oomtrace-collector.service"
echo "start them: systemctl enable --now oomtrace-collector oomtrace-agent"
