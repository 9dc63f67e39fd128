"""FiftyOne operators over the SDK glue."""

OPERATORS: list = []
