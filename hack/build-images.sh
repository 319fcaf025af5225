#!/usr/bin/env bash
# Builds the container images a lab cluster runs, from this repository's own files
# and the machine's Debian packages: there is no registry to pull from and no
# Docker engine to build with. `make deps` calls it after hack/build-tools.sh.
#
#   - the kubeadm control plane, under the exact references the built kubeadm asks
#     for (`kubeadm config images list`): kube-apiserver, kube-controller-manager,
#     kube-scheduler, kube-proxy, etcd, pause and coredns;
#   - wiremesh, under the reference deploy/daemonset.yaml names (what the
#     Dockerfile describes);
#   - wiremesh-probe:e2e, the end-to-end suites' probe (kind-tests/kind/probe.Dockerfile).
#
# Each image is a docker-archive tarball in $WIREMESH_CACHE/images/NAME.tar (what
# `ctr -n k8s.io images import` takes); images.txt there lists them, one
# "REF FILE" line each, FILE an absolute path. An image is a few layers, each
# declared below as a list of operations (copy a file, strip a binary, make a link
# or a directory, copy a tree). A layer's key is a hash of its operations and of
# the size and mtime of every file it copies; its tarball is cached under that key,
# so an unchanged layer is never made again and a warm run rebuilds nothing. Layer
# tarballs are made with GNU tar (--sort=name --mtime=@0, owner 0) and gzip -n,
# images by hack/imagetool (go-containerregistry) with the epoch as their time:
# identical inputs give identical images.
#
# Programs come from the host's Debian packages (hack/install-deps.sh installs
# them) with their shared-library closure found by ldd; images lay files out as
# Debian does with merged /usr (/bin -> usr/bin, /lib -> usr/lib, ...).
set -euo pipefail
umask 022

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cache="${WIREMESH_CACHE:-${HOME}/.cache/wiremesh}"
bin="$cache/bin"
out="$cache/images"
work="$out/.work"
layers_dir="$work/layers"
mkdir -p "$out" "$layers_dir" "$work/text"

# shellcheck source=hack/progress.sh
source "$here/progress.sh"

die() { echo "build-images: $*" >&2; exit 1; }

for tool in kubeadm kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns pause \
  imagetool wireguard-go wiremesh-cni wiremesh-netlinkd wiremesh-prober cni-plugins/portmap cni-plugins/bandwidth; do
  [[ -x "$bin/$tool" ]] || die "$bin/$tool is missing: run hack/build-tools.sh first"
done
for prog in go tar gzip ldd git npm busybox flock; do
  command -v "$prog" >/dev/null || die "'$prog' is not on PATH (hack/install-deps.sh installs what is needed)"
done
# One run at a time per cache: two `make deps` would stage layers in the same place.
exec 9>"$work/lock"
flock 9

# The references kubeadm will ask the nodes' containerd for.
k8s_version="$(cd "$here/kube-apiserver" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
declare -A kubeadm_ref=()
while read -r ref; do
  [[ "$ref" == registry.k8s.io/* ]] || continue
  name="${ref#registry.k8s.io/}"
  kubeadm_ref["${name%:*}"]="$ref"
done < <("$bin/kubeadm" config images list --kubernetes-version "$k8s_version" 2>/dev/null)
for name in kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd pause coredns/coredns; do
  [[ -n "${kubeadm_ref[$name]:-}" ]] || die "kubeadm $k8s_version names no $name image"
done
# The built etcd and CoreDNS must be the releases kubeadm expects (it checks etcd's
# version on upgrades and migrates the Corefile by CoreDNS version).
etcd_tag="${kubeadm_ref[etcd]##*:}"
etcd_mod="$(cd "$here/etcd" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
[[ "v${etcd_tag%-*}" == "$etcd_mod" ]] ||
  die "kubeadm wants etcd $etcd_tag but hack/etcd builds $etcd_mod: bump hack/etcd/go.mod"
coredns_tag="${kubeadm_ref[coredns/coredns]##*:}"
coredns_mod="$(cd "$here/coredns" && go list -m -f '{{.Version}}' github.com/coredns/coredns)"
[[ "$coredns_tag" == "$coredns_mod" ]] ||
  die "kubeadm wants CoreDNS $coredns_tag but hack/coredns builds $coredns_mod: bump hack/coredns/go.mod"
# The wiremesh image under the name the DaemonSet runs (as kind-tests/kind/run.sh reads it).
wiremesh_ref="$(sed -n 's/^ *image: *\([^ ]*\).*/\1/p' "$root/deploy/daemonset.yaml" | head -1)"
[[ -n "$wiremesh_ref" ]] || die "deploy/daemonset.yaml names no image"
probe_ref="wiremesh-probe:e2e"

# Part of every layer key: a change to how layers are made remakes them all.
script_hash="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"
strip_bin="$(command -v strip || true)"

# --- declaring layers ----------------------------------------------------------
# In an image, `have` holds every path already placed (a library two programs need
# is copied once) and `names` the program names (busybox's applets never shadow a
# real program, whatever the PATH order).
declare -A have=() names=()
ops=() srcs=() keys=() image_layers=() all_layers=()

image_begin() { have=() names=() image_layers=() keys=(); }
layer_begin() { ops=() srcs=(); }

# Paths as Debian's merged /usr has them: the image's /bin, /sbin, /lib and /lib64
# are links into /usr (the base layer makes them), so no layer may hold a real
# directory there.
# (usr_path sets REPLY rather than printing: declaring hundreds of files must not
# cost a process each, or a warm run would take seconds.)
usr_path() {
  case "$1" in
    /bin/* | /sbin/* | /lib/* | /lib64/*) REPLY="/usr$1" ;;
    *) REPLY="$1" ;;
  esac
}

op_dir() { # MODE DEST
  ops+=("d $1 $2")
}

op_link() { # TARGET DEST
  usr_path "$2"
  [[ -z "${have[$REPLY]:-}" ]] || return 0
  have[$REPLY]=1
  ops+=("l $1 $REPLY")
}

op_file() { # SRC DEST [MODE]: a copy of SRC (links followed), mode 644 unless MODE
  usr_path "$2"
  [[ -z "${have[$REPLY]:-}" ]] || return 0
  [[ "$1$REPLY" != *[[:space:]]* ]] || die "path with white space: '$1' or '$REPLY'"
  [[ -e "$1" ]] || die "missing input $1"
  have[$REPLY]=1
  ops+=("f ${3:-644} $1 $REPLY")
  srcs+=("$1")
}

op_strip() { # SRC DEST: a copy without debugging symbols (Node.js ships them: 18 MB)
  usr_path "$2"
  [[ -e "$1" ]] || die "missing input $1"
  have[$REPLY]=1
  ops+=("s 755 $1 $REPLY")
  srcs+=("$1")
}

op_tree() { # SRC DEST KEY: a copy of a directory whose content KEY identifies
  ops+=("r $1 $2 $3")
}

op_text() { # DEST MODE CONTENT: a small generated file
  local sum file
  sum="$(printf '%s' "$3" | sha256sum | cut -c1-32)"
  file="$work/text/$sum"
  # Written once under its content's hash, so its mtime (part of the key) stays put.
  [[ -f "$file" ]] || printf '%s' "$3" >"$file"
  op_file "$file" "$1" "$2"
}

# op_libs FILE...: the shared libraries FILE needs (ldd), the loader among them.
# ldd's answer is kept until a FILE changes: it runs the loader once per file,
# which for iptables' two hundred extensions takes seconds.
op_libs() {
  local lib f cached="$work/ldd/${1//\//_}.$#" fresh=1
  for f; do [[ "$cached" -nt "$f" ]] || fresh=0; done
  if ((!fresh)); then
    mkdir -p "$work/ldd"
    ldd "$@" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $1 !~ /:$/ {print $1}' |
      sort -u >"$cached.tmp" || true
    mv "$cached.tmp" "$cached"
  fi
  # Mode 755: the loader among them must be executable (the kernel refuses to
  # start a program whose interpreter is not); the others do not mind.
  while read -r lib; do
    [[ -n "$lib" ]] && op_file "$lib" "$lib" 755
  done <"$cached"
}

# op_prog NAME|PATH [DEST]: a program of the host (found on PATH when no slash), at
# the path it has on the host unless DEST, with its libraries.
op_prog() {
  local src="$1" dest
  if [[ "$src" != */* ]]; then
    src="$(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin command -v "$1")" ||
      die "'$1' is not installed (hack/install-deps.sh installs it)"
  fi
  dest="${2:-$src}"
  names[${dest##*/}]=1
  op_file "$src" "$dest" 755
  op_libs "$src"
}

# op_busybox: Debian's busybox (the dynamic build: the static one's shell prefers
# its own applets to the PATH's programs) and a link for each applet no real
# program of the image provides (sh, cat, sleep, ls, ...).
op_busybox() {
  local applet
  op_prog busybox /usr/bin/busybox
  while read -r applet; do
    [[ -z "${names[${applet##*/}]:-}" ]] || continue
    op_link /usr/bin/busybox "/$applet"
  done < <(busybox --list-full)
}

# layer_end LABEL: the layer's key and, when no tarball has it yet, the tarball.
layer_end() {
  local key file
  key="$(
    {
      echo "$script_hash ${strip_bin:+strip}"
      printf '%s\n' "${ops[@]}"
      ((${#srcs[@]} == 0)) || stat -L -c '%n %s %Y' -- "${srcs[@]}"
    } | sha256sum | cut -c1-32
  )"
  file="$layers_dir/$key.tar.gz"
  if [[ ! -f "$file" ]]; then
    progress_run build-images "$current: making layer $1" make_layer "$file" "${ops[@]}"
  fi
  keys+=("$key")
  image_layers+=("$file")
  all_layers+=("$file")
}

# make_layer OUT OP...: stages the operations in a directory and packs it. Copies
# with the same mode and directory and an unchanged name go in one `install`, and
# every directory is made by one `mkdir -p`, so a layer of a few hundred files
# takes a few dozen processes. Each step returns on failure itself: progress_run
# calls make_layer where `set -e` does not apply.
make_layer() {
  local file="$1" stage="$work/stage" line op a b c
  local -a dirs=() links=() singles=()
  local -A batch=()
  shift
  rm -rf "$stage" && mkdir -p "$stage" || return 1
  for line; do
    read -r op a b c <<<"$line"
    case "$op" in
      d) dirs+=("$stage$b") ;;
      l) dirs+=("$stage${b%/*}") links+=("$a $b") ;;
      f | s)
        dirs+=("$stage${c%/*}")
        if [[ "$op" == f && "${b##*/}" == "${c##*/}" ]]; then
          batch["$a ${c%/*}"]+=" $b"
        else
          singles+=("$op $a $b $c")
        fi
        ;;
      r) dirs+=("$stage$b") singles+=("$op - $a $b") ;;
      *) echo "unknown layer operation '$line'" >&2; return 1 ;;
    esac
  done
  ((${#dirs[@]} == 0)) || mkdir -p "${dirs[@]}" || return 1
  local key mode dir
  for key in "${!batch[@]}"; do
    read -r mode dir <<<"$key"
    # shellcheck disable=SC2086 # the batch is a space-separated list of paths
    install -m "$mode" -t "$stage$dir" ${batch[$key]} || return 1
  done
  for line in "${singles[@]}"; do
    read -r op a b c <<<"$line"
    case "$op" in
      f) install -m "$a" "$b" "$stage$c" ;;
      s) if [[ -n "$strip_bin" ]]; then "$strip_bin" -o "$stage$c" "$b" && chmod "$a" "$stage$c"; else install -m "$a" "$b" "$stage$c"; fi ;;
      r) cp -a "$b/." "$stage$c/" ;;
    esac || return 1
  done
  for line in "${links[@]}"; do
    read -r a b <<<"$line"
    ln -sfn "$a" "$stage$b" || return 1
  done
  # Modes of the directories the layer names (made above with the umask's 755).
  for line; do
    read -r op a b c <<<"$line"
    [[ "$op" != d ]] || chmod "$a" "$stage$b" || return 1
  done
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$stage" -cf - . | gzip -n >"$file.tmp" &&
    mv "$file.tmp" "$file" && rm -rf "$stage"
}

# --- the layers ------------------------------------------------------------------
# Every image's first layer: merged-/usr links, the few /etc files programs look up
# (users for tcpdump's privilege drop, name service order for Go's and glibc's
# resolvers, CA certificates) and the writable directories.
layer_base() {
  layer_begin
  op_link usr/bin /bin
  op_link usr/sbin /sbin
  op_link usr/lib /lib
  op_link usr/lib64 /lib64
  op_dir 1777 /tmp
  op_dir 700 /root
  op_dir 755 /run
  op_link ../run /var/run
  op_dir 755 /usr/local/bin
  op_text /etc/passwd 644 $'root:x:0:0:root:/root:/bin/sh\ntcpdump:x:101:101::/nonexistent:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n'
  op_text /etc/group 644 $'root:x:0:\ntcpdump:x:101:\nnogroup:x:65534:\n'
  op_text /etc/nsswitch.conf 644 $'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n'
  op_file /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
  layer_end base
}

# iptables (nft and legacy backends) for kube-proxy, which cleans up the other
# modes' rules with it: the multi-call binaries, their names, and the extensions
# they load at run time (ldd cannot see those).
layer_iptables() {
  local multi backend n ext
  for backend in nft legacy; do
    multi="/usr/sbin/xtables-$backend-multi"
    op_prog "$multi"
    for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
      op_link "xtables-$backend-multi" "/usr/sbin/${n/tables/tables-$backend}"
      names[${n/tables/tables-$backend}]=1
    done
  done
  for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    op_link xtables-nft-multi "/usr/sbin/$n"
    names[$n]=1
  done
  for ext in /usr/lib/x86_64-linux-gnu/xtables/*.so; do
    op_file "$ext" "$ext"
  done
  op_libs /usr/lib/x86_64-linux-gnu/xtables/*.so
}

# build_image NAME REF [IMAGETOOL FLAGS...]: the image of the layers declared since
# image_begin, unless NAME.tar already holds exactly that.
images=() built=0
build_image() {
  local name="$1" ref="$2" file="$out/$1.tar" stamp want
  shift 2
  want="$(printf '%s\n' "$ref" "$@" "${keys[@]}" "$(cat "$cache/stamps/imagetool")" | sha256sum | cut -c1-32)"
  stamp="$work/$name.stamp"
  if [[ ! -f "$file" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    local args=() l
    for l in "${image_layers[@]}"; do args+=(--layer "$l"); done
    progress_run build-images "[$((${#images[@]} + 1))/$total] building $name ($ref)" \
      "$bin/imagetool" build --ref "$ref" --out "$file" "${args[@]}" "$@"
    echo "$want" >"$stamp"
    built=$((built + 1))
  fi
  images+=("$ref $file")
}

total=9
path_env=(--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)

# The control plane: one static Go binary each, in /usr/local/bin as upstream has
# them (kubeadm's static pods call them by name).
for component in kube-apiserver kube-controller-manager kube-scheduler etcd; do
  current="$component"
  image_begin
  layer_base
  layer_begin
  op_file "$bin/$component" "/usr/local/bin/$component" 755
  layer_end "$component"
  build_image "$component" "${kubeadm_ref[$component]}" "${path_env[@]}" \
    --entrypoint "[\"/usr/local/bin/$component\"]"
done

# kube-proxy in nftables mode runs nft; iptables for the other modes' leftovers.
current=kube-proxy
image_begin
layer_base
layer_begin
op_prog nft
layer_iptables
layer_end tools
layer_begin
op_file "$bin/kube-proxy" /usr/local/bin/kube-proxy 755
layer_end kube-proxy
build_image kube-proxy "${kubeadm_ref[kube-proxy]}" "${path_env[@]}" \
  --entrypoint '["/usr/local/bin/kube-proxy"]'

# The sandbox image containerd starts every pod with (its sandbox_image).
current=pause
image_begin
layer_base
layer_begin
op_file "$bin/pause" /pause 755
layer_end pause
build_image pause "${kubeadm_ref[pause]}" "${path_env[@]}" --entrypoint '["/pause"]'

# CoreDNS at /coredns, as upstream's image has it. Upstream runs it as a non-root
# user with a file capability to bind port 53; here it runs as root, which
# kubeadm's Deployment (NET_BIND_SERVICE added, everything else dropped) allows.
current=coredns
image_begin
layer_base
layer_begin
op_file "$bin/coredns" /coredns 755
layer_end coredns
build_image coredns "${kubeadm_ref[coredns/coredns]}" "${path_env[@]}" --entrypoint '["/coredns"]'

# wiremesh: what the Dockerfile describes, in four layers from the least to the
# most often changed: the tools the agent execs, Node.js, the production
# node_modules, and the agent's source with its Go helpers.
current=wiremesh
image_begin
layer_base
layer_begin
# ip and bridge (routes, links, FDB), wg, nft (the ruleset and `nft monitor`), nsenter
# (pod namespaces), sysctl (pod interfaces), modprobe (kernel modules), tcpdump (the
# log of dropped flows, read from the kernel's NFLOG group), bird and birdc (BGP for the
# natively routed pools, setting bgp-as); busybox for sh, cat and the rest of a shell's
# tools.
for prog in ip bridge ss wg nft nsenter sysctl modprobe tcpdump bird birdc; do op_prog "$prog"; done
op_busybox
layer_end tools

layer_begin
op_strip "$root/node_modules/node/bin/node" /usr/local/bin/node
names[node]=1
op_libs "$root/node_modules/node/bin/node"
layer_end node

# `npm ci --omit=dev` once per lock file, into a directory named by its hash.
lock_hash="$(cat "$root/package-lock.json" "$root/package.json" | sha256sum | cut -c1-16)"
prod="$work/npm/$lock_hash"
if [[ ! -f "$prod/.complete" ]]; then
  rm -rf "$work/npm"
  mkdir -p "$prod"
  cp "$root/package.json" "$root/package-lock.json" "$prod/"
  progress_run build-images "wiremesh: npm ci --omit=dev" \
    npm --prefix "$prod" ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error
  touch "$prod/.complete"
fi
layer_begin
op_tree "$prod/node_modules" /opt/wiremesh/node_modules "$lock_hash"
layer_end node_modules

layer_begin
# The runtime source: what `wiremesh` and every command but `lab` import (lab/,
# bench/, kind-tests/ and hack/ are the checkout's), without tests or Go sources
# (their binaries are below).
while read -r f; do
  case "$f" in
    *.test.ts | *.test.ts.md | *.test.ts.snap | *.go | */go.mod | */go.sum) continue ;;
  esac
  mode=644
  [[ ! -x "$root/$f" ]] || mode=755
  op_file "$root/$f" "/opt/wiremesh/$f" "$mode"
done < <(cd "$root" && git ls-files -co --exclude-standard -- bin cli agent bgp cni crypto ipam kube \
  multicluster nftables policy sys tunnels install deploy package.json package-lock.json)
op_link /opt/wiremesh/bin/wiremesh /usr/local/bin/wiremesh
for tool in wireguard-go wiremesh-cni wiremesh-netlinkd; do
  op_file "$bin/$tool" "/usr/lib/wiremesh/$tool" 755
done
# The reference plugins the agent chains after its own (port mappings, bandwidth).
for plugin in portmap bandwidth; do
  op_file "$bin/cni-plugins/$plugin" "/usr/lib/wiremesh/cni/$plugin" 755
done
layer_end app
build_image wiremesh "$wiremesh_ref" "${path_env[@]}" --workdir /opt/wiremesh --entrypoint '["wiremesh"]'

# The e2e probe (kind-tests/kind/probe.Dockerfile): real ping, iproute2, curl,
# iperf3, tcpdump, socat, nsenter, nft, wg and ps; busybox for the shell and the
# small tools; wiremesh-prober for the network-policy suites.
current=wiremesh-probe
image_begin
layer_base
layer_begin
for prog in ping ip ss bridge tc curl iperf3 tcpdump socat nsenter nft wg ps; do op_prog "$prog"; done
op_busybox
layer_end tools
layer_begin
op_file "$bin/wiremesh-prober" /usr/local/bin/wiremesh-prober 755
layer_end prober
build_image wiremesh-probe "$probe_ref" "${path_env[@]}" --cmd '["sleep","infinity"]'

printf '%s\n' "${images[@]}" >"$out/images.txt.tmp"
mv "$out/images.txt.tmp" "$out/images.txt"

# Layers no image uses any more (an older source tree's) go.
declare -A used=()
for l in "${all_layers[@]}"; do used[$l]=1; done
for l in "$layers_dir"/*.tar.gz; do
  [[ -n "${used[$l]:-}" ]] || rm -f "$l"
done
echo "build-images: all ${#images[@]} images in $out ($built built, $((${#images[@]} - built)) up to date)" >&2
