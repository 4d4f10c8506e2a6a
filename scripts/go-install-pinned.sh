#!/usr/bin/env bash
# Makes sure the Go program NAME, built from MODULE/cmd/NAME at VERSION, is installed at
# $(go env GOPATH)/bin/NAME, installing it with `go install` from the Go module proxy when it is
# missing or another version. Prints the binary's path. Used by the ensure-*.sh scripts.
# Usage: go-install-pinned.sh NAME MODULE VERSION "HOW LONG IT TAKES"
set -euo pipefail

name=$1 module=$2 version=$3 duration=${4:-a minute or more}

# go install puts binaries in the first GOPATH entry's bin directory.
gopath=$(go env GOPATH)
bindir=${gopath%%:*}/bin
bin=$bindir/$name

installed() { go version -m "$bin" 2>/dev/null | grep -qE "^[[:space:]]+mod[[:space:]]+$module[[:space:]]+$version([[:space:]]|$)"; }

if [ -x "$bin" ] && installed; then
  echo "$bin"
  exit 0
fi
echo "$name $version is not installed; installing it with go install (takes $duration)" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# GOBIN pins the destination even when the environment sets GOBIN elsewhere; GOFLAGS from the
# project (e.g. -mod=...) do not apply to an install at a version.
if ! GOBIN=$bindir GOFLAGS= go install "$module/cmd/$name@$version" >"$log" 2>&1; then
  cat "$log" >&2
  echo "go install $module/cmd/$name@$version failed" >&2
  exit 1
fi
if ! installed; then
  echo "$bin is not $name $version after go install" >&2
  exit 1
fi
echo "$bin"
