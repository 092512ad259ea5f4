# Shared by the GPU suites (source it after setting $out): `step NAME TIMEOUT_S CMD...` runs one
# step under its own time limit, appends "== NAME: rc=... in ...s" to $out/steps.txt, and keeps the
# first failing step's status in $status, so every step runs and the script can `exit $status`.
status=0
step() {
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@"; local rc=$?
  echo "== $name: rc=$rc in $((SECONDS - t0))s" | tee -a "$out/steps.txt"
  [ $rc -ne 0 ] && [ $status -eq 0 ] && status=$rc
  return 0
}
