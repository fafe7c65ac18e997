"""Poll latency of the dashboard while a live inversion runs (MobileNetV2, 224x224, 2 torch threads).

Usage: python benchmarks/dashboard_latency.py   (needs the sample data)
"""
import json
import os
import statistics
import time
import urllib.request

import torch

import cnnviz


def main() -> None:
    torch.set_num_threads(2)
    model = cnnviz.zoo.pretrained("mobilenet_v2")
    photo = cnnviz.load_image(os.path.join(cnnviz.data_dir(), "images", "cat_chelsea.png"))
    board = cnnviz.dashboard(model, [photo], samples=False)
    base, token = f"http://127.0.0.1:{board.port}", board.token

    def get(path: str) -> float:
        t = time.perf_counter()
        urllib.request.urlopen(f"{base}{path}{'&' if '?' in path else '?'}token={token}", timeout=60).read()
        return time.perf_counter() - t

    try:
        idle = [get("/api/info") for _ in range(20)]
        body = {"image": "g0", "method": "inversion", "layer": "features.9", "iterations": 2000}
        request = urllib.request.Request(f"{base}/api/run?token={token}", method="POST", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        job = json.loads(urllib.request.urlopen(request).read())["job"]
        time.sleep(3)
        busy = []
        for _ in range(40):
            busy.append(get(f"/api/job/{job}"))
            time.sleep(0.1)
        state = json.loads(urllib.request.urlopen(f"{base}/api/job/{job}?token={token}").read())
    finally:
        board.stop()

    def ms(v):
        return f"median {1000 * statistics.median(v):.1f} ms, max {1000 * max(v):.1f} ms"

    print(f"idle /api/info: {ms(idle)}; during inversion /api/job: {ms(busy)}; "
          f"inversion reached step {state['step']}")


if __name__ == "__main__":
    main()
