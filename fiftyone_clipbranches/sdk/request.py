"""One refinement request: what ``refine``, ``refine_ranking``, the remote client and
the service all take, validated in one place.

A parameter of a refinement round is added here once: :func:`sdk.refine` builds a
:class:`RefineRequest` from its keywords, the service builds one from its JSON body
(:meth:`RefineRequest.from_json`), the client sends :meth:`RefineRequest.to_json`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields

import numpy as np

from fiftyone_clipbranches.engine.validation import check_positive_number
from fiftyone_clipbranches.sdk.models import DEFAULT_MODEL, ModelSpec, get_model
from fiftyone_clipbranches.sdk.rowmap import as_sample_ids
from fiftyone_clipbranches.sdk.settings import DEFAULT_TAGS, MAX_K

#: Request fields a remote service does not take: constructor arguments would let a
#: client make the server train models of any cost.
LOCAL_ONLY_FIELDS = ("model_params",)


@dataclass(frozen=True)
class RefineRequest:
    """The labels and the training choices of one refinement round.

    Attributes:
        positives, negatives: sample ids, samples, or a dataset or view (its
            samples); when both are None the labels come from the sample tags
            ``tags`` (positive tag, negative tag).
        tags: ``(positive tag, negative tag)``.
        model: a registered model name (``sdk.models.model_names()``).
        random_negatives: unlabelled samples drawn as extra negatives; None: the
            model's registered default.
        negative_weight: sample weight of every negative (finite, > 0).
        index_key: the index to search; None: ``"clipbranches"``, else the
            dataset's only index (as every face chooses).
        model_params: extra keyword arguments of the model class (local only).
        seed: seed of the model and of the random negatives.
        neighbours_per_positive: int >= 0 or ``"auto"``; None: the model's default.
        query: the search the labels refine: text, or a float embedding or uint8
            code (a remote service takes text only). Needed by the models whose
            spec ``needs_query``.

    Raises:
        ValueError: a field of the wrong type or out of range, naming it.
    """

    positives: object = None
    negatives: object = None
    tags: tuple[str, str] = DEFAULT_TAGS
    model: str = DEFAULT_MODEL
    random_negatives: int | None = None
    negative_weight: float = 1.0
    index_key: str | None = None
    model_params: dict | None = None
    seed: int = 0
    neighbours_per_positive: int | str | None = None
    query: object = None

    def __post_init__(self):
        if self.model_params is not None and not isinstance(self.model_params, dict):
            raise ValueError(
                f"model_params must be a dict or None; got {self.model_params!r}"
            )
        if not isinstance(self.model, str):
            raise ValueError(
                f"model must be a model name such as {DEFAULT_MODEL!r}; got"
                f" {self.model!r}"
            )
        spec = get_model(self.model)
        if self.model_params:
            spec.check_params(self.model_params)
        if self.random_negatives is not None:
            _check_count("random_negatives", self.random_negatives)
        _check_count("seed", self.seed)
        _check_neighbours(self.neighbours_per_positive)
        try:
            check_positive_number(self.negative_weight, "negative_weight")
        except (TypeError, ValueError):
            raise ValueError(
                "negative_weight must be a finite number > 0 (e.g. 1.0); got "
                f"{self.negative_weight!r} ({type(self.negative_weight).__name__})"
            ) from None
        if self.index_key is not None and (
            not isinstance(self.index_key, str) or not self.index_key
        ):
            raise ValueError(
                f"index_key must be a non-empty str or None; got {self.index_key!r}"
            )
        if (
            not isinstance(self.tags, tuple | list)
            or len(self.tags) != 2
            or not all(isinstance(t, str) and t for t in self.tags)
        ):
            raise ValueError(
                f"tags must be (positive tag, negative tag), two non-empty str; got"
                f" {self.tags!r}"
            )
        object.__setattr__(self, "tags", tuple(self.tags))

    @property
    def spec(self) -> ModelSpec:
        """The registry entry of :attr:`model`."""
        return get_model(self.model)

    def n_random_negatives_for(self, n_positives: int) -> int:
        """:attr:`random_negatives`, or the model's default for ``n_positives``
        labelled positives when not given (``ModelSpec.random_negatives_for``)."""
        if self.random_negatives is None:
            return self.spec.random_negatives_for(n_positives)
        return int(self.random_negatives)

    @property
    def n_neighbours_per_positive(self) -> int | str:
        """:attr:`neighbours_per_positive`, or the model's default when not given."""
        if self.neighbours_per_positive is None:
            return self.spec.neighbours_per_positive
        return self.neighbours_per_positive

    @property
    def by_ids(self) -> bool:
        """Whether the labels are sample ids (else the tags)."""
        return self.positives is not None or self.negatives is not None

    @classmethod
    def build(cls, request: RefineRequest | None = None, **values) -> RefineRequest:
        """``request`` itself, or a request of ``values`` (field name -> value).

        Raises:
            ValueError: both a request and values other than the defaults.
        """
        if request is None:
            return cls(**values)
        if not isinstance(request, RefineRequest):
            raise ValueError(f"request must be a RefineRequest; got {request!r}")
        defaults = _defaults()
        given = [k for k, v in values.items() if not _same(v, defaults[k])]
        if given:
            raise ValueError(
                "pass request= or the request's fields, not both (also given: "
                f"{', '.join(given)})"
            )
        return request

    def to_json(self) -> dict:
        """The request as the service's ``/v1/refine`` body (without ``dataset``).

        None fields are left out (the service's default is the same); labels are
        sent as ids, or as tags when there are none.

        Raises:
            ValueError: a field the service does not take is set (``model_params``,
                a ``query`` that is not text).
        """
        for name in LOCAL_ONLY_FIELDS:
            if getattr(self, name) is not None:
                raise ValueError(f"a remote service does not take {name}")
        if self.query is not None and not isinstance(self.query, str):
            raise ValueError("a remote service takes a text query only")
        body = {
            "model": self.model,
            "random_negatives": self.random_negatives,
            "negative_weight": float(self.negative_weight),
            "index_key": self.index_key,
            "seed": int(self.seed),
            "neighbours_per_positive": self.neighbours_per_positive,
            "query": self.query,
        }
        if self.by_ids:
            for key in ("positives", "negatives"):
                if getattr(self, key) is not None:  # left out: not given
                    # each once, as sdk.refine counts them (the service refuses
                    # repeats)
                    ids = as_sample_ids(getattr(self, key), key)
                    body[key] = list(dict.fromkeys(ids))
        else:
            body["positive_tag"], body["negative_tag"] = self.tags
        return {k: v for k, v in body.items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping) -> RefineRequest:
        """The request of a JSON object: a ``/v1/refine`` body, or a face's form
        values (the same names). Keys that are not request fields are ignored;
        empty strings and None mean "not given"; whole floats are ints; strings are
        stripped, tags excepted (a tag is matched as written).
        """

        def given(key, strip=True):
            value = data.get(key)
            if isinstance(value, str) and not value.strip():
                return None
            return value.strip() if isinstance(value, str) and strip else value

        values = {}
        for key in ("model", "index_key", "query"):
            if given(key) is not None:
                values[key] = given(key)
        for key in ("random_negatives", "seed", "neighbours_per_positive"):
            if given(key) is not None:
                values[key] = _whole(given(key))
        if given("negative_weight") is not None:
            values["negative_weight"] = given("negative_weight")
        for key in ("positives", "negatives"):  # left out: not given (None)
            if given(key) is not None:
                values[key] = _id_list(given(key))
        values["tags"] = (  # a tag is a name: "sp " is not "sp" (Mark writes it so)
            given("positive_tag", strip=False) or DEFAULT_TAGS[0],
            given("negative_tag", strip=False) or DEFAULT_TAGS[1],
        )
        return cls(**values)


def _id_list(value) -> list:
    """One id (a string) or ids (any iterable: an array too), as a list (None or
    "": an empty one)."""
    if value is None or isinstance(value, str):
        return [value] if value else []
    return list(value)


def request_field_names() -> tuple[str, ...]:
    """Names of the fields of :class:`RefineRequest`, in order."""
    return tuple(f.name for f in fields(RefineRequest))


def _defaults() -> dict:
    return {
        f.name: f.default for f in fields(RefineRequest) if f.default is not MISSING
    }


def _same(value, default) -> bool:
    if isinstance(value, np.ndarray) or isinstance(default, np.ndarray):
        return False
    return value is default or (type(value) is type(default) and value == default)


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be an int >= 0; got {value!r}")


def _check_neighbours(value) -> None:
    if value is None or value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(
            f"neighbours_per_positive must be an int >= 0 or 'auto'; got {value!r}"
        )


def _whole(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def shown_k(value) -> int:
    """The number of results of a search the App shows, from ``value`` (a number
    from a form, or typed text).

    Raises:
        ValueError: not a whole number from 1 to ``MAX_K``, in the form's words.
    """
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    k = _whole(value)
    if (
        isinstance(k, bool)
        or not isinstance(k, int | np.integer)
        or not 1 <= k <= MAX_K
    ):
        raise ValueError(
            f"Results (k) must be a whole number from 1 to {MAX_K}, got {value!r}"
        )
    return int(k)
