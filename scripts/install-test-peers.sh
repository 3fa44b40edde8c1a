#!/usr/bin/env bash
# Install what the test suite's real peers need, once per machine:
#   - the wasm32-wasip2 Rust target (the backend components)
#   - OpenSSH server (bare-metal backend tests start their own sshd)
#   - Chromium (the dashboard's browser test)
#   - wrk (dashboard load benchmark; not needed by the tests themselves)
#   - podman, runc, sudo and busybox-static (the bare-metal podman runtime's
#     test imports a busybox image and logs in through sudo podman exec)
#   - qemu-system-x86, dropbear-bin and cpio (the vm runtime's test guest,
#     which scripts/guest/build-guest.sh builds from Debian packages;
#     installing qemu-system-x86 may replace a backported qemu-utils)
#   - moto[server] in a venv under target/test-peers (AWS backend tests)
#   - componentize-py, pinned, in the same venv (it builds the Python
#     backends: components/hetzner and `components new --lang python`;
#     the pin is the version the sandbox's policy was checked against)
# Idempotent: anything already present is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  say "adding the wasm32-wasip2 target"
  rustup target add wasm32-wasip2
fi

need_apt=()
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v ssh >/dev/null 2>&1 || need_apt+=(openssh-client)
[ -x /usr/bin/podman ] || need_apt+=(podman)
# runc, not crun: crun refuses hybrid cgroup v1 hosts.
command -v runc >/dev/null 2>&1 || need_apt+=(runc)
[ -x /usr/bin/sudo ] || need_apt+=(sudo)
[ -x /bin/busybox ] || need_apt+=(busybox-static)
[ -x /usr/bin/qemu-system-x86_64 ] || need_apt+=(qemu-system-x86)
[ -x /usr/sbin/dropbear ] || need_apt+=(dropbear-bin)
command -v cpio >/dev/null 2>&1 || need_apt+=(cpio)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing ${need_apt[*]} (apt)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# sshd refuses to start without its privilege-separation directory.
[ -d /run/sshd ] || { SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"; $SUDO mkdir -p /run/sshd; }

venv=target/test-peers/venv
if [ ! -x "$venv/bin/moto_server" ]; then
  say "installing moto[server] into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'moto[server]'
fi
# componentize-py: the newest release that builds our WIT and that the
# sandbox's limits admit (host/sandbox/src/policy.rs names its shape).
componentize_py=0.25.1
if ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -qx "componentize-py $componentize_py"; then
  say "installing componentize-py $componentize_py into $venv"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "componentize-py==$componentize_py"
fi
say "test peers ready"
