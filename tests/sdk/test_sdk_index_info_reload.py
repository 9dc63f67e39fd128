import json
import subprocess
import sys


def test_index_info_of_a_reloaded_dataset_is_json(make_user_index):
    ds = make_user_index(5)
    code = (
        "import json, fiftyone as fo; from fiftyone_clipbranches import sdk;"
        f"print(json.dumps(sdk.index_info(fo.load_dataset({ds.name!r}), 'clip').to_dict()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["clip_model"]["name"] == "clipbranches-tiny-user"
