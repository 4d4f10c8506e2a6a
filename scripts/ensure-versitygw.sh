#!/usr/bin/env bash
# Makes sure versitygw (an S3-compatible server over a local directory; the s3:// blob tests start one
# through internal/blobtest) is installed at $(go env GOPATH)/bin/versitygw in the pinned version,
# installing it with `go install` from the Go module proxy when it is missing or another version.
# Prints the binary's path.
set -euo pipefail

version=v1.8.0
module=github.com/versity/versitygw

# go install puts binaries in the first GOPATH entry's bin directory.
gopath=$(go env GOPATH)
bindir=${gopath%%:*}/bin
bin=$bindir/versitygw

installed() { go version -m "$bin" 2>/dev/null | grep -qE "^[[:space:]]+mod[[:space:]]+$module[[:space:]]+$version([[:space:]]|$)"; }

if [ -x "$bin" ] && installed; then
  echo "$bin"
  exit 0
fi
echo "versitygw $version is not installed; installing it with go install (takes a minute or more)" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# GOBIN pins the destination even when the environment sets GOBIN elsewhere; GOFLAGS from the
# project (e.g. -mod=...) do not apply to an install at a version.
if ! GOBIN=$bindir GOFLAGS= go install "$module/cmd/versitygw@$version" >"$log" 2>&1; then
  cat "$log" >&2
  echo "go install $module/cmd/versitygw@$version failed" >&2
  exit 1
fi
if ! installed; then
  echo "$bin is not versitygw $version after go install" >&2
  exit 1
fi
echo "$bin"
