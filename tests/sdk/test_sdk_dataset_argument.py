"""Every SDK function that takes a dataset says what to pass when given a name."""

import pytest

import fiftyone_clipbranches as cb

CALLS = {
    "build_index": lambda d: cb.build_index(d, "k"),
    "compute_embeddings": lambda d: cb.compute_embeddings(d),
    "delete_index": lambda d: cb.delete_index(d, "k"),
    "index_info": lambda d: cb.index_info(d),
    "list_indexes": lambda d: cb.list_indexes(d),
    "load_index": lambda d: cb.load_index(d),
    "rename_index": lambda d: cb.rename_index(d, "a", "b"),
    "update_index": lambda d: cb.update_index(d),
    "verify_index": lambda d: cb.verify_index(d),
    "refine": lambda d: cb.refine(d),
    "refine_ranking": lambda d: cb.refine_ranking(d),
    "refine_pages": lambda d: cb.refine_pages(d),
    "search": lambda d: cb.search(d, text="a cat"),
    "search_ids": lambda d: cb.search_ids(d, text="a cat"),
    "save_view": lambda d: cb.save_view(d, "name", None),
    "collect_labels": lambda d: cb.collect_labels(d),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_dataset_name_is_refused_with_how_to_load_it(name):
    with pytest.raises(TypeError, match=r"fo\.load_dataset\('my-images'\)"):
        CALLS[name]("my-images")


def test_anything_else_is_refused_by_its_type():
    with pytest.raises(TypeError, match="expected a FiftyOne dataset or view, got int"):
        cb.list_indexes(3)
