#!/usr/bin/env bash
# A current Kubernetes for the end-to-end tests: kube-apiserver and kubectl of the release pinned in
# current/kubernetes/go.mod, etcd of current/etcd/go.mod and helm of current/helm/go.mod, each
# built from Go modules (go.sum committed) with the machine's Go, and kept by version in the cache.
#
# Standalone:
#   bash tests/e2e/current.sh build    build what is missing from the cache (or does not report
#                                      its version), print where the binaries are
#   bash tests/e2e/current.sh env      print `export PATH=...` with the binaries' directories first
#
# Sourced (apiserver.sh does this): defines e2e_build_current and sets
#   E2E_KUBE_VERSION, E2E_ETCD_VERSION, E2E_HELM_VERSION   the versions pinned in the go.mod files
#   E2E_CURRENT_APISERVER, E2E_CURRENT_KUBECTL, E2E_CURRENT_ETCD, E2E_CURRENT_HELM   the binaries
#
# Environment:
#   STASH_E2E_CACHE  where the binaries are kept (default /var/cache/stash-webhook-e2e); delete a
#                    version's directory to rebuild it
#   TMPDIR           where the Go module and build caches live during a build (removed afterwards)
#   GO               the go command (default: `go` on PATH, else /usr/local/go/bin/go)
#   STASH_E2E_GOTOOLCHAIN  GOTOOLCHAIN for the builds (default local: the machine's Go builds the
#                    pinned releases)

E2E_CURRENT_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/current
E2E_CACHE=${STASH_E2E_CACHE:-/var/cache/stash-webhook-e2e}

# The version a go.mod requires of a module. Usage: e2e_required_version GO_MOD MODULE
e2e_required_version() {
  awk -v m="$2" '{ i = ($1 == "require") ? 2 : 1 } $i == m && $(i + 1) ~ /^v/ { print $(i + 1); exit }' "$1"
}

E2E_KUBE_VERSION=$(e2e_required_version "$E2E_CURRENT_SRC/kubernetes/go.mod" k8s.io/kubernetes)
E2E_ETCD_VERSION=$(e2e_required_version "$E2E_CURRENT_SRC/etcd/go.mod" go.etcd.io/etcd/server/v3)
E2E_HELM_VERSION=$(e2e_required_version "$E2E_CURRENT_SRC/helm/go.mod" helm.sh/helm/v4)
E2E_CURRENT_APISERVER=$E2E_CACHE/current-$E2E_KUBE_VERSION/kube-apiserver
E2E_CURRENT_KUBECTL=$E2E_CACHE/current-$E2E_KUBE_VERSION/kubectl
E2E_CURRENT_ETCD=$E2E_CACHE/etcd-$E2E_ETCD_VERSION/etcd
E2E_CURRENT_HELM=$E2E_CACHE/helm-$E2E_HELM_VERSION/helm

if ! declare -F e2e_log >/dev/null; then
  e2e_log() { printf '[e2e %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
fi

# Whether each binary is there and reports the pinned version.
e2e_current_apiserver_ok() {
  [[ -x $E2E_CURRENT_APISERVER ]] &&
    [[ $("$E2E_CURRENT_APISERVER" --version 2>/dev/null) == "Kubernetes $E2E_KUBE_VERSION" ]]
}
e2e_current_kubectl_ok() {
  [[ -x $E2E_CURRENT_KUBECTL ]] &&
    [[ $("$E2E_CURRENT_KUBECTL" version --client 2>/dev/null | head -n 1) == "Client Version: $E2E_KUBE_VERSION" ]]
}
e2e_current_etcd_ok() {
  [[ -x $E2E_CURRENT_ETCD ]] &&
    [[ $("$E2E_CURRENT_ETCD" --version 2>/dev/null | head -n 1) == "etcd Version: ${E2E_ETCD_VERSION#v}" ]]
}
e2e_current_helm_ok() {
  [[ -x $E2E_CURRENT_HELM ]] &&
    [[ $("$E2E_CURRENT_HELM" version --short 2>/dev/null) == "$E2E_HELM_VERSION" ]]
}
e2e_current_ok() {
  e2e_current_apiserver_ok && e2e_current_kubectl_ok && e2e_current_etcd_ok && e2e_current_helm_ok
}

# Builds whichever of the four binaries is missing or reports another version. The Go module
# cache and build cache live in a temporary directory removed on any exit: a rebuild downloads
# again, and nothing is left behind but the binaries.
e2e_build_current() {
  e2e_current_ok && return 0
  [[ -n $E2E_KUBE_VERSION && -n $E2E_ETCD_VERSION && -n $E2E_HELM_VERSION ]] || {
    e2e_log "cannot read the pinned versions from $E2E_CURRENT_SRC/*/go.mod"
    return 1
  }
  mkdir -p "$E2E_CACHE" || return 1
  (
    set -euo pipefail
    # One build at a time per machine; a second runner waits, then finds the binaries.
    exec 9>"$E2E_CACHE/.lock-current"
    flock 9
    go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
    [[ -x $go ]] || {
      e2e_log "no go command (set GO, or put go on PATH)"
      exit 1
    }
    work=$(mktemp -d "${TMPDIR:-/tmp}/stash-webhook-e2e-go.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # GOTOOLCHAIN=local: the go.mod files ask for no newer Go than the machine's (a release that
    # does would need STASH_E2E_GOTOOLCHAIN=goX.Y.Z). -modcacherw lets the temporary module cache
    # be removed; -mod=readonly builds exactly what go.sum pins.
    export GOPATH=$work/gopath GOMODCACHE=$work/gopath/pkg/mod GOCACHE=$work/cache \
      GOTOOLCHAIN=${STASH_E2E_GOTOOLCHAIN:-local} CGO_ENABLED=0 \
      GOFLAGS='-mod=readonly -modcacherw -buildvcs=false -trimpath'
    # Usage: build NAME CHECK OUT MODULE_DIR PACKAGE LDFLAGS
    build() {
      local name=$1 check=$2 out=$3 dir=$4 pkg=$5 ldflags=$6 started=$SECONDS
      if "$check"; then return 0; fi
      e2e_log "building $name in $work"
      mkdir -p "$(dirname "$out")"
      if ! (cd "$dir" && nice -n 19 "$go" build -ldflags "$ldflags" -o "$out.tmp" "$pkg") >"$work/$name.log" 2>&1; then
        tail -n 40 "$work/$name.log" >&2
        rm -f "$out.tmp"
        return 1
      fi
      mv -f "$out.tmp" "$out"
      "$check" || {
        e2e_log "$out does not report the version it was built as"
        return 1
      }
      e2e_log "built $out in $((SECONDS - started)) s"
    }
    # What `make` in the Kubernetes repository sets, so that discovery (/version) and kubectl
    # report the release and not v0.0.0-master.
    minor=${E2E_KUBE_VERSION#v*.}
    minor=${minor%%.*}
    major=${E2E_KUBE_VERSION#v}
    major=${major%%.*}
    kube_ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      kube_ldflags+=" -X $pkg.gitVersion=$E2E_KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    done
    build kube-apiserver e2e_current_apiserver_ok "$E2E_CURRENT_APISERVER" "$E2E_CURRENT_SRC/kubernetes" \
      k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"
    build kubectl e2e_current_kubectl_ok "$E2E_CURRENT_KUBECTL" "$E2E_CURRENT_SRC/kubernetes" \
      k8s.io/kubernetes/cmd/kubectl "$kube_ldflags"
    build etcd e2e_current_etcd_ok "$E2E_CURRENT_ETCD" "$E2E_CURRENT_SRC/etcd" . "-s -w"
    build helm e2e_current_helm_ok "$E2E_CURRENT_HELM" "$E2E_CURRENT_SRC/helm" helm.sh/helm/v4/cmd/helm \
      "-s -w -X helm.sh/helm/v4/internal/version.version=$E2E_HELM_VERSION"
  )
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -uo pipefail
  case ${1:-} in
  build)
    e2e_build_current || exit 1
    printf '%s\n' "$E2E_CURRENT_APISERVER" "$E2E_CURRENT_KUBECTL" "$E2E_CURRENT_ETCD" "$E2E_CURRENT_HELM"
    ;;
  env)
    e2e_current_ok || {
      echo "not built yet: bash $0 build" >&2
      exit 1
    }
    # shellcheck disable=SC2016 # $PATH is for the shell that evaluates this
    printf 'export PATH=%q:%q:%q:"$PATH"\n' "$(dirname "$E2E_CURRENT_KUBECTL")" \
      "$(dirname "$E2E_CURRENT_ETCD")" "$(dirname "$E2E_CURRENT_HELM")"
    ;;
  *)
    echo "usage: $0 build | env" >&2
    exit 2
    ;;
  esac
fi
