#!/usr/bin/env bash
# scripts/test.sh: every check that make test and CI run.
#
#   scripts/test.sh            all stages, in order
#   scripts/test.sh STAGE...   only these: packages gofmt tidy vet test allocs fuzz
#                              (and bench-smoke, never run by default)
#
# Stages after a failed one still run, so that one run shows every problem;
# the exit status is non-zero if any stage failed.
#
# Environment:
#   FUZZTIME   how long each fuzz target runs (default 3s; make fuzz: 1m)
#
# The tests start the services they need themselves (internal/testenv); this
# script only installs the Debian packages, and sets LATCHKEY_TEST_REQUIRE=1 so
# that a test whose service is missing fails instead of skipping.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source-path=SCRIPTDIR source=lib/packages.sh
source scripts/lib/packages.sh

# Debian packages the Go tests need, as package:path-that-proves-it. Add
# services here as their tests arrive, e.g.
#   chromium:/usr/bin/chromium
TEST_PACKAGES=(
	nginx:/usr/sbin/nginx
	caddy:/usr/bin/caddy
	postgresql:/usr/lib/postgresql/15/bin/postgres
	redis-server:/usr/bin/redis-server
	systemd:/usr/bin/systemd-analyze
	chromium:/usr/bin/chromium
)

FUZZTIME=${FUZZTIME:-3s}
export LATCHKEY_TEST_REQUIRE=1

ALL_STAGES=(packages gofmt tidy vet test allocs fuzz)
# Stages run only when named: bench-smoke runs every scripts/bench group
# once, briefly, so that the suite does not rot (CI runs no benchmarks).
OPTIONAL_STAGES=(bench-smoke)
if (($# > 0)); then
	stages=("$@")
	for s in "${stages[@]}"; do
		if [[ " ${ALL_STAGES[*]} ${OPTIONAL_STAGES[*]} " != *" $s "* ]]; then
			echo "usage: $0 [${ALL_STAGES[*]} ${OPTIONAL_STAGES[*]}]..." >&2
			exit 2
		fi
	done
else
	stages=("${ALL_STAGES[@]}")
fi

failed=()
passed=()
start_all=$SECONDS

# stage NAME CMD...: run one check, record its outcome and time.
stage() {
	local name=$1 t0=$SECONDS rc=0
	shift
	echo
	echo "=== $name"
	"$@" || rc=$?
	if ((rc == 0)); then
		passed+=("$name")
		echo "--- $name ok ($((SECONDS - t0))s)"
	else
		failed+=("$name")
		echo "--- $name FAILED (exit $rc, $((SECONDS - t0))s)"
	fi
}

# run_bench_smoke runs every group of scripts/bench once with 1-second runs
# and tiny stores, in a throw-away directory: it checks that each target
# still sets up and answers, and measures nothing worth quoting.
run_bench_smoke() {
	local dir rc=0
	dir=$(mktemp -d)
	QUICK=1 DURATION=1s WARMUP=0 RUNS=1 SIZE=2000 ACTIVE=500 IMPORT_N=2000 PUBLISH=0 \
		RESULTS_DIR="$dir/results" SEED_CACHE="$dir/seed" scripts/bench || rc=$?
	rm -rf "$dir"
	return "$rc"
}

check_gofmt() {
	local out
	out=$(gofmt -l .) || return 1
	# testdata may hold Go files that are unformatted on purpose.
	out=$(grep -v '/testdata/' <<<"$out" || true)
	if [[ -n $out ]]; then
		echo "gofmt would change these files (run gofmt -w):"
		echo "$out"
		return 1
	fi
}

check_tidy() {
	# -diff prints what tidy would change and fails, without changing it.
	go mod tidy -diff
}

run_vet() {
	go vet ./...
}

run_tests() {
	# The default -p (GOMAXPROCS) keeps two packages building and testing at
	# once on the 2-core machines; more would only slow the race detector.
	go test -race -count=1 -timeout 12m ./...
}

# run_allocs runs the hot paths' allocation tests, which the race detector
# (it allocates on its own) keeps out of run_tests: files tagged !race,
# whose tests are named …Allocat… (AllocatesNothing, Allocations). A test in
# such a file that the name would not select fails the stage, so none is
# silently never run.
run_allocs() {
	local f names stray=0
	while IFS= read -r f; do
		names=$(grep -o '^func Test[A-Za-z0-9_]*' "$f" | sed 's/^func //' | grep -v 'Allocat' || true)
		if [[ -n $names ]]; then
			echo "$f: tagged !race but not named …Allocat…, so never run: $names"
			stray=1
		fi
	done < <(grep -rl --include='*_test.go' '^//go:build !race' .)
	go test -count=1 -run 'Allocat' ./... || return
	return "$stray"
}

# fuzz_one fuzzes target $2 with the package's instrumented test binary $1,
# in the package's directory $3 (where a failing input is written, under
# testdata/fuzz/), with the go command's corpus cache. Go 1.26's fuzz
# coordinator can report a bare "context deadline exceeded" as a failure
# when -fuzztime ends while a worker is mid-input (go.dev/issue/75804,
# fixed in Go 1.27); such a run wrote no failing input. That one case,
# and only it, is run once more.
fuzz_one() {
	local bin=$1 name=$2 dir=$3 cache=$4 out
	run() { (cd "$dir" && "$bin" -test.run='^$' -test.fuzz="^${name}\$" -test.fuzztime="$FUZZTIME" -test.fuzzcachedir="$cache" 2>&1); }
	if out=$(run); then
		echo "$out"
		return 0
	fi
	echo "$out"
	if grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
		echo "fuzz $name: the coordinator's deadline race (go.dev/issue/75804), no failing input; once more"
		run
		return
	fi
	return 1
}

# run_fuzz runs every fuzz target for FUZZTIME. Each package's test binary
# is built once with the fuzzing instrumentation (go test -c -fuzz) and run
# once per target: a go test -fuzz per target would build and link it
# again each time, which took longer than the fuzzing. New failing inputs
# land in the package's testdata/fuzz/ directory; commit them with the fix.
run_fuzz() {
	local pkg dir list name rc=0 n=0 bins gocache
	bins=$(mktemp -d)
	gocache=$(go env GOCACHE)
	while read -r pkg dir; do
		# Only compile test binaries for packages that may hold targets.
		if ! grep -qs '^func Fuzz' "$dir"/*_test.go; then
			continue
		fi
		if ! list=$(go test -list '^Fuzz' "$pkg"); then
			echo "FAIL: cannot list the fuzz targets of $pkg"
			rc=1
			continue
		fi
		local bin="$bins/$(basename "$dir").$n.test"
		if ! go test -c -fuzz=. -o "$bin" "$pkg"; then
			echo "FAIL: cannot build the fuzz binary of $pkg"
			rc=1
			continue
		fi
		for name in $(grep '^Fuzz' <<<"$list" || true); do
			n=$((n + 1))
			echo "fuzz $pkg $name ($FUZZTIME)"
			if ! fuzz_one "$bin" "$name" "$dir" "$gocache/fuzz/$pkg"; then
				echo "FAIL: fuzz $pkg $name (failing input saved under $dir/testdata/fuzz/$name/)"
				rc=1
			fi
		done
	done < <(go list -f '{{.ImportPath}} {{.Dir}}' ./...)
	rm -rf "$bins"
	echo "$n fuzz targets run"
	return "$rc"
}

for s in "${stages[@]}"; do
	case $s in
	packages) stage packages ensure_packages "${TEST_PACKAGES[@]}" ;;
	gofmt) stage gofmt check_gofmt ;;
	tidy) stage "go mod tidy" check_tidy ;;
	vet) stage "go vet" run_vet ;;
	test) stage "go test -race" run_tests ;;
	allocs) stage "allocations (no -race)" run_allocs ;;
	fuzz) stage "fuzz ($FUZZTIME each)" run_fuzz ;;
	bench-smoke) stage "bench smoke (scripts/bench, 1 s runs)" run_bench_smoke ;;
	esac
done

# join SEP WORD...: the words separated by SEP.
join() {
	local sep=$1 out=$2 w
	shift 2
	for w in "$@"; do out+="$sep$w"; done
	echo "$out"
}

echo
elapsed="$((SECONDS - start_all))s"
if ((${#failed[@]} > 0)); then
	echo "test.sh: FAIL in $elapsed: $(join ', ' "${failed[@]}") (${#passed[@]} of ${#stages[@]} stages passed)"
	exit 1
fi
echo "test.sh: PASS in $elapsed: $(join ', ' "${passed[@]}")"
