#!/usr/bin/env bash
# Installs the Debian packages the local stack needs, if any is missing. Needs root and Debian's package registry.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# command:package pairs
DEPS=(containerd:containerd runc:runc ctr:containerd umoci:umoci debootstrap:debootstrap catatonit:catatonit
  iptables:iptables ip:iproute2 ss:iproute2 curl:curl openssl:openssl conntrack:conntrack socat:socat ipset:ipset)
missing=()
for d in "${DEPS[@]}"; do
  command -v "${d%%:*}" >/dev/null 2>&1 || missing+=("${d#*:}")
done
[[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
if (( ${#missing[@]} == 0 )); then
  log "system packages: all present"
  exit 0
fi
need apt-get "this script installs Debian packages; install ${missing[*]} by hand on other systems"
[[ $(id -u) == 0 ]] || die "installing ${missing[*]} needs root"
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
log "system packages installed"
