#!/usr/bin/env bash
# Lint: terraform/ as far as it can be checked without the AWS provider (which cannot be
# downloaded here; terraform/README.md lists what an operator runs with it):
#   1. python-hcl2 parses every terraform/*.tf;
#   2. checkov (--skip-download: no network) over terraform/, every skip justified where it is;
#   3. the books API's OpenAPI file, rendered like templatefile() with test values, under checkov;
#   4. terraform fmt -check, where a terraform binary is installed (it is not a Debian package).
# The tools come from scripts/lint-tools (run by scripts/services install).
set -uo pipefail
root=${1:?usage: check-terraform.sh SOURCE_ROOT}
tools=$root/.tools
for t in "$tools/checkov/bin/checkov" "$tools/hcl2/bin/python"; do
  [ -x "$t" ] || { echo "$t is missing: run scripts/lint-tools"; exit 1; }
done
status=0

"$tools/hcl2/bin/python" - "$root"/terraform/*.tf <<'PY' || status=1
import sys
import hcl2
bad = 0
for path in sys.argv[1:]:
    try:
        with open(path, encoding="utf-8") as f:
            hcl2.load(f)
    except Exception as e:  # noqa: BLE001 - any parse error is the finding
        print("%s: python-hcl2 cannot parse it: %s" % (path, e))
        bad += 1
print("python-hcl2: %d of %d terraform files parse" % (len(sys.argv) - 1 - bad, len(sys.argv) - 1))
sys.exit(1 if bad else 0)
PY

# terraform itself is not a Debian package; where it is installed, the files must be formatted.
if command -v terraform >/dev/null 2>&1; then
  if TF_CLI_CONFIG_FILE=/dev/null terraform -chdir="$root/terraform" fmt -check -diff; then
    echo "terraform fmt: formatted"
  else
    echo "terraform fmt: run 'terraform fmt' in terraform/"; status=1
  fi
fi

checkov() {
  "$tools/checkov/bin/checkov" --skip-download --quiet --compact "$@"
}
echo "checkov: terraform/"
checkov -d "$root/terraform" --framework terraform || status=1

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if /usr/bin/python3 "$root/tests/lint/vtl/check_books_api.py" --render "$root" >"$tmp/books_api.yaml"; then
  echo "checkov: terraform/books_api.yaml rendered with test values"
  checkov -f "$tmp/books_api.yaml" --framework openapi || status=1
else
  status=1
fi
exit "$status"
