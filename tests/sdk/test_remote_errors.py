"""What a user reads when the service answers an error."""

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
