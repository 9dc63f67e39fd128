"""FiftyOne panels over the SDK glue."""

PANELS: list = []
