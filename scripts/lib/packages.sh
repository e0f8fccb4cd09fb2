# shellcheck shell=bash
# Sourced by scripts/test.sh and scripts/bench: make sure the Debian packages
# a run needs are installed, installing them when running as root.
#
# ensure_packages SPEC...   where SPEC is "package:/path/it/installs", e.g.
#                            "nginx:/usr/sbin/nginx". A package counts as
#                            present when its path is executable, which is
#                            what the tests actually need.

# apt_updated keeps apt-get update to once per run, however many calls.
apt_updated=0

ensure_packages() {
	local spec pkg path
	local -a missing=()
	for spec in "$@"; do
		pkg=${spec%%:*}
		path=${spec#*:}
		if [[ ! -x $path ]]; then
			missing+=("$pkg")
		fi
	done
	if ((${#missing[@]} == 0)); then
		return 0
	fi

	if ((EUID != 0)); then
		echo "error: missing Debian packages: ${missing[*]}" >&2
		echo "install them with:" >&2
		echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}" >&2
		return 1
	fi

	echo "installing Debian packages: ${missing[*]}"
	# A package's postinst may start its service (nginx on port 80, a
	# PostgreSQL cluster on 5432). The tests start their own copies, so stop
	# that with policy-rc.d answering 101 ("action forbidden"), which
	# invoke-rc.d and deb-systemd-invoke both honour. An existing
	# policy-rc.d (as in container images) is left as it is.
	local policy=/usr/sbin/policy-rc.d wrote_policy=0 rc=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\n# Written by latchkey scripts/lib/packages.sh during apt-get install.\nexit 101\n' >"$policy"
		chmod 0755 "$policy"
		wrote_policy=1
	fi
	{
		if ((apt_updated == 0)); then
			apt-get update -q && apt_updated=1
		fi &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
	} || rc=$?
	if ((wrote_policy)); then
		rm -f "$policy"
	fi
	if ((rc != 0)); then
		echo "error: apt-get install ${missing[*]} failed (exit $rc)" >&2
		return "$rc"
	fi

	for spec in "$@"; do
		path=${spec#*:}
		if [[ ! -x $path ]]; then
			echo "error: package ${spec%%:*} is installed but $path is still missing" >&2
			return 1
		fi
	done
}
