"""FiftyOne's note that MongoDB 6.0 is its oldest supported version is turned off
for the bundled mongod only (every CLI command printed it: expected, harmless)."""

import os
import subprocess
import sys

SCRIPT = """
import os
from fiftyone_clipbranches.sdk.settings import quiet_bundled_database_validation
quiet_bundled_database_validation()
import fiftyone as fo
print(fo.config.database_validation, os.environ.get("FIFTYONE_DATABASE_VALIDATION"))
"""


def _run(**env) -> str:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FIFTYONE_DATABASE_VALIDATION", "FIFTYONE_DATABASE_URI")
    }
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()[-2:]


def test_off_for_the_bundled_database_and_the_processes_it_starts():
    assert _run() == ["False", "false"]


def test_a_users_own_database_or_setting_is_left_alone():
    uri = "mongodb://127.0.0.1:1"  # never connected to here
    assert _run(FIFTYONE_DATABASE_URI=uri) == ["True", "None"]
    assert _run(FIFTYONE_DATABASE_VALIDATION="true") == ["True", "true"]
