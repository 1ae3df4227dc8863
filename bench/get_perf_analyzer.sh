#!/usr/bin/env bash
# Fetch Triton's perf_analyzer and print the command that runs it, for
#   .venv/bin/python -m bench.bench_perf_analyzer --perf-analyzer "$(bash bench/get_perf_analyzer.sh)"
#
# perf_analyzer ships as bin/perf_analyzer inside PyPI's perf-analyzer wheels, which are tagged
# manylinux_2_38: it needs glibc >= 2.38 and GCC 13's libstdc++ (GLIBCXX_3.4.32). On an older
# system (Debian 12 has glibc 2.36) pip skips those wheels and installs the 0.1.0 placeholder,
# which has no binary. This script downloads the wheel for the manylinux_2_38 platform anyway
# and, when the system's glibc is older, Debian 13's libc6, libstdc++6 and libgcc-s1 packages
# into the same directory (apt with a private state directory: the system's package sources and
# installed packages are left alone); the binary then runs through that glibc's dynamic loader.
#
# Usage: bash bench/get_perf_analyzer.sh [DIR]   (default DIR: /tmp/perf-analyzer; logs to stderr)
set -euo pipefail
dest=${1:-/tmp/perf-analyzer}
version=2.60.0
pip=${PIP:-$(dirname "$0")/../.venv/bin/pip}
mkdir -p "$dest"
binary="$dest/wheel/perf_analyzer/bin/perf_analyzer"
if [ ! -x "$binary" ]; then
    "$pip" download -q --no-deps "perf-analyzer==$version" --only-binary=:all: \
        --platform manylinux_2_38_x86_64 -d "$dest" >&2
    python3 -m zipfile -e "$dest"/perf_analyzer-"$version"-*.whl "$dest/wheel" >&2
    chmod +x "$binary"
fi
if "$binary" --version >/dev/null 2>&1; then
    echo "$binary"
    exit 0
fi
libs="$dest/trixie/usr/lib/x86_64-linux-gnu"
if [ ! -e "$libs/ld-linux-x86-64.so.2" ]; then
    apt_dir="$dest/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
        >"$apt_dir/sources.list"
    apt_options=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
    apt-get "${apt_options[@]}" update -qq >&2
    (cd "$apt_dir/debs" && apt-get "${apt_options[@]}" download libc6 libstdc++6 libgcc-s1 >&2)
    for deb in "$apt_dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dest/trixie"; done
fi
echo "$libs/ld-linux-x86-64.so.2 --library-path $libs:/lib/x86_64-linux-gnu $binary"
