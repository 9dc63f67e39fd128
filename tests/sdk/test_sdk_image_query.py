"""Search by an image file or URL that the index's CLIP model embeds."""

import shutil

import pytest
from sdk_testdata import index_dataset

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.sdk.errors import UnknownModelError
from fiftyone_clipbranches.sdk.search import is_image_reference


def test_an_indexed_image_finds_itself_first(make_user_index, tmp_path):
    ds = make_user_index(5)
    sample = ds.skip(7).first()
    copy = tmp_path / "query.png"
    shutil.copyfile(sample.filepath, copy)
    for query in (sample.filepath, str(copy), copy.as_uri()):
        view = sdk.search(ds, image=query, k=5, index_key="clip")
        assert view.first().id == sample.id, query
    ids, dists = sdk.search_ids(ds, image=copy, k=3, index_key="clip")
    assert ids[0] == sample.id and dists[0] == 0


def test_image_queries_that_cannot_be_embedded_are_clear_errors(
    make_user_index, tmp_path
):
    ds = make_user_index(5)
    with pytest.raises(ValueError, match="no image file at"):
        sdk.search(ds, image=str(tmp_path / "missing.jpg"), index_key="clip")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read the image"):
        sdk.search(ds, image=broken, index_key="clip")
    with pytest.raises(ValueError, match="could not fetch .*offline"):
        sdk.search(ds, image="http://127.0.0.1:9/cat.jpg", index_key="clip")
    with pytest.raises(ValueError, match="exactly one query"):
        sdk.search(ds, text="a cat", image=str(broken), index_key="clip")


def test_an_index_without_a_clip_model_refuses_image_queries(make_dataset):
    ds = make_dataset(1)
    index_dataset(ds, "cb")
    with pytest.raises(UnknownModelError, match="cannot embed an image in their space"):
        sdk.search(ds, image=ds.first().filepath, index_key="cb")


def test_image_references_are_told_from_text(tmp_path):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"")
    for query in (str(image), image.as_uri(), "https://example.com/a.jpg"):
        assert is_image_reference(query), query
    for query in ("a photo of a cat", str(tmp_path / "nothing.jpg"), str(tmp_path)):
        assert not is_image_reference(query), query


def test_image_urls_are_fetched_within_limits(make_user_index, monkeypatch):
    """The App's server fetches a typed URL: a link-local address (a cloud
    metadata service) is refused, a redirect there too, a trickling server stops
    at the total time limit (it kept the search waiting for weeks), and an image
    that cannot be read is named by its URL (not a temporary file)."""
    import http.server
    import importlib
    import threading
    import time

    image_urls = importlib.import_module("fiftyone_clipbranches.sdk.image_urls")
    ds = make_user_index(5)
    for url in (
        "http://169.254.169.254/latest/",
        "http://[::ffff:169.254.169.254]/latest/",  # the same, written as IPv6
        "http://[fd00:ec2::254]/latest/",  # a metadata service outside link-local
    ):
        with pytest.raises(ValueError, match="link-local or metadata") as refused:
            sdk.search(ds, image=url, index_key="clip")
        assert "could not fetch" not in str(refused.value)
    with pytest.raises(ValueError, match="no valid URL"):
        sdk.search(ds, image="http://h:99999/x.jpg", index_key="clip")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/meta")
                self.end_headers()
            elif self.path == "/slow-headers.jpg":  # its status line trickles
                for byte in b"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\n\r\n":
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.1)
            elif self.path == "/slow.jpg":
                self.send_response(200)
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                for _ in range(40):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            else:
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"not an image")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setattr(image_urls, "URL_TOTAL_S", 1.0)
    try:
        with pytest.raises(ValueError, match="link-local"):
            sdk.search(ds, image=f"{base}/redirect", index_key="clip")
        for slow in ("slow.jpg", "slow-headers.jpg"):
            started = time.monotonic()
            with pytest.raises(ValueError, match="not downloaded within 1 s"):
                sdk.search(ds, image=f"{base}/{slow}", index_key="clip")
            assert time.monotonic() - started < 3.0, slow
        with pytest.raises(ValueError, match="cannot read the image") as unread:
            sdk.search(ds, image=f"{base}/text.jpg", index_key="clip")
        assert "clipbranches-query-" not in str(unread.value)
        assert f"{base}/text.jpg" in str(unread.value)
    finally:
        server.shutdown()
        server.server_close()
