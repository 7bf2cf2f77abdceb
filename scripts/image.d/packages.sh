# shellcheck shell=bash
# What the ddb2os image carries besides Debian's Essential set (scripts/image, Containerfile):
# the libraries ddb2os links (libcurl, json-c, yajl, OpenSSL, libpq, libmicrohttpd), the CA bundle for
# TLS to the AWS APIs and OpenSearch, and curl for the ECS health check.
# shellcheck disable=SC2034  # read by scripts/image
IMAGE_PACKAGES=(ca-certificates curl libcurl4 libjson-c5 libyajl2 libssl3 libpq5 libmicrohttpd12)
