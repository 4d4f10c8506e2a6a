#!/usr/bin/env bash
# Makes sure weaviate-server (the search engine; the search tests start one through
# internal/weaviatetest) is installed at $(go env GOPATH)/bin/weaviate-server in the pinned version,
# installing it with `go install` from the Go module proxy when it is missing or another version.
# Prints the binary's path.
set -euo pipefail

version=v1.35.2
module=github.com/weaviate/weaviate

# go install puts binaries in the first GOPATH entry's bin directory.
gopath=$(go env GOPATH)
bindir=${gopath%%:*}/bin
bin=$bindir/weaviate-server

installed() { go version -m "$bin" 2>/dev/null | grep -qE "^[[:space:]]+mod[[:space:]]+$module[[:space:]]+$version([[:space:]]|$)"; }

if [ -x "$bin" ] && installed; then
  echo "$bin"
  exit 0
fi
echo "weaviate-server $version is not installed; installing it with go install (takes about 5 minutes the first time)" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# GOBIN pins the destination even when the environment sets GOBIN elsewhere; GOFLAGS from the
# project (e.g. -mod=...) do not apply to an install at a version.
if ! GOBIN=$bindir GOFLAGS= go install "$module/cmd/weaviate-server@$version" >"$log" 2>&1; then
  cat "$log" >&2
  echo "go install $module/cmd/weaviate-server@$version failed" >&2
  exit 1
fi
if ! installed; then
  echo "$bin is not weaviate-server $version after go install" >&2
  exit 1
fi
echo "$bin"
