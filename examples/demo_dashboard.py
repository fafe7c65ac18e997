"""The dashboard and the HTML report, photographed by a headless Chromium.

Writes under --out: report.html (a self-contained report on two photos), dashboard.png
(the dashboard comparing Grad-CAM on the two photos) and report.png (the top of the report).

Usage: python examples/demo_dashboard.py [--out out] [--quick]
"""
import argparse
import os
import sys
import time

import cnnviz
from cnnviz.app import _headless


def wait_for(driver, script, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.execute_script(script):
            return
        time.sleep(0.1)
    raise TimeoutError(f"the page did not get there: {script}")


def run(model, out_dir, photos, inversion_steps=60):
    report_path = os.path.join(out_dir, "report.html")
    cnnviz.report(photos, model, report_path, inversion_steps=inversion_steps, title="cnnviz report: MobileNetV2")
    print(f"  wrote {report_path}")
    why = _headless.missing()
    if why:
        print(f"  no screenshots: {why}")
        return
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = _headless.start(1400, 950)
    try:
        with cnnviz.dashboard(model, photos, name="MobileNetV2") as board:
            driver.get(board.url)
            wait_for(driver, "return document.body.dataset.ready === '1' && document.body.dataset.jobState === 'done'")
            # Two photos side by side: Grad-CAM at the last block.
            Select(driver.find_element(By.ID, "layer")).select_by_value("features.18")
            driver.find_element(By.ID, "compare").click()
            Select(driver.find_element(By.ID, "b-image")).select_by_index(1)
            Select(driver.find_element(By.ID, "b-layer")).select_by_value("features.18")
            Select(driver.find_element(By.ID, "b-method")).select_by_value("grad_cam")
            Select(driver.find_element(By.ID, "method")).select_by_value("grad_cam")
            wait_for(driver, "const h = document.querySelector('#pane-b h3'); return h && "
                             "h.textContent.startsWith('Grad-CAM') && document.body.dataset.jobState === 'done'")
            driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0);")
            _headless.screenshot(driver, os.path.join(out_dir, "dashboard.png"))
            print(f"  wrote {os.path.join(out_dir, 'dashboard.png')}")
        driver.get("file://" + os.path.abspath(report_path))
        wait_for(driver, "return document.readyState === 'complete'")
        driver.execute_script("window.scrollTo(0, document.querySelector('h2:nth-of-type(3)').offsetTop - 10);")
        _headless.screenshot(driver, os.path.join(out_dir, "report.png"))
        print(f"  wrote {os.path.join(out_dir, 'report.png')}")
    finally:
        _headless.close(driver)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out")
    ap.add_argument("--quick", action="store_true", help="fewer inversion steps")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    try:
        model = cnnviz.zoo.pretrained("mobilenet_v2")
    except FileNotFoundError as e:
        sys.exit(f"{e}\nSet CNNVIZ_DATA to the sample-data folder (with weights/ and images/).")
    images = os.path.join(cnnviz.data_dir(), "images")
    run(model, args.out, [os.path.join(images, n) for n in ("cat_chelsea.png", "macaws.png")],
        inversion_steps=20 if args.quick else 60)


if __name__ == "__main__":
    main()
