#!/usr/bin/env bash
# Makes sure versitygw (an S3-compatible server over a local directory; the s3:// blob tests start one
# through internal/blobtest) is installed at $(go env GOPATH)/bin/versitygw in the pinned version.
# Prints the binary's path.
set -euo pipefail
exec bash "$(dirname "$0")/go-install-pinned.sh" versitygw github.com/versity/versitygw v1.8.0 "a minute or more"
