# Shared by scripts/run and scripts/test (sourced, not run; from the repository's
# root): the Debian packages, the .venv and the hub installed into it, each step
# said as it goes, since a first install takes about a minute.

say() { printf '==> %s\n' "$*" >&2; }

# A venv left half-made (python but no pip, e.g. by a failed first attempt) is redone.
venv_ok() { .venv/bin/python -m pip --version >/dev/null 2>&1; }

# The Debian packages Python needs to make .venv: Debian's python3 cannot create a
# venv without python3-venv (no ensurepip).
venv_packages() {
    if ! command -v python3 >/dev/null 2>&1; then
        echo python3 python3-venv
    elif ! venv_ok && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        echo python3-venv
    fi
}

# apt_install PKG...: installs those of PKG that are missing (as root, or with sudo).
apt_install() {
    local missing=() pkg sudo=()
    command -v dpkg >/dev/null 2>&1 || return 0 # not Debian: nothing to do here
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    if ((EUID != 0)); then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            say "missing Debian packages ${missing[*]}; run as root to install them"
            return 1
        fi
    fi
    say "installing Debian packages: ${missing[*]} (apt-get update, then install)"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

make_venv() {
    if ! venv_ok; then
        say "creating .venv"
        python3 -m venv --clear .venv
    fi
}

# pip_install SPEC KIND: installs SPEC ('.' or '.[test]') into .venv, unless the
# stamp says an install from this pyproject.toml of that KIND ("run": any will do,
# "test": the test extras) is there already (the install is editable: source edits
# need none). One line a package as pip collects it; pip's whole output on failure.
pip_install() {
    local spec=$1 kind=$2 stamp=".venv/.omnihub-installed" sha log status
    sha=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [[ $kind == run && "$(cut -d' ' -f1 "$stamp" 2>/dev/null)" == "$sha" && -x .venv/bin/hub ]] ||
        [[ "$(cat "$stamp" 2>/dev/null)" == "$sha $kind" ]]; then
        return 0
    fi
    say "installing the hub ($spec) into .venv: about a minute the first time"
    log=$(mktemp)
    set +e
    .venv/bin/python -m pip install --disable-pip-version-check -e "$spec" 2>&1 |
        tee "$log" |
        awk '/^Collecting /{print "    " $2; fflush()}
             /^Installing collected packages/{print "    installing them"; fflush()}' >&2
    status=${PIPESTATUS[0]}
    set -e
    if ((status != 0)); then
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
    printf '%s %s\n' "$sha" "$kind" >"$stamp"
    say "installed"
}
