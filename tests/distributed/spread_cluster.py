"""Child process of test_ray_placement: a local Ray cluster of 4 one-CPU nodes
(``ray.cluster_utils.Cluster``), a 4-shard index opened through actors; prints the
number of actors on each node as JSON. Run with HOME and RAY_TMPDIR isolated."""

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
from ray.cluster_utils import Cluster

from fiftyone_clipbranches.distributed.ray_shards import ray_executor_factory
from fiftyone_clipbranches.engine.shard_format import build_sharded_index
from fiftyone_clipbranches.engine.shards import open_index


def main(n_nodes: int) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        for _ in range(n_nodes - 1):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, logging_level="error")
        deadline = time.monotonic() + 60
        while ray.cluster_resources().get("CPU", 0) < n_nodes:  # every node known
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n_nodes} nodes did not join")
            time.sleep(0.2)
        codes = np.random.default_rng(0).integers(0, 256, (8_000, 32), np.uint8)
        path = Path(tempfile.mkdtemp()) / "index"
        build_sharded_index(codes, path, n_nodes)
        index = open_index(path, executor_factory=ray_executor_factory())
        nodes = index.executor.node_ids()
        index.close()
        counts = sorted(np.unique(nodes, return_counts=True)[1].tolist())
        print(json.dumps({"actors_per_node": counts, "nodes": len(ray.nodes())}))
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]))
