"""build_index operator: immediate (generator with progress) and delegated."""

import pytest
from fiftyone.operators.executor import ExecutionError
from plugin_helpers import notifications, run_op, uris
from sdk_testdata import attach_real_embeddings, make_cifar_dataset

from fiftyone_clipbranches import sdk


@pytest.fixture
def embedded_dataset(cifar_dir, clip_embeddings_dir):
    ds = make_cifar_dataset(cifar_dir, 5)
    attach_real_embeddings(ds, clip_embeddings_dir)
    yield ds
    ds.delete()


def _params(key):
    return {
        "index_key": key,
        "embeddings": "emb",
        "code_method": "pca",
        "pretrained": "",
    }


def test_build_index_operator_immediate(embedded_dataset):
    ds = embedded_dataset
    _, requests = run_op("build_index", {"dataset": ds, "params": _params("idx")})
    assert "set_progress" in uris(requests)
    assert notifications(requests, "success") == ["Index 'idx' built over 50 samples"]
    info = sdk.index_info(ds, "idx")
    assert info.code_method == "pca"
    assert info.clip_model is None  # nothing declared the field's model
    with pytest.raises(ExecutionError, match="already exists"):
        run_op("build_index", {"dataset": ds, "params": _params("idx")})


def test_build_index_operator_delegated(embedded_dataset):
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService

    ds = embedded_dataset
    out = foo.execute_operator(
        "@clipbranches/clipbranches/build_index",
        ctx={"dataset": ds, "params": _params("later"), "request_delegation": True},
    )
    assert out.delegated
    assert sdk.list_indexes(ds) == []
    service = DelegatedOperationService()
    service.execute_queued_operations(dataset_name=ds.name)
    (op,) = service.list_operations(dataset_name=ds.name)
    assert op.run_state == "completed", op.run_state
    assert sdk.list_indexes(ds) == ["later"]

    # an update queued, then its index deleted: the failure says so (it was
    # "Validation error. Path: index_key. Reason: Invalid enum value")
    queued = foo.execute_operator(
        "@clipbranches/clipbranches/update_index",
        ctx={
            "dataset": ds,
            "params": {"index_key": "later"},
            "request_delegation": True,
        },
    )
    assert queued.delegated
    sdk.delete_index(ds, "later")
    service.execute_queued_operations(dataset_name=ds.name)
    update = next(o for o in service.list_operations(dataset_name=ds.name)
                  if o.operator.endswith("update_index"))  # fmt: skip
    assert update.run_state == "failed"
    assert "index 'later' is not on this dataset" in str(update.result.error)


def test_build_form_embeds_the_missing_vectors_of_a_field_recording_its_model(
    cifar_dir, tiny_clip_checkpoint
):
    """The form says samples without a vector are embedded when the field records
    its model; the operator passed no model, and the build stopped on them."""
    from user_path import TINY_CLIP_NAME

    ds = make_cifar_dataset(cifar_dir, 4)
    try:
        sdk.compute_embeddings(
            ds, "clip", model=TINY_CLIP_NAME, pretrained=str(tiny_clip_checkpoint),
            progress=False,
        )  # fmt: skip
        ds.take(5, seed=3).set_field("clip", None).save()  # an interrupted run
        params = {"index_key": "idx", "embeddings": "clip", "code_method": "pca"}
        _, requests = run_op("build_index", {"dataset": ds, "params": params})
        assert notifications(requests, "error") == []
        assert sdk.index_info(ds, "idx").n_samples == 40
        assert ds.exists("clip").count() == 40
    finally:
        ds.delete()


def test_a_delegated_compute_that_embeds_nothing_is_failed(
    tmp_path, tiny_clip_checkpoint
):
    """It was marked completed: only its progress label said "0/4 embedded"."""
    import fiftyone as fo
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService
    from user_path import TINY_CLIP_NAME

    ds = fo.Dataset()
    try:
        for i in range(4):
            (tmp_path / f"{i}.jpg").write_text("no image")
        ds.add_samples(
            [fo.Sample(filepath=str(tmp_path / f"{i}.jpg")) for i in range(4)]
        )
        params = {
            "field": "e",
            "model": TINY_CLIP_NAME,
            "pretrained": str(tiny_clip_checkpoint),
        }
        out = foo.execute_operator(
            "@clipbranches/clipbranches/compute_embeddings",
            ctx={"dataset": ds, "params": params, "request_delegation": True},
        )
        assert out.delegated
        service = DelegatedOperationService()
        service.execute_queued_operations(dataset_name=ds.name)
        (op,) = service.list_operations(dataset_name=ds.name)
        assert op.run_state == "failed", op.run_state
        error = str(op.result.error)
        assert "none of the 4 images to embed could be read (e.g." in error
        assert "0.jpg" in error or "1.jpg" in error
    finally:
        ds.delete()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:load_clip.*RANDOM weights:UserWarning")
def test_compute_embeddings_operator_with_random_clip(cifar_dir):
    """Random-weight CLIP (offline): 20 images embedded through the operator."""
    ds = make_cifar_dataset(cifar_dir, 2)
    try:
        params = {
            "field": "clip",
            "model": "ViT-B-32",
            "pretrained": "",
            "batch_size": 8,
        }
        _, requests = run_op("compute_embeddings", {"dataset": ds, "params": params})
        assert "set_progress" in uris(requests) and "reload_dataset" in uris(requests)
        (done,) = notifications(requests, "warning")  # said, as it is useless
        assert done.startswith("Embedded 20 samples") and "random CLIP weights" in done
        assert ds.exists("clip").count() == 20
    finally:
        ds.delete()


@pytest.mark.filterwarnings("ignore:load_clip.*RANDOM weights:UserWarning")
def test_build_form_computes_with_random_weights_when_pretrained_is_empty(
    cifar_dir, tiny_clip_checkpoint
):
    """As the compute-embeddings form says: empty weights are random weights."""
    from user_path import TINY_CLIP_NAME

    ds = make_cifar_dataset(cifar_dir, 4)
    try:
        params = {
            "index_key": "idx",
            "embeddings": "__compute__",
            "model": TINY_CLIP_NAME,
            "pretrained": "",
            "code_method": "pca",
        }
        _, requests = run_op("build_index", {"dataset": ds, "params": params})
        assert notifications(requests, "error") == []
        (done,) = notifications(requests, "warning")
        assert done.startswith("Index 'idx' built over 40 samples with random CLIP")
        model = sdk.index_info(ds, "idx").clip_model
        assert model["name"] == TINY_CLIP_NAME and model["pretrained"] is None
        # left out (from Python), the weights are not random: the SDK's rule
        unset = {k: v for k, v in params.items() if k != "pretrained"}
        _, requests = run_op(
            "build_index", {"dataset": ds, "params": {**unset, "index_key": "u"}}
        )
        (error,) = notifications(requests, "error")
        assert "pass pretrained=" in error and "u" not in sdk.list_indexes(ds)
        # trained weights next: the field holds the random ones; the way out in
        # the form's words
        trained = {**params, "index_key": "w", "pretrained": str(tiny_clip_checkpoint)}
        _, requests = run_op("build_index", {"dataset": ds, "params": trained})
        (error,) = notifications(requests, "error")
        assert f"'{TINY_CLIP_NAME}' / random weights" in error
        assert "run 'CLIP branches: compute embeddings' into a new field" in error
        assert "build_index(" not in error
        # too few images for the learned head: the form refuses it (Execute stays
        # disabled), in its words
        head = {**params, "index_key": "h", "code_method": "head"}
        with pytest.raises(ExecutionError, match="Code 'head' needs at least 64"):
            run_op("build_index", {"dataset": ds, "params": head})
        assert "h" not in sdk.list_indexes(ds)
    finally:
        ds.delete()


def test_build_form_can_leave_out_samples_without_a_vector(embedded_dataset):
    """The similarity backend indexes a field with gaps; the form could not."""
    ds = embedded_dataset
    ds.take(5, seed=0).set_values("emb", [None] * 5)
    _, requests = run_op("build_index", {"dataset": ds, "params": _params("gaps")})
    (error,) = notifications(requests, "error")
    assert error.startswith("5 samples without a vector in 'emb': check 'Leave out")
    assert sdk.list_indexes(ds) == []
    params = {**_params("gaps"), "skip_missing": True}
    _, requests = run_op("build_index", {"dataset": ds, "params": params})
    assert notifications(requests, "success") == ["Index 'gaps' built over 45 samples"]
    fresh = sdk.index_info(ds, "gaps").freshness
    assert fresh.n_index == 45 and fresh.n_added + fresh.n_unreadable == 5


def test_build_form_takes_the_shipped_demo_clip(cifar_dir):
    """The CLI's --model demo worked; the App's build form asked open_clip for an
    architecture named 'demo'."""
    from fiftyone_clipbranches.demo import DEMO_MODEL_NAME

    ds = make_cifar_dataset(cifar_dir, 7)  # the learned head fits on 64 or more
    try:
        params = {"index_key": "shapes", "embeddings": "__compute__", "model": "demo"}
        with_weights = {**params, "pretrained": "laion2b_s34b_b79k"}
        _, requests = run_op("build_index", {"dataset": ds, "params": with_weights})
        (error,) = notifications(requests, "error")
        assert "'demo' is the small CLIP this package ships" in error
        assert "leave the pretrained weights empty" in error
        assert sdk.list_indexes(ds) == []
        _, requests = run_op("build_index", {"dataset": ds, "params": params})
        assert notifications(requests, "error") == []
        assert notifications(requests, "success") == [
            f"Index 'shapes' built over {len(ds)} samples"
        ]
        info = sdk.index_info(ds, "shapes")
        assert info.clip_model["name"] == DEMO_MODEL_NAME and info.supports_text
        ids, _ = sdk.search_ids(ds, text="a red circle", k=3, index_key="shapes")
        assert len(ids) == 3
    finally:
        ds.delete()


def test_compute_embeddings_form_offers_the_model_its_field_records(
    cifar_dir, tiny_clip_checkpoint
):
    from test_plugin_operators import _resolve_input
    from user_path import TINY_CLIP_NAME

    ds = make_cifar_dataset(cifar_dir, 2)
    try:
        sdk.compute_embeddings(
            ds.limit(5), "clip", model=TINY_CLIP_NAME,
            pretrained=str(tiny_clip_checkpoint), progress=False,
        )  # fmt: skip
        props = _resolve_input("compute_embeddings", ds, {"field": "clip"})
        assert props["model"]["default"] == TINY_CLIP_NAME
        assert props["pretrained"]["default"] == str(tiny_clip_checkpoint)
        assert (
            "'clip' holds vectors of this model"
            in (props["model"]["view"]["description"])
        )
        # another model is refused in the form's words
        params = {"field": "clip", "model": TINY_CLIP_NAME, "pretrained": ""}
        _, requests = run_op("compute_embeddings", {"dataset": ds, "params": params})
        (error,) = notifications(requests, "error")
        assert "embed with its model (enter it in CLIP model and Pretrained" in error
        assert ds.exists("clip").count() == 5
    finally:
        ds.delete()
