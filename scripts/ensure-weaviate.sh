#!/usr/bin/env bash
# Makes sure weaviate-server (the search engine; `atlas serve` starts one when WEAVIATE_URL is unset and
# the search tests start one through internal/weaviatetest) is installed at
# $(go env GOPATH)/bin/weaviate-server in the pinned version. Prints the binary's path.
set -euo pipefail
exec bash "$(dirname "$0")/go-install-pinned.sh" weaviate-server github.com/weaviate/weaviate v1.35.2 "about 5 minutes the first time"
