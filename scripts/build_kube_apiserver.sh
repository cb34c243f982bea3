#!/usr/bin/env bash
# Build a real kube-apiserver for the operator's integration tests, and install etcd.
#
# No Docker here, so no kind: the API server is built from Debian's own kubernetes source package
# (1.20.2) with Debian's Go, with the vendored reflect2 replaced (below). The binary is cached: when it exists
# this prints its path and exits at once (after any build in progress). First build: 6-15 min
# on 2 cores.
#
#   scripts/build_kube_apiserver.sh            # prints the binary's path
#   SEFT_KUBE_CACHE=DIR scripts/...            # cache elsewhere (default ~/.cache/seft-kube)
#
# Needs a Debian (bookworm) machine and root or sudo for apt.
set -euo pipefail

CACHE="${SEFT_KUBE_CACHE:-$HOME/.cache/seft-kube}"
BIN="$CACHE/kube-apiserver"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9  # one build at a time: a second caller waits, then finds the binary
if [[ -x "$BIN" ]] && command -v etcd >/dev/null; then
  echo "$BIN"
  exit 0
fi

SUDO=""
[[ "$(id -u)" == 0 ]] || SUDO="sudo"
log() { echo "build_kube_apiserver: $*" >&2; }

# Source packages: a deb-src entry mirroring the Debian entry that is there.
if ! grep -rqs "^Types:.*deb-src" /etc/apt/sources.list.d/; then
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
    | $SUDO tee /etc/apt/sources.list.d/seft-deb-src.sources >/dev/null
fi
log "installing golang-go, etcd-server, reflect2, rsync and make"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq golang-go etcd-server golang-github-modern-go-reflect2-dev rsync make >/dev/null

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
log "building kube-apiserver (6-15 min)"
cd "$WORK/.go/src/k8s.io/kubernetes"
GOPATH="$WORK/.go" CGO_ENABLED=0 make WHAT=cmd/kube-apiserver >&2
mkdir -p "$CACHE"
cp "$(find _output -type f -name kube-apiserver | head -1)" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"  # atomic: an interrupted build leaves no binary that looks complete
echo "$BIN"
