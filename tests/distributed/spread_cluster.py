"""Child process of test_ray_placement: a local Ray cluster of one-CPU nodes
(``ray.cluster_utils.Cluster``) and a sharded index opened through actors.

``spread_cluster.py N``: N nodes, N shards; prints the number of actors on each
node as JSON. ``spread_cluster.py N lose``: then the nodes but the head leave the
cluster; prints whether queries of three threads answer as before, how often
the actors were started again, and on how many nodes they run then.
``spread_cluster.py 1 head``: then the head goes; prints how a query ends, how
long it took, and what ``sdk.sharding.ray_head_problem`` says.
``spread_cluster.py 1 raylet``: then the only node's raylet stops (the head's
control service still answers); prints how a query ends. Run with HOME and RAY_TMPDIR isolated."""

import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import ray
from ray.cluster_utils import Cluster

from fiftyone_clipbranches.distributed.ray_shards import ray_executor_factory
from fiftyone_clipbranches.engine.shard_format import build_sharded_index
from fiftyone_clipbranches.engine.shards import open_index
from fiftyone_clipbranches.sdk.sharding import RAY_ADDRESS_ENV, ray_head_problem


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main(n_nodes: int, mode: str | None) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(n_nodes - 1)]
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
        counts = sorted(np.unique(nodes, return_counts=True)[1].tolist())
        report = {"actors_per_node": counts, "nodes": len(ray.nodes())}
        if mode == "lose":
            query = codes[:5]
            before = index.knn_many(query, 10)
            for node in workers:
                cluster.remove_node(node)
            # three threads meet the loss together: one restart serves them all
            started = time.perf_counter()
            with ThreadPoolExecutor(3) as pool:
                afters = list(pool.map(lambda _: index.knn_many(query, 10), range(3)))
            report["recovery_s"] = round(time.perf_counter() - started, 2)
            report["same_answer"] = all(
                np.array_equal(a, b) for after in afters for a, b in zip(before, after)
            )
            report["restarts"] = index.executor._generation
            report["nodes_after"] = len(set(index.executor.node_ids()))
        if mode == "raylet":
            index.knn_many(codes[:5], 10)
            cluster.head_node.kill_raylet(check_alive=False)
            deadline = time.monotonic() + 60
            while any(n["Alive"] for n in ray.nodes()):
                if time.monotonic() > deadline:
                    raise TimeoutError("the raylet's death was not seen")
                time.sleep(0.2)
            try:
                index.knn_many(codes[:5], 10)
                report["error"] = None
            except Exception as e:  # noqa: BLE001 - reported to the test
                report["error"] = f"{type(e).__name__}: {e}"
            print(json.dumps(report), flush=True)
            os._exit(0)
        if mode == "head":
            index.knn_many(codes[:5], 10)
            os.environ[RAY_ADDRESS_ENV] = cluster.address
            report["problem_before"] = ray_head_problem()
            # the head and its actors go, as `ray stop` takes them
            actors = index.executor.pids()
            cluster.head_node.kill_all_processes(
                check_alive=False, allow_graceful=False
            )
            deadline = time.monotonic() + 60
            while any(_alive(pid) for pid in actors) or ray_head_problem() is None:
                if time.monotonic() > deadline:
                    raise TimeoutError("the head's processes did not end")
                time.sleep(0.1)
            started = time.perf_counter()
            try:
                index.knn_many(codes[:5], 10)
                report["error"] = None
            except Exception as e:  # noqa: BLE001 - reported to the test
                report["error"] = f"{type(e).__name__}: {e}"
            report["failed_after_s"] = round(time.perf_counter() - started, 2)
            report["problem_after"] = ray_head_problem()
            print(json.dumps(report), flush=True)
            os._exit(0)  # Ray ends a driver without its head; nothing to shut down
        index.close()
        print(json.dumps(report))
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
