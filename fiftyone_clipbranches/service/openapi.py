"""The OpenAPI 3 document of the ``/v1`` API, built from the request schemas."""

from __future__ import annotations

from importlib import metadata

from fiftyone_clipbranches.service import requests as rq

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "stable error code"},
                "message": {"type": "string"},
                "details": {},
            },
        }
    },
}
_ITEM = {
    "type": "object",
    "required": ["id", "score"],
    "properties": {"id": {"type": "string"}, "score": {"type": "number"}},
}
_PAGE = {
    "type": "object",
    "required": [
        "result_id",
        "kind",
        "dataset",
        "index_key",
        "total",
        "offset",
        "items",
    ],
    "properties": {
        "result_id": {"type": "string"},
        "kind": {"type": "string", "enum": ["search", "refine", "next_to_label"]},
        "dataset": {"type": "string"},
        "index_key": {"type": "string"},
        "total": {"type": "integer", "description": "number of ranked samples"},
        "offset": {"type": "integer"},
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
        "next_offset": {"type": "integer", "nullable": True},
    },
}
_RESULT = {
    "allOf": [
        {"$ref": "#/components/schemas/Page"},
        {
            "type": "object",
            "properties": {
                "timings": {
                    "type": "object",
                    "additionalProperties": {"type": "number"},
                    "description": "seconds: total_s is the whole request (and"
                    " search_s the search of a search or of next_to_label)",
                },
                "stats": {
                    "type": "object",
                    "description": "a search's and next_to_label's: query"
                    " (text, samples or positives), n_results, n_unindexed"
                    " (samples added since the build, not searched) and score; a"
                    " refinement's: the stats of sdk.refine_ranking"
                    " (n_pos, n_neg, n_unreadable_neg, n_unindexed_neg, n_random_neg,"
                    " n_random_neg_requested,"
                    " n_neighbour_pos, n_relabelled, n_forced_pos, n_dropped_neg,"
                    " n_results, n_index,"
                    " n_unindexed, model, label_source, index_key,"
                    " recovered_fields, train_ms,"
                    " query_ms, total_ms, and note when present)",
                },
            },
        },
    ]
}
_NULLABLE_STRING = {"type": "string", "nullable": True}
_INDEX = {
    "type": "object",
    "required": ["key", "dataset", "n_samples", "supports_text"],
    "properties": {
        "key": {"type": "string"},
        "dataset": {"type": "string"},
        "n_samples": {"type": "integer", "description": "samples indexed"},
        "code_dims": {"type": "integer", "nullable": True},
        "code_method": {**_NULLABLE_STRING, "description": "head or pca"},
        "embeddings_field": _NULLABLE_STRING,
        "clip_model": {
            "type": "object",
            "nullable": True,
            "description": "the CLIP model of the embeddings (name, pretrained: its"
            " tag, or a local checkpoint by its file name)",
        },
        "built_at": {**_NULLABLE_STRING, "description": "ISO 8601, UTC"},
        "n_shards": {"type": "integer"},
        "supports_text": {
            "type": "boolean",
            "description": "text queries can be embedded (a CLIP model is known)",
        },
        "nbytes": {"type": "integer", "description": "bytes of the index files"},
        "bytes_per_point": {"type": "number"},
        "manifest": {"type": "object"},
    },
}
_DATASET = {
    "type": "object",
    "required": ["name", "indexes"],
    "properties": {
        "name": {"type": "string"},
        "indexes": {"type": "array", "items": {"$ref": "#/components/schemas/Index"}},
        "unavailable_indexes": {
            "type": "array",
            "description": "indexes that failed to load or verify (not served), or whose"
            " last query found them unavailable (still tried by queries)",
            "items": {
                "type": "object",
                "properties": {"key": {"type": "string"}, "error": {"type": "string"}},
            },
        },
    },
}

_ERROR_CODES = {
    "400": "invalid request (codes: invalid_request, invalid_json)",
    "401": "missing or wrong bearer token (code: unauthorized)",
    "404": "unknown dataset, index, result or endpoint",
    "413": "body larger than the limit (code: body_too_large)",
    "409": "a saved view of that name is not clipbranches' (code: view_exists)",
    "415": "body is not application/json (code: unsupported_media_type)",
    "422": "valid request the data cannot satisfy (e.g. unknown_sample_ids)",
    "500": "the compute worker running the request died; it is replaced, retry "
    "(code: worker_crashed)",
    "503": "server busy, not ready, index or database unavailable (codes: busy, "
    "not_ready, index_unavailable, index_being_built, model_unavailable, "
    "database_unavailable, shutting_down)",
    "504": "the work exceeded its time limit (code: timeout)",
    "507": "the database's disk is full: nothing was saved (code: database_full)",
}


#: What a request with a body that reaches the compute pool may answer.
_COMPUTE_ERRORS = ("400", "401", "404", "413", "415", "422", "500", "503", "504")


def _errors(*statuses: str) -> dict:
    return {
        s: {
            "description": _ERROR_CODES[s],
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
            },
        }
        for s in statuses
    }


def _ok(ref: str, description: str = "success") -> dict:
    return {
        "200": {
            "description": description,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}
            },
        }
    }


def _json_ok(schema: dict, description: str = "success") -> dict:
    return {
        "200": {
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    }


def _body(ref: str) -> dict:
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}
        },
    }


def _path_param(name: str, schema: dict) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def build_openapi() -> dict:
    """The OpenAPI 3.0 document served at ``/v1/openapi.json``."""
    result_id = _path_param("result_id", rq.RESULT_ID.to_openapi())
    page_params = [
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": {**prop.schema.to_openapi(), "default": prop.default},
        }
        for name, prop in rq.PAGE_QUERY.props.items()
    ]
    public = {"security": []}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "clipbranches search service",
            "version": _version(),
            "description": (
                "Search by classification over FiftyOne datasets: text or example "
                "search, then refinement with a model trained on labelled samples "
                "that returns every matching sample of the index."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/v1/health": {
                "get": {
                    "summary": "liveness",
                    **public,
                    "responses": {**_json_ok({"type": "object"}), **_errors("400")},
                }
            },
            "/v1/ready": {
                "get": {
                    "summary": "readiness: indexes are loaded",
                    **public,
                    "responses": {
                        **_json_ok({"type": "object"}),
                        **_errors("400", "503"),
                    },
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "summary": "this document",
                    **public,
                    "responses": {**_json_ok({"type": "object"}), **_errors("400")},
                }
            },
            "/v1/datasets": {
                "get": {
                    "summary": "datasets served, with their indexes and manifests",
                    "responses": {
                        **_json_ok(
                            {
                                "type": "object",
                                "properties": {
                                    "datasets": {
                                        "type": "array",
                                        "items": {
                                            "$ref": "#/components/schemas/Dataset"
                                        },
                                    }
                                },
                            }
                        ),
                        **_errors("400", "401", "503"),
                    },
                }
            },
            "/v1/datasets/{name}": {
                "get": {
                    "summary": "one dataset with its indexes",
                    "parameters": [_path_param("name", rq.DATASET_NAME.to_openapi())],
                    "responses": {
                        **_ok("Dataset"),
                        **_errors("400", "401", "404", "503"),
                    },
                }
            },
            "/v1/datasets/{name}/indexes/{key}": {
                "get": {
                    "summary": "one index with its manifest",
                    "parameters": [
                        _path_param("name", rq.DATASET_NAME.to_openapi()),
                        _path_param("key", rq.INDEX_KEY.to_openapi()),
                    ],
                    "responses": {
                        **_ok("Index"),
                        **_errors("400", "401", "404", "503"),
                    },
                }
            },
            "/v1/search": {
                "post": {
                    "summary": "nearest neighbours of a text or of example samples",
                    "requestBody": _body("SearchRequest"),
                    "responses": {
                        **_ok("Result"),
                        **_errors(*_COMPUTE_ERRORS),
                    },
                }
            },
            "/v1/refine": {
                "post": {
                    "summary": "train on labelled samples, return every positive, ranked",
                    "requestBody": _body("RefineRequest"),
                    "responses": {
                        **_ok("Result"),
                        **_errors(*_COMPUTE_ERRORS),
                    },
                }
            },
            "/v1/next_to_label": {
                "post": {
                    "summary": "the samples to label next beside a result",
                    "requestBody": _body("NextToLabelRequest"),
                    "responses": {
                        **_ok("Result"),
                        **_errors(*_COMPUTE_ERRORS),
                    },
                }
            },
            "/v1/results/{result_id}": {
                "get": {
                    "summary": "a page of a stored result",
                    "parameters": [result_id, *page_params],
                    "responses": {**_ok("Page"), **_errors("400", "401", "404", "503")},
                },
                "delete": {
                    "summary": "forget a stored result",
                    "parameters": [result_id],
                    "responses": {
                        **_json_ok({"type": "object"}),
                        **_errors("400", "401", "404"),
                    },
                },
            },
            "/v1/results/{result_id}/save": {
                "post": {
                    "summary": "save a stored result as a FiftyOne saved view",
                    "parameters": [result_id],
                    "requestBody": _body("SaveViewRequest"),
                    "responses": {
                        **_json_ok({"type": "object"}),
                        **_errors(*_COMPUTE_ERRORS, "409", "507"),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "SearchRequest": rq.SEARCH.to_openapi(),
                "RefineRequest": rq.REFINE.to_openapi(),
                "NextToLabelRequest": rq.NEXT_TO_LABEL.to_openapi(),
                "SaveViewRequest": rq.SAVE_VIEW.to_openapi(),
                "Error": _ERROR,
                "Item": _ITEM,
                "Page": _PAGE,
                "Result": _RESULT,
                "Index": _INDEX,
                "Dataset": _DATASET,
            },
        },
    }


def _version() -> str:
    """The installed distribution's version (the package root is not imported: the
    service stands on the sdk only)."""
    try:
        return metadata.version("fiftyone-clipbranches")
    except metadata.PackageNotFoundError:
        return "0+unknown"
