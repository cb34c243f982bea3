#!/usr/bin/env bash
# Build a real one-node Kubernetes for the tests: the five binaries, etcd and the node's runtime.
#
# No Docker here, so no kind: kube-apiserver, kubelet, kube-controller-manager, kube-scheduler and
# kube-proxy are built from Debian's own kubernetes source package (1.20.2) with Debian's Go, with
# the vendored reflect2 replaced (below); containerd, runc, the CNI plugins, conntrack and a static
# busybox come from apt. The binaries are cached: when they exist this prints the cache directory
# and exits at once (after any build in progress). First build: 6-20 min on 2 cores.
#
#   scripts/build_kube.sh            # prints the cache directory
#   SEFT_KUBE_CACHE=DIR scripts/...  # cache elsewhere (default ~/.cache/seft-kube)
#
# Needs a Debian (bookworm) machine and root or sudo for apt.
set -euo pipefail

CACHE="${SEFT_KUBE_CACHE:-$HOME/.cache/seft-kube}"
BINARIES=(kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy)
RUNTIME=(etcd containerd runc ctr conntrack busybox)
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9  # one build at a time: a second caller waits, then finds the binaries

have_all() {
  local b
  for b in "${BINARIES[@]}"; do [[ -x "$CACHE/$b" ]] || return 1; done
  for b in "${RUNTIME[@]}"; do command -v "$b" >/dev/null || return 1; done
  [[ -x /usr/lib/cni/bridge ]]
}
if have_all; then
  echo "$CACHE"
  exit 0
fi

SUDO=""
[[ "$(id -u)" == 0 ]] || SUDO="sudo"
log() { echo "build_kube: $*" >&2; }

# Source packages: a deb-src entry mirroring the Debian entry that is there.
if ! grep -rqs "^Types:.*deb-src" /etc/apt/sources.list.d/; then
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
    | $SUDO tee /etc/apt/sources.list.d/seft-deb-src.sources >/dev/null
fi
log "installing Go, etcd, the node runtime (containerd, runc, CNI plugins, conntrack, busybox)"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq golang-go etcd-server golang-github-modern-go-reflect2-dev rsync make \
  containerd runc containernetworking-plugins conntrack busybox-static iptables >/dev/null
# The node's containerd is started by the tests with its own root and socket, never the system's.
if command -v systemctl >/dev/null && systemctl is-active -q containerd 2>/dev/null; then
  $SUDO systemctl disable --now containerd >/dev/null 2>&1 || true
fi

missing=()
for b in "${BINARIES[@]}"; do [[ -x "$CACHE/$b" ]] || missing+=("$b"); done
if ((${#missing[@]})); then
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  cd "$WORK"
  log "fetching the kubernetes source package"
  apt-get source --download-only kubernetes >/dev/null 2>&1
  tar xzf kubernetes_*.orig.tar.gz
  SRC="$(find "$WORK" -maxdepth 1 -type d -name 'kubernetes-1.*' | head -1)"

  # The vendored reflect2 v1.0.1 crashes under Go >= 1.18 on the first custom-object write.
  REFLECT2="$SRC/vendor/github.com/modern-go/reflect2"
  rm -rf "$REFLECT2"
  mkdir -p "$REFLECT2"
  find /usr/share/gocode/src/github.com/modern-go/reflect2 -maxdepth 1 -type f ! -name '*_test.go' \
    -exec cp {} "$REFLECT2/" \;

  mkdir -p "$WORK/.go/src/k8s.io"
  ln -s "$SRC" "$WORK/.go/src/k8s.io/kubernetes"
  log "building ${missing[*]} (about 6-15 min)"
  cd "$WORK/.go/src/k8s.io/kubernetes"
  GOPATH="$WORK/.go" CGO_ENABLED=0 make WHAT="${missing[*]/#/cmd/}" >&2
  for b in "${missing[@]}"; do
    cp "$(find _output -type f -name "$b" | head -1)" "$CACHE/$b.tmp"
    mv "$CACHE/$b.tmp" "$CACHE/$b"  # atomic: an interrupted build leaves no binary that looks complete
  done
fi
echo "$CACHE"
