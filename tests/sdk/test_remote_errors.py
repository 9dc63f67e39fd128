"""What a user reads when the service answers an error."""

import pytest

from fiftyone_clipbranches.sdk import RemoteServiceError
from fiftyone_clipbranches.sdk.messages import user_message


def test_the_service_message_comes_first_then_where_it_came_from():
    err = RemoteServiceError(404, "index_not_found", "no index 'clip' on 'pets'")
    assert user_message(err) == (
        "no index 'clip' on 'pets' (clipbranches service: HTTP 404, index_not_found)"
    )
    down = RemoteServiceError(0, "unreachable", "cannot reach http://127.0.0.1:1")
    assert (
        str(down)
        == "cannot reach http://127.0.0.1:1 (clipbranches service: unreachable)"
    )
    assert (down.status, down.code, down.message) == (0, "unreachable", down.message)


def test_missing_clip_weights_are_a_user_error_told_in_the_apps_words():
    from fiftyone_clipbranches.embed.weights import (
        WeightsUnavailableError,
        unavailable_message,
    )

    err = WeightsUnavailableError(
        unavailable_message("ViT-B-32", "laion2b_s34b_b79k", None, "offline")
    )
    assert user_message(err) == str(err)  # not "Unexpected error"
    in_app = user_message(err, in_app=True)
    assert in_app.startswith("CLIP weights 'ViT-B-32' / 'laion2b_s34b_b79k'")
    assert "Pretrained weights" in in_app and "load_clip(" not in in_app


def test_round_summaries_count_in_words():
    from fiftyone_clipbranches.sdk.messages import counted, round_summary

    assert [counted(n, "match") for n in (0, 1, 2)] == [
        "0 matches",
        "1 match",
        "2 matches",
    ]
    assert (
        counted(1, "negative") == "1 negative"
        and counted(3, "positive") == "3 positives"
    )
    stats = {"n_results": 66, "n_pos": 6, "n_neg": 1}
    assert round_summary(stats) == "66 matches from 6 positives / 1 negative"


def test_a_configured_service_that_is_down_says_how_to_refine_here(make_dataset):
    from fiftyone_clipbranches.sdk.remote import (
        URL_ENV,
        RemoteServiceError,
        refine_here_or_remote,
    )
    from fiftyone_clipbranches.sdk.request import RefineRequest

    ds = make_dataset(2)
    request = RefineRequest.build(None, positives=ds.values("id")[:2])
    with pytest.raises(RemoteServiceError) as info:
        refine_here_or_remote(ds, request, secrets={URL_ENV: "http://127.0.0.1:1"})
    assert info.value.code == "unreachable"
    message = str(info.value)
    assert "cannot reach http://127.0.0.1:1" in message and URL_ENV in message
    assert "clipbranches serve" in message and "remove the setting" in message
