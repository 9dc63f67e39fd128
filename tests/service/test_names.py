"""Names the sdk and the CLI make (other scripts, signs, long names) are served:
the service refused index keys and view names they accept, and gave a 500 on a
name holding a lone surrogate."""

from __future__ import annotations

import pytest
from service_helpers import Http
from service_process import running_service

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.service import Client, ServiceError

TOKEN = "names-token-0123456789abcdef"


def test_unicode_and_long_names_are_served(make_user_index):
    key = "日本_" + "k" * 200
    ds = make_user_index(n_per_class=4, index_key=key, name="é 日本 😀 #1 " + "d" * 250)
    ds.persistent = True
    labelled = ds.take(4, seed=0).values("id")
    with running_service([f"--dataset={ds.name}", "--compute-workers", "1"], TOKEN) as (
        service
    ):
        client = Client(service.url, TOKEN)
        assert client.index(ds.name, key)["key"] == key
        found = client.search(ds.name, "a cat", index_key=key, k=5)
        assert len(found["items"]) == 5
        result = client.refine(
            ds.name, positives=labelled[:2], negatives=labelled[2:], index_key=key
        )
        saved = client.save_view(result["result_id"], "saved 日本 #1 (v2)")
        assert saved["name"] == "saved 日本 #1 (v2)"
        ds.reload()  # saved by the service's process
        assert len(ds.load_saved_view("saved 日本 #1 (v2)")) == result["total"]
        with pytest.raises(ServiceError) as refused:
            client.save_view(result["result_id"], "😀😀")  # no letter for its URL
        assert refused.value.status == 422
        assert "ASCII letters (a-z) and digits of its name" in str(refused.value)
        with pytest.raises(ServiceError) as refused:  # FiftyOne's longest is 1551
            client.save_view(result["result_id"], "v" * 1600)
        assert refused.value.status == 422 and "length 1600 > 1551" in str(
            refused.value
        )
        assert len(str(refused.value)) < 400  # not the name twice over
        assert sdk.list_indexes(ds) == [key]

        # a lone surrogate (JSON's "\ud800") is a bad request, not a 500
        raw = b'{"dataset": "x\\ud800", "text": "a"}'
        status, _, body = Http(service.url, TOKEN)("POST", "/v1/search", raw=raw)
        assert status == 400
        assert "lone surrogate" in body["error"]["message"]
