#!/usr/bin/env bash
# Lint: every C file of the project matches .clang-format. Prints the files that differ.
set -u
root=${1:?usage: check-format.sh SOURCE_ROOT [clang-format]}
cf=${2:-clang-format}
cd "$root" || exit 2
mapfile -t files < <(git ls-files -co --exclude-standard -- 'src/*.[ch]' 'include/*.h' 'tests/*.[ch]' 'bench/*.[ch]' 2>/dev/null || find src include tests bench -name '*.[ch]')
bad=0
for f in "${files[@]}"; do
    [ -f "$f" ] || continue
    if ! "$cf" --dry-run --Werror --style=file "$f" >/dev/null 2>&1; then
        echo "not clang-formatted: $f (run: clang-format -i $f)"
        bad=1
    fi
done
echo "checked ${#files[@]} files"
exit $bad
