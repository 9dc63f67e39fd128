# Sourced by demo.sh and test.sh from the checkout's root: create .venv and install
# the package with its dev extras, unless .venv already holds the install of this
# pyproject.toml, by this python3, for this checkout (the install is editable: code
# changes need no new install).
_venv_stamp=.venv/.installed-pyproject
_venv_wanted="$(python3 -c 'import hashlib, os, sys
print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest(),
      sys.version.split()[0], os.getcwd())')"
if [ "$(cat "$_venv_stamp" 2>/dev/null)" != "$_venv_wanted" ] \
    || ! .venv/bin/python -c "import fiftyone_clipbranches" 2>/dev/null; then
    echo "setting up .venv: installing the package and its dependencies (a few" \
        "minutes, once per checkout and pyproject.toml)" >&2
    python3 -m venv .venv
    .venv/bin/pip install --quiet -e ".[dev]"
    echo "$_venv_wanted" > "$_venv_stamp"
fi
unset _venv_stamp _venv_wanted
