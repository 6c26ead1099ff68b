"""``make run``: the whole registry on this machine, stopped cleanly with Ctrl-C.

Starts a KRaft Kafka broker and Redis through ``infra/``, creates the registry topics, then a
worker (stream processor + ClickHouse sink + risk API + dashboard, embedded ClickHouse) and a
lender simulator so that data flows at once. Ctrl-C (or SIGTERM) stops the simulator, the
worker, Redis and Kafka in that order and waits for each, so nothing is left listening.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from streams.settings import REPO_ROOT, get_settings

KAFKA = REPO_ROOT / "infra" / "kafka" / "kafka.sh"
REDIS = REPO_ROOT / "infra" / "redis" / "redis.sh"


def _port(address: str) -> str:
    return address.rsplit(":", 1)[1].split("/")[0]


def main() -> int:
    settings = get_settings()
    data = settings.registry_data_dir
    data.mkdir(parents=True, exist_ok=True)
    # These settings for the worker and simulator, plus the infra scripts' own variables
    env = settings.child_env({
        "KAFKA_PORT": _port(settings.kafka_bootstrap.split(",")[0]),
        "KAFKA_DATA_DIR": str(data / "kafka"),
        "REDIS_PORT": _port(settings.redis_url.rsplit("/", 1)[0]),
        "REDIS_DATA_DIR": str(data / "redis"),
    })
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        subprocess.run([KAFKA, "start"], env=env, check=True)
        subprocess.run([REDIS, "start"], env=env, check=True)
        logs = data / "logs"
        logs.mkdir(exist_ok=True)
        for name, args in (
            ("worker", ["worker"]),
            ("simulator", ["simulate", "--rate", f"{settings.simulator_rate:g}"]),
        ):
            log = (logs / f"{name}.log").open("ab")
            children.append(subprocess.Popen(
                [sys.executable, "-m", "streams.cli", *args], stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True))
        base = f"http://{settings.api_host}:{settings.api_port}"
        print(f"""
credit-registry is running (Ctrl-C stops everything)
  lag dashboard   {base}/lag
  lag JSON        {base}/api/v1/lag
  metrics         {base}/metrics
  risk API        POST {base}/api/v1/frequency  (Authorization: Bearer local-dev-token)
  Kafka           {settings.kafka_bootstrap}    Redis {settings.redis_url}
  ClickHouse      {settings.clickhouse_dsn}
  logs            {logs}/worker.log, {logs}/simulator.log
""", flush=True)
        while not stopping:
            for child in children:
                if child.poll() is not None and child is children[0]:
                    print(f"worker exited ({child.returncode}); see {logs}/worker.log")
                    stopping = True
            time.sleep(0.5)
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in reversed(children):
            try:
                child.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(10)
        subprocess.run([REDIS, "stop"], env=env)
        subprocess.run([KAFKA, "stop"], env=env)
        print("stopped: simulator, worker, Redis, Kafka")
    return 0


if __name__ == "__main__":
    sys.exit(main())
