"""Poll latency of the dashboard while a live inversion runs (MobileNetV2, 224x224, 2 torch threads).

Usage: python benchmarks/dashboard_latency.py   (needs the sample data)
"""
import json, statistics, time, urllib.request, torch, cnnviz
torch.set_num_threads(2)
model = cnnviz.zoo.pretrained("mobilenet_v2")
board = cnnviz.dashboard(model, [cnnviz.load_image(cnnviz.data_dir() + "/images/cat_chelsea.png")], samples=False)
base = f"http://127.0.0.1:{board.port}"
tok = board.token
def get(path):
    t = time.perf_counter(); urllib.request.urlopen(f"{base}{path}{'&' if '?' in path else '?'}token={tok}", timeout=60).read(); return time.perf_counter() - t
idle = [get("/api/info") for _ in range(20)]
req = urllib.request.Request(f"{base}/api/run?token={tok}", method="POST", headers={"Content-Type": "application/json"},
      data=json.dumps({"image": "g0", "method": "inversion", "layer": "features.9", "iterations": 2000}).encode())
job = json.loads(urllib.request.urlopen(req).read())["job"]
time.sleep(3)
busy = []
for _ in range(40):
    busy.append(get(f"/api/job/{job}")); time.sleep(0.1)
state = json.loads(urllib.request.urlopen(f"{base}/api/job/{job}?token={tok}").read())
board.stop()
ms = lambda v: f"median {1000*statistics.median(v):.1f} ms, max {1000*max(v):.1f} ms"
print(f"idle /api/info: {ms(idle)}; during inversion /api/job: {ms(busy)}; inversion reached step {state['step']}")
