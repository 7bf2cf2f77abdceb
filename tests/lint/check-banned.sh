#!/usr/bin/env bash
# Lint: libc functions ddb2os does not use, with what to use instead.
#   sprintf -> snprintf or d2o_buf_printf     strcpy/strcat -> d2o_strlcpy or d2o_buf
#   strtok -> strcspn/strsep-free parsing      gmtime/localtime -> gmtime_r
#   atoi -> d2o_parse_i64                      strerror -> d2o_strerror
set -u
root=${1:?usage: check-banned.sh SOURCE_ROOT}
cd "$root" || exit 2
pattern='(^|[^A-Za-z0-9_.>])(sprintf|vsprintf|strcpy|strcat|strtok|gmtime|localtime|atoi|atol|strerror|gets)[[:space:]]*\('
mapfile -t files < <(git ls-files -co --exclude-standard -- 'src/*.[ch]' 'include/*.h' 'tests/*.[ch]' 'bench/*.[ch]' 2>/dev/null)
hits=$(for f in "${files[@]}"; do [ -f "$f" ] && grep -HnE "$pattern" "$f"; done | grep -vE '^[^:]+:[0-9]+:[[:space:]]*(\*|/\*|//)')
if [ -n "$hits" ]; then
    echo "banned functions used:"
    echo "$hits"
    exit 1
fi
echo "no banned functions in ${#files[@]} files"
