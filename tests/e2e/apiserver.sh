#!/usr/bin/env bash
# A real kube-apiserver and etcd on loopback, for the end-to-end tests: either 1.20 (v1.20.2, built
# from Debian bookworm's source package, with Debian's etcd-server) or the current release pinned
# in current/kubernetes/go.mod (built from Go modules by current.sh, with etcd from current/etcd).
#
# Standalone (STASH_E2E_SERVER=1.20, the default, or current):
#   bash tests/e2e/apiserver.sh build        install the Debian packages needed, build kube-apiserver
#                                            (and for current: kubectl, etcd and helm) into the
#                                            cache unless it is there already
#   bash tests/e2e/apiserver.sh start [DIR]  build if needed, then start etcd and kube-apiserver in
#                                            the background; state (certificates, kubeconfigs, etcd
#                                            data, logs, pid files) goes to DIR, by default
#                                            /tmp/stash-webhook-e2e, which is wiped first; prints
#                                            the variables to export (for current, PATH too, so
#                                            that kubectl and helm are the ones built with it)
#   bash tests/e2e/apiserver.sh stop [DIR]   stop what `start` started (by its pid files) and remove DIR
#
# Sourced (tests/e2e/run.sh does this): defines e2e_use_server 1.20|current, e2e_build_server,
# e2e_start_cluster DIR and e2e_stop_cluster; after e2e_use_server these are set:
#   E2E_SERVER           1.20 or current
#   E2E_SERVER_VERSION   the version kube-apiserver reports (v1.20.2, or the current one)
#   E2E_BIN_PATH         directories to put first on PATH for this server ("" for 1.20: its
#                        kubectl is the one on PATH; for current: the kubectl and helm built here)
# and after e2e_start_cluster:
#   E2E_STATE            DIR
#   E2E_APISERVER_URL    https://127.0.0.1:PORT
#   E2E_CA_CERT          the CA of the API server's serving and client certificates
#   E2E_ADMIN_KUBECONFIG user `admin`, group system:masters
#   E2E_WEBHOOK_KUBECONFIG  user system:serviceaccount:stash-system:stash-webhook (client certificate,
#                        groups system:serviceaccounts and system:serviceaccounts:stash-system)
# The caller stops the cluster (run.sh does it in its EXIT trap).
#
# Environment:
#   STASH_E2E_CACHE  where the built binaries are kept between runs
#                    (default /var/cache/stash-webhook-e2e); delete it to force a rebuild
#   TMPDIR           where the source is unpacked and built (removed afterwards, whatever happens)
#
# Needs root for apt-get (it runs only when a package is missing) and for the default cache.

E2E_K8S_VERSION=v1.20.2
E2E_K8S_DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
E2E_GO=/usr/lib/go-1.19/bin
E2E_CACHE=${STASH_E2E_CACHE:-/var/cache/stash-webhook-e2e}
E2E_APISERVER_BIN=$E2E_CACHE/kube-apiserver-$E2E_K8S_VERSION
E2E_ETCD_BIN=/usr/bin/etcd
# Debian packages the build and the cluster need, and what provides each command.
E2E_PACKAGES=(golang-1.19-go golang-github-modern-go-reflect2-dev rsync make dpkg-dev etcd-server openssl curl ca-certificates)
E2E_REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2

e2e_log() { printf '[e2e %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# The current server's builds (current.sh), by version.
# shellcheck source-path=SCRIPTDIR source=current.sh
source "$(dirname "${BASH_SOURCE[0]}")/current.sh"

# Installs the Debian packages that are missing (PKG..., or E2E_PACKAGES), with one apt-get update
# before. Usage: e2e_install_packages [PKG...]
e2e_install_packages() {
  local missing=() p wanted=("$@")
  ((${#wanted[@]} > 0)) || wanted=("${E2E_PACKAGES[@]}")
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  e2e_log "installing ${missing[*]}"
  local log
  log=$(mktemp) || return 1
  if ! {
    DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

# Makes `apt-get source kubernetes=$E2E_K8S_DEB_VERSION` possible: adds a deb-src entry for
# bookworm main if no configured source offers that version.
e2e_enable_deb_src() {
  if apt-cache showsrc kubernetes 2>/dev/null | grep -qxF "Version: $E2E_K8S_DEB_VERSION"; then
    return 0
  fi
  e2e_log "adding a deb-src entry for bookworm main"
  cat >/etc/apt/sources.list.d/stash-webhook-e2e-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt-get update -q >/dev/null 2>&1 || return 1
  apt-cache showsrc kubernetes 2>/dev/null | grep -qxF "Version: $E2E_K8S_DEB_VERSION" || {
    e2e_log "Debian's source package kubernetes $E2E_K8S_DEB_VERSION is not available"
    return 1
  }
}

e2e_apiserver_ok() {
  [[ -x $E2E_APISERVER_BIN ]] && "$E2E_APISERVER_BIN" --version 2>/dev/null | grep -qxF "Kubernetes $E2E_K8S_VERSION"
}

# Builds kube-apiserver into $E2E_APISERVER_BIN unless a working one is there. The source, GOPATH
# and Go build cache live in a temporary directory removed on any exit.
e2e_build_apiserver() {
  e2e_install_packages || return 1
  mkdir -p "$E2E_CACHE" || return 1
  (
    set -euo pipefail
    # One build at a time per machine; a second runner waits, then finds the binary.
    exec 9>"$E2E_CACHE/.lock"
    flock 9
    if e2e_apiserver_ok; then exit 0; fi
    e2e_enable_deb_src
    work=$(mktemp -d "${TMPDIR:-/tmp}/stash-webhook-e2e-build.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    started=$SECONDS
    e2e_log "building kube-apiserver $E2E_K8S_VERSION in $work (about 8 minutes on 2 busy cores)"
    mkdir "$work/dl"
    # apt-get drops privileges to _apt for downloads when it can write there.
    if id _apt >/dev/null 2>&1; then chown _apt "$work/dl"; fi
    (cd "$work/dl" && apt-get source -q --download-only "kubernetes=$E2E_K8S_DEB_VERSION" >/dev/null)
    # apt-get checked the files against the signed index; dpkg-source's own check of the .dsc
    # signature needs a keyring that is not installed, so its warning is noise.
    dpkg-source -x "$work/dl/kubernetes_${E2E_K8S_DEB_VERSION}.dsc" "$work/src" >"$work/unpack.log" 2>&1 || {
      cat "$work/unpack.log" >&2
      exit 1
    }
    rm -rf "$work/dl"
    # reflect2 1.0.1 (vendored) crashes under Go >= 1.18; Debian's 1.0.2 does not.
    rm -rf "$work/src/vendor/github.com/modern-go/reflect2"
    cp -a "$E2E_REFLECT2" "$work/src/vendor/github.com/modern-go/reflect2"
    mkdir -p "$work/gopath/src/k8s.io" "$work/home"
    ln -s "$work/src" "$work/gopath/src/k8s.io/kubernetes"
    cd "$work/gopath/src/k8s.io/kubernetes"
    env PATH="$E2E_GO:$PATH" GOPATH="$work/gopath" GO111MODULE=off GOFLAGS= GOENV=off \
      CGO_ENABLED=0 HOME="$work/home" \
      nice -n 19 make WHAT=cmd/kube-apiserver >"$work/build.log" 2>&1 || {
      tail -n 40 "$work/build.log" >&2
      exit 1
    }
    install -m 0755 _output/bin/kube-apiserver "$E2E_APISERVER_BIN.tmp"
    mv -f "$E2E_APISERVER_BIN.tmp" "$E2E_APISERVER_BIN"
    e2e_apiserver_ok
    e2e_log "built $E2E_APISERVER_BIN in $((SECONDS - started)) s"
  )
}

# Chooses the server e2e_build_server and e2e_start_cluster work with. Usage: e2e_use_server 1.20|current
e2e_use_server() {
  case $1 in
  1.20)
    E2E_SERVER=1.20
    E2E_SERVER_VERSION=$E2E_K8S_VERSION
    E2E_SERVER_APISERVER_BIN=$E2E_APISERVER_BIN
    E2E_SERVER_ETCD_BIN=$E2E_ETCD_BIN
    E2E_BIN_PATH=
    ;;
  current)
    E2E_SERVER=current
    E2E_SERVER_VERSION=$E2E_KUBE_VERSION
    E2E_SERVER_APISERVER_BIN=$E2E_CURRENT_APISERVER
    E2E_SERVER_ETCD_BIN=$E2E_CURRENT_ETCD
    E2E_BIN_PATH=$(dirname "$E2E_CURRENT_KUBECTL"):$(dirname "$E2E_CURRENT_HELM")
    ;;
  *)
    e2e_log "unknown server $1 (1.20 or current)"
    return 1
    ;;
  esac
}
e2e_use_server "${STASH_E2E_SERVER:-1.20}" || E2E_SERVER=

# Builds what the chosen server needs, unless it is in the cache already.
e2e_build_server() {
  case ${E2E_SERVER:-} in
  1.20) e2e_apiserver_ok || e2e_build_apiserver ;;
  current) e2e_install_packages openssl curl ca-certificates && e2e_build_current ;;
  *) return 1 ;;
  esac
}

# Sets WEBHOOK_BIN to the stash-webhook binary to test: STASH_WEBHOOK_BIN, or, when that is unset,
# the release build of the repository REPO, built with cargo first. Usage: e2e_webhook_bin REPO
e2e_webhook_bin() {
  local repo=$1
  if [[ -n ${STASH_WEBHOOK_BIN:-} ]]; then
    if [[ $STASH_WEBHOOK_BIN == */* ]]; then
      WEBHOOK_BIN=$(realpath -m -- "$STASH_WEBHOOK_BIN")
    else
      WEBHOOK_BIN=$(command -v -- "$STASH_WEBHOOK_BIN") || WEBHOOK_BIN=$STASH_WEBHOOK_BIN
    fi
  else
    e2e_log "building stash-webhook (STASH_WEBHOOK_BIN is not set)"
    (cd "$repo" && nice -n 19 cargo build --release --locked --bin stash-webhook >&2) || {
      e2e_log "cargo build --release --locked --bin stash-webhook failed"
      return 1
    }
    WEBHOOK_BIN=$(cd "$repo" && realpath -m -- "${CARGO_TARGET_DIR:-target}")/release/stash-webhook
  fi
  [[ -x $WEBHOOK_BIN ]] || {
    e2e_log "$WEBHOOK_BIN is not an executable"
    return 1
  }
}

# Sets VAR to a TCP port on 127.0.0.1 that nothing listens on and that this shell has not handed
# out yet, below the kernel's range for outgoing connections when there is room (so no client
# socket holds it). Usage: e2e_free_port VAR
E2E_PORTS_TAKEN=" "
e2e_free_port() {
  local port i low=32768 first=10000 count
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  if ((low - first >= 1000)); then count=$((low - first)); else first=20000 count=40000; fi
  for ((i = 0; i < 200; i++)); do
    port=$((first + (RANDOM * 32768 + RANDOM) % count))
    [[ $E2E_PORTS_TAKEN == *" $port "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      E2E_PORTS_TAKEN+="$port "
      printf -v "$1" '%s' "$port"
      return 0
    fi
  done
  e2e_log "no free port found"
  return 1
}

# Polls `CMD...` until it succeeds, for at most SECONDS; false if it never did.
e2e_wait_for() {
  local seconds=$1 deadline
  shift
  deadline=$((SECONDS + seconds))
  until "$@"; do
    ((SECONDS >= deadline)) && return 1
    sleep 0.2
  done
}

# A CA and certificates signed by it. Usage: e2e_cert CADIR NAME SUBJECT EXTENSIONS
e2e_ca() {
  local dir=$1 name=$2
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=$name" -keyout "$dir/$name.key" -out "$dir/$name.crt" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
e2e_cert() {
  local dir=$1 ca=$2 name=$3 subj=$4 ext=$5
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$subj" \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null || return 1
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n%s\n' "$ext" >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null || return 1
  rm -f "$dir/$name.csr" "$dir/$name.ext"
}

# A kubeconfig for a client certificate. Usage: e2e_kubeconfig FILE USER CERTNAME
e2e_kubeconfig() {
  local file=$1 user=$2 cert=$3 pki=$E2E_STATE/pki
  kubectl config --kubeconfig "$file" set-cluster e2e --server "$E2E_APISERVER_URL" \
    --certificate-authority "$pki/ca.crt" --embed-certs >/dev/null &&
    kubectl config --kubeconfig "$file" set-credentials "$user" \
      --client-certificate "$pki/$cert.crt" --client-key "$pki/$cert.key" --embed-certs >/dev/null &&
    kubectl config --kubeconfig "$file" set-context e2e --cluster e2e --user "$user" >/dev/null &&
    kubectl config --kubeconfig "$file" use-context e2e >/dev/null
}

e2e_healthy() {
  curl -fsS --max-time 2 "$@" >/dev/null 2>&1
}

# Starts a background process, its output in $E2E_STATE/NAME.log, its pid in $E2E_STATE/NAME.pid.
# Usage: e2e_spawn NAME CMD...
e2e_spawn() {
  local name=$1
  shift
  "$@" </dev/null >"$E2E_STATE/$name.log" 2>&1 &
  echo $! >"$E2E_STATE/$name.pid"
}

# Stops what e2e_spawn started under NAME: SIGTERM, then SIGKILL after 15 s; returns once the
# process is gone (a kube-apiserver shutting down gracefully can take a while), so that its port
# is free.
e2e_kill() {
  local name=$1 pid
  [[ -n ${E2E_STATE:-} && -f $E2E_STATE/$name.pid ]] || return 0
  pid=$(<"$E2E_STATE/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    e2e_wait_for 15 e2e_gone "$pid" || kill -KILL "$pid" 2>/dev/null
    e2e_wait_for 60 e2e_gone "$pid" || e2e_log "$name (pid $pid) did not exit"
  fi
  rm -f "$E2E_STATE/$name.pid"
}
e2e_gone() { ! kill -0 "$1" 2>/dev/null; }

e2e_alive() {
  local name=$1
  if [[ -f $E2E_STATE/$name.pid ]] && kill -0 "$(<"$E2E_STATE/$name.pid")" 2>/dev/null; then
    return 0
  fi
  e2e_log "$name exited; the end of $E2E_STATE/$name.log:"
  tail -n 30 "$E2E_STATE/$name.log" >&2
  return 1
}

e2e_apiserver_ready() {
  e2e_alive kube-apiserver || return 2
  e2e_healthy --cacert "$E2E_STATE/pki/ca.crt" --cert "$E2E_STATE/pki/admin.crt" \
    --key "$E2E_STATE/pki/admin.key" "$E2E_APISERVER_URL/readyz"
}
e2e_etcd_ready() {
  e2e_alive etcd || return 2
  e2e_healthy "$E2E_ETCD_URL/health"
}
# Like e2e_wait_for, but gives up at once when the process died (status 2).
e2e_wait_ready() {
  local seconds=$1 check=$2 deadline rc
  deadline=$((SECONDS + seconds))
  while true; do
    "$check"
    rc=$?
    ((rc == 0)) && return 0
    ((rc == 2 || SECONDS >= deadline)) && return 1
    sleep 0.2
  done
}

# Starts etcd and kube-apiserver with their state in DIR (wiped first).
e2e_start_cluster() {
  E2E_STATE=$1
  # Everything here is on loopback: never through a proxy the environment may name.
  export NO_PROXY=127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}
  export no_proxy=127.0.0.1,localhost${no_proxy:+,$no_proxy}
  e2e_build_server || return 1
  rm -rf "$E2E_STATE"
  mkdir -p "$E2E_STATE/pki" "$E2E_STATE/etcd" || return 1
  chmod 700 "$E2E_STATE"
  local pki=$E2E_STATE/pki etcd_port peer_port api_port
  e2e_free_port etcd_port || return 1
  e2e_free_port peer_port || return 1
  e2e_free_port api_port || return 1
  E2E_ETCD_URL=http://127.0.0.1:$etcd_port
  E2E_APISERVER_URL=https://127.0.0.1:$api_port
  E2E_CA_CERT=$pki/ca.crt
  E2E_ADMIN_KUBECONFIG=$E2E_STATE/admin.kubeconfig
  E2E_WEBHOOK_KUBECONFIG=$E2E_STATE/webhook.kubeconfig

  if ! {
    e2e_ca "$pki" ca &&
      e2e_cert "$pki" ca apiserver /CN=kube-apiserver \
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
extendedKeyUsage=serverAuth" &&
      e2e_cert "$pki" ca admin "/O=system:masters/CN=admin" extendedKeyUsage=clientAuth &&
      e2e_cert "$pki" ca webhook \
        "/O=system:serviceaccounts/O=system:serviceaccounts:stash-system/CN=system:serviceaccount:stash-system:stash-webhook" \
        extendedKeyUsage=clientAuth &&
      openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null &&
      openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  }; then
    e2e_log "could not make the certificates"
    return 1
  fi

  e2e_log "starting etcd on 127.0.0.1:$etcd_port"
  e2e_spawn etcd "$E2E_SERVER_ETCD_BIN" --name e2e --data-dir "$E2E_STATE/etcd" \
    --listen-client-urls "$E2E_ETCD_URL" --advertise-client-urls "$E2E_ETCD_URL" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "e2e=http://127.0.0.1:$peer_port" \
    --logger zap --log-level warn
  e2e_wait_ready 60 e2e_etcd_ready || {
    e2e_log "etcd did not become healthy"
    return 1
  }

  # --insecure-port was removed in 1.24; 1.20 still serves plain HTTP on 8080 without it.
  local version_flags=()
  [[ $E2E_SERVER == 1.20 ]] && version_flags=(--insecure-port 0)
  e2e_log "starting kube-apiserver $E2E_SERVER_VERSION on $E2E_APISERVER_URL"
  e2e_spawn kube-apiserver "$E2E_SERVER_APISERVER_BIN" \
    --etcd-servers "$E2E_ETCD_URL" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
    --secure-port "$api_port" "${version_flags[@]}" --cert-dir "$pki" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --authorization-mode RBAC \
    --service-account-key-file "$pki/sa.pub" \
    --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --api-audiences https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/24 \
    --endpoint-reconciler-type none --profiling=false --v 1
  e2e_wait_ready 120 e2e_apiserver_ready || {
    e2e_log "kube-apiserver did not become ready"
    return 1
  }

  if ! {
    e2e_kubeconfig "$E2E_ADMIN_KUBECONFIG" admin admin &&
      e2e_kubeconfig "$E2E_WEBHOOK_KUBECONFIG" system:serviceaccount:stash-system:stash-webhook webhook
  }; then
    e2e_log "could not write the kubeconfigs"
    return 1
  fi
  cat >"$E2E_STATE/env" <<EOF
export E2E_STATE='$E2E_STATE'
export E2E_APISERVER_URL='$E2E_APISERVER_URL'
export E2E_CA_CERT='$E2E_CA_CERT'
export E2E_ADMIN_KUBECONFIG='$E2E_ADMIN_KUBECONFIG'
export E2E_WEBHOOK_KUBECONFIG='$E2E_WEBHOOK_KUBECONFIG'
export KUBECONFIG='$E2E_ADMIN_KUBECONFIG'
EOF
  if [[ -n $E2E_BIN_PATH ]]; then
    # shellcheck disable=SC2016 # $PATH is for the shell that evaluates this
    printf 'export PATH=%q:"$PATH"\n' "$E2E_BIN_PATH" >>"$E2E_STATE/env"
  fi
  e2e_log "kube-apiserver $E2E_SERVER_VERSION ready"
}

e2e_stop_cluster() {
  e2e_kill kube-apiserver
  e2e_kill etcd
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -uo pipefail
  cmd=${1:-}
  dir=${2:-/tmp/stash-webhook-e2e}
  case $cmd in
  build)
    [[ -n $E2E_SERVER ]] || exit 2
    e2e_build_server
    ;;
  start)
    [[ -n $E2E_SERVER ]] || exit 2
    if [[ -d $dir ]]; then
      E2E_STATE=$dir e2e_stop_cluster
    fi
    if e2e_start_cluster "$dir"; then
      cat "$dir/env"
    else
      e2e_stop_cluster
      exit 1
    fi
    ;;
  stop)
    E2E_STATE=$dir
    e2e_stop_cluster
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 build | start [DIR] | stop [DIR]" >&2
    exit 2
    ;;
  esac
fi
