# Sourced by demo.sh and test.sh from the checkout's root: create .venv and install
# the package with its dev extras, unless .venv already holds the install of this
# pyproject.toml (the install is editable: code changes need no new install).
stamp=.venv/.installed-pyproject
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -x .venv/bin/clipbranches ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet -e ".[dev]"
    echo "$wanted" > "$stamp"
fi
