# Helpers for the mope CLI tests (sourced; not a test itself).
# fails_cleanly CMD...: the command must exit non-zero but below 128 (no
# signal, so no crash), and print a message on stderr.
fails_cleanly() {
  local rc=0
  "$@" >"$WORK/fc.out" 2>"$WORK/fc.err" || rc=$?
  if [ "$rc" -eq 0 ]; then echo "FAIL: expected an error from: $*" >&2; exit 1; fi
  if [ "$rc" -ge 128 ]; then echo "FAIL: crashed (exit $rc): $*" >&2; cat "$WORK/fc.err" >&2; exit 1; fi
  if [ ! -s "$WORK/fc.err" ]; then echo "FAIL: no message on stderr from: $*" >&2; exit 1; fi
  if grep -q "AddressSanitizer\|runtime error:\|LeakSanitizer" "$WORK/fc.err"; then
    echo "FAIL: sanitizer report from: $*" >&2; cat "$WORK/fc.err" >&2; exit 1
  fi
  LAST_RC=$rc
}
# expect_eq WHAT GOT WANT
expect_eq() {
  if [ "$2" != "$3" ]; then printf 'FAIL: %s\n  got:  %s\n  want: %s\n' "$1" "$2" "$3" >&2; exit 1; fi
}
# expect_grep WHAT PATTERN FILE
expect_grep() {
  if ! grep -q -- "$2" "$3"; then echo "FAIL: $1: '$2' not in $3:" >&2; head -c 2000 "$3" >&2; exit 1; fi
}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
