#!/usr/bin/env bash
# Lint: docs/configuration.md is exactly what `ddb2os config-doc` prints from the configuration
# table. After changing src/conf/conf_table.c, run: build/ddb2os config-doc > docs/configuration.md
set -u
ddb2os=${1:?usage: check-config-doc.sh DDB2OS SOURCE_ROOT}
root=${2:?usage: check-config-doc.sh DDB2OS SOURCE_ROOT}
if ! "$ddb2os" config-doc | diff -u "$root/docs/configuration.md" - ; then
    echo "docs/configuration.md is out of date: run 'build/ddb2os config-doc > docs/configuration.md'"
    exit 1
fi
echo "docs/configuration.md matches the configuration table"
